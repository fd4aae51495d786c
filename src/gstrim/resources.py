"""The machine's limits as a run meets them: peak memory, and disk space before and during a write; and which
machine (host, cluster node, process) a run ran on."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import socket
import sys
from pathlib import Path

from gstrim.errors import GstrimError

MB = 1e6


# glibc raises its mmap threshold up to 32 MB after a large block is freed, so that freed photos and
# per-Gaussian temporaries (a 1600x1000 photo decodes to 19 MB of float32) come from the heap afterwards and
# stay resident: measured 1.55 GB held after touching 100 such photos (kept as 0.48 GB of uint8), 0.49 GB with
# a fixed 1 MB threshold (bench/photo_memory.py). A fixed threshold hands large blocks back when they are freed.
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


def return_freed_memory() -> bool:
    """Make freed large blocks go back to the system (glibc); True where it applies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


_node: str | None = None  # the cluster node this process works for (a Ray node id), set by its executor


def set_node(node: str | None) -> None:
    global _node
    _node = node


def where() -> dict:
    """The host, the cluster node (where an executor set one) and the process a run runs in."""
    return {"host": socket.gethostname(), "node": _node, "pid": os.getpid()}


def peak_rss_bytes() -> int:
    """The largest resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory() -> dict:
    """Peak host memory of this process, and of the GPU when torch has used one, in MB."""
    peak = {"rss_mb": round(peak_rss_bytes() / MB, 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["cuda_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)
    return peak


def megabytes(n: float) -> str:
    """Bytes as MB, with the decimals small sizes need."""
    return f"{n / MB:,.{0 if n >= 100 * MB else 1 if n >= MB else 3}f} MB"


def describe_peak(peak: dict) -> str:
    return "peak memory " + ", ".join(f"{v:,.0f} MB {'RSS' if k == 'rss_mb' else 'GPU'}" for k, v in peak.items())


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (or its nearest parent
    that exists)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(path: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse, before any work, a write of about `needed_bytes` that the filesystem cannot hold."""
    free = free_bytes(path)
    if needed_bytes > free:
        raise GstrimError(f"not enough disk space for {what}: needs about {megabytes(needed_bytes)}, "
                          f"{megabytes(free)} free", path)


# Below this much free space, a failed write is taken to be the disk filling up: torch and numpy report a
# full disk as their own RuntimeError / short-write OSError, without ENOSPC.
NEARLY_FULL_BYTES = 1 << 20


def disk_full_error(exc: BaseException, target: Path, written: int = 0, expected: int | None = None
                    ) -> GstrimError | None:
    """The one-line error for `exc`, raised while writing `target` (`written` bytes of it so far, still on the
    disk) if the disk filled up, else None."""
    if isinstance(exc, GstrimError) or not isinstance(exc, (OSError, RuntimeError)):
        return None
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    free = free_bytes(target.parent)
    if not full and free >= NEARLY_FULL_BYTES:
        return None
    need = f"it needs about {megabytes(expected)}" if expected else \
        f"the disk filled after {megabytes(written)} of it"
    return GstrimError(f"no space left on the device: {need}, {megabytes(free + written)} were free; "
                       "nothing was written", target)

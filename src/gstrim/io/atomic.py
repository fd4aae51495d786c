"""Atomic output: write to a temporary name beside the target, rename on success."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gstrim.resources import disk_full_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


@contextmanager
def atomic_path(target: str | Path, *, directory: bool = False, expected_bytes: int | None = None
                ) -> Iterator[Path]:
    """Yield a temporary path (file or folder) that replaces `target` only if the block succeeds.

    A disk that fills up during the block becomes a one-line error naming `target` and the space the write
    needed (`expected_bytes` when the caller knows it), with the partial output removed.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the finished file gets the usual mode
    except OSError as exc:
        raise disk_full_error(exc, target, 0, expected_bytes) or exc from None
    try:
        yield tmp
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as exc:
        full = disk_full_error(exc, target, _size(tmp), expected_bytes)
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if full is not None:
            raise full from None
        raise


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Copy a file so that `target` is either its old self or the whole copy, whatever stops the copy (a kill
    leaves at most a hidden temporary beside it)."""
    with atomic_path(target, expected_bytes=Path(source).stat().st_size) as tmp:
        shutil.copyfile(source, tmp)


def holds_other_files(folder: Path, record: str) -> bool:
    """Whether `folder` holds anything but its `record` file (being) written: a folder that another driver has
    just started is not "someone else's folder"."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(p.name != record and not p.name.startswith(f".{record}.") for p in folder.iterdir())

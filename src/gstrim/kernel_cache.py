"""Numba's first-use compilation, made parallel: a CPU run compiles the kernels it is about to use in worker
processes, one per thread it may use, while it loads its data, instead of one after the other at their first calls.

On a fresh machine (an empty Numba cache) the CPU renderer's kernels take ~40 s to compile one by one on 2
cores (docs/scale.md, "Cold start"); with a cache they load in well under a second, and `warm` then starts
no process. Numba's cache (NUMBA_CACHE_DIR, set in `gstrim/__init__.py`) is what carries the compiled code
from the workers to the run. Only the float32 signatures are listed (runs compute in float32); a kernel
called with other types compiles at its first call as before. `tests/test_kernel_cache.py` checks that these
are the signatures the renderer compiles.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from multiprocessing import get_context

import torch

# argument types, in Numba's signature syntax
_F1, _F2, _F3 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]"
_I1, _I2, _INT = "int64[::1]", "int64[:, ::1]", "int64"
_TILES = f"{_F2}, {_F2}, {_F2}, {_F1}, {_F1}, {_I1}, {_I1}, {_INT}, {_INT}, {_INT}, {_F1}"  # the pixel stage's
_CAMERA = f"{_F2}, {_F2}, {_F2}, {_F3}, {_F3}, {_F2}, {_F1}, float64, float64, float64, float64, {_INT}, {_INT}, " \
          f"{_F1}, {_INT}, {_F1}"  # the per-Gaussian stage's inputs

SIGNATURES = {  # the longest compilations first (2 cores: 12, 10, 9, 9, 5 and 5 s), so that workers finish together
    "gstrim.render.gaussian_kernels.project_and_shade_backward":
        f"({_CAMERA}, int32[::1], {_F2}, {_F2}, {_F2}, {_F2}, {_F2}, {_F2}, {_F2}, {_F3}, {_F3})",
    "gstrim.render.cpu_kernels.pixel_statistics": f"({_TILES}, {_F2}, {_I2}, {_INT}, {_F2}, {_F2}, {_F3})",
    "gstrim.render.cpu_kernels.rasterize_forward": f"({_TILES}, {_F3}, {_F2}, {_I2})",
    "gstrim.render.cpu_kernels.rasterize_backward":
        f"({_TILES}, {_F2}, {_I2}, {_F3}, {_F2}, {_INT}, {_F3}, {_F3}, {_F3}, {_F2})",
    "gstrim.render.gaussian_kernels.project_and_shade": f"({_CAMERA}, {_F2}, {_F2}, {_F1}, int32[::1], {_F2})",
    "gstrim.render.cpu_kernels.bin_gaussians": f"({_F2}, {_I1}, {_F2}, {_F1}, {_I1}, {_INT}, {_INT}, {_INT}, {_INT})",
}
RENDERER = tuple(name for name in SIGNATURES if ".pixel_statistics" not in name)  # every CPU render and backward
PIXEL_STATISTICS = ("gstrim.render.cpu_kernels.pixel_statistics",)  # the scores that count pixels


def _dispatcher(name: str):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _signature(name: str, signatures: dict[str, str]) -> tuple:
    """The argument types, as a call's `typeof` gives them (so that the cache entry is the one a call looks up)."""
    from numba.core import sigutils

    return tuple(sigutils.normalize_signature(signatures[name])[0])


def _cached(name: str, signatures: dict[str, str]) -> bool:
    """The kernel is compiled in this process or in Numba's cache (a look at the cache's index, nothing loaded)."""
    kernel, signature = _dispatcher(name), _signature(name, signatures)
    if signature in kernel.overloads:
        return True
    try:
        kernel.targetctx.refresh()
        key = kernel._cache._index_key(signature, kernel.targetctx.codegen())
        return key in kernel._cache._cache_file._load_index()
    except (AttributeError, OSError):  # another Numba's internals: leave it to its first call, as before
        return True


def _compile(name: str, signatures: dict[str, str]) -> None:
    """Compile (in a worker: and write Numba's cache) or, when the cache has it, load it."""
    _dispatcher(name).compile(_signature(name, signatures))


class Warming:
    """Kernels compiling in worker processes: `wait()` loads them into this process, `cancel()` stops the workers
    (a run that fails before it renders must not wait for them)."""

    def __init__(self, names: list[str], signatures: dict[str, str], pool=None, results: list | None = None):
        self.names, self.signatures, self.pool, self.results = names, signatures, pool, results or []

    def wait(self) -> None:
        if self.pool is None:
            return
        try:
            for result in self.results:
                result.get()
        except Exception:  # noqa: BLE001 - a worker that fails leaves the kernel to compile at its first call
            pass
        self.cancel()
        for name in self.names:
            _compile(name, self.signatures)  # a load from what the workers wrote

    def cancel(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def start_warming(names: Iterable[str], signatures: dict[str, str] = SIGNATURES) -> Warming:
    """Start compiling the kernels `names` that Numba's cache lacks, in parallel worker processes."""
    missing = [name for name in dict.fromkeys(names) if not _cached(name, signatures)]
    # one worker per thread the run may use (`--threads`, GSTRIM_THREADS: a batch's share of a node), so that jobs
    # sharing a machine do not each start one per core; one kernel or one thread: compile at first calls
    workers = min(len(missing), torch.get_num_threads())
    if workers < 2:
        return Warming([], signatures)
    try:  # spawned, not forked: the run's process holds torch's thread pools; daemonic: they end with the run
        pool = get_context("spawn").Pool(workers)
    except (AssertionError, OSError):  # inside a daemonic worker, or no semaphores: compile at first calls
        return Warming([], signatures)
    return Warming(missing, signatures, pool, [pool.apply_async(_compile, (name, signatures)) for name in missing])


def warm_all() -> None:
    """Compile every listed kernel into Numba's cache, in parallel (`python -m gstrim.kernel_cache`: the
    install script runs it, so that even the first command on a fresh machine finds them compiled)."""
    import time

    start = time.perf_counter()
    warming = start_warming(SIGNATURES)
    compiling = len(warming.names)
    warming.wait()
    cache = os.environ.get("NUMBA_CACHE_DIR", "Numba's cache")
    print(f"gstrim: {compiling} of {len(SIGNATURES)} CPU kernels compiled into {cache} "
          f"in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    warm_all()

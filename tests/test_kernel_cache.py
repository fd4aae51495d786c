"""Parallel first-use compilation (`kernel_cache`): its signatures are those the CPU renderer compiles, and the
warming compiles in workers what the cache lacks, then loads it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import torch
from numba.core import sigutils
from test_render import make_camera, make_scene

from gstrim import kernel_cache
from gstrim.render import pixel_statistics, rasterize


def test_listed_signatures_are_those_a_float32_run_compiles(rng):
    scene = make_scene(rng, n=40, degree=3, dtype=torch.float32)
    camera = make_camera(rng, 24, 20, torch.float32)
    out = rasterize(scene, camera)
    (out.image.sum() + out.alpha.sum()).backward()
    pixel_statistics(scene, camera)
    for name, signature in kernel_cache.SIGNATURES.items():
        kernel = kernel_cache._dispatcher(name)
        assert tuple(sigutils.normalize_signature(signature)[0]) in kernel.signatures, name
    assert set(kernel_cache.RENDERER) | set(kernel_cache.PIXEL_STATISTICS) == set(kernel_cache.SIGNATURES)


def test_warming_compiles_what_the_cache_lacks_in_workers_and_loads_it(tmp_path):
    """Two small kernels (the bit packing of .gsz) in a fresh process with an empty cache: compiled by workers,
    then loaded into the process without compiling there; a second warming finds them and starts no worker."""
    script = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)  # two workers, whatever the machine
        from gstrim import kernel_cache
        signatures = {"gstrim.io.bit_kernels.pack": "(uint64[::1], int64[::1], uint8[::1])",
                      "gstrim.io.bit_kernels.unpack": "(uint8[::1], int64[::1], uint64[::1])"}
        warming = kernel_cache.start_warming(signatures, signatures)
        assert warming.pool is not None and len(warming.results) == 2
        warming.wait()
        for name in signatures:
            kernel = kernel_cache._dispatcher(name)
            assert kernel_cache._signature(name, signatures) in kernel.overloads, name
            assert not kernel.stats.cache_misses, name  # loaded from what the workers wrote, not compiled here
        assert kernel_cache.start_warming(signatures, signatures).pool is None  # all cached: no worker
        print("ok")
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert len(list(tmp_path.rglob("*.nbi"))) == 2  # written by the workers
    # and a process that calls a kernel without warming finds it there too (the same cache entry as a call's)
    call = textwrap.dedent("""
        import numpy as np
        from gstrim.io import bit_kernels
        out = np.zeros(1, np.uint8)
        bit_kernels.pack(np.array([5], np.uint64), np.array([3], np.int64), out)
        assert out[0] == 0b10100000
        assert not bit_kernels.pack.stats.cache_misses and bit_kernels.pack.stats.cache_hits
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", call], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_cancelled_warming_stops_its_workers_at_once(tmp_path):
    """A run that fails before it renders (bad data) cancels the warming: its process ends without waiting for
    the compilations."""
    script = textwrap.dedent("""
        import time
        import torch
        torch.set_num_threads(2)  # two workers, whatever the machine
        from gstrim import kernel_cache
        warming = kernel_cache.start_warming(kernel_cache.RENDERER)
        assert warming.pool is not None
        start = time.perf_counter()
        warming.cancel()
        print(round(time.perf_counter() - start, 1))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 5 and time.perf_counter() - start < 20  # the compilations take ~25 s


def test_warming_inside_a_daemonic_worker_leaves_the_kernels_to_their_first_calls(tmp_path):
    """A run inside a multiprocessing pool's worker (daemonic: no children allowed) starts no worker and fails not."""
    script = textwrap.dedent("""
        import multiprocessing

        def warm(_):
            from gstrim import kernel_cache
            return kernel_cache.start_warming(kernel_cache.RENDERER).pool is None

        if __name__ == "__main__":
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                print(pool.map(warm, [0])[0])
    """)
    (tmp_path / "daemonic.py").write_text(script)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(tmp_path / "daemonic.py")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr

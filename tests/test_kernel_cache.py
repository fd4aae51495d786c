"""Parallel first-use compilation (`kernel_cache`): its signatures are those the CPU renderer compiles, and the
warming compiles in workers what the cache lacks, then loads it."""

from __future__ import annotations

import numpy as np
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


def test_warming_compiles_what_the_cache_lacks_in_workers_and_loads_it(tmp_path, monkeypatch):
    """Two small kernels (the bit packing of .gsz) in a fresh cache: compiled by workers, then loaded here."""
    from gstrim.io import bit_kernels

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # the workers' cache: empty
    signatures = {"gstrim.io.bit_kernels.pack": "(uint64[::1], int64[::1], uint8[::1])",
                  "gstrim.io.bit_kernels.unpack": "(uint8[::1], int64[::1], uint64[::1])"}
    for name in signatures:  # this process has them compiled already: forget them, and point its cache there too
        kernel = kernel_cache._dispatcher(name)
        monkeypatch.setattr(kernel, "overloads", {})
        monkeypatch.setattr(kernel._cache._impl._locator, "_cache_path", str(tmp_path))
    warming = kernel_cache.start_warming(signatures, signatures)
    assert warming.pool is not None and len(warming.futures) == 2
    warming.wait()
    assert len(list(tmp_path.rglob("*.nbi"))) == 2  # written by the workers
    out = np.zeros(1, np.uint8)
    bit_kernels.pack(np.array([5], np.uint64), np.array([3], np.int64), out)
    assert out[0] == 0b10100000
    assert not kernel_cache.start_warming(signatures, signatures).futures  # all cached: no worker starts

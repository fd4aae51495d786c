"""The floors in pyproject.toml are what the code needs: nothing calls a newer library's function."""

from __future__ import annotations

import numpy as np

from gstrim.io.positions import bit_lengths


def test_bit_lengths_need_no_numpy_2(monkeypatch, rng):
    """`np.bitwise_count` is NumPy 2 only, and pyproject.toml admits NumPy 1.26: every compress reached it."""
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    shifts = rng.integers(0, 64, 5000).astype(np.uint64)
    values = rng.integers(0, 2**63, 5000, dtype=np.uint64) >> shifts
    values = np.concatenate([values, np.array([0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1], np.uint64)])
    lengths = bit_lengths(values)
    assert lengths.dtype == np.uint8
    assert lengths.tolist() == [int(v).bit_length() for v in values]


def test_lpips_checkpoints_read_with_either_numpy_core_name():
    """A checkpoint names NumPy's core module as the NumPy that wrote it did (`numpy.core` before 2, `numpy._core`
    since); the reader mapped every name to `numpy._core`, which NumPy 1.26 has not: LPIPS failed there."""
    import io
    import pickle

    from gstrim.metrics.lpips import _NumpyOnlyUnpickler

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = pickle.dumps(array, protocol=3)  # protocol 3 names modules as text lines (GLOBAL)
    for core in (b"numpy.core.multiarray", b"numpy._core.multiarray"):
        named = data.replace(b"numpy._core.multiarray", core).replace(b"numpy.core.multiarray", core)
        assert core in named
        back = _NumpyOnlyUnpickler(io.BytesIO(named)).load()
        assert np.array_equal(back, array)

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

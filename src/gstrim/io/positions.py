"""Positions on a grid fitted to the scene, coded as deltas along the Morton order (`.gsz` version 2).

The grid spans the scene's bounding box with 2^bits - 1 steps along its longest axis (the same step on
every axis). Each Gaussian's cell is one 3*bits-bit Morton code (c3dgs §3.4 sorts by it too); sorted, the
codes become gaps, and a gap of n significant bits is stored as n (an integer stream, entropy-coded) and its
n - 1 bits below the leading one (raw: they are close to random). For N Gaussians on a grid of 2^(3 bits)
cells a gap holds about 3 bits - log2 N bits: 20 bits per Gaussian at 12 bits per axis on 9,089 Gaussians
instead of 34 for lzma-coded float16 (docs/compression.md, "Where the bits go").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gstrim.io.entropy import pack_bits, unpack_bits
from gstrim.io.packing import compact_bits, morton_codes

MAX_BITS = 21  # three axes in a 63-bit code


def bit_lengths(values: np.ndarray) -> np.ndarray:
    """Significant bits of each uint64 (0 for 0)."""
    v = values.astype(np.uint64)  # a copy, shifted down in place
    lengths = np.zeros(v.shape, np.uint8)
    for shift in (32, 16, 8, 4, 2, 1):  # a binary search per value (np.bitwise_count needs NumPy 2)
        high = v >= np.uint64(1 << shift)
        lengths[high] += shift
        v[high] >>= np.uint64(shift)
    return lengths + (v > 0)


@dataclass(frozen=True)
class PositionGrid:
    origin: tuple[float, float, float]
    step: float
    bits: int

    @classmethod
    def fit(cls, means: np.ndarray | torch.Tensor, bits: int) -> PositionGrid:
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"position bits must be in 1..{MAX_BITS}, got {bits}")
        m = np.asarray(means.detach().cpu() if isinstance(means, torch.Tensor) else means, np.float64)
        if len(m) == 0:
            return cls((0.0, 0.0, 0.0), 1.0, bits)
        lo, hi = m.min(0), m.max(0)
        step = float(np.float32(max(float((hi - lo).max()) / (2**bits - 1), 1e-12)))
        return cls(tuple(float(np.float32(x)) for x in lo), step, bits)

    @property
    def top(self) -> int:
        return 2**self.bits - 1

    def cells(self, means: np.ndarray) -> np.ndarray:
        origin = np.asarray(self.origin, np.float32)
        c = np.round((means.astype(np.float32) - origin) / np.float32(self.step))
        return np.clip(c, 0, self.top).astype(np.int64)

    def values(self, cells: np.ndarray) -> np.ndarray:
        return (cells.astype(np.float32) * np.float32(self.step) + np.asarray(self.origin, np.float32)).astype(
            np.float32)

    def fake_quantize(self, means: torch.Tensor) -> torch.Tensor:
        """Means snapped to the grid (what the file decodes to), gradient passed straight through."""
        origin = torch.tensor(self.origin, dtype=means.dtype, device=means.device)
        snapped = torch.round((means - origin) / self.step).clamp(0, self.top) * self.step + origin
        return means + (snapped - means).detach()

    def to_json(self) -> dict:
        return {"origin": list(self.origin), "step": self.step, "bits": self.bits}

    @classmethod
    def from_json(cls, d: dict) -> PositionGrid:
        grid = cls(tuple(float(x) for x in d["origin"]), float(d["step"]), int(d["bits"]))
        if len(grid.origin) != 3 or not 1 <= grid.bits <= MAX_BITS or not grid.step > 0:
            raise ValueError(f"bad position grid {d}")
        return grid


def cell_order(cells: np.ndarray) -> np.ndarray:
    """The order a file stores cells in: by Morton code, ties in their given order."""
    return np.argsort(morton_codes(cells), kind="stable")


def encode_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, gap lengths uint8, packed bits): the cells sorted by Morton code (`order`, stable) as gaps."""
    order = cell_order(cells)
    gaps = np.diff(morton_codes(cells[order]), prepend=np.uint64(0))
    lengths = bit_lengths(gaps)
    below = np.maximum(lengths.astype(np.int64) - 1, 0)
    mantissa = gaps & ((np.uint64(1) << below.astype(np.uint64)) - np.uint64(1))
    return order, lengths, pack_bits(mantissa, below)


def decode_cells(lengths: np.ndarray, packed: np.ndarray, bits: int) -> np.ndarray:
    """The [N, 3] cells, in file (Morton) order, of `encode_cells`' streams."""
    lengths = lengths.astype(np.int64)
    if len(lengths) and (lengths.max() > 3 * bits or lengths.min() < 0):
        raise ValueError(f"a position gap longer than the grid's {3 * bits} bits")
    below = np.maximum(lengths - 1, 0)
    mantissa = unpack_bits(packed, below)
    lead = np.where(lengths > 0, np.uint64(1) << below.astype(np.uint64), np.uint64(0))
    codes = np.cumsum(lead | mantissa, dtype=np.uint64)
    return np.stack([compact_bits(codes >> np.uint64(axis)) for axis in range(3)], 1).astype(np.int64)

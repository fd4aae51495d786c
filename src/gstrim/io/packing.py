"""Rounding helpers shared by the viewer formats' quantisers (`.spz`, SOG, compressed `.ply`).

Each format's quantiser is written in torch so that one piece of code both writes the file's integer codes
and, in format-aware fine-tuning, gives the straight-through forward pass: what the trainer renders is
exactly what the file decodes to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SQRT1_2 = math.sqrt(0.5)
Q_MIN, Q_MAX = -128, 127  # affine qint8, as torch.ao quantises (c3dgs)
_EPS = float(torch.finfo(torch.float32).eps)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's `round` (halves away from zero); torch.round rounds halves to even."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def to_uint(x: torch.Tensor, top: int = 255) -> torch.Tensor:
    """round(x) clamped to [0, top], as int64."""
    return round_half_away(x).clamp(0, top).to(torch.int64)


def unit_quats(quats: torch.Tensor) -> torch.Tensor:
    """Normalised quaternions (a zero quaternion becomes the identity, w x y z)."""
    norm = quats.norm(dim=-1, keepdim=True)
    identity = torch.zeros_like(quats)
    identity[..., 0] = 1
    return torch.where(norm > 0, quats / norm.clamp_min(1e-30), identity)


def largest_first(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the largest |component| (first on ties), q with its sign flipped to make that one >= 0)."""
    index = q.abs().argmax(dim=-1)
    sign = torch.where(q.gather(-1, index[..., None]) < 0, -1.0, 1.0)
    return index, q * sign


def others(index: torch.Tensor, width: int = 4) -> torch.Tensor:
    """For each index, the other component indices in increasing order: [N, width - 1]."""
    ar = torch.arange(width, device=index.device)
    keep = ar[None, :] != index[:, None]
    return ar.expand(len(index), width)[keep].reshape(len(index), width - 1)


def from_smallest_three(index: torch.Tensor, three: torch.Tensor) -> torch.Tensor:
    """The unit quaternion whose components other than `index` are `three` (increasing order), the
    largest one reconstructed non-negative."""
    q = torch.zeros(len(index), 4, dtype=three.dtype, device=three.device)
    q.scatter_(1, others(index), three)
    largest = torch.sqrt((1 - (three * three).sum(dim=1)).clamp_min(0))
    q.scatter_(1, index[:, None], largest[:, None])
    return q


def sigmoid_logit_clamped(alpha: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Opacity logit of an alpha in [0, 1], kept finite at 0 and 1."""
    a = alpha.clamp(eps, 1 - eps)
    return torch.log(a / (1 - a))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """The 21 low bits of v spread to every third bit of a 63-bit code."""
    v = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def compact_bits(code: np.ndarray) -> np.ndarray:
    """Every third bit of a code, gathered into the low 21 bits (the inverse of `_spread_bits`)."""
    v = code & np.uint64(0x1249249249249249)
    for shift, mask in ((2, 0x10C30C30C30C30C3), (4, 0x100F00F00F00F00F), (8, 0x1F0000FF0000FF),
                        (16, 0x1F00000000FFFF), (32, 0x1FFFFF)):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def morton_codes(cells: np.ndarray) -> np.ndarray:
    """The 63-bit Morton (Z-order) code of integer cells [N, 3] of up to 21 bits per axis."""
    c = cells.astype(np.uint64)
    return _spread_bits(c[:, 0]) | (_spread_bits(c[:, 1]) << np.uint64(1)) | (_spread_bits(c[:, 2]) << np.uint64(2))


def morton_order(means: np.ndarray) -> np.ndarray:
    """Permutation sorting positions along a 63-bit Morton (Z-order) curve over their bounding box, with
    21 bits per axis (c3dgs §3.4)."""
    if len(means) == 0:
        return np.zeros(0, np.int64)
    lo, hi = means.min(0), means.max(0)
    grid = (means - lo) / np.maximum(hi - lo, 1e-12) * (2**21 - 1)
    return np.argsort(morton_codes(np.clip(np.round(grid), 0, 2**21 - 1)), kind="stable")


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor affine quantisation to signed `bits`-bit integers (8: torch's qint8, as c3dgs), stored as
    int8; fewer bits leave the stored values a smaller alphabet, which the entropy coder turns into fewer
    bytes."""
    scale: float
    zero_point: int
    bits: int = 8

    @property
    def q_min(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def q_max(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @classmethod
    def of_range(cls, lo: float, hi: float, bits: int = 8) -> QuantParams:
        q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max((hi - lo) / (q_max - q_min), _EPS)
        zero_point = int(np.clip(q_min - round(lo / scale), q_min, q_max))
        return cls(float(np.float32(scale)), zero_point, bits)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        # the same float32 arithmetic as torch.fake_quantize_per_tensor_affine
        q = np.round(x.astype(np.float32) * np.float32(1.0 / self.scale)) + self.zero_point
        return np.clip(q, self.q_min, self.q_max).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)).astype(np.float32)

    def to_json(self) -> dict:
        out = {"scale": self.scale, "zero_point": self.zero_point}
        return out if self.bits == 8 else {**out, "bits": self.bits}  # 8 bits: as version 1 wrote it

    @classmethod
    def from_json(cls, d: dict) -> QuantParams:
        bits = int(d.get("bits", 8))
        if not 1 <= bits <= 8:
            raise ValueError(f"quantisation to {bits} bits")
        return cls(float(d["scale"]), int(d["zero_point"]), bits)


def quant_params_tensors(lo: torch.Tensor, hi: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """`QuantParams.of_range(lo, hi, bits)`'s scale (float32) and zero point (int32) as 0-d tensors, computed
    where `lo` and `hi` live (the same float64 arithmetic and round-half-to-even)."""
    q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = lo.double().clamp_max(0.0), hi.double().clamp_min(0.0)
    scale = ((hi - lo) / (q_max - q_min)).clamp_min(_EPS)
    zero_point = (q_min - torch.round(lo / scale)).clamp(q_min, q_max).to(torch.int32)
    return scale.float(), zero_point

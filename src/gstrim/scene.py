"""`GaussianScene`: the raw parameters of a 3DGS scene in the INRIA conventions.

Raw (optimised) parameters, as every 3DGS trainer stores them (Kerbl et al. 2023):
  means      [N, 3]     world positions
  scales     [N, 3]     log of the per-axis standard deviations
  quats      [N, 4]     rotation quaternions, w x y z, not necessarily normalised
  opacities  [N]        logits of opacity
  sh0        [N, 1, 3]  degree-0 spherical-harmonic (DC) coefficients per colour channel
  shN        [N, K, 3]  higher-order SH coefficients, K = (degree + 1)^2 - 1 (0, 3, 8 or 15)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from gstrim.errors import ConfigError

# Degree-0 real spherical-harmonic basis constant, 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def num_sh_rest(degree: int) -> int:
    """Number of SH coefficients per channel beyond DC for an SH degree."""
    return (degree + 1) ** 2 - 1


def sh_degree_from_rest(k: int) -> int:
    """SH degree whose higher-order coefficient count per channel is k; raises if there is none."""
    degree = round(math.sqrt(k + 1)) - 1
    if degree < 0 or degree > 3 or num_sh_rest(degree) != k:
        raise ValueError(f"{k} higher-order SH coefficients per channel match no SH degree 0-3")
    return degree


def rgb_to_sh0(rgb):
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0):
    return sh0 * SH_C0 + 0.5


# Gaussians per chunk where a pass over the whole scene would hold copies of it (temporaries, codes, file
# rows): about 62 MB of an SH3 scene's float32 parameters.
CHUNK_ROWS = 1 << 18


def row_chunks(n: int, size: int | None = None) -> list[slice]:
    """Consecutive slices of at most `size` (default CHUNK_ROWS) rows covering n rows."""
    size = size or CHUNK_ROWS
    return [slice(start, start + size) for start in range(0, n, size)]


@dataclass
class GaussianScene:
    means: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    opacities: torch.Tensor
    sh0: torch.Tensor
    shN: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"GaussianScene.{name} has shape {got}, expected {shape}")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"GaussianScene.shN has shape {tuple(self.shN.shape)}, expected ({n}, K, 3)")
        sh_degree_from_rest(self.shN.shape[1])

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_numpy(cls, **arrays: np.ndarray) -> GaussianScene:
        return cls(**{k: torch.from_numpy(np.ascontiguousarray(arrays[k], dtype=np.float32)) for k in PARAM_NAMES})

    @classmethod
    def empty(cls, sh_degree: int = 3) -> GaussianScene:
        z = np.zeros
        return cls.from_numpy(
            means=z((0, 3)), scales=z((0, 3)), quats=z((0, 4)), opacities=z((0,)),
            sh0=z((0, 1, 3)), shN=z((0, num_sh_rest(sh_degree), 3)),
        )

    # ---- shape facts ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_rest(self.shN.shape[1])

    def params(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.params().items()}

    # ---- activations ---------------------------------------------------------------------------
    def activated_scales(self) -> torch.Tensor:
        return torch.exp(self.scales)

    def activated_opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacities)

    def normalized_quats(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    # ---- editing -------------------------------------------------------------------------------
    def subset(self, mask: torch.Tensor | np.ndarray) -> GaussianScene:
        """The Gaussians selected by a boolean mask or an index array."""
        index = torch.as_tensor(mask)
        return GaussianScene(**{k: v[index] for k, v in self.params().items()})

    def to(self, device: torch.device | str) -> GaussianScene:
        return GaussianScene(**{k: v.to(device) for k, v in self.params().items()})

    def with_sh_degree(self, degree: int) -> GaussianScene:
        """Drop (or zero-pad) higher-order SH bands to reach `degree`."""
        k = num_sh_rest(degree)
        shN = self.shN[:, :k]
        if shN.shape[1] < k:
            pad = shN.new_zeros(len(self), k - shN.shape[1], 3)
            shN = torch.cat([shN, pad], dim=1)
        return GaussianScene(**{**self.params(), "shN": shN})

    def nonfinite_mask(self) -> torch.Tensor:
        """True for each Gaussian with a NaN or infinite parameter."""
        bad = torch.zeros(len(self), dtype=torch.bool, device=self.means.device)
        if len(self) == 0:  # nothing to check (and no shape to infer)
            return bad
        for rows in row_chunks(len(self)):  # isfinite's temporaries of a chunk, not of the scene
            for v in self.params().values():
                bad[rows] |= ~torch.isfinite(v[rows].reshape(len(bad[rows]), -1)).all(dim=1)
        return bad

    def check_finite(self, source: str, policy: str = "error") -> GaussianScene:
        """Apply a non-finite policy: 'error' (raise naming the source), 'drop' or 'keep'."""
        if policy not in ("error", "drop", "keep"):
            raise ValueError(f"unknown non-finite policy {policy!r}")
        bad = self.nonfinite_mask()
        count = int(bad.sum())
        if count == 0 or policy == "keep":
            return self
        if policy == "drop":
            return self.subset(~bad)
        first = int(torch.nonzero(bad)[0])
        raise ConfigError(
            f"{count} Gaussian(s) have NaN or infinite parameters (first: index {first}); "
            "use {nonfinite} drop to remove them or {nonfinite} keep to keep them", "nonfinite", path=source)

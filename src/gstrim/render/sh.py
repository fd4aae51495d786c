"""Real spherical harmonics up to degree 3, evaluated as 3DGS does (Kerbl et al. 2023, `computeColorFromSH`).

The constants are the standard real SH normalisations (Sloan, "Stupid Spherical Harmonics Tricks", 2008).
"""

from __future__ import annotations

import torch

from gstrim.scene import SH_C0

C0 = SH_C0
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """[N, (degree+1)^2] basis values for unit directions [N, 3]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree > 0:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree > 1:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree > 2:
        out += [
            C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def check_sh_degree(degree: int, shN: torch.Tensor) -> None:
    """Refuse to evaluate more SH bands than the scene stores."""
    if shN.shape[1] < (degree + 1) ** 2 - 1:
        raise ValueError(f"SH degree {degree} needs {(degree + 1) ** 2 - 1} coefficients, scene has {shN.shape[1]}")


def sh_to_rgb(degree: int, sh0: torch.Tensor, shN: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """View-dependent colour [N, 3] of Gaussians seen along `dirs` (unnormalised directions from the camera):
    SH value + 0.5, clamped at 0 as in 3DGS."""
    check_sh_degree(degree, shN)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    coeffs = torch.cat([sh0, shN[:, : (degree + 1) ** 2 - 1]], dim=1)  # [N, M, 3]
    basis = sh_basis(degree, dirs)  # [N, M]
    return torch.clamp_min((basis[:, :, None] * coeffs).sum(dim=1) + 0.5, 0.0)

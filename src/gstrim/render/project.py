"""Per-Gaussian projection (EWA splatting, Zwicker et al. 2001, as used by Kerbl et al. 2023), in torch.

Vectorised closed forms, differentiable by autograd; the pixel stage consumes its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEAR_PLANE = 0.01  # gsplat's default near plane
DILATION = 0.3  # low-pass filter added to the 2-D covariance diagonal (3DGS)
SIGMA_EXTENT = 3.0  # screen radius = ceil(3 sqrt(largest eigenvalue)) (3DGS)
TILE = 16
# the pixel stage's rules (Kerbl et al. 2023), shared by the CPU kernels and the device pixel statistics:
ALPHA_MIN = 1.0 / 255.0  # a Gaussian with a smaller alpha at a pixel is skipped there
ALPHA_MAX = 0.99  # alpha is capped here
T_MIN = 1e-4  # a pixel stops before the Gaussian that would take its transmittance below this


@dataclass
class Projection:
    means2d: torch.Tensor  # [N, 2] pixels, corner convention (pixel centres at +0.5)
    conics: torch.Tensor  # [N, 3] inverse 2-D covariance (a, b, c) of [[a, b], [b, c]]
    depths: torch.Tensor  # [N] camera-space z
    radii: torch.Tensor  # [N] int32 screen radius in pixels, 0 where culled
    cov2d: torch.Tensor  # [N, 3] dilated 2-D covariance (xx, xy, yy)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] rotation matrices of w x y z quaternions (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] world covariances R S S^T R^T of quaternions and raw log-scales."""
    M = quat_to_rotmat(quats) * torch.exp(scales)[:, None, :]
    return M @ M.transpose(1, 2)


def project(means, quats, scales, viewmat, K, width: int, height: int, near: float = NEAR_PLANE) -> Projection:
    """Project Gaussians (raw log-scales) into a pinhole camera."""
    return project_covariance(means, covariance_3d(quats, scales), viewmat, K, width, height, near)


def project_covariance(means, covars, viewmat, K, width: int, height: int, near: float = NEAR_PLANE) -> Projection:
    """Project Gaussians given by world covariances [N, 3, 3] (differentiable w.r.t. them: c3dgs's shape
    sensitivity is a gradient w.r.t. the covariance)."""
    R_view, t_view = viewmat[:3, :3], viewmat[:3, 3]
    p_cam = means @ R_view.T + t_view
    x, y, z = p_cam.unbind(-1)
    in_front = z > near
    z_safe = torch.where(in_front, z, torch.ones_like(z))  # culled Gaussians must not produce NaN gradients
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    # Clamp the point used by the Jacobian to 1.3x the field of view (3DGS / gsplat), so that Gaussians far
    # outside the image do not get huge projected footprints.
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)

    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]; the 2-D covariance is (J W) Sigma (J W)^T.
    iz = 1.0 / z_safe
    j0 = torch.stack([fx * iz, torch.zeros_like(iz), -fx * tx * iz * iz], -1)
    j1 = torch.stack([torch.zeros_like(iz), fy * iz, -fy * ty * iz * iz], -1)
    u = j0 @ R_view  # rows of J W
    v = j1 @ R_view
    su = (covars @ u[:, :, None])[..., 0]
    sv = (covars @ v[:, :, None])[..., 0]
    a = (u * su).sum(-1) + DILATION
    b = (u * sv).sum(-1)
    c = (v * sv).sum(-1) + DILATION
    det = a * c - b * b
    ok = in_front & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    means2d = torch.stack([fx * x * iz + cx, fy * y * iz + cy], -1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))
        radii = torch.ceil(SIGMA_EXTENT * torch.sqrt(lam))
        # off-screen: the 3-sigma box covers no tile of the image
        mx, my = means2d[:, 0], means2d[:, 1]
        on_screen = (mx + radii > 0) & (mx - radii < width) & (my + radii > 0) & (my - radii < height)
        radii = torch.where(ok & on_screen, radii, torch.zeros_like(radii)).to(torch.int32)
    return Projection(means2d, conics, z, radii, torch.stack([a, b, c], -1))

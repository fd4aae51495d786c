"""Symmetric 3x3 covariances as c3dgs clusters them (Niedermayr et al. 2024, §3.2): the normalised
covariance of a Gaussian's rotation and unit scale direction, and back to rotation and scale."""

from __future__ import annotations

import torch

from gstrim.render.project import quat_to_rotmat

# (row, column) of the 6 stored entries of a symmetric 3x3 matrix: xx, xy, xz, yy, yz, zz
_TRIU = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def normalized_covariance(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[N, 6] upper triangle of R diag(u^2) R^T, u the unit scale direction (raw log-scales in)."""
    unit = torch.nn.functional.normalize(torch.exp(scales), dim=-1)
    R = quat_to_rotmat(quats)
    cov = (R * unit[:, None, :] ** 2) @ R.transpose(1, 2)
    return torch.stack([cov[:, i, j] for i, j in _TRIU], -1)


def rotation_and_scale(six: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w x y z quaternions [N, 4], axis scales [N, 3]) of symmetric positive semi-definite matrices given by
    their upper triangles: the eigen-decomposition R diag(s^2) R^T, R made a proper rotation (c3dgs's
    `extract_rot_scale`). Differentiable where the eigenvalues are distinct."""
    values, vectors = torch.linalg.eigh(symmetric(six))
    # a reflection (det -1) is the same covariance with one axis flipped
    flip = torch.linalg.det(vectors) < 0
    vectors = torch.where(flip[:, None, None], vectors * vectors.new_tensor([1.0, 1.0, -1.0]), vectors)
    return rotmat_to_quat(vectors), torch.sqrt(values.clamp_min(0))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """w x y z unit quaternions (w >= 0) of rotation matrices [N, 3, 3], by the largest of the four
    candidate denominators (Shepperd's method) for numerical stability."""
    m = R
    t = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = t.argmax(-1)
    r = torch.sqrt(t.gather(1, best[:, None])[:, 0].clamp_min(1e-12))  # 2 |q_best|
    dx, dy, dz = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]  # 4 w (x, y, z)
    sxy, sxz, syz = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]  # 4 xy, 4 xz, 4 yz
    candidates = torch.stack([torch.stack([r, dx / r, dy / r, dz / r], -1),
                              torch.stack([dx / r, r, sxy / r, sxz / r], -1),
                              torch.stack([dy / r, sxy / r, r, syz / r], -1),
                              torch.stack([dz / r, sxz / r, syz / r, r], -1)], 1)
    q = 0.5 * candidates[torch.arange(len(m)), best]
    return q * torch.where(q[:, :1] < 0, -1.0, 1.0)


def symmetric(six: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] symmetric matrices from their [N, 6] upper triangles."""
    rows = [[0, 1, 2], [1, 3, 4], [2, 4, 5]]
    return six[:, [i for row in rows for i in row]].reshape(-1, 3, 3)

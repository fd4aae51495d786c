"""A dense pure-torch 3DGS renderer: every pixel against every Gaussian, written from the formulas with
explicit matrices, and differentiated by autograd. Slow (memory H*W*N); it is the oracle the fast backends
are tested against (run it in float64), never a production path.
"""

from __future__ import annotations

import math

import torch

from gstrim.render.project import DILATION, NEAR_PLANE, SIGMA_EXTENT, TILE
from gstrim.render.sh import sh_to_rgb


def _rotation(quats: torch.Tensor) -> torch.Tensor:
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    rows = [
        torch.stack([1 - 2 * (y**2 + z**2), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x**2 + z**2), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x**2 + y**2)], -1),
    ]
    return torch.stack(rows, -2)


def render_dense(means, scales, quats, opacities, sh0, shN, viewmat, K, width, height, sh_degree, background):
    """Returns a dict: image [H, W, 3], alpha [H, W], means2d [N, 2] (non-leaf, for its gradient), radii [N],
    and `fragile` [H, W]: pixels within rounding distance of the 1/255 or 1e-4 thresholds, where a
    lower-precision renderer may legitimately decide the other way."""
    n = means.shape[0]
    W, t = viewmat[:3, :3], viewmat[:3, 3]
    p = (W @ means.T).T + t
    z = p[:, 2]
    front = z > NEAR_PLANE
    zs = torch.where(front, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    limx = (cx / fx + 0.3 * 0.5 * width / fx, (width - cx) / fx + 0.3 * 0.5 * width / fx)
    limy = (cy / fy + 0.3 * 0.5 * height / fy, (height - cy) / fy + 0.3 * 0.5 * height / fy)
    tx = zs * torch.clamp(p[:, 0] / zs, -float(limx[0]), float(limx[1]))
    ty = zs * torch.clamp(p[:, 1] / zs, -float(limy[0]), float(limy[1]))
    zero = torch.zeros_like(zs)
    J = torch.stack([torch.stack([fx / zs, zero, -fx * tx / zs**2], -1),
                     torch.stack([zero, fy / zs, -fy * ty / zs**2], -1)], -2)  # [N, 2, 3]
    R = _rotation(quats)
    S2 = torch.diag_embed(torch.exp(scales) ** 2)
    sigma = R @ S2 @ R.transpose(1, 2)
    cov = J @ W @ sigma @ W.T @ J.transpose(1, 2) + DILATION * torch.eye(2, dtype=means.dtype)
    det = torch.linalg.det(cov)
    ok = front & (det > 0)
    cov_safe = torch.where(ok[:, None, None], cov, torch.eye(2, dtype=means.dtype).expand(n, 2, 2))
    conic = torch.linalg.inv(cov_safe)
    means2d = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], -1)

    with torch.no_grad():
        mid = 0.5 * (cov_safe[:, 0, 0] + cov_safe[:, 1, 1])
        lam = mid + torch.sqrt(torch.clamp_min(mid**2 - torch.linalg.det(cov_safe), 0.1))
        radii = torch.ceil(SIGMA_EXTENT * torch.sqrt(lam))
        mx, my = means2d[:, 0], means2d[:, 1]
        on = (mx + radii > 0) & (mx - radii < width) & (my + radii > 0) & (my - radii < height)
        radii = torch.where(ok & on, radii, torch.zeros_like(radii))
        order = torch.argsort(torch.where(radii > 0, z, torch.full_like(z, math.inf)), stable=True)
        order = order[radii[order] > 0]

    campos = -W.T @ t
    colors = sh_to_rgb(sh_degree, sh0, shN, means - campos)
    opac = torch.sigmoid(opacities)

    # pixels x Gaussians (depth order)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype) + 0.5,
                            torch.arange(width, dtype=means.dtype) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)
    g = order
    dx = means2d[g, 0][None] - px
    dy = means2d[g, 1][None] - py
    a, b, c = conic[g, 0, 0][None], conic[g, 0, 1][None], conic[g, 1, 1][None]
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = torch.clamp_max(opac[g][None] * torch.exp(torch.clamp_max(power, 0.0)), 0.99)
    with torch.no_grad():
        r = radii[g]
        tile_x = torch.floor(px / TILE)  # the tile of each pixel
        tile_y = torch.floor(py / TILE)
        in_tile = ((tile_x >= torch.floor((means2d[g, 0] - r) / TILE)[None])
                   & (tile_x < torch.ceil((means2d[g, 0] + r) / TILE)[None])
                   & (tile_y >= torch.floor((means2d[g, 1] - r) / TILE)[None])
                   & (tile_y < torch.ceil((means2d[g, 1] + r) / TILE)[None]))
        used = in_tile & (power <= 0) & (alpha >= 1.0 / 255.0)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    # transmittance after each Gaussian; a pixel stops before it would drop below 1e-4
    T_after = torch.cumprod(1 - alpha, dim=1)
    with torch.no_grad():
        keep = T_after >= 1e-4
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    T_after = torch.cumprod(1 - alpha, dim=1)
    T_before = torch.cat([torch.ones_like(T_after[:, :1]), T_after[:, :-1]], dim=1)
    weights = alpha * T_before
    T_final = T_after[:, -1] if T_after.shape[1] else torch.ones(px.shape[0], dtype=means.dtype)
    image = weights @ colors[g] + T_final[:, None] * background
    with torch.no_grad():
        raw = opac[g][None] * torch.exp(torch.clamp_max(power, 0.0))
        near_alpha = in_tile & (power <= 0) & ((raw - 1.0 / 255.0).abs() < 1e-5)
        near_T = (torch.cumprod(1 - torch.where(used, raw.clamp_max(0.99), 0.0), 1) - 1e-4).abs() < 1e-7
        fragile = (near_alpha | near_T).any(dim=1).reshape(height, width)
    return {"image": image.reshape(height, width, 3), "alpha": (1 - T_final).reshape(height, width),
            "means2d": means2d, "radii": radii.to(torch.int32), "fragile": fragile}

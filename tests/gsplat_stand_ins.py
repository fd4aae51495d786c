"""Pure-PyTorch stand-ins for the CUDA-only calls of gsplat 1.5.3's `rasterization()`, so that gstrim's
gsplat glue (argument conventions, units, SH colours, background, radii) runs on a CPU.

Everything else of the pipeline is gsplat's own code: `rasterization()` itself, and its PyTorch
reference functions in `gsplat/cuda/_torch_impl.py` (projection, tile offsets; tile intersection is its
`_isect_tiles` vectorised, checked against it in tests/test_gsplat.py). Two pieces have no CPU reference
there and are written here from the CUDA kernels of gsplat 1.5.3:

* the opacity-aware radius of `ProjectionEWA3DGSFused.cu` (a Gaussian with opacity < 1/255 is dropped;
  its box extends min(3.33, sqrt(2 ln(255 o))) standard deviations per axis, Radl et al. 2024, B.2);
* `RasterizeToPixels3DGSFwd.cu`'s blend: alpha = min(0.999, o exp(-sigma)), skipped when sigma < 0 or
  alpha < 1/255, a pixel stops (exclusive) at the first Gaussian that would take its transmittance to
  <= 1e-4. Written as dense per-tile tensor ops so that autograd supplies the backward.
"""

from __future__ import annotations

import math

import torch
from gsplat.cuda import _torch_impl as ref

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat/cuda/include/Common.h
ALPHA_CAP = 0.999
T_STOP = 1e-4


def fully_fused_projection(means, covars, quats, scales, viewmats, Ks, width, height, eps2d=0.3, near_plane=0.01,
                           far_plane=1e10, radius_clip=0.0, packed=False, sparse_grad=False,
                           calc_compensations=False, camera_model="pinhole", opacities=None):
    assert not packed and not calc_compensations and camera_model == "pinhole", "stand-in covers gstrim's call"
    if covars is None:
        covars, _ = ref._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    else:  # upper triangle [..., 6] -> [..., 3, 3]
        a, b, c, d, e, f = covars.unbind(-1)
        covars = torch.stack([a, b, c, b, d, e, c, e, f], -1).reshape(covars.shape[:-1] + (3, 3))
    _, means2d, depths, conics, _ = ref._fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)
    with torch.no_grad():  # the radii of the CUDA kernel, from the 2-D covariance = inverse of the conic
        ca, cb, cc = conics.unbind(-1)
        det = ca * cc - cb * cb
        var_x, var_y = cc / det, ca / det
        extend = torch.full_like(depths, 3.33)
        keep = (det > 0) & (depths >= near_plane) & (depths <= far_plane)
        if opacities is not None:
            o = torch.broadcast_to(opacities[..., None, :], depths.shape)
            keep &= o >= ALPHA_THRESHOLD
            extend = torch.minimum(extend, torch.sqrt(2.0 * torch.log(o.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)))
        rx, ry = torch.ceil(extend * var_x.sqrt()), torch.ceil(extend * var_y.sqrt())
        keep &= (rx > radius_clip) | (ry > radius_clip)
        mx, my = means2d[..., 0], means2d[..., 1]
        keep &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], -1).nan_to_num(0.0) * keep[..., None]
    # the CUDA kernel leaves means2d, depths and conics of dropped Gaussians unset (at::empty): poison them
    unset = torch.tensor(float("nan"), dtype=means2d.dtype)
    means2d = torch.where(keep[..., None], means2d, unset)
    depths, conics = torch.where(keep, depths, unset), torch.where(keep[..., None], conics, unset)
    return radii.int(), means2d, depths, conics, None


@torch.no_grad()
def isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height, sort=True, segmented=False,
                packed=False, n_images=None, image_ids=None, gaussian_ids=None):
    """`_torch_impl._isect_tiles` without its Python loop over Gaussians (same keys: image id, tile id and
    the depth's float bits, sorted), so that the stand-ins also run benchmark-sized scenes."""
    assert not packed
    image_dims, n = means2d.shape[:-2], means2d.shape[-2]
    n_images = math.prod(image_dims)
    means2d, radii, depths = means2d.reshape(n_images, n, 2), radii.reshape(n_images, n, 2), depths.reshape(-1, n)
    lo = torch.floor(means2d / tile_size - radii / tile_size).int()
    hi = torch.ceil(means2d / tile_size + radii / tile_size).int()
    limit = torch.tensor([tile_width, tile_height], dtype=torch.int32)
    lo, hi = torch.minimum(lo.clamp_min(0), limit), torch.minimum(hi.clamp_min(0), limit)
    span = hi - lo
    counts = span.prod(-1) * (radii > 0).all(-1)
    flat_counts = counts.flatten().long()
    owner = torch.repeat_interleave(torch.arange(n_images * n), flat_counts)  # image * N + gaussian
    local = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(flat_counts, 0) - flat_counts,
                                                                flat_counts)
    width = span.reshape(-1, 2)[owner, 0].long()
    start = lo.reshape(-1, 2)[owner].long()
    tile_id = (start[:, 1] + local // width) * tile_width + start[:, 0] + local % width
    image_id = owner // n
    depth_bits = depths.float().flatten()[owner].view(torch.int32).long() & 0xFFFFFFFF
    tile_bits = (tile_width * tile_height).bit_length()
    isect_ids = (((image_id << tile_bits) | tile_id) << 32) | depth_bits
    flatten_ids = owner.int()
    if sort:
        isect_ids, order = torch.sort(isect_ids, stable=True)
        flatten_ids = flatten_ids[order]
    return counts.reshape(image_dims + (n,)).int(), isect_ids, flatten_ids


def isect_offset_encode(isect_ids, n_images, tile_width, tile_height):
    return ref._isect_offset_encode(isect_ids, n_images, tile_width, tile_height)


def rasterize_to_pixels(means2d, conics, colors, opacities, image_width, image_height, tile_size, isect_offsets,
                        flatten_ids, backgrounds=None, masks=None, packed=False, absgrad=False):
    assert not packed and masks is None
    image_dims = means2d.shape[:-2]
    n_images, n = math.prod(image_dims), means2d.shape[-2]
    channels = colors.shape[-1]
    means2d, conics = means2d.reshape(n_images * n, 2), conics.reshape(n_images * n, 3)
    colors, opacities = colors.reshape(n_images * n, channels), opacities.reshape(n_images * n)
    offsets = isect_offsets.reshape(n_images, -1)
    tiles_x = isect_offsets.shape[-1]
    n_tiles = offsets.shape[1]
    ends = torch.cat([offsets.flatten()[1:], offsets.new_tensor([len(flatten_ids)])]).reshape(n_images, n_tiles)
    images, alphas = [], []
    for i in range(n_images):
        rows = []
        for t in range(n_tiles):
            x0, y0 = (t % tiles_x) * tile_size, (t // tiles_x) * tile_size
            ys, xs = torch.meshgrid(torch.arange(y0, min(y0 + tile_size, image_height)),
                                    torch.arange(x0, min(x0 + tile_size, image_width)), indexing="ij")
            ids = flatten_ids[offsets[i, t]:ends[i, t]].long()
            pix = torch.stack([xs, ys], -1).reshape(-1, 1, 2).to(means2d.dtype) + 0.5
            d = pix - means2d[ids]  # [P, K, 2]
            c = conics[ids]
            sigma = 0.5 * (c[:, 0] * d[..., 0] ** 2 + c[:, 2] * d[..., 1] ** 2) + c[:, 1] * d[..., 0] * d[..., 1]
            alpha = torch.clamp_max(opacities[ids] * torch.exp(-sigma), ALPHA_CAP)
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
            keep = 1.0 - alpha
            T = torch.cumprod(torch.cat([torch.ones_like(keep[:, :1]), keep[:, :-1]], 1), 1)  # before each
            with torch.no_grad():  # stop, exclusive: that Gaussian and every later one are skipped
                stopped = torch.cummax(((T * keep <= T_STOP) & (alpha > 0)).int(), 1).values.bool()
            weight = torch.where(stopped, torch.zeros_like(alpha), alpha * T)
            color = weight @ colors[ids]
            T_final = torch.where(stopped, torch.ones_like(keep), keep).prod(1)
            if backgrounds is not None:
                color = color + T_final[:, None] * backgrounds.reshape(n_images, channels)[i]
            rows.append((ys.flatten(), xs.flatten(), color, 1.0 - T_final))
        y = torch.cat([r[0] for r in rows])
        x = torch.cat([r[1] for r in rows])
        order = torch.argsort(y * image_width + x)
        images.append(torch.cat([r[2] for r in rows])[order].reshape(image_height, image_width, channels))
        alphas.append(torch.cat([r[3] for r in rows])[order].reshape(image_height, image_width, 1))
    return (torch.stack(images).reshape(image_dims + (image_height, image_width, channels)),
            torch.stack(alphas).reshape(image_dims + (image_height, image_width, 1)))


def run_gsplat_on_cpu(monkeypatch):
    """For the rest of a test: gsplat's `rasterization()` with its CUDA-only calls replaced, and gstrim told
    that gsplat is usable."""
    import gsplat.rendering

    import gstrim.render

    for name in ("fully_fused_projection", "isect_tiles", "isect_offset_encode", "rasterize_to_pixels"):
        monkeypatch.setattr(gsplat.rendering, name, globals()[name])
    monkeypatch.setattr(gstrim.render, "gsplat_available", lambda: True)

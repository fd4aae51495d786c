"""Per-Gaussian pixel statistics of one view in torch, on the scene's device: the path a GPU run takes for
`render.pixel_statistics` (the CPU takes the Numba kernel `cpu_kernels.pixel_statistics`).

gsplat has no output for these (hits, the largest blending weight, the 2-D Fisher), so they are computed
from the (Gaussian, pixel) pairs of the blend, with the CPU kernels' rules exactly, so that both paths score
alike: a Gaussian visits the pixels of the tiles its box touches (the 3-sigma radius narrowed to the ellipse
of alpha >= 1/255 plus a pixel, `cpu_kernels.bin_gaussians`), alpha = min(0.99, o exp(-d^T conic d / 2)),
pairs with alpha < 1/255 or outside the Gaussian are skipped, and a pixel stops before the first Gaussian
that would take its transmittance below 1e-4. The pairs of a band of image rows are enumerated row by row over
each Gaussian's ellipse span (`cpu_kernels._row_span`: half the pairs of its bounding box on the demo scene,
1.8M instead of 3.6M for 1.0M blended), sorted by (pixel, depth) and scanned per pixel (transmittances as
sums of log(1 - alpha), in float64); bands hold at most `PAIR_BUDGET` candidate pairs (counted over bounding
boxes, an upper bound), so memory stays bounded whatever the scene and the image size.
"""

from __future__ import annotations

import math

import torch

from gstrim.render.project import ALPHA_MAX, ALPHA_MIN, T_MIN, TILE, Projection

PAIR_BUDGET = 1 << 24  # candidate (Gaussian, pixel) pairs per band: ~1.5 GB of temporaries at most
# (d alpha / d(means2d x, y, conic a, b, c)) products in the order of the kernel's 15 upper-triangle entries
_UPPER = torch.triu_indices(5, 5)


def _boxes(proj: Projection, opacities: torch.Tensor, width: int, height: int):
    """Per Gaussian: (drawn, alpha level, first and last+1 row, first and last+1 column) of the pixels it may
    blend; the level is d^T conic d at alpha = 1/255."""
    m, con, radii = proj.means2d, proj.conics, proj.radii
    ca, cb, cc = con.unbind(-1)
    det = ca * cc - cb * cb
    drawn = (radii > 0) & (opacities * 255.0 >= 1.0) & (det > 0) & (ca > 0)
    level = 2.0 * torch.log(torch.clamp_min(255.0 * opacities, 1.0))
    safe = torch.where(drawn, det, torch.ones_like(det))
    half_x = torch.sqrt(torch.clamp_min(level * cc / safe, 0)) + 1.0  # the ellipse's half extents + a pixel
    half_y = torch.sqrt(torch.clamp_min(level * ca / safe, 0)) + 1.0
    r = radii.to(m.dtype)
    tiles = (math.ceil(width / TILE), math.ceil(height / TILE))
    mx, my = m[:, 0], m[:, 1]
    # the tiles of the narrowed box (bin_gaussians), as pixel ranges
    x0 = torch.floor((mx - torch.minimum(r, half_x)) / TILE).clamp(0, tiles[0]) * TILE
    x1 = (torch.ceil((mx + torch.minimum(r, half_x)) / TILE).clamp(0, tiles[0]) * TILE).clamp_max(width)
    y0 = torch.floor((my - torch.minimum(r, half_y)) / TILE).clamp(0, tiles[1]) * TILE
    y1 = (torch.ceil((my + torch.minimum(r, half_y)) / TILE).clamp(0, tiles[1]) * TILE).clamp_max(height)
    # inside them, the ellipse's bounding box (rows as `_ellipse_rows`, columns widened a pixel more)
    x0 = torch.maximum(x0, torch.floor(mx - half_x) - 1)
    x1 = torch.minimum(x1, torch.ceil(mx + half_x) + 2)
    y0 = torch.maximum(y0, torch.floor(my - half_y))
    y1 = torch.minimum(y1, torch.ceil(my + half_y) + 1)
    drawn &= (x1 > x0) & (y1 > y0)
    return drawn, level, *(v.nan_to_num(0).long() for v in (y0, y1, x0, x1))


def _bands(drawn, y0, y1, x0, x1, height: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) holding at most PAIR_BUDGET candidate pairs each (at least one row)."""
    columns = torch.where(drawn, x1 - x0, torch.zeros_like(x0))
    per_row = torch.zeros(height + 1, dtype=torch.long, device=columns.device)
    per_row.index_add_(0, y0.clamp(0, height), columns).index_add_(0, y1.clamp(0, height), -columns)
    counts = torch.cumsum(per_row[:-1], 0).tolist()
    bands, start, held = [], 0, 0
    for row, count in enumerate(counts):
        if held and held + count > PAIR_BUDGET:
            bands.append((start, row))
            start, held = row, 0
        held += count
    return bands + [(start, height)]


def _ranks(counts: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., counts[i] - 1 for each i, concatenated."""
    total = int(counts.sum())
    return torch.arange(total, device=counts.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts,
                                                                               counts, output_size=total)


def _row_spans(proj: Projection, level, g, py, x0, x1) -> tuple[torch.Tensor, torch.Tensor]:
    """(first column, count) of each (Gaussian g, row py)'s pixels inside its ellipse d^T conic d <= level,
    widened by a pixel each side and kept within its tile box: `cpu_kernels._row_span`, so that the candidates
    are the pixels the CPU kernels visit (the alpha test then decides, as there)."""
    ca, cb, cc = proj.conics[g].unbind(-1)
    mx = proj.means2d[g, 0]
    dy = proj.means2d[g, 1] - (py.to(mx.dtype) + 0.5)
    disc = (cb * dy) ** 2 - ca * (cc * dy * dy - level[g])
    root = torch.sqrt(disc.clamp_min(0))
    lo = torch.floor(mx - (-cb * dy + root) / ca - 0.5).nan_to_num(0).clamp(-1e9, 1e9).long() - 1
    hi = torch.ceil(mx - (-cb * dy - root) / ca - 0.5).nan_to_num(0).clamp(-1e9, 1e9).long() + 2
    start = torch.maximum(x0[g], lo)
    count = torch.where(disc >= 0, torch.minimum(x1[g], hi) - start, 0).clamp_min(0)
    return start, count


def _segments(pixel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For pairs sorted by pixel: the index of each pair's first and of its last pair of the same pixel."""
    index = torch.arange(len(pixel), device=pixel.device)
    starts = torch.ones_like(pixel, dtype=torch.bool)
    starts[1:] = pixel[1:] != pixel[:-1]
    ends = torch.ones_like(starts)
    ends[:-1] = starts[1:]
    first = torch.cummax(torch.where(starts, index, 0), 0).values
    last = torch.cummin(torch.where(ends, index, len(pixel)).flip(0), 0).values.flip(0)
    return first, last


def _segment_sums(values: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Inclusive running sums of `values` ([M] or [M, C]) within segments; `first` [M] is the index of each
    element's segment start."""
    total = torch.cumsum(values, 0)
    before = total - values  # exclusive
    return total - before[first]


def pixel_statistics(proj: Projection, colors, opacities, width: int, height: int, background, fisher: bool):
    """(hits [N], max_weight [N], fisher2d [N, 15] or [N, 0]) of one view; see `cpu_kernels.pixel_statistics`."""
    dtype, device, n = proj.means2d.dtype, proj.means2d.device, proj.means2d.shape[0]
    hits = torch.zeros(n, dtype=dtype, device=device)
    max_weight = torch.zeros(n, dtype=dtype, device=device)
    fisher2d = torch.zeros(n, 15 if fisher else 0, dtype=dtype, device=device)
    drawn, level, y0, y1, x0, x1 = _boxes(proj, opacities, width, height)
    if n == 0 or not bool(drawn.any()):
        return hits, max_weight, fisher2d
    # depth order, ties by id (the CPU kernels' stable sort)
    order = torch.sort(torch.where(drawn, proj.depths, torch.inf), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=device)
    background = background.to(device, torch.float64)
    for top, bottom in _bands(drawn, y0, y1, x0, x1, height):
        ids = torch.nonzero(drawn & (y0 < bottom) & (y1 > top)).squeeze(1)
        first_row = y0[ids].clamp(min=top)
        rows = y1[ids].clamp(max=bottom) - first_row
        g = torch.repeat_interleave(ids, rows)  # one per (Gaussian, row)
        py = torch.repeat_interleave(first_row, rows) + _ranks(rows)
        start, count = _row_spans(proj, level, g, py, x0, x1)
        g, py = torch.repeat_interleave(g, count), torch.repeat_interleave(py, count)
        if g.numel() == 0:
            continue
        px = torch.repeat_interleave(start, count) + _ranks(count)
        pair = _blend_pairs(proj, opacities, g, px, py, rank, width, n)
        if pair is None:
            continue
        g, pixel, alpha, raw, t_before, dx, dy = pair
        weight = alpha * t_before
        hits.index_add_(0, g, torch.ones_like(weight, dtype=dtype))
        max_weight.scatter_reduce_(0, g, weight.to(dtype), "amax")
        if fisher:
            _add_fisher(fisher2d, proj, colors, background, g, pixel, alpha, raw, t_before, dx, dy)
    return hits, max_weight, fisher2d


def _blend_pairs(proj: Projection, opacities, g, px, py, rank, width: int, n: int):
    """The blended pairs among candidates, front to back per pixel: (gaussian, pixel, alpha, unclamped alpha,
    transmittance in front (float64), dx, dy), or None if none blends."""
    mx, my = proj.means2d[g, 0], proj.means2d[g, 1]
    ca, cb, cc = proj.conics[g].unbind(-1)
    dx = mx - (px.to(mx.dtype) + 0.5)
    dy = my - (py.to(my.dtype) + 0.5)
    power = -0.5 * cc * dy * dy - 0.5 * ca * dx * dx - cb * dy * dx
    raw = opacities[g] * torch.exp(power)
    alpha = torch.clamp_max(raw, ALPHA_MAX)
    hit = (power <= 0) & (alpha >= ALPHA_MIN)
    if not bool(hit.any()):
        return None
    g, px, py, alpha, raw, dx, dy = (v[hit] for v in (g, px, py, alpha, raw, dx, dy))
    pixel = py * width + px
    order = torch.sort(pixel * n + rank[g]).indices
    g, pixel, alpha, raw, dx, dy = (v[order] for v in (g, pixel, alpha, raw, dx, dy))
    first, _ = _segments(pixel)
    t_after = torch.exp(_segment_sums(torch.log1p(-alpha.double()), first))
    blended = t_after >= T_MIN  # transmittance only falls along a pixel: the blended pairs are a prefix
    t_before = t_after / (1.0 - alpha.double())
    return tuple(v[blended] for v in (g, pixel, alpha, raw, t_before, dx, dy))


def _add_fisher(fisher2d, proj, colors, background, g, pixel, alpha, raw, t_before, dx, dy) -> None:
    """Add sum_rgb (d pixel / d alpha)^2 u u^T, u = d alpha / d(means2d, conic), of the uncapped pairs."""
    first, last = _segments(pixel)
    a = alpha.double()
    colour = colors[g].double()
    upto = _segment_sums(colour * (a * t_before)[:, None], first)  # colour blended up to this pair
    total = upto[last]
    t_final = (t_before * (1.0 - a))[last]
    behind = (total - upto) / (1.0 - a)[:, None]  # the colour behind, per unit transmittance in front
    d_pixel = colour * t_before[:, None] - behind - (t_final / (1.0 - a))[:, None] * background
    d_alpha2 = d_pixel.square().sum(-1)
    ca, cb, cc = proj.conics[g].double().unbind(-1)
    dx, dy = dx.double(), dy.double()
    u = torch.stack([-a * (ca * dx + cb * dy), -a * (cc * dy + cb * dx), -0.5 * a * dx * dx, -a * dx * dy,
                     -0.5 * a * dy * dy], -1)
    rows, cols = _UPPER.to(u.device)
    entries = d_alpha2[:, None] * u[:, rows] * u[:, cols]
    entries[raw >= ALPHA_MAX] = 0.0  # capped: its alpha does not move
    fisher2d.index_add_(0, g, entries.to(fisher2d.dtype))

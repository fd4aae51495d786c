"""Numba kernels of the CPU rasterizer's pixel stage: tile binning, front-to-back blending, and its
analytic backward (the math of Kerbl et al. 2023: alpha = min(0.99, o exp(-d^T conic d / 2)), Gaussians
with alpha < 1/255 skipped, a pixel stops before transmittance would fall below 1e-4).

Kernels are generic over float32 / float64 (Numba compiles one version per dtype) and cached on disk.
Work is split over threads by interleaved tiles; each thread accumulates per-Gaussian gradients in its own
buffer, summed afterwards, so the backward needs no atomics and is deterministic.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from gstrim.render.project import ALPHA_MAX, ALPHA_MIN, T_MIN


@njit(parallel=True, cache=True)
def bin_gaussians(means2d, radii, conics, levels, order, width, height, tile, n_threads):
    """Per-tile lists of Gaussian ids in depth order.

    `order` holds Gaussian ids sorted by depth. Returns (offsets [n_tiles + 1], ids): the Gaussians of tile t
    are ids[offsets[t]:offsets[t + 1]], front to back. A Gaussian belongs to the tiles its 3-sigma box
    [mean - r, mean + r] touches (gsplat's `isect_tiles` rule, as 3DGS), narrowed per axis to the bounding box
    of its alpha ellipse d^T conic d <= levels[g] plus a pixel: every pixel of the tiles this drops has
    alpha < 1/255, so the image is the same, and faint or elongated Gaussians visit fewer tiles. A Gaussian
    that is never drawn (level < 0) joins no tile, so the kernels walking these lists need not test it.

    Threads own interleaved rows of tiles (each scans every Gaussian's box and writes only its own rows), so
    counting and filling need no atomics and keep the depth order.
    """
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    n = order.shape[0]
    rects = np.zeros((n, 4), np.int64)  # tile box [x0, x1) x [y0, y1), empty when not drawn
    for k in prange(n):
        g = order[k]
        r = radii[g]
        level = levels[g]
        if r <= 0 or level < 0.0:
            continue
        ca, cb, cc = conics[g, 0], conics[g, 1], conics[g, 2]
        det = ca * cc - cb * cb
        ex = min(float(r), math.sqrt(level * cc / det) + 1.0)  # the ellipse's half extents (2-D covariance
        ey = min(float(r), math.sqrt(level * ca / det) + 1.0)  # diagonal = conic adjugate / det)
        rects[k, 0] = min(max(int(math.floor((means2d[g, 0] - ex) / tile)), 0), tiles_x)
        rects[k, 1] = min(max(int(math.ceil((means2d[g, 0] + ex) / tile)), 0), tiles_x)
        rects[k, 2] = min(max(int(math.floor((means2d[g, 1] - ey) / tile)), 0), tiles_y)
        rects[k, 3] = min(max(int(math.ceil((means2d[g, 1] + ey) / tile)), 0), tiles_y)
    counts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for th in prange(n_threads):
        for k in range(n):
            x0, x1, y0, y1 = rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3]
            for ty in range(y0 + (th - y0) % n_threads, y1, n_threads):
                for tx in range(x0, x1):
                    counts[ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:-1].copy()
    ids = np.empty(offsets[-1], np.int64)
    for th in prange(n_threads):
        for k in range(n):
            x0, x1, y0, y1 = rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3]
            for ty in range(y0 + (th - y0) % n_threads, y1, n_threads):
                for tx in range(x0, x1):
                    t = ty * tiles_x + tx
                    ids[fill[t]] = order[k]
                    fill[t] += 1
    return offsets, ids


# Floating-point freedoms that let LLVM fuse and reorder arithmetic; NaN and infinity semantics stay exact.
FASTMATH = {"contract", "arcp", "afn", "reassoc", "nsz"}


def alpha_levels(opacities: np.ndarray, conics: np.ndarray) -> np.ndarray:
    """Per Gaussian, the level 2 ln(255 o) of the ellipse d^T conic d <= level outside which its alpha is
    below 1/255; -1 where it is never drawn (opacity below 1/255 or a degenerate conic)."""
    det = conics[:, 0] * conics[:, 2] - conics[:, 1] ** 2
    drawn = (opacities * 255.0 >= 1.0) & (det > 0) & (conics[:, 0] > 0)
    level = 2.0 * np.log(np.maximum(255.0 * opacities, 1.0))
    return np.where(drawn, level, -1.0).astype(opacities.dtype)


def fast_exp(x):
    """exp(x) for x <= 0 in the pixel loops: exact (libm) in float64, the oracle precision; in float32 a
    polynomial that LLVM vectorises (libm's exp does not vectorise under Numba, notes/cpu-rasterizer.md):
    exp(x) = p(x / 32)^32, p the degree-7 Taylor polynomial, relative error < 3e-6 for x in [-12, 0]
    (inputs are clamped there: below, alpha < 1/255 whatever the opacity)."""
    return math.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp_impl(x):
    if x == types.float32:
        def poly(x):
            y = max(x, np.float32(-12.0)) * np.float32(1.0 / 32.0)
            p = np.float32(1.0 / 5040.0)
            p = p * y + np.float32(1.0 / 720.0)
            p = p * y + np.float32(1.0 / 120.0)
            p = p * y + np.float32(1.0 / 24.0)
            p = p * y + np.float32(1.0 / 6.0)
            p = p * y + np.float32(0.5)
            p = p * y + np.float32(1.0)
            p = p * y + np.float32(1.0)
            p = p * p
            p = p * p
            p = p * p
            p = p * p
            return p * p
        return poly
    return lambda x: math.exp(x)


@njit(inline="always")
def _tile_bounds(t, tiles_x, tile, width, height):
    """Pixel box [x0, x1) x [y0, y1) of tile t, its width and its pixel count."""
    x0 = (t % tiles_x) * tile
    y0 = (t // tiles_x) * tile
    x1 = min(x0 + tile, width)
    y1 = min(y0 + tile, height)
    return x0, y0, x1, y1, x1 - x0, (x1 - x0) * (y1 - y0)


@njit(inline="always")
def _gaussian(g, means2d, conics, opacities):
    """Opacity, conic (a, b, c) and screen mean (x, y) of Gaussian g."""
    return opacities[g], conics[g, 0], conics[g, 1], conics[g, 2], means2d[g, 0], means2d[g, 1]


@njit(inline="always")
def _ellipse_rows(my, ca, cb, cc, level, y0, y1):
    """Rows [by0, by1) of a tile that the ellipse d^T conic d <= level reaches, with a pixel of margin."""
    ey = math.sqrt(level * ca / (ca * cc - cb * cb)) + 1.0
    return max(y0, int(math.floor(my - ey))), min(y1, int(math.ceil(my + ey)) + 1)


@njit(inline="always")
def _row_span(mx, dy, ca, cb, cc, level, x0, x1):
    """Columns [bx0, bx1) of a tile row (pixel-centre offset dy = my - y) inside the ellipse: the roots of
    ca dx^2 + 2 cb dy dx + cc dy^2 = level in dx = mx - x, widened by a pixel for rounding. The exact
    per-pixel tests still decide, so the result equals a visit of every pixel."""
    disc = (cb * dy) ** 2 - ca * (cc * dy * dy - level)
    if disc < 0.0:
        return x0, x0
    root = math.sqrt(disc)
    dx_lo = (-cb * dy - root) / ca
    dx_hi = (-cb * dy + root) / ca
    return max(x0, int(math.floor(mx - dx_hi - 0.5)) - 1), min(x1, int(math.ceil(mx - dx_lo - 0.5)) + 2)


@njit(inline="always")
def _row(py, mx, my, ca, cb, cc, level, x0, x1, y0, tw, ys, half):
    """One tile row of a Gaussian's ellipse, set up identically for every kernel (so all agree on which
    pixels are blended): (dy, -cc dy^2 / 2, cb dy, flat index and tile column of the span's first pixel,
    span length). The power at a pixel of the span is `_power(mx - xs[column], ...)`."""
    dy = my - ys[py - y0]
    bx0, bx1 = _row_span(mx, dy, ca, cb, cc, level, x0, x1)
    count = np.uint64(max(bx1 - bx0, 0))
    return (dy, -half * cc * dy * dy, cb * dy, np.uint64((py - y0) * tw + bx0 - x0), np.uint64(max(bx0 - x0, 0)),
            count)


@njit(inline="always")
def _power(dx, quad_y, cross, ca, half):
    """-d^T conic d / 2 at a pixel (dx = mean - pixel centre), with the row terms from `_row`."""
    return quad_y - half * ca * dx * dx - cross * dx


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def rasterize_forward(means2d, conics, colors, opacities, levels, offsets, ids, width, height, tile, background,
                      image, transmittance, last):
    """Blend front to back. Writes image [H, W, 3], final transmittance [H, W] and, per pixel, the position
    in `ids` of the last Gaussian blended (-1 if none), which the backward starts from.

    Gaussian-major within a tile: each Gaussian visits only the tile pixels inside its ellipse
    d^T conic d <= levels[g] (row by row), outside which alpha < 1/255."""
    tiles_x = (width + tile - 1) // tile
    n_tiles = tiles_x * ((height + tile - 1) // tile)
    # constants in the image's precision (a Python float literal would turn float32 arithmetic into float64)
    const = np.array([0.0, 0.5, 1.0, ALPHA_MIN, ALPHA_MAX, T_MIN]).astype(image.dtype)
    zero, half, one, alpha_min, alpha_max, t_min = const[0], const[1], const[2], const[3], const[4], const[5]
    for t in prange(n_tiles):
        first = offsets[t]
        x0, y0, x1, y1, tw, n_pix = _tile_bounds(t, tiles_x, tile, width, height)
        # per-pixel state; a pixel that has stopped keeps its final transmittance negated, so the branch-free
        # row loop below neither blends into it nor stops it again. The loop is written for LLVM to vectorise
        # (measured in docs/rasterizer.md): unsigned indices, flat arrays, selects, 32-bit positions.
        T = np.ones(n_pix, image.dtype)
        C0 = np.zeros(n_pix, image.dtype)
        C1 = np.zeros(n_pix, image.dtype)
        C2 = np.zeros(n_pix, image.dtype)
        end = np.full(n_pix, -1, np.int32)  # position in the tile's list of the last Gaussian blended
        xs = (np.arange(tile) + x0).astype(image.dtype) + half  # pixel centres
        n_done = zero
        ys = (np.arange(tile) + y0).astype(image.dtype) + half
        for k in range(first, offsets[t + 1]):
            g = ids[k]
            level = levels[g]
            o, ca, cb, cc, mx, my = _gaussian(g, means2d, conics, opacities)
            r = colors[g, 0]
            gr = colors[g, 1]
            b = colors[g, 2]
            local = np.int32(k - first)
            by0, by1 = _ellipse_rows(my, ca, cb, cc, level, y0, y1)
            for py in range(by0, by1):
                dy, quad_y, cross, start, col0, count = _row(py, mx, my, ca, cb, cc, level, x0, x1, y0, tw, ys,
                                                             half)
                for j in range(count):
                    i = start + j
                    dx = mx - xs[col0 + j]
                    power = _power(dx, quad_y, cross, ca, half)
                    alpha = min(alpha_max, o * fast_exp(power))
                    Ti = T[i]
                    next_T = Ti * (one - alpha)
                    hit = (power <= zero) & (alpha >= alpha_min)
                    blend = hit & (next_T >= t_min)
                    stop = hit & (Ti > zero) & (next_T < t_min)
                    w = alpha * Ti if blend else zero
                    C0[i] += r * w
                    C1[i] += gr * w
                    C2[i] += b * w
                    T[i] = next_T if blend else (-Ti if stop else Ti)
                    end[i] = local if blend else end[i]
                    n_done += one if stop else zero
            if n_done >= n_pix:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                i = (py - y0) * tw + (px - x0)
                Ti = abs(T[i])
                image[py, px, 0] = C0[i] + Ti * background[0]
                image[py, px, 1] = C1[i] + Ti * background[1]
                image[py, px, 2] = C2[i] + Ti * background[2]
                transmittance[py, px] = Ti
                last[py, px] = first + end[i] if end[i] >= 0 else -1


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def rasterize_backward(means2d, conics, colors, opacities, levels, offsets, ids, width, height, tile, background,
                       transmittance, last, grad_image, grad_alpha, n_threads,
                       g_means2d, g_conics, g_colors, g_opacities):
    """Gradients of the blend w.r.t. means2d, conics, colours and opacities, into per-thread buffers
    (first axis: thread). Walks each tile's Gaussians back to front over the same ellipse rows as the
    forward, with the same arithmetic (so the same pixels count as blended); every pixel recovers its
    transmittance by division and carries the sum of colour x weight blended behind the current Gaussian
    (gsplat's backward formulation: four running values per pixel where 3DGS's carries eight). The row loop
    is branch-free like the forward's; per-Gaussian sums are reduced in registers."""
    dtype = transmittance.dtype
    tiles_x = (width + tile - 1) // tile
    n_tiles = tiles_x * ((height + tile - 1) // tile)
    const = np.array([0.0, 0.5, 1.0, ALPHA_MIN, ALPHA_MAX]).astype(dtype)
    zero, half, one, alpha_min, alpha_max = const[0], const[1], const[2], const[3], const[4]
    for th in prange(n_threads):
        for t in range(th, n_tiles, n_threads):
            first = offsets[t]
            x0, y0, x1, y1, tw, n_pix = _tile_bounds(t, tiles_x, tile, width, height)
            # per-pixel state, fresh arrays per tile: views into one shared block measured ~10 % slower (LLVM
            # cannot tell that they do not alias)
            T = np.empty(n_pix, dtype)
            buf0 = np.empty(n_pix, dtype)
            buf1 = np.empty(n_pix, dtype)
            buf2 = np.empty(n_pix, dtype)
            d0s = np.empty(n_pix, dtype)
            d1s = np.empty(n_pix, dtype)
            d2s = np.empty(n_pix, dtype)
            d_T_final = np.empty(n_pix, dtype)
            end = np.empty(n_pix, np.int32)  # local position of the last Gaussian blended, -1 if none
            xs = (np.arange(tile) + x0).astype(dtype) + half
            ys = (np.arange(tile) + y0).astype(dtype) + half
            k_max = -1
            for py in range(y0, y1):
                for px in range(x0, x1):
                    i = (py - y0) * tw + (px - x0)
                    T[i] = transmittance[py, px]
                    buf0[i] = zero
                    buf1[i] = zero
                    buf2[i] = zero
                    d0s[i] = grad_image[py, px, 0]
                    d1s[i] = grad_image[py, px, 1]
                    d2s[i] = grad_image[py, px, 2]
                    # image = C + T_final * bg and alpha_out = 1 - T_final both depend on every alpha through
                    # T_final (d T_final / d alpha_g = -T_final / (1 - alpha_g)); d_T_final holds T_final x
                    # dL/dT_final, so the loop below only scales it by 1 / (1 - alpha_g)
                    d_T_final[i] = T[i] * (background[0] * d0s[i] + background[1] * d1s[i]
                                           + background[2] * d2s[i] - grad_alpha[py, px])
                    end[i] = last[py, px] - first if last[py, px] >= 0 else -1
                    k_max = max(k_max, last[py, px])
            for k in range(k_max, first - 1, -1):
                g = ids[k]
                level = levels[g]
                o, ca, cb, cc, mx, my = _gaussian(g, means2d, conics, opacities)
                c0 = colors[g, 0]
                c1 = colors[g, 1]
                c2 = colors[g, 2]
                local = np.int32(k - first)
                s_c0 = zero
                s_c1 = zero
                s_c2 = zero
                s_o = zero
                s_mx = zero
                s_my = zero
                s_ca = zero
                s_cb = zero
                s_cc = zero
                by0, by1 = _ellipse_rows(my, ca, cb, cc, level, y0, y1)
                for py in range(by0, by1):
                    dy, quad_y, cross, start, col0, count = _row(py, mx, my, ca, cb, cc, level, x0, x1, y0, tw, ys,
                                                                 half)
                    for j in range(count):
                        i = start + j
                        dx = mx - xs[col0 + j]
                        power = _power(dx, quad_y, cross, ca, half)
                        G = fast_exp(power)
                        raw = o * G
                        alpha = min(alpha_max, raw)
                        hit = (local <= end[i]) & (power <= zero) & (alpha >= alpha_min)
                        ra = one / (one - alpha)
                        Ti = T[i] * ra if hit else T[i]  # transmittance in front of this Gaussian
                        T[i] = Ti
                        w = alpha * Ti if hit else zero
                        d0 = d0s[i]
                        d1 = d1s[i]
                        d2 = d2s[i]
                        s_c0 += w * d0
                        s_c1 += w * d1
                        s_c2 += w * d2
                        # d pixel / d alpha: this colour through T, minus what is blended behind (buf: sum of
                        # colour x weight of the Gaussians behind, scaled by 1 / (1 - alpha)), minus T_final
                        b0 = buf0[i]
                        b1 = buf1[i]
                        b2 = buf2[i]
                        d_alpha = (c0 * Ti - b0 * ra) * d0 + (c1 * Ti - b1 * ra) * d1 + (c2 * Ti - b2 * ra) * d2
                        d_alpha -= ra * d_T_final[i]
                        buf0[i] = b0 + c0 * w
                        buf1[i] = b1 + c1 * w
                        buf2[i] = b2 + c2 * w
                        # a clamped alpha passes no gradient to opacity or shape
                        d_alpha = d_alpha if hit & (raw < alpha_max) else zero
                        s_o += G * d_alpha
                        d_G = o * d_alpha * G  # d L / d power
                        s_mx -= d_G * (ca * dx + cb * dy)
                        s_my -= d_G * (cc * dy + cb * dx)
                        s_ca -= half * d_G * dx * dx
                        s_cb -= d_G * dx * dy
                        s_cc -= half * d_G * dy * dy
                g_colors[th, g, 0] += s_c0
                g_colors[th, g, 1] += s_c1
                g_colors[th, g, 2] += s_c2
                g_opacities[th, g] += s_o
                g_means2d[th, g, 0] += s_mx
                g_means2d[th, g, 1] += s_my
                g_conics[th, g, 0] += s_ca
                g_conics[th, g, 1] += s_cb
                g_conics[th, g, 2] += s_cc


def num_threads() -> int:
    return numba.get_num_threads()


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pixel_statistics(means2d, conics, colors, opacities, levels, offsets, ids, width, height, tile, background,
                     transmittance, last, n_threads, hits, max_weight, fisher):
    """Per-Gaussian statistics of one render that pruning scores need, into per-thread buffers:

    * hits[th, g]: pixels where Gaussian g is blended (alpha >= 1/255 before the pixel saturates), the count
      behind LightGaussian's global significance;
    * max_weight[th, g]: the largest blending weight alpha * T (T the transmittance in front of g) over the
      pixels: how much of any pixel the Gaussian actually shows, 0 for one hidden behind a surface;
    * fisher[th, g, :]: the 15 upper-triangle entries of sum_pixels sum_rgb h h^T, h = d(pixel colour) /
      d(means2d x, y, conic a, b, c) of Gaussian g, the 2-D part of PUP-3DGS's Fisher (the 0.99-capped
      pixels contribute nothing, as their alpha does not move); a buffer with no entries skips it.

    Walks the tiles back to front exactly like `rasterize_backward`, which supplies d(pixel)/d(alpha)."""
    dtype = transmittance.dtype
    tiles_x = (width + tile - 1) // tile
    n_tiles = tiles_x * ((height + tile - 1) // tile)
    # constants in the render's precision (a Python float literal would turn float32 arithmetic into float64)
    const = np.array([0.0, 0.5, 1.0, ALPHA_MIN, ALPHA_MAX]).astype(dtype)
    zero, half, one, alpha_min, alpha_max = const[0], const[1], const[2], const[3], const[4]
    for th in prange(n_threads):
        u = np.empty(5, dtype)
        for t in range(th, n_tiles, n_threads):
            x0, y0, x1, y1, tw, n_pix = _tile_bounds(t, tiles_x, tile, width, height)
            xs = (np.arange(tile) + x0).astype(dtype) + half
            ys = (np.arange(tile) + y0).astype(dtype) + half
            T = np.empty(n_pix, transmittance.dtype)
            T_final = np.empty(n_pix, transmittance.dtype)
            acc = np.zeros((n_pix, 3), transmittance.dtype)
            last_color = np.zeros((n_pix, 3), transmittance.dtype)
            last_alpha = np.zeros(n_pix, transmittance.dtype)
            end = np.empty(n_pix, np.int64)
            k_max = -1
            for py in range(y0, y1):
                for px in range(x0, x1):
                    i = (py - y0) * tw + (px - x0)
                    T[i] = transmittance[py, px]
                    T_final[i] = T[i]
                    end[i] = last[py, px]
                    k_max = max(k_max, end[i])
            for k in range(k_max, offsets[t] - 1, -1):
                g = ids[k]
                level = levels[g]
                o, ca, cb, cc, mx, my = _gaussian(g, means2d, conics, opacities)
                by0, by1 = _ellipse_rows(my, ca, cb, cc, level, y0, y1)
                for py in range(by0, by1):
                    dy, quad_y, cross, start, col0, count = _row(py, mx, my, ca, cb, cc, level, x0, x1, y0, tw, ys,
                                                                 half)
                    for j in range(count):
                        i = start + j
                        if k > end[i]:
                            continue
                        dx = mx - xs[col0 + j]
                        power = _power(dx, quad_y, cross, ca, half)
                        if power > zero:
                            continue
                        raw = o * fast_exp(power)
                        alpha = min(alpha_max, raw)
                        if alpha < alpha_min:
                            continue
                        hits[th, g] += one
                        Ti = T[i] / (one - alpha)
                        T[i] = Ti
                        max_weight[th, g] = max(max_weight[th, g], alpha * Ti)
                        la = last_alpha[i]
                        w_behind = T_final[i] / (one - alpha)
                        d_alpha2 = zero  # sum over channels of (d pixel_c / d alpha)^2
                        for ch in range(3):
                            a = la * last_color[i, ch] + (one - la) * acc[i, ch]
                            acc[i, ch] = a
                            last_color[i, ch] = colors[g, ch]
                            d = (colors[g, ch] - a) * Ti - w_behind * background[ch]
                            d_alpha2 += d * d
                        last_alpha[i] = alpha
                        if raw >= alpha_max or fisher.shape[2] == 0:  # capped, or no Fisher asked for
                            continue
                        # d alpha / d(means2d, conic) = alpha * d power / d(...)
                        u[0] = -alpha * (ca * dx + cb * dy)
                        u[1] = -alpha * (cc * dy + cb * dx)
                        u[2] = -half * alpha * dx * dx
                        u[3] = -alpha * dx * dy
                        u[4] = -half * alpha * dy * dy
                        e = 0
                        for r in range(5):
                            for c in range(r, 5):
                                fisher[th, g, e] += d_alpha2 * u[r] * u[c]
                                e += 1

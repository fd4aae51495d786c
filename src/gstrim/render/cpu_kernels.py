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
from numba import njit, prange

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4


@njit(cache=True)
def bin_gaussians(means2d, radii, order, width, height, tile):
    """Per-tile lists of Gaussian ids in depth order.

    `order` holds Gaussian ids sorted by depth. Returns (offsets [n_tiles + 1], ids): the Gaussians of tile t
    are ids[offsets[t]:offsets[t + 1]], front to back. A Gaussian belongs to the tiles its 3-sigma box
    [mean - r, mean + r] touches (gsplat's `isect_tiles` rule).
    """
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    n = order.shape[0]
    rects = np.zeros((n, 4), np.int64)
    counts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for k in range(n):
        g = order[k]
        r = radii[g]
        if r <= 0:
            continue
        x0 = min(max(int(math.floor((means2d[g, 0] - r) / tile)), 0), tiles_x)
        x1 = min(max(int(math.ceil((means2d[g, 0] + r) / tile)), 0), tiles_x)
        y0 = min(max(int(math.floor((means2d[g, 1] - r) / tile)), 0), tiles_y)
        y1 = min(max(int(math.ceil((means2d[g, 1] + r) / tile)), 0), tiles_y)
        rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3] = x0, x1, y0, y1
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                counts[ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    fill = offsets[:-1].copy()
    ids = np.empty(offsets[-1], np.int64)
    for k in range(n):
        x0, x1, y0, y1 = rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3]
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                t = ty * tiles_x + tx
                ids[fill[t]] = order[k]
                fill[t] += 1
    return offsets, ids


@njit(parallel=True, cache=True)
def rasterize_forward(means2d, conics, colors, opacities, offsets, ids, width, height, tile, background,
                      image, transmittance, last):
    """Blend front to back. Writes image [H, W, 3], final transmittance [H, W] and, per pixel, the position
    in `ids` of the last Gaussian blended (-1 if none), which the backward starts from."""
    tiles_x = (width + tile - 1) // tile
    n_tiles = tiles_x * ((height + tile - 1) // tile)
    for t in prange(n_tiles):
        x0 = (t % tiles_x) * tile
        y0 = (t // tiles_x) * tile
        for py in range(y0, min(y0 + tile, height)):
            for px in range(x0, min(x0 + tile, width)):
                pxf = px + 0.5
                pyf = py + 0.5
                T = 1.0
                c0 = 0.0
                c1 = 0.0
                c2 = 0.0
                end = -1
                for k in range(offsets[t], offsets[t + 1]):
                    g = ids[k]
                    dx = means2d[g, 0] - pxf
                    dy = means2d[g, 1] - pyf
                    power = -0.5 * (conics[g, 0] * dx * dx + conics[g, 2] * dy * dy) - conics[g, 1] * dx * dy
                    if power > 0.0:
                        continue
                    alpha = min(ALPHA_MAX, opacities[g] * math.exp(power))
                    if alpha < ALPHA_MIN:
                        continue
                    next_T = T * (1.0 - alpha)
                    if next_T < T_MIN:
                        break
                    w = alpha * T
                    c0 += colors[g, 0] * w
                    c1 += colors[g, 1] * w
                    c2 += colors[g, 2] * w
                    T = next_T
                    end = k
                image[py, px, 0] = c0 + T * background[0]
                image[py, px, 1] = c1 + T * background[1]
                image[py, px, 2] = c2 + T * background[2]
                transmittance[py, px] = T
                last[py, px] = end


@njit(parallel=True, cache=True)
def rasterize_backward(means2d, conics, colors, opacities, offsets, ids, width, height, tile, background,
                       transmittance, last, grad_image, grad_alpha, n_threads,
                       g_means2d, g_conics, g_colors, g_opacities):
    """Gradients of the blend w.r.t. means2d, conics, colours and opacities, into per-thread buffers
    (first axis: thread). Walks each pixel's Gaussians back to front, recovering transmittance by division
    and carrying the colour accumulated behind the current Gaussian."""
    tiles_x = (width + tile - 1) // tile
    n_tiles = tiles_x * ((height + tile - 1) // tile)
    for th in prange(n_threads):
        for t in range(th, n_tiles, n_threads):
            x0 = (t % tiles_x) * tile
            y0 = (t // tiles_x) * tile
            for py in range(y0, min(y0 + tile, height)):
                for px in range(x0, min(x0 + tile, width)):
                    end = last[py, px]
                    if end < 0:
                        continue
                    pxf = px + 0.5
                    pyf = py + 0.5
                    T_final = transmittance[py, px]
                    T = T_final
                    d0 = grad_image[py, px, 0]
                    d1 = grad_image[py, px, 1]
                    d2 = grad_image[py, px, 2]
                    # image = C + T_final * bg and alpha_out = 1 - T_final both depend on every alpha.
                    d_T_final = background[0] * d0 + background[1] * d1 + background[2] * d2 - grad_alpha[py, px]
                    acc0 = 0.0
                    acc1 = 0.0
                    acc2 = 0.0
                    last_alpha = 0.0
                    last0 = 0.0
                    last1 = 0.0
                    last2 = 0.0
                    for k in range(end, offsets[t] - 1, -1):
                        g = ids[k]
                        dx = means2d[g, 0] - pxf
                        dy = means2d[g, 1] - pyf
                        ca = conics[g, 0]
                        cb = conics[g, 1]
                        cc = conics[g, 2]
                        power = -0.5 * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
                        if power > 0.0:
                            continue
                        G = math.exp(power)
                        raw = opacities[g] * G
                        alpha = min(ALPHA_MAX, raw)
                        if alpha < ALPHA_MIN:
                            continue
                        T = T / (1.0 - alpha)
                        w = alpha * T
                        g_colors[th, g, 0] += w * d0
                        g_colors[th, g, 1] += w * d1
                        g_colors[th, g, 2] += w * d2
                        # colour blended behind this Gaussian, as seen from it
                        acc0 = last_alpha * last0 + (1.0 - last_alpha) * acc0
                        acc1 = last_alpha * last1 + (1.0 - last_alpha) * acc1
                        acc2 = last_alpha * last2 + (1.0 - last_alpha) * acc2
                        last0 = colors[g, 0]
                        last1 = colors[g, 1]
                        last2 = colors[g, 2]
                        last_alpha = alpha
                        d_alpha = ((last0 - acc0) * d0 + (last1 - acc1) * d1 + (last2 - acc2) * d2) * T
                        d_alpha -= T_final / (1.0 - alpha) * d_T_final
                        if raw >= ALPHA_MAX:
                            continue  # alpha is clamped: no gradient to opacity or shape
                        g_opacities[th, g] += G * d_alpha
                        d_G = opacities[g] * d_alpha * G  # d L / d power
                        g_means2d[th, g, 0] += -d_G * (ca * dx + cb * dy)
                        g_means2d[th, g, 1] += -d_G * (cc * dy + cb * dx)
                        g_conics[th, g, 0] += -0.5 * d_G * dx * dx
                        g_conics[th, g, 1] += -d_G * dx * dy
                        g_conics[th, g, 2] += -0.5 * d_G * dy * dy


def num_threads() -> int:
    return numba.get_num_threads()

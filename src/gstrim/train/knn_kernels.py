"""The Numba kernel of `init.mean_neighbour_distance`, apart so that Numba is imported, and compiled, only by a
training run that initialises from points."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def grid_knn(pts, cells, dims, order, sorted_keys, cell, k):
    """Mean squared distance to the k nearest neighbours, searching grid shells of growing radius until no
    unvisited cell can hold a closer point."""
    n = pts.shape[0]
    out = np.empty(n)
    max_ring = int(max(dims[0], dims[1], dims[2]))
    for p in prange(n):
        best = np.full(k, np.inf)
        cx, cy, cz = cells[p, 0], cells[p, 1], cells[p, 2]
        for ring in range(max_ring + 1):
            for ix in range(max(cx - ring, 0), min(cx + ring, dims[0] - 1) + 1):
                for iy in range(max(cy - ring, 0), min(cy + ring, dims[1] - 1) + 1):
                    for iz in range(max(cz - ring, 0), min(cz + ring, dims[2] - 1) + 1):
                        if max(abs(ix - cx), abs(iy - cy), abs(iz - cz)) != ring:
                            continue  # only the shell; inner cells were searched already
                        key = (ix * dims[1] + iy) * dims[2] + iz
                        j = np.searchsorted(sorted_keys, key)
                        while j < n and sorted_keys[j] == key:
                            q = order[j]
                            j += 1
                            if q == p:
                                continue
                            d = ((pts[p, 0] - pts[q, 0]) ** 2 + (pts[p, 1] - pts[q, 1]) ** 2
                                 + (pts[p, 2] - pts[q, 2]) ** 2)
                            if d < best[k - 1]:
                                m = k - 1
                                while m > 0 and best[m - 1] > d:
                                    best[m] = best[m - 1]
                                    m -= 1
                                best[m] = d
            # every point outside the searched cube is at least ring * cell away
            if best[k - 1] <= (ring * cell) ** 2:
                break
        out[p] = best.sum() / k
    return out

"""The CPU kernel of k-means seeding (Numba), apart from `kmeans` so that Numba is imported and compiled only
by the runs that seed on the CPU."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def plus_plus(x, w, k, seed):
    """Indices of k seeds: each next one drawn with probability ~ weight x squared distance to the nearest
    seed so far (the first ~ weight); k-means++ (Arthur and Vassilvitskii 2007)."""
    np.random.seed(seed)
    n, dim = x.shape
    chosen = np.empty(k, np.int64)
    d2 = np.full(n, np.inf)
    mass = np.empty(n)
    for i in range(k):
        total = 0.0
        for p in range(n):
            total += w[p] * (d2[p] if i > 0 else 1.0) + 1e-12
            mass[p] = total
        j = min(np.searchsorted(mass, np.random.random() * total, side="right"), n - 1)
        chosen[i] = j
        for p in prange(n):
            d = 0.0
            for c in range(dim):
                t = x[p, c] - x[j, c]
                d += t * t
            d2[p] = min(d2[p], d)
    return chosen

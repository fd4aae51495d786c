"""Sensitivity-weighted vector clustering (c3dgs, Niedermayr et al. 2024, §3.2, `compression/vq.py`).

Mini-batch k-means where each step assigns a random batch to its nearest centroids and moves every hit
centroid towards the importance-weighted mean of its members by an exponential moving average (decay 0.8,
c3dgs's default). Importance is normalised by its maximum. Deviation from c3dgs, which draws the initial
codebook uniformly inside the data's bounding box: the initial centroids are chosen by importance-weighted
k-means++ seeding (Arthur and Vassilvitskii 2007) on a random subsample, so that no centroid starts far
from all data and no cluster starts without one (with the few steps a CPU affords, uniformly drawn
centroids in 48-D mostly stay unused, and mini-batch updates do not escape a bad start).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numba import njit, prange

from gstrim import progress

EMA_DECAY = 0.8
SEED_SAMPLE = 4  # k-means++ seeds from a subsample of this many points per centroid (at least SEED_MIN)
SEED_MIN = 8192
# Distance-matrix entries per chunk of the nearest-centroid search (16 MB float32): 1.5 s instead of 2.3 s
# with 128 MB chunks for 32,768 x 25,024 in 45-D on 2 cores (fewer passes over memory out of cache).
_CHUNK_ELEMENTS = 2**22


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean) of each row of x, in chunks of matrix products:
    argmin_k ||c_k||^2 - 2 x . c_k."""
    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    c_norm = centroids.square().sum(-1)
    chunk = max(1, _CHUNK_ELEMENTS // max(len(centroids), 1))
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        # mm then add: torch's CPU addmm with a broadcast bias is ~3x slower than the bare product
        out[start:start + chunk] = (block @ (-2.0 * centroids.T)).add_(c_norm).argmin(-1)
    return out


def weighted_kmeans(x: torch.Tensor, importance: torch.Tensor, k: int, *, steps: int, batch: int,
                    generator: torch.Generator, project: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> torch.Tensor:
    """[k, D] centroids of the rows of x weighted by `importance` (>= 0). `project` maps the centroids back
    onto the data's manifold after each step (c3dgs renormalises covariance centroids to unit trace)."""
    n = len(x)
    if n == 0:
        return x.new_zeros(0, x.shape[1])
    weights = importance.clamp_min(0) / importance.max().clamp_min(1e-30)
    if n <= k:
        return x.clone()
    centroids = _seed(x, weights, k, generator)
    for _ in progress.track(range(steps), f"k-means ({k:,} centroids)"):
        pick = torch.randperm(n, generator=generator)[:batch].to(x.device)
        xb, wb = x[pick], weights[pick]
        assign = nearest(xb, centroids)
        mass = torch.zeros(k, device=x.device).index_add_(0, assign, wb)
        total = torch.zeros_like(centroids).index_add_(0, assign, xb * wb[:, None])
        hit = mass > 0
        mean = total[hit] / mass[hit, None]
        centroids[hit] = EMA_DECAY * centroids[hit] + (1 - EMA_DECAY) * mean
        if project is not None:
            centroids = project(centroids)
    return centroids


def _seed(x: torch.Tensor, weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding among a random subsample of max(SEED_SAMPLE * k, SEED_MIN) points."""
    sample = torch.randperm(len(x), generator=generator)[:max(SEED_SAMPLE * k, SEED_MIN)]
    xs = x[sample.to(x.device)]
    seed = int(torch.randint(2**62, (1,), generator=generator))
    chosen = _plus_plus(xs.detach().cpu().float().numpy(), weights[sample.to(x.device)].cpu().double().numpy(), k,
                        seed)
    return xs[torch.from_numpy(chosen).to(x.device)].clone()


@njit(cache=True, parallel=True)
def _plus_plus(x, w, k, seed):
    """Indices of k seeds: each next one drawn with probability ~ weight x squared distance to the nearest
    seed so far (the first ~ weight)."""
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

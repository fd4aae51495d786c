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

import torch

from gstrim import devices, progress

EMA_DECAY = 0.8
SEED_SAMPLE = 4  # k-means++ seeds from a subsample of this many points per centroid (at least SEED_MIN)
SEED_MIN = 8192
SEED_ROUNDS = 8  # on a GPU: seeds drawn in this many rounds (k-means||, see `_seed_in_rounds`)
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
    ws = weights[sample.to(x.device)]
    if not devices.uses_cpu_kernels(x.device):
        return xs[_seed_in_rounds(xs.detach().float(), ws.double(), k, seed)].clone()
    from gstrim.kmeans_kernels import plus_plus

    chosen = plus_plus(xs.detach().cpu().float().numpy(), ws.cpu().double().numpy(), k, seed)
    return xs[torch.from_numpy(chosen).to(x.device)].clone()


def _seed_in_rounds(x: torch.Tensor, w: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Indices of k seeds by k-means++ in rounds, the device path: the first seed ~ weight, then SEED_ROUNDS
    rounds each drawing its share of the rest at once, without replacement, ~ weight x squared distance to
    the nearest seed of earlier rounds (k-means||, Bahmani et al. 2012, with the oversampled candidates
    replaced by exactly k draws). k-means++ proper draws one seed per pass over the sample: k sequential
    passes, which a GPU runs no faster than a CPU; rounds need SEED_ROUNDS, each a batched distance search."""
    generator = torch.Generator(device=x.device).manual_seed(seed % 2**63)
    chosen = torch.multinomial(w + 1e-12, 1, generator=generator)
    d2 = (x - x[chosen]).square().sum(-1).double()
    for r in range(SEED_ROUNDS):
        draw = (k - 1) * (r + 1) // SEED_ROUNDS - (k - 1) * r // SEED_ROUNDS
        if draw == 0:
            continue
        new = torch.multinomial(w * d2 + 1e-12, draw, replacement=False, generator=generator)
        chosen = torch.cat([chosen, new])
        if r + 1 < SEED_ROUNDS:
            near = x[new][nearest(x, x[new])]
            d2 = torch.minimum(d2, (x - near).square().sum(-1).double())
    return chosen

"""Initial Gaussians of a training run: one per sparse point (COLMAP) or random points (Blender), as 3DGS
initialises them (Kerbl et al. 2023, `create_from_pcd`; random init of NeRF-synthetic scenes:
100,000 points in [-1.3, 1.3]^3 with random colours)."""

from __future__ import annotations

import numpy as np
import torch

from gstrim.data import Dataset
from gstrim.errors import ConfigError
from gstrim.scene import GaussianScene, num_sh_rest, rgb_to_sh0

INIT_OPACITY = 0.1
RANDOM_POINTS = 100_000
RANDOM_HALF_SIZE = 1.3


def mean_neighbour_distance(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Root of the mean squared distance of each point to its k nearest other points (3DGS `distCUDA2`),
    exact, through a uniform grid (Numba)."""
    n = points.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return torch.ones(n)
    pts = points.detach().double().numpy()
    lo = pts.min(axis=0)
    span = np.maximum(pts.max(axis=0) - lo, 1e-9)
    # about two points per occupied cell on average for a uniform cloud
    cell = float(np.cbrt(np.prod(span) * 2.0 / n)) or float(span.max())
    dims = np.minimum(np.floor(span / cell).astype(np.int64) + 1, 1 << 20)
    cells = np.minimum(((pts - lo) / cell).astype(np.int64), dims - 1)
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    from gstrim.train.knn_kernels import grid_knn

    d2 = grid_knn(pts, cells, dims, order, sorted_keys, cell, k)
    return torch.from_numpy(np.sqrt(np.maximum(d2, 1e-14))).float()


def scene_from_points(points: np.ndarray, colors: np.ndarray, sh_degree: int = 3) -> GaussianScene:
    """Isotropic Gaussians at `points` sized by their neighbours, opacity 0.1, DC colour from `colors`."""
    means = torch.as_tensor(points, dtype=torch.float32)
    n = means.shape[0]
    scales = torch.log(mean_neighbour_distance(means))[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    opacities = torch.full((n,), float(np.log(INIT_OPACITY / (1 - INIT_OPACITY))))
    sh0 = rgb_to_sh0(torch.as_tensor(colors, dtype=torch.float32))[:, None, :]
    shN = torch.zeros(n, num_sh_rest(sh_degree), 3)
    return GaussianScene(means, scales, quats, opacities, sh0, shN)


def initial_scene(dataset: Dataset, *, sh_degree: int = 3, random_points: int | None = None,
                  half_size: float = RANDOM_HALF_SIZE, seed: int = 0) -> GaussianScene:
    """The sparse COLMAP points, or `random_points` uniform points in a cube of `half_size` (Blender data,
    or any dataset when `random_points` is given)."""
    if random_points is None and dataset.points is not None:
        if len(dataset.points) == 0:
            raise ConfigError("the COLMAP model has no 3-D points to start from; use {init_points} N",
                              "init_points", path=dataset.root)
        return scene_from_points(dataset.points, dataset.point_colors, sh_degree)
    count = RANDOM_POINTS if random_points is None else random_points
    if count <= 0:
        raise ConfigError(f"{{init_points}} must be positive, got {count}", "init_points", path=dataset.root)
    rng = np.random.default_rng(seed)
    points = rng.uniform(-half_size, half_size, size=(count, 3)).astype(np.float32)
    colors = rng.uniform(0, 1, size=(count, 3)).astype(np.float32)
    return scene_from_points(points, colors, sh_degree)

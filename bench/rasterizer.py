"""CPU rasterizer speed on a seeded benchmark scene (the figures of docs/rasterizer.md).

N Gaussians, means uniform in [-0.5, 0.5]^3, random unit quaternions, log-normal scales (median 0.017,
sigma_log 0.35, clipped to [0.004, 0.08]), opacity uniform (0.05, 0.95), SH degree 3 (DC ~ N(0, 0.6), rest
~ N(0, 0.05)); pinhole camera at distance 3 looking at the origin, 30 degree field of view; loss = mean of
the image. Prints medians (and minima) over repeated runs after a warm-up. Usage: python bench/rasterizer.py
[--runs 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numba
import numpy as np
import torch

from gstrim.camera import Camera
from gstrim.render import cpu_kernels as kernels
from gstrim.render import pixel_statistics, rasterize
from gstrim.render.cpu import depth_order
from gstrim.render.project import TILE, project
from gstrim.scene import GaussianScene


def bench_scene(n: int, seed: int = 0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    scales = np.clip(np.exp(rng.normal(math.log(0.017), 0.35, (n, 3))), 0.004, 0.08)
    opacity = rng.uniform(0.05, 0.95, n)
    scene = GaussianScene.from_numpy(
        means=rng.uniform(-0.5, 0.5, (n, 3)), scales=np.log(scales), quats=quats,
        opacities=np.log(opacity / (1 - opacity)), sh0=rng.normal(0, 0.6, (n, 1, 3)),
        shN=rng.normal(0, 0.05, (n, 15, 3)),
    )
    return GaussianScene(**{k: v.requires_grad_(True) for k, v in scene.params().items()})


def bench_camera(size: int) -> Camera:
    f = 0.5 * size / math.tan(math.radians(15))
    viewmat = torch.eye(4)
    viewmat[:3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # camera on -y, looking along +y
    viewmat[:3, 3] = torch.tensor([0.0, 0.0, 3.0])
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    return Camera("bench", size, size, K, viewmat)


def times(fn, runs: int) -> tuple[float, float]:
    """(median, min) of `runs` timed calls after a warm-up call (JIT compilation / cache load). This VM's
    speed drifts by up to 60 % within minutes; the min is the steadier figure for A/B comparisons."""
    fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def forward_backward(scene: GaussianScene, camera: Camera, backend: str = "cpu") -> None:
    """One render and the backward of the image mean (the timed unit of every rasterizer bench)."""
    for v in scene.params().values():
        v.grad = None
    rasterize(scene, camera, backend=backend).image.mean().backward()


def bench_case(n: int, size: int, runs: int) -> None:
    scene, camera = bench_scene(n), bench_camera(size)

    def forward():
        with torch.no_grad():
            rasterize(scene, camera)

    def projection():
        with torch.no_grad():
            return project(scene.means, scene.quats, scene.scales, camera.viewmat, camera.K, size, size)

    proj = projection()
    m2d, conics = proj.means2d.numpy(), proj.conics.numpy()
    radii = proj.radii.numpy().astype(np.int64)
    levels = kernels.alpha_levels(scene.activated_opacities().detach().numpy(), conics)
    order = depth_order(proj.depths.numpy(), radii)

    def binning():
        return kernels.bin_gaussians(m2d, radii, conics, levels, order, size, size, TILE, numba.get_num_threads())

    offsets, _ = binning()
    tested = int((offsets[1:] - offsets[:-1]).sum()) * TILE * TILE  # tile-pixel x Gaussian pairs a GPU kernel tests
    with torch.no_grad():
        blended = int(pixel_statistics(scene, camera).hits.sum())  # pairs actually blended
    (t_fwd, m_fwd), (t_all, m_all) = times(forward, runs), times(lambda: forward_backward(scene, camera), runs)
    t_proj, t_bin = times(projection, runs)[0], times(binning, runs)[0]
    print(f"{f'{n // 1000}k {size}^2':<12}{t_fwd * 1e3:>8.1f}{m_fwd * 1e3:>8.1f}{t_all * 1e3:>12.1f}{m_all * 1e3:>8.1f}"
          f"{t_proj * 1e3:>11.1f}{t_bin * 1e3:>8.1f}{tested / 1e6:>9.1f} M{blended / 1e6:>8.1f} M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()}")
    print(f"{'case':<12}{'fwd ms':>8}{'(min)':>8}{'fwd+bwd ms':>12}{'(min)':>8}{'project':>11}{'bin':>8}"
          f"{'tested':>11}{'blended':>10}")
    for n, size in ((20_000, 256), (100_000, 512)):
        bench_case(n, size, args.runs)


if __name__ == "__main__":
    main()

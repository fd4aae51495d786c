"""Wall time of the compression stages other than fine-tuning (sensitivity, clustering, writing the .gsz)
at the scale of a trained capture, on the CPU.

The rasterizer benchmark's seeded scene (bench/rasterizer.py) with N Gaussians, seen by V cameras on a
sphere at distance 3 looking at the origin, W x W pixels. Usage:
python bench/compress_stages.py [--gaussians 160000] [--views 100] [--size 200] [--codec lzma]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rasterizer import bench_scene

from gstrim.camera import Camera
from gstrim.compress.codebooks import ClusterSettings, build_codebooks
from gstrim.compress.sensitivity import sensitivity
from gstrim.compress.stages import CompressConfig
from gstrim.io.container import codec_choices
from gstrim.io.gsz import write_gsz


def orbit_cameras(views: int, size: int) -> list[Camera]:
    f = 0.5 * size / math.tan(math.radians(15))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    cameras = []
    for k in range(views):  # a Fibonacci sphere of viewpoints
        z = 1 - 2 * (k + 0.5) / views
        phi = k * math.pi * (3 - math.sqrt(5))
        eye = 3 * np.array([math.sqrt(1 - z * z) * math.cos(phi), math.sqrt(1 - z * z) * math.sin(phi), z])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 0.0, 1.0] if abs(z) < 0.99 else [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        viewmat = np.eye(4)
        viewmat[:3, :3], viewmat[:3, 3] = R, -R @ eye
        cameras.append(Camera(f"v{k}", size, size, K, torch.tensor(viewmat, dtype=torch.float32)))
    return cameras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=160_000)
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--codec", default=CompressConfig().codec, choices=codec_choices())
    args = parser.parse_args()
    scene = bench_scene(args.gaussians)
    scene = type(scene)(**{k: v.detach() for k, v in scene.params().items()})
    cameras = orbit_cameras(args.views, args.size)
    defaults = CompressConfig()
    t0 = time.perf_counter()
    sens = sensitivity(scene, cameras)
    t1 = time.perf_counter()
    color = ClusterSettings(defaults.codebook_sh, defaults.keep_sh, defaults.kmeans_steps_sh, defaults.kmeans_batch)
    shape = ClusterSettings(defaults.codebook_shape, defaults.keep_shape, defaults.kmeans_steps_shape,
                            defaults.kmeans_batch)
    cs, report = build_codebooks(scene, sens, color, shape, torch.Generator().manual_seed(0))
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        size = write_gsz(Path(tmp) / "s.gsz", cs, codec=args.codec)
    t3 = time.perf_counter()
    print(f"{args.gaussians:,} Gaussians, {args.views} views of {args.size}^2, threads {torch.get_num_threads()}")
    print(f"  sensitivity {t1 - t0:6.1f} s")
    print(f"  clustering  {t2 - t1:6.1f} s  ({len(cs.sh_dc):,} colour / {len(cs.rotations):,} shape entries, "
          f"{report.removed:,} removed)")
    print(f"  write       {t3 - t2:6.1f} s  ({size / 1e6:.2f} MB, {args.codec})")
    print(f"  total       {t3 - t0:6.1f} s")


if __name__ == "__main__":
    main()

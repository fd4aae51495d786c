"""Decode time of a `.gsz` version 2 file at the scale of a capture (issue 27's aim: a million Gaussians in
<= 2 s on 2 CPU cores).

A seeded scene of N Gaussians (bench/rasterizer.py's), made into a codebook scene as `gstrim compress`
writes one without fine-tuning: 4,096 colour and shape entries, a share of the Gaussians with view-dependent
colour, positions on a 16-bit grid. Prints the write time, the size, bits per Gaussian, and the median of
`read_gsz(path).decode()` over a few repeats. Usage:
python bench/gsz_decode.py [--gaussians 1000000] [--sh-share 0.25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rasterizer import bench_scene

from gstrim.io.gsz import CodebookScene, read_gsz, write_gsz
from gstrim.io.positions import PositionGrid

ENTRIES = 4096


def codebook_scene(n: int, sh_share: float, seed: int = 0) -> CodebookScene:
    scene = bench_scene(n)
    plain = CodebookScene.from_scene(type(scene)(**{k: v.detach() for k, v in scene.params().items()}))
    g = torch.Generator().manual_seed(seed)
    entries = min(ENTRIES, n)
    sh_index = torch.randint(0, entries, (n,), generator=g)
    sh_index[torch.rand(n, generator=g) >= sh_share] = -1
    return CodebookScene(means=plain.means, opacities=plain.opacities, scale_norms=plain.scale_norms,
                         sh_dc=plain.sh_dc, sh_rest=plain.sh_rest[:entries].clone(),
                         rotations=plain.rotations[:entries].clone(), unit_scales=plain.unit_scales[:entries].clone(),
                         sh_index=sh_index, shape_index=torch.randint(0, entries, (n,), generator=g),
                         shared_dc=False, grid=PositionGrid.fit(plain.means, 16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=1_000_000)
    parser.add_argument("--sh-share", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cs = codebook_scene(args.gaussians, args.sh_share)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.gsz"
        t0 = time.perf_counter()
        size = write_gsz(path, cs)
        written = time.perf_counter() - t0
        read_gsz(path).decode()  # untimed: numba's cached kernels load on the first call
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            read_gsz(path).decode()
            times.append(time.perf_counter() - t0)
    print(f"{args.gaussians:,} Gaussians, sh share {args.sh_share:g}, threads {torch.get_num_threads()}")
    print(f"  write  {written:6.2f} s  ({size / 1e6:.2f} MB, {8 * size / args.gaussians:.1f} bits per Gaussian)")
    print(f"  decode {statistics.median(times):6.2f} s  (median of {args.repeats}: read_gsz + decode)")


if __name__ == "__main__":
    main()

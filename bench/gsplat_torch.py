"""gstrim's CPU rasterizer against gsplat 1.5.3's own pipeline on the CPU: its `rasterization()` with the
CUDA-only calls replaced by the pure-PyTorch stand-ins of tests/gsplat_stand_ins.py (its `_torch_impl`
projection, a vectorised tile intersection, a per-tile dense blend with autograd for the backward), the
nearest thing to "gsplat on a CPU". Same scene and camera as bench/rasterizer.py; forward + backward of the
image mean. Needs the dev extras (gsplat==1.5.3, pytest).

Usage: python bench/gsplat_torch.py [--cases 20k:256 100k:512] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest
import torch
from rasterizer import bench_camera, bench_scene, forward_backward, times

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["20k:256", "100k:512"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from gsplat_stand_ins import run_gsplat_on_cpu

    run_gsplat_on_cpu(pytest.MonkeyPatch())  # the patches last for this process
    print(f"threads: torch {torch.get_num_threads()}")
    print(f"{'case':<12}{'gstrim cpu ms':>15}{'gsplat torch ms':>17}{'ratio':>8}")
    for case in args.cases:
        count, size = case.split(":")
        n, size = int(count.rstrip("k")) * 1000, int(size)
        scene, camera = bench_scene(n), bench_camera(size)
        ours = times(lambda: forward_backward(scene, camera, "cpu"), 5)[0]  # noqa: B023 (called at once)
        t0 = time.perf_counter()
        theirs = times(lambda: forward_backward(scene, camera, "gsplat"), args.runs)[0]  # noqa: B023
        print(f"{case:<12}{ours * 1e3:>15.1f}{theirs * 1e3:>17.1f}{theirs / ours:>7.0f}x"
              f"   ({time.perf_counter() - t0:.0f} s for gsplat's runs)")


if __name__ == "__main__":
    main()

"""How the CPU rasterizer's fwd+bwd time and peak memory grow with the Gaussian count and the image size.

Usage: python bench/scaling.py [--counts 10000 100000 1000000] [--sizes 256 512 1024] [--runs 3]
Each case runs in its own process on `bench/rasterizer.py`'s seeded scene and camera (peak RSS is per
process), prints a Markdown table, then fits time ~ N^a x pixels^b by least squares on the logs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np


def run_case(n: int, size: int, runs: int) -> dict:
    """fwd+bwd median seconds and peak RSS (MB) of one case, measured in this process."""
    import resource

    from rasterizer import bench_camera, bench_scene, forward_backward, times

    scene, camera = bench_scene(n), bench_camera(size)
    seconds = times(lambda: forward_backward(scene, camera), runs)[0]
    return {"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--case", type=int, nargs=2, help=argparse.SUPPRESS)  # (N, size): run one, print JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case, args.runs)))
        return
    print("| Gaussians | image | fwd+bwd ms | peak RSS MB |")
    print("|---|---|---|---|")
    rows = []
    for n in args.counts:
        for size in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--case", str(n), str(size), "--runs", str(args.runs)],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((n, size * size, result["seconds"]))
            print(f"| {n:,} | {size}^2 | {1e3 * result['seconds']:.1f} | {result['rss_mb']:.0f} |", flush=True)
    logs = np.log(np.array(rows, dtype=np.float64))
    design = np.column_stack([logs[:, 0], logs[:, 1], np.ones(len(rows))])
    (a, b, _), *_ = np.linalg.lstsq(design, logs[:, 2], rcond=None)
    print(f"fit: time ~ N^{a:.2f} x pixels^{b:.2f}")


if __name__ == "__main__":
    main()

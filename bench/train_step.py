"""Time of one training iteration (render + loss + backward + Adam) on a real capture, and peak memory.

Usage: python bench/train_step.py [DATA] [--images images_4] [--steps 30]
Default DATA: ../shared/data/cup (COLMAP, images_4, 200x150), initialised from its sparse points.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

from gstrim.data import load_dataset
from gstrim.train import TrainConfig, Trainer
from gstrim.train.init import initial_scene

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cup"


def bench_trainer(description: str, steps: int):
    """(arguments, dataset, trainer at SH degree 3) from the command line shared by the training benches."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--images", default="images_4")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--model", help="start from a trained point_cloud.ply instead of the sparse points")
    args = parser.parse_args()
    ds = load_dataset(args.data, images=args.images)
    if args.model:
        from gstrim.io import load_scene

        scene = load_scene(args.model)
    else:
        scene = initial_scene(ds)
    trainer = Trainer(scene, ds.train, extent=ds.extent, config=TrainConfig(iterations=100_000))
    trainer.step = 3_000  # SH degree 3, as most of a run
    return args, ds, trainer


def main() -> None:
    args, ds, trainer = bench_trainer(__doc__.splitlines()[0], steps=30)
    for _ in range(3):  # warm-up: kernel cache load, image decoding
        trainer.train_step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    w, h = ds.train[0].width, ds.train[0].height
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{Path(args.data).name} {w}x{h}, {len(trainer):,} Gaussians: one iteration median "
          f"{statistics.median(times) * 1e3:.1f} ms (min {min(times) * 1e3:.1f}), peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

"""Render speed of saved scenes on their test views: median milliseconds per frame and FPS.

Usage: python bench/render_fps.py MODEL [MODEL ...] [--data DATA --images images_4 --downscale 2]
       [--views 20] [--device cpu|cuda|auto]
MODEL: a `.ply`, model folder or checkpoint; the dataset defaults to the one recorded in the model folder.
`gstrim trim` also times renders, but inside a long run, where anything else on the machine skews the figure;
this re-times finished runs side by side (one warm-up render, then the median over the views).
"""

from __future__ import annotations

import argparse
import statistics

from gstrim.data import load_dataset
from gstrim.evaluate import render_views
from gstrim.io.model import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data")
    parser.add_argument("--images")
    parser.add_argument("--downscale", type=int)
    parser.add_argument("--views", type=int, default=20, help="the first N test views")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    given = {k: v for k, v in (("images", args.images), ("downscale", args.downscale)) if v is not None}
    print("| model | Gaussians | ms / frame (median) | FPS |")
    print("|---|---|---|---|")
    for path in args.models:
        model = load_model(path)
        data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
        dataset = load_dataset(data, **{**recorded, **given})
        cameras = (dataset.test or dataset.train)[: args.views]
        seconds = [s for *_, s in render_views(model.scene, cameras, background=dataset.background,
                                                device=args.device, description=str(path))]
        ms = 1000 * statistics.median(seconds)
        print(f"| {path} | {len(model.scene):,} | {ms:.1f} | {1000 / ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()

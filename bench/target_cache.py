"""Photo-free targets, cached or rendered when needed: the time per fine-tuning iteration and the memory of
the cache, on one scene.

Usage: python bench/target_cache.py SCENE [--views 120] [--resolution 200] [--iterations 200]
Prints, for `--targets cache` and `--targets live`: the time to build the dataset (the cache renders every
view once), the median milliseconds per iteration of the trim's fine-tuning loop, and the cache's bytes.
"""

from __future__ import annotations

import argparse
import statistics
import time

from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.io.model import load_model
from gstrim.prune.strategy import TrimConfig, finetune_parameters
from gstrim.train.trainer import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene")
    parser.add_argument("--views", type=int, default=120)
    parser.add_argument("--resolution", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    model = load_model(args.scene)
    for targets in ("cache", "live"):
        t0 = time.perf_counter()
        config = ViewConfig(views=args.views, resolution=args.resolution, targets=targets, ignore_cameras_json=True)
        dataset, virtual = virtual_dataset(model.scene, config, model.source)
        build = time.perf_counter() - t0
        cached = sum(c._stored.numel() for c in dataset.train + dataset.test if c._stored is not None)
        parameterization = finetune_parameters(TrimConfig(preset="cpu"))
        trainer = Trainer(model.scene, dataset.train, extent=dataset.extent,
                          config=TrainConfig(iterations=args.iterations, sh_degree=model.scene.sh_degree,
                                             sh_interval=0, lrs=parameterization.lrs),
                          background=dataset.background, parameterization=parameterization)
        times = []
        for _ in range(args.iterations):
            t = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - t)
        print(f"{targets:5s}  build {build:6.1f} s  {1000 * statistics.median(times[10:]):7.1f} ms/iteration "
              f"(median after 10)  cache {cached / 1e6:7.1f} MB  ({len(dataset.train)} train views, "
              f"{dataset.train[0].width}x{dataset.train[0].height}, {virtual.side})")


if __name__ == "__main__":
    main()

"""Where one training iteration spends its time: a stage table (milliseconds, median over steps).

Usage: python bench/profile_step.py [DATA] [--images images_4] [--model point_cloud.ply] [--steps 20]
Stages are timed around the calls the trainer makes (the Numba per-Gaussian stage, projection and SH, and
the pixel stage, forward and backward; the loss; the rest of the autograd backward; Adam), so the table adds
up to one `Trainer.train_step`.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from train_step import bench_trainer  # bench/ is the script's folder, first on sys.path

from gstrim.render import cpu as cpu_backend
from gstrim.train import loss as loss_module

timings: dict[str, list[float]] = defaultdict(list)


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name].append(time.perf_counter() - t0)
        return out
    return wrapper


def main() -> None:
    args, ds, trainer = bench_trainer(__doc__.splitlines()[0], steps=20)
    for function, stage in ((cpu_backend.ProjectAndShade, "Gaussian stage"), (cpu_backend.RasterizePixels,
                                                                             "pixel stage")):
        forward, backward = function.forward, function.backward
        function.forward = staticmethod(timed(f"{stage} fwd (Numba)", forward))
        function.backward = staticmethod(timed(f"{stage} bwd (Numba)", backward))
    import gstrim.train.trainer as trainer_module

    trainer_module.photometric_loss = timed("loss fwd (L1 + SSIM)", loss_module.photometric_loss)
    steps = {name: opt.step for name, opt in trainer.optimizers.items()}
    for name, opt in trainer.optimizers.items():
        opt.step = timed("Adam (6 optimizers)", steps[name])
    original_backward = torch.Tensor.backward
    torch.Tensor.backward = timed("backward (all)", original_backward)

    totals = []
    for i in range(args.steps + 3):
        if i == 3:  # after warm-up: kernel cache load, image decoding
            timings.clear()
        t0 = time.perf_counter()
        trainer.train_step()
        totals.append(time.perf_counter() - t0)
    totals = totals[3:]
    torch.Tensor.backward = original_backward

    def per_step(name: str) -> float:
        values = timings[name]
        groups = len(values) // args.steps
        return statistics.median(sum(values[k * groups:(k + 1) * groups]) for k in range(args.steps)) * 1e3

    rows = {name: per_step(name) for name in timings}
    numba_backward = rows["pixel stage bwd (Numba)"] + rows["Gaussian stage bwd (Numba)"]
    rows["backward: torch ops (loss, opacity sigmoid)"] = rows["backward (all)"] - numba_backward
    total = statistics.median(totals) * 1e3
    # the backward rows split "backward (all)"; everything else is disjoint
    listed = sum(v for k, v in rows.items() if "bwd" not in k and not k.startswith("backward: "))
    rows["other (Python, view choice, PSNR, strategy)"] = total - listed
    w, h = ds.train[0].width, ds.train[0].height
    print(f"{Path(args.data).name} {w}x{h}, {len(trainer):,} Gaussians, {torch.get_num_threads()} threads: "
          f"one iteration median {total:.1f} ms")
    print("| stage | ms | share |")
    print("|---|---|---|")
    for name, ms in sorted(rows.items(), key=lambda kv: -kv[1]):
        if name != "backward (all)":
            print(f"| {name} | {ms:.1f} | {100 * ms / total:.0f} % |")


if __name__ == "__main__":
    main()

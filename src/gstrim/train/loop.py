"""Fitting a `Trainer` to its last iteration inside a model folder: progress, checkpoints, saved scenes,
resume (`RunFolder.fit` and `RunFolder.resume` call it for every verb that optimises). A checkpoint is written
every `checkpoint_every` iterations, on Ctrl-C and at the end; each replaces the previous one atomically,
so an interrupted run resumes from its last checkpoint and finishes exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from gstrim import progress, timing
from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.formats import save_scene
from gstrim.io.model import checkpoint_path, latest_checkpoint, load_checkpoint, point_cloud_path
from gstrim.train.trainer import Trainer

STATS_NAME = "train_stats.jsonl"
STATS_EVERY = 100  # iterations per line of train_stats.jsonl
READ_EVERY = 25  # iterations between reads of the loss and PSNR from the device (a divisor of STATS_EVERY)


def save_checkpoint(trainer: Trainer, model_dir: Path, extra: dict | None = None) -> Path:
    path = checkpoint_path(model_dir, trainer.step)
    with atomic_path(path) as tmp:
        torch.save({**trainer.state_dict(), **(extra or {})}, tmp)
    for old in path.parent.glob("chkpnt*.pt"):  # keep only the newest
        if old != path:
            old.unlink(missing_ok=True)
    return path


def resume(trainer: Trainer, model_dir: Path) -> dict:
    """Load the newest checkpoint of `model_dir` into `trainer`; returns the checkpoint."""
    path = latest_checkpoint(model_dir)
    if path is None:
        raise GstrimError("nothing to resume: no checkpoints/chkpnt*.pt", model_dir)
    ckpt = load_checkpoint(path)
    trainer.load_state_dict(ckpt)
    return ckpt


def fit(trainer: Trainer, model_dir: Path, *, checkpoint_every: int = 1_000, save_iterations=(),
        description: str = "train", elapsed: float = 0.0) -> float:
    """Train until `trainer.config.iterations`; returns the total wall time in seconds (including the
    `elapsed` time of earlier, interrupted parts). The loss and PSNR stay on the device and are read every
    READ_EVERY iterations: a read waits for the GPU to finish, so reading every iteration would stall it."""
    model_dir = Path(model_dir)
    total = trainer.config.iterations
    saves = {int(s) for s in save_iterations if 0 < int(s) <= total} | {total}
    stats_path = model_dir / STATS_NAME
    start = time.perf_counter() - elapsed
    window: list[tuple[float, float, int]] = []  # (mean loss, mean PSNR, iterations) of each read
    pending, unread = None, 0  # [loss, PSNR] summed on the device since the last read, and how many
    ema_loss = ema_psnr = None
    rate_t, rate_step = time.perf_counter(), trainer.step

    def wall() -> float:
        return time.perf_counter() - start

    with progress.task(description, total) as advance, timing.phase("fit") as fitting:
        advance(trainer.step)
        try:
            while trainer.step < total:
                fitting.items += 1
                record = trainer.train_step()
                values = torch.stack([record["loss"], record["psnr"]])
                pending, unread = (values if pending is None else pending + values), unread + 1
                fields = {}
                if trainer.step % READ_EVERY == 0 or trainer.step == total:
                    loss, psnr = (pending / unread).tolist()
                    window.append((loss, psnr, unread))
                    pending, unread = None, 0
                    ema_loss = loss if ema_loss is None else 0.6 * ema_loss + 0.4 * loss
                    ema_psnr = psnr if ema_psnr is None else 0.6 * ema_psnr + 0.4 * psnr
                    now = time.perf_counter()
                    rate = (trainer.step - rate_step) / max(now - rate_t, 1e-9)
                    rate_t, rate_step = now, trainer.step
                    fields = {"loss": f"{ema_loss:.4f}", "psnr": f"{ema_psnr:.2f}", "N": f"{len(trainer):,}",
                              "it/s": f"{rate:.1f}"}
                advance(1, **fields)
                if trainer.step % STATS_EVERY == 0 or trainer.step == total:
                    _append_stats(stats_path, trainer, window, wall())
                    window = []
                if trainer.step in saves:
                    with timing.phase("write"):
                        save_scene(point_cloud_path(model_dir, trainer.step), trainer.scene())
                if trainer.step % checkpoint_every == 0 or trainer.step == total:
                    with timing.phase("checkpoint"):
                        save_checkpoint(trainer, model_dir, {"elapsed": wall()})
        except KeyboardInterrupt:
            save_checkpoint(trainer, model_dir, {"elapsed": wall()})
            progress.log(f"interrupted at iteration {trainer.step}; checkpoint saved, continue with --resume")
            raise
    return wall()


def _append_stats(path: Path, trainer: Trainer, window: list[tuple[float, float, int]], wall: float) -> None:
    if not window:
        return
    count = sum(n for _, _, n in window)
    entry = {
        "step": trainer.step,
        "loss": sum(loss * n for loss, _, n in window) / count,
        "psnr": sum(psnr * n for _, psnr, n in window) / count,
        "gaussians": len(trainer),
        "wall_s": round(wall, 2),
    }
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")

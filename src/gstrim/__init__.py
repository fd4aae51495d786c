"""gstrim: make trained 3D Gaussian Splatting scenes small and fast without losing quality."""

from __future__ import annotations

from pathlib import Path

from gstrim.errors import GstrimError
from gstrim.scene import GaussianScene

__version__ = "0.1.0"


def trim(scene: str | Path, output: str | Path, *, data: str | Path | None = None, data_options: dict | None = None,
         device: str = "auto", resume: bool = False, evaluate_test: bool = True, **config):
    """`gstrim trim` in Python: prune the scene (a .ply, a model folder or a checkpoint) into `output` and
    return a `TrimResult` (scene, before/after evaluations, summary). `config` takes the fields of
    `gstrim.prune.trim.TrimConfig`: score, gamma, target_removal, target_count, target_mb, steps, every,
    finetune, one_shot, no_prune, stats, stats_views, seed."""
    from gstrim.prune.run import trim_scene
    from gstrim.prune.trim import TrimConfig

    return trim_scene(None if resume else scene, output, data=data, data_options=data_options,
                      config=None if resume else TrimConfig(**config), device=device, resume=resume,
                      evaluate_test=evaluate_test)


__all__ = ["GaussianScene", "GstrimError", "__version__", "trim"]

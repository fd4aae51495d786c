"""gstrim: make trained 3D Gaussian Splatting scenes small and fast without losing quality."""

from __future__ import annotations

import os
from pathlib import Path

# Numba caches compiled kernels in a user cache folder, not beside the installed sources (which may be
# read-only or shared); set before anything imports Numba.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                             / "gstrim" / "numba"))

from gstrim.errors import GstrimError
from gstrim.version import __version__  # noqa: E402


def __getattr__(name: str):
    """`gstrim.GaussianScene` on first use: importing gstrim alone does not import torch (a second or two),
    so `gstrim --version`-like uses and subprocess workers that need only a submodule start fast."""
    if name == "GaussianScene":
        from gstrim.scene import GaussianScene

        return GaussianScene
    raise AttributeError(f"module 'gstrim' has no attribute {name!r}")


def trim(scene: str | Path, output: str | Path, *, data: str | Path | None = None, data_options: dict | None = None,
         device: str = "auto", resume: bool = False, evaluate_test: bool = True, **config):
    """`gstrim trim` in Python: prune the scene (a .ply, a model folder or a checkpoint) into `output` and
    return a `RunResult` (scene, before/after evaluations, summary). `config` takes the fields of
    `gstrim.prune.strategy.TrimConfig`: score, gamma, target_removal, target_count, target_mb, preset, steps,
    every, finetune, one_shot, no_prune, stats, stats_views, seed."""
    from gstrim.pipelines.inputs import Inputs, RunControl
    from gstrim.pipelines.trim import trim_scene
    from gstrim.prune.strategy import TrimConfig

    inputs = Inputs(None if resume else scene, data, dict(data_options or {}))
    control = RunControl(resume=resume, no_eval=not evaluate_test, device=device)
    return trim_scene(inputs, output, None if resume else TrimConfig(**config), control)


__all__ = ["GaussianScene", "GstrimError", "__version__", "trim"]

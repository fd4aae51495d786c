"""`gstrim trim` in Python: load a trained scene and its photos, prune and fine-tune in a run folder,
evaluate before and after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstrim import progress
from gstrim.data import Dataset
from gstrim.data.virtual import ViewConfig
from gstrim.errors import ConfigError
from gstrim.io.model import Model
from gstrim.prune.strategy import TrimConfig, TrimStrategy, finetune_parameters
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.run_folder import open_inputs
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer


@dataclass
class TrimResult:
    model_dir: Path
    scene: GaussianScene
    input_count: int
    before: Evaluation | None
    after: Evaluation | None
    wall_s: float
    summary: RunSummary


def _stats_cameras(dataset: Dataset, views: int | None, seed: int):
    if views is None or views >= len(dataset.train):
        return dataset.train
    pick = np.random.default_rng(seed).permutation(len(dataset.train))[:views]
    return [dataset.train[i] for i in sorted(pick)]


def trim_scene(scene_path: str | Path | None, out_dir: str | Path, *, data: str | Path | None = None,
               data_options: dict | None = None, config: TrimConfig | None = None, device: str = "auto",
               resume: bool = False, checkpoint_every: int = 1_000, evaluate_test: bool = True,
               input_evaluation: Evaluation | None = None, iteration: int | None = None,
               nonfinite: str = "error", views: ViewConfig | None = None, photo_free: bool = False) -> TrimResult:
    """Trim `scene_path` (a .ply, model folder or checkpoint) into `out_dir`. `input_evaluation`: the input's
    test evaluation when already known (another trim of the same scene made it), which skips that pass.
    With `resume=True`, continue the run in `out_dir` with the settings it was started with. `iteration` and
    `nonfinite` choose the model folder's iteration and what to do with non-finite Gaussians (`load_model`).
    Without photos (none given or recorded, or `photo_free`) the scene teaches itself on virtual views
    (`views`; `data.virtual`)."""
    out_dir = Path(out_dir)
    inputs = open_inputs(out_dir, "trim", scene_path, data=data, data_options=data_options, resume=resume,
                         iteration=iteration, nonfinite=nonfinite, views=views, photo_free=photo_free)
    model, folder = inputs.model, inputs.folder
    if inputs.settings is not None:
        config = TrimConfig(**inputs.settings)
    config = (config or TrimConfig()).resolved(resolve_device(device))
    config.validate()
    if not resume:
        progress.log(f"trim schedule: {config.preset} preset, {config.steps} prunes {config.every} apart, "
                     f"then {config.finetune:,} fine-tuning iterations ({config.iterations:,} in all)")
    dataset = inputs.dataset(device)
    scene = model.scene

    stats = _checkpoint_stats(model, len(scene)) if config.uses_checkpoint_stats else None
    strategy = TrimStrategy(config, _stats_cameras(dataset, config.stats_views, config.seed), dataset.background,
                            len(scene), scene.sh_degree, checkpoint_stats=stats)
    parameterization = finetune_parameters(config)
    train_config = TrainConfig(iterations=config.iterations, sh_degree=scene.sh_degree, sh_interval=0,
                               lrs=parameterization.lrs, seed=config.seed, device=device)
    trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=train_config, strategy=strategy,
                      background=dataset.background, parameterization=parameterization)

    if folder is not None:
        elapsed = folder.resume(trainer)
        before = folder.read_evaluation("input")
    else:
        if model.checkpoint is not None:  # continue the training run's Adam moments, as the authors' code does
            trainer.load_optimizer_state(model.checkpoint["optimizers"])
        folder = inputs.create_folder(out_dir, "trim", {"trim": config.to_dict()})
        folder.write_layout(dataset, scene.sh_degree)
        before = folder.evaluate_input(scene, dataset, device, input_evaluation) if evaluate_test else None
        elapsed = 0.0
    wall = folder.fit(trainer, checkpoint_every=checkpoint_every, description="trim", elapsed=elapsed)
    result_scene = trainer.scene()
    after = folder.evaluate(result_scene, f"ours_{trainer.step}", dataset, device) if evaluate_test else None
    variant = "no-prune" if config.no_prune else ("one-shot" if config.one_shot else "iterative")
    summary = RunSummary("trim", len(scene), len(result_scene), scene.sh_degree, trainer.step, wall,
                         input=before.metrics() if before else None, output=after.metrics() if after else None,
                         details={"variant": variant, "score": config.score, "preset": config.preset,
                                  **inputs.details()})
    folder.write_summary(summary)
    return TrimResult(out_dir, result_scene, len(scene), before, after, wall, summary)


def _checkpoint_stats(model: Model, n: int) -> dict:
    state = (model.checkpoint or {}).get("strategy_state", {})
    if "grad2d" not in state or "count" not in state or len(state["grad2d"]) != n:
        raise ConfigError("{stats} checkpoint needs a training checkpoint (chkpnt*.pt) with gradient statistics",
                          "stats", path=model.source)
    if not bool((state["count"] > 0).any()):
        # all zero: no view was drawn since the statistics were last reset; the rule would prune by opacity alone
        raise ConfigError("{stats} checkpoint: this checkpoint's gradient statistics are empty (no view since "
                          "they were last reset); use {stats} refresh", "stats", path=model.source)
    return {"grad2d": state["grad2d"], "count": state["count"]}

"""`gstrim trim`: Trimming the Fat on a trained scene in a run folder, evaluated before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gstrim import progress
from gstrim.data import Dataset
from gstrim.errors import ConfigError
from gstrim.io.model import Model
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.run import Outcome, Run, RunResult
from gstrim.pipelines.run_folder import RunFolder
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import TrimConfig, TrimStrategy, finetune_parameters
from gstrim.records import Evaluation
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer


def _stats_cameras(dataset: Dataset, views: int | None, seed: int):
    if views is None or views >= len(dataset.train):
        return dataset.train
    pick = np.random.default_rng(seed).permutation(len(dataset.train))[:views]
    return [dataset.train[i] for i in sorted(pick)]


class TrimRun(Run):
    """Trim a scene (a .ply, model folder or checkpoint): prune and fine-tune (`prune.strategy.TrimStrategy`).
    Without photos (none given or recorded, or `photo_free`) the scene teaches itself on virtual views."""

    verb, config_cls = "trim", TrimConfig

    def announce(self) -> None:
        c = self.config
        progress.log(f"trim schedule: {c.preset} preset, {c.steps} prunes {c.every} apart, then {c.finetune:,} "
                     f"fine-tuning iterations ({c.iterations:,} in all)")

    def cpu_kernels(self) -> tuple[str, ...]:
        config = self.config.with_recipe(self.opened.data_kind)
        needs = () if config.no_prune else SCORES[config.score].kernels
        return super().cpu_kernels() + needs

    def prepare(self, scene: GaussianScene, dataset: Dataset) -> None:
        if self.config.recipe == "auto":  # `resolved` applied a named recipe already; auto needs the dataset
            self.config = self.config.with_recipe(dataset.kind)  # recorded concrete, so a resume does the same
            c = self.config
            progress.log(f"trim recipe: {c.recipe} (score {c.score}, position rate "
                         + (f"restarted at {c.restart_lr:g} after each prune" if c.restart_lr else "constant")
                         + (f", the other rates at {c.restart_rates:g}x" if (c.restart_rates or 1) != 1 else "") + ")")
        config, model = self.config, self.opened.model
        stats = _checkpoint_stats(model, len(scene)) if config.uses_checkpoint_stats else None
        strategy = TrimStrategy(config, _stats_cameras(dataset, config.stats_views, config.seed), dataset.background,
                                len(scene), scene.sh_degree, checkpoint_stats=stats)
        parameterization = finetune_parameters(config)
        train_config = TrainConfig(iterations=config.iterations, sh_degree=scene.sh_degree, sh_interval=0,
                                   lrs=parameterization.lrs, seed=config.seed, device=self.control.device)
        self.trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=train_config, strategy=strategy,
                               background=dataset.background, parameterization=parameterization)

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        config, trainer = self.config, self.trainer
        wall = self.fit(folder, trainer, "trim")
        variant = "no-prune" if config.no_prune else ("one-shot" if config.one_shot else "iterative")
        return Outcome(trainer.scene(), f"ours_{trainer.step}", trainer.step, wall,
                       {"variant": variant, "recipe": config.recipe, "score": config.score, "preset": config.preset})

    def before_fit(self, trainer: Trainer) -> None:
        checkpoint = self.opened.model.checkpoint
        if checkpoint is not None:  # continue the training run's Adam moments, as the authors' code does
            trainer.load_optimizer_state(checkpoint["optimizers"])


def trim_scene(inputs: Inputs | str | Path | None, out_dir: str | Path, config: TrimConfig | None = None,
               control: RunControl | None = None, known_input: Evaluation | None = None) -> RunResult:
    """Trim `inputs` (a scene path or `Inputs`) into `out_dir`; `known_input`: the input's test evaluation when
    another trim of the same scene made it, which skips that pass. With `control.resume`, continue the run in
    `out_dir` with the settings it was started with."""
    return TrimRun(inputs, out_dir, config, control, known_input).execute()


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

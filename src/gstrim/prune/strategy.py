"""Trimming the Fat as a training `Strategy`, and its configuration.

Schedule (Ali et al. 2024, Sec. 4.1; the authors' `train_prune.py`): a prune at the loaded model, then one
every `every` iterations, `steps` prunes in all, then `finetune` iterations; position learning rate
constant at 1.6e-6 x extent, no densification, SH at the scene's degree from the start. Every variant
(iterative, `one_shot`, `no_prune`) runs the same total number of iterations, so they compare fairly.
The schedule comes from a preset: `paper` on a GPU, `cpu` (a fifth of it) on the CPU rasterizer, unless
given. What is pruned and how the survivors move comes from a recipe: `paper` (the published method) or
one of gstrim's (docs/pruning.md); a field given explicitly wins over both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from gstrim import progress, timing
from gstrim.camera import Camera
from gstrim.errors import ConfigError
from gstrim.io.formats import FORMATS
from gstrim.options import option
from gstrim.prune.keep import check_gamma, prune_mask_count, prune_mask_gamma, survivors_schedule
from gstrim.prune.scores import SCORES, gradient_score
from gstrim.scene import GaussianScene
from gstrim.train import ops
from gstrim.train.optim import LearningRates
from gstrim.train.parameterization import RawParameters
from gstrim.train.strategy import Strategy, mean_grad2d

PRESETS = {
    # the paper's schedule: 10 prunes 500 iterations apart, then 10,000 fine-tuning iterations
    "paper": {"steps": 10, "every": 500, "finetune": 10_000},
    # a fifth of it, for CPU runs on small captures: 10 prunes 100 apart, then 2,000 iterations
    "cpu": {"steps": 10, "every": 100, "finetune": 2_000},
}
RECIPES = {
    # Trimming the Fat as published: eq. 5's OR of opacity and gradient, the position rate constant at 1.6e-6
    "paper": {"score": "gradient", "restart_lr": None, "restart_rates": 1.0},
    # synthetic objects (docs/pruning.md, "No loss at 80 %"): the OR with the largest blending weight, and the
    # position rate restarted at 3DGS's initial 1.6e-4 after each prune: +0.47 dB over the paper's on
    # chair_400 at 80 %, +0.62 on the built-in example; -0.31 dB on the beer capture, where it over-fits.
    # The other rates restart too, at 3x ("Object scenes, round three"): +0.22 dB on chair, +0.18 on the example
    "objects": {"score": "gradient-visibility", "restart_lr": 1.6e-4, "restart_rates": 3.0},
}
# `auto` (the default) picks by what the targets are: renders of a synthetic object (a Blender dataset) take
# the objects recipe; photos of a capture (COLMAP) the paper's, where moving the survivors over-fits the photos'
# noise; photo-free runs the paper's too (objects wins on four isolated splats but loses on a capture's
# reconstruction, cup: docs/pruning.md)
AUTO_RECIPES = {"blender": "objects", "colmap": "paper", "virtual": "paper"}
DEFAULT_RECIPE = "auto"


def recipe_for(data_kind: str | None) -> str:
    """The recipe `auto` means for a dataset of this kind (the paper's when none is known)."""
    return AUTO_RECIPES.get(data_kind, "paper")


STATS = ("refresh", "checkpoint")
DEFAULT_REMOVAL = 0.75  # the paper's headline: up to 75 % of the Gaussians removed without loss
SIZE_FORMAT = "ply"  # what --target-mb measures: the INRIA .ply the run writes


def preset_for(device) -> str:
    """The schedule that fits the device: the paper's on a GPU, a fifth of it on the CPU rasterizer."""
    return "paper" if torch.device(device).type == "cuda" else "cpu"


@dataclass
class TrimConfig:
    recipe: str = option(DEFAULT_RECIPE, "the score and rate schedules as a whole: paper (Trimming the Fat as "
                         "published), objects (--score gradient-visibility --restart-lr 1.6e-4 --restart-rates 3, "
                         "for synthetic objects and isolated photo-free splats) or auto (objects for a Blender "
                         "dataset, paper otherwise); --score, --restart-lr and --restart-rates override it",
                         choices=lambda: ["auto", *RECIPES])
    score: str | None = option(None, "importance score (default: the recipe's): gradient (Trimming the Fat: kept "
                               "if opacity OR gradient is high), gradient-visibility (OR with the largest blending "
                               "weight instead of the opacity), or one ranked alone", choices=lambda: list(SCORES))
    gamma: float | None = option(None, "quantile level per prune step (paper: 0.225-0.6)", exclusive="target")
    target_removal: float | None = option(None, f"fraction of the Gaussians to remove (default {DEFAULT_REMOVAL})",
                                          exclusive="target")
    target_count: int | None = option(None, "Gaussians to keep", exclusive="target")
    target_mb: float | None = option(None, "largest .ply size to reach, in MB", exclusive="target")
    preset: str | None = option(None, "schedule: paper (10 prunes 500 apart + 10000 fine-tuning iterations) or "
                                "cpu (100 apart + 2000); default: paper on a GPU, cpu on the CPU",
                                choices=lambda: list(PRESETS))
    steps: int | None = option(None, "number of prune steps (default: the preset's)")
    every: int | None = option(None, "iterations between prune steps (default: the preset's)")
    finetune: int | None = option(None, "fine-tuning iterations after the last prune step (default: the preset's)")
    one_shot: bool = option(False, "remove the whole target at once, then fine-tune", exclusive="variant")
    no_prune: bool = option(False, "fine-tune only (the fair baseline)", exclusive="variant")
    restart_lr: float | None = option(None, "position learning rate (x extent) to restart at after each prune "
                                      "step, decaying to 1.6e-6 by the next (default: the recipe's; paper: "
                                      "constant 1.6e-6)")
    restart_rates: float | None = option(None, "restart the opacity, scale, rotation and SH rates too: at this "
                                         "multiple of their 3DGS values after each prune step, decaying back to "
                                         "them by the next (default: the recipe's; paper: 1, constant)")
    stats: str = option("refresh", "refresh the gradient score before each prune, or reuse a training "
                        "checkpoint's statistics", choices=STATS)
    stats_views: int | None = option(None, "training views per gradient refresh (default: all)")
    seed: int = option(0, "seed of the view order and of --stats-views")

    # what a run recorded before a setting existed did (runs before recipes were the paper's)
    RECORDED_BEFORE = {"recipe": "paper", "restart_rates": 1.0}

    def to_dict(self) -> dict:
        return asdict(self)

    def with_recipe(self, data_kind: str | None = None) -> TrimConfig:
        """The recipe made concrete (`auto` by the dataset's kind) and its settings where no field was given."""
        recipe = recipe_for(data_kind) if self.recipe == "auto" else self.recipe
        if recipe not in RECIPES:
            raise ConfigError(f"unknown {{recipe}} {recipe!r}; use auto or one of {', '.join(RECIPES)}", "recipe")
        return replace(self, recipe=recipe,
                       **{k: v for k, v in RECIPES[recipe].items() if getattr(self, k) is None})

    def resolved(self, device) -> TrimConfig:
        """The run made concrete: the recipe (`auto` waits for the dataset: `with_recipe(kind)`), the preset
        (chosen by the device when not given), then the fields given."""
        preset = self.preset or preset_for(device)
        if preset not in PRESETS:
            raise ConfigError(f"unknown {{preset}} {preset!r}; use one of {', '.join(PRESETS)}", "preset")
        schedule = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in PRESETS[preset].items()}
        base = self if self.recipe == "auto" else self.with_recipe()
        return replace(base, preset=preset, **schedule)

    @property
    def has_target(self) -> bool:
        """A removal level is given (else the default, or a `--max-loss` search, chooses it)."""
        return any(getattr(self, t) is not None for t in ("gamma", "target_removal", "target_count", "target_mb"))

    @property
    def uses_checkpoint_stats(self) -> bool:
        """The prunes score by a training checkpoint's gradient statistics."""
        return self.stats == "checkpoint" and not self.no_prune

    @property
    def iterations(self) -> int:
        return self.steps * self.every + self.finetune

    def prune_iterations(self) -> list[int]:
        if self.no_prune:
            return []
        if self.one_shot:
            return [0]
        return [i * self.every for i in range(self.steps)]

    def validate(self) -> None:
        score = self.with_recipe().score
        if score not in SCORES:
            raise ConfigError(f"unknown {{score}} {score!r}; use one of {', '.join(SCORES)}", "score")
        if self.stats not in STATS:
            raise ConfigError(f"unknown {{stats}} {self.stats!r}; use refresh or checkpoint", "stats")
        if self.stats == "checkpoint" and SCORES[score].fn is not gradient_score:
            raise ConfigError("{stats} checkpoint reuses the mean gradient statistic; it needs {score} gradient",
                              "stats", "score")
        targets = ("gamma", "target_removal", "target_count", "target_mb")
        if sum(getattr(self, t) is not None for t in targets) > 1:
            raise ConfigError("give at most one of {gamma}, {target_removal}, {target_count}, {target_mb}", *targets)
        if self.one_shot and self.no_prune:
            raise ConfigError("give at most one of {one_shot}, {no_prune}", "one_shot", "no_prune")
        if self.gamma is not None:
            check_gamma(self.gamma)
            if self.one_shot:
                raise ConfigError("{one_shot} removes a target at once: give {target_removal}, {target_count} "
                                  "or {target_mb} instead of {gamma}", "one_shot", "target_removal", "target_count",
                                  "target_mb", "gamma")
        for name, low in (("steps", 1), ("every", 1), ("finetune", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"{{{name}}} must be at least {low}, got {value}", name)
        if self.stats_views is not None and self.stats_views < 1:
            raise ConfigError(f"{{stats_views}} must be at least 1, got {self.stats_views}", "stats_views")
        if self.restart_lr is not None and self.restart_lr <= 0:
            raise ConfigError(f"{{restart_lr}} must be positive, got {self.restart_lr}", "restart_lr")
        if self.restart_rates is not None and self.restart_rates < 1:
            raise ConfigError(f"{{restart_rates}} must be at least 1, got {self.restart_rates}", "restart_rates")
        if self.target_mb is not None and self.target_mb <= 0:
            raise ConfigError(f"{{target_mb}} must be positive, got {self.target_mb}", "target_mb")


def count_for_size(megabytes: float, sh_degree: int, format_name: str = SIZE_FORMAT) -> int:
    """The most Gaussians whose file in `format_name` is at most `megabytes` MB (sizes grow with the count)."""
    size = FORMATS[format_name].size
    per_gaussian = size(1, sh_degree) - size(0, sh_degree)
    count = max(int((megabytes * 1e6 - size(0, sh_degree)) // per_gaussian) + 1, 0)
    while count > 0 and size(count, sh_degree) > megabytes * 1e6:  # the count's digits in a header
        count -= 1
    return count


def final_count(n: int, sh_degree: int, config: TrimConfig) -> int | None:
    """The Gaussian count a target asks for (None for gamma, whose removal is what the rule gives)."""
    if config.no_prune or config.gamma is not None:
        return None
    if config.target_count is not None:
        return config.target_count
    if config.target_mb is not None:
        count = count_for_size(config.target_mb, sh_degree)
        if count < 1:
            raise ConfigError(f"{{target_mb}} {config.target_mb} leaves room for no Gaussian", "target_mb")
        return min(count, n)
    removal = DEFAULT_REMOVAL if config.target_removal is None else config.target_removal
    if not 0.0 <= removal < 1.0:
        raise ConfigError(f"{{target_removal}} must be in [0, 1), got {removal}", "target_removal")
    return round(n * (1.0 - removal))


class TrimStrategy(Strategy):
    """Prunes at the configured iterations by the configured score; nothing else changes the population."""

    def __init__(self, config: TrimConfig, stats_cameras: list[Camera], background, initial_count: int,
                 sh_degree: int, checkpoint_stats: dict | None = None):
        """`checkpoint_stats`: {"grad2d", "count"} of a training checkpoint, for `stats="checkpoint"`."""
        config = config.with_recipe()
        config.validate()
        if config.uses_checkpoint_stats and checkpoint_stats is None:
            raise ValueError("stats='checkpoint' needs the checkpoint's statistics")
        self.checkpoint_stats = checkpoint_stats
        self.config = config
        self.cameras = stats_cameras
        self.background = background
        target = final_count(initial_count, sh_degree, config)
        prunes = len(config.prune_iterations())
        self.survivors = (survivors_schedule(initial_count, prunes, count=target)
                          if target is not None and prunes else None)

    def initialize_state(self, n: int) -> dict:
        state = {"prunes_done": 0}
        if self.config.uses_checkpoint_stats:
            state |= self.checkpoint_stats
        return state

    def step_begin(self, params, optimizers, state, step, generator) -> None:
        iterations = self.config.prune_iterations()
        if state["prunes_done"] < len(iterations) and step >= iterations[state["prunes_done"]]:
            self.prune(params, optimizers, state)

    def _scores(self, params, state) -> tuple[torch.Tensor, torch.Tensor]:
        """(opacity, score) for the OR rule of eq. 5 (or the score's own `keep_with` in place of the opacity); a
        score ranked alone gives (score, score)."""
        scene = GaussianScene(**{k: v.detach() for k, v in params.items()})
        entry = SCORES[self.config.score]
        where = {"background": self.background, "device": str(scene.means.device)}
        if self.config.uses_checkpoint_stats:
            score = mean_grad2d(state["grad2d"], state["count"])
        else:
            score = entry.fn(scene, self.cameras, **where)
        if entry.keep_with is None:
            return score, score
        return entry.keep_with(scene, self.cameras, **where).cpu(), score

    def prune(self, params, optimizers, state) -> None:
        n = params["means"].shape[0]
        with timing.phase("scoring"):
            opacity, score = self._scores(params, state)
        if self.survivors is not None:
            mask = prune_mask_count(opacity, score, n - self.survivors[state["prunes_done"]])
        else:
            mask = prune_mask_gamma(opacity, score, self.config.gamma)
        if bool(mask.all()):
            raise ConfigError("this prune would remove every Gaussian; choose a smaller {gamma} or target", "gamma")
        state["prunes_done"] += 1
        mask = mask.to(params["means"].device)
        ops.remove(params, optimizers, state, mask)
        progress.log(f"prune {state['prunes_done']}: {n:,} -> {params['means'].shape[0]:,} Gaussians")


def finetune_parameters(config: TrimConfig) -> RawParameters:
    """3DGS rates with the position rate held at its final value, 1.6e-6 x extent (as after 30k steps); with
    `restart_lr`, the position rate restarts there at every prune step and decays back to 1.6e-6 by the next;
    with `restart_rates`, the other rates restart at that multiple of themselves the same way."""
    final = LearningRates().means_final
    config = config.with_recipe()
    boost = config.restart_rates or 1.0
    restarts = config.prune_iterations() if config.restart_lr is not None or boost != 1.0 else ()
    lrs = LearningRates(means=config.restart_lr or final, means_final=final)
    return RawParameters(lrs, restarts, boost)

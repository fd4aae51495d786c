"""Trimming the Fat as a training `Strategy` and a whole run (`gstrim trim`).

Schedule (Ali et al. 2024, Sec. 4.1; the authors' `train_prune.py`): a prune at the loaded model, then one
every `every` iterations, `steps` prunes in all, then `finetune` iterations; position learning rate
constant at 1.6e-6 x extent, no densification, SH at the scene's degree from the start. Every variant
(iterative, `one_shot`, `no_prune`) runs the same total number of iterations, so they compare fairly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import torch

from gstrim import progress
from gstrim.data.camera import Camera
from gstrim.errors import GstrimError
from gstrim.io.ply import ply_bytes
from gstrim.prune.keep import check_gamma, prune_mask_count, prune_mask_gamma, survivors_schedule
from gstrim.prune.scores import SCORES, gradient_statistics
from gstrim.scene import PARAM_NAMES, GaussianScene
from gstrim.train import ops
from gstrim.train.optim import LearningRates
from gstrim.train.strategy import Strategy, mean_grad2d

PRESETS = {
    # the paper's schedule: 10 prunes 500 iterations apart, then 10,000 fine-tuning iterations
    "paper": {"steps": 10, "every": 500, "finetune": 10_000},
    # a fifth of it, for CPU runs on small captures: 10 prunes 100 apart, then 2,000 iterations
    "cpu": {"steps": 10, "every": 100, "finetune": 2_000},
}
DEFAULT_REMOVAL = 0.75  # the paper's headline: up to 75 % of the Gaussians removed without loss


@dataclass
class TrimConfig:
    score: str = "gradient"
    gamma: float | None = None
    target_removal: float | None = None
    target_count: int | None = None
    target_mb: float | None = None
    steps: int = 10
    every: int = 500
    finetune: int = 10_000
    one_shot: bool = False
    no_prune: bool = False
    stats: str = "refresh"  # or "checkpoint": the statistics stored in a training checkpoint
    stats_views: int | None = None  # training views per refresh (default: all)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

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
        if self.score not in SCORES:
            raise GstrimError(f"unknown score {self.score!r}; use one of {', '.join(SCORES)}")
        if self.stats not in ("refresh", "checkpoint"):
            raise GstrimError(f"unknown --stats {self.stats!r}; use refresh or checkpoint")
        targets = [t for t in (self.gamma, self.target_removal, self.target_count, self.target_mb) if t is not None]
        if len(targets) > 1:
            raise GstrimError("give at most one of --gamma, --target-removal, --target-count, --target-mb")
        if self.gamma is not None:
            check_gamma(self.gamma)
            if self.one_shot:
                raise GstrimError("--one-shot removes a target at once: give --target-removal, --target-count "
                                  "or --target-mb instead of --gamma")
        if self.steps < 1 or self.every < 1 or self.finetune < 0:
            raise GstrimError("prune steps and their spacing must be positive, fine-tuning iterations >= 0")
        if self.target_mb is not None and self.target_mb <= 0:
            raise GstrimError(f"--target-mb must be positive, got {self.target_mb}")


@cache
def ply_layout(sh_degree: int) -> tuple[int, int]:
    """(header bytes without the digits of the vertex count, bytes per Gaussian) of the INRIA .ply gstrim
    writes, measured on the writer itself."""
    empty = GaussianScene.empty(sh_degree)
    one, two = (len(ply_bytes(GaussianScene(**{k: torch.zeros((n, *v.shape[1:])) for k, v in empty.params().items()})))
                for n in (1, 2))
    return one - (two - one) - 1, two - one


def ply_size_mb(n: int, sh_degree: int) -> float:
    header, per_gaussian = ply_layout(sh_degree)
    return (header + len(str(n)) + n * per_gaussian) / 1e6


def final_count(n: int, sh_degree: int, config: TrimConfig) -> int | None:
    """The Gaussian count a target asks for (None for --gamma, whose removal is what the rule gives)."""
    if config.no_prune or config.gamma is not None:
        return None
    if config.target_count is not None:
        return config.target_count
    if config.target_mb is not None:
        header, per_gaussian = ply_layout(sh_degree)
        count = int((config.target_mb * 1e6 - header) // per_gaussian)
        while count > 0 and ply_size_mb(count, sh_degree) > config.target_mb:
            count -= 1
        if count < 1:
            raise GstrimError(f"--target-mb {config.target_mb} leaves room for no Gaussian")
        return min(count, n)
    removal = DEFAULT_REMOVAL if config.target_removal is None else config.target_removal
    if not 0.0 <= removal < 1.0:
        raise GstrimError(f"--target-removal must be in [0, 1), got {removal}")
    return round(n * (1.0 - removal))


class TrimStrategy(Strategy):
    """Prunes at the configured iterations by the configured score; nothing else changes the population."""

    def __init__(self, config: TrimConfig, stats_cameras: list[Camera], background, initial_count: int,
                 sh_degree: int):
        config.validate()
        self.config = config
        self.cameras = stats_cameras
        self.background = background
        target = final_count(initial_count, sh_degree, config)
        prunes = len(config.prune_iterations())
        self.survivors = (survivors_schedule(initial_count, prunes, count=target)
                          if target is not None and prunes else None)
        self.history: list[dict] = []

    def initialize_state(self, n: int) -> dict:
        return {"prunes_done": 0}

    def step_begin(self, params, optimizers, state, step, generator) -> None:
        iterations = self.config.prune_iterations()
        if state["prunes_done"] < len(iterations) and step >= iterations[state["prunes_done"]]:
            self.prune(params, optimizers, state)

    def _scores(self, params, state) -> tuple[torch.Tensor, torch.Tensor]:
        """(opacity, score) for the OR rule of eq. 5; a score other than `gradient` stands alone: (score, score)."""
        scene = GaussianScene(**{k: params[k].detach() for k in PARAM_NAMES})
        if self.config.score != "gradient":
            score = SCORES[self.config.score](scene, self.cameras, background=self.background,
                                              device=str(scene.means.device))
            return score, score
        opacity = torch.sigmoid(scene.opacities).cpu()
        if self.config.stats == "checkpoint":
            return opacity, mean_grad2d(state["grad2d"], state["count"])
        return opacity, mean_grad2d(*gradient_statistics(scene, self.cameras, background=self.background,
                                                           device=str(scene.means.device)))

    def prune(self, params, optimizers, state) -> None:
        n = params["means"].shape[0]
        opacity, score = self._scores(params, state)
        if self.survivors is not None:
            mask = prune_mask_count(opacity, score, n - self.survivors[state["prunes_done"]])
        else:
            mask = prune_mask_gamma(opacity, score, self.config.gamma)
        if bool(mask.all()):
            raise GstrimError("this prune would remove every Gaussian; choose a smaller --gamma or target")
        ops.remove(params, optimizers, state, mask.to(params["means"].device))
        state["prunes_done"] += 1
        progress.log(f"prune {state['prunes_done']}: {n:,} -> {n - int(mask.sum()):,} Gaussians")


def finetune_rates() -> LearningRates:
    """3DGS rates with the position rate held at its final value, 1.6e-6 x extent (as after 30k steps)."""
    return LearningRates(means=1.6e-6, means_final=1.6e-6)


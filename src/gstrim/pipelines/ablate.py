"""The ablations of Trimming the Fat (Ali et al. 2024, Sec. 4.3), each a run folder that ends with its table
row in `ablation.json` (a sweep picks up the rows of `SWEEP/ablations/*/`):

* `no_prior` ("Why 3D prior for pruning is important?"): 3DGS training from photos whose densification stops
  where it always does (15k of 30k), whose opacity pruning continues for a third of the run more (10k of 30k)
  and which then fine-tunes to the end (5k of 30k): pruning without a trained prior. Shorter runs scale by
  the same rule as gstrim's training (`DensifyConfig.stop_for`: half the run, at most 15,000).
* `lottery_ticket` ("Lottery ticket for the Gaussian splats?"): a pruned scene's positions kept, its SH,
  opacity, scale and rotation re-initialised as 3DGS initialises points (random colour, opacity 0.1,
  isotropic scale from the neighbours, identity rotation), then trained as long as its baseline was, without
  densification, so the Gaussian set stays the pruned one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gstrim import progress
from gstrim.data import Dataset
from gstrim.errors import GstrimError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS
from gstrim.io.model import CONFIG_NAME, Model, read_config, read_json, resolve_recorded
from gstrim.options import option
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.run import Outcome, Run
from gstrim.pipelines.run_folder import RunFolder
from gstrim.pipelines.train import TrainSetup, train_model
from gstrim.records import RunSummary
from gstrim.render import resolve_device
from gstrim.scene import GaussianScene
from gstrim.train.densify import DensifyConfig
from gstrim.train.init import scene_from_points
from gstrim.train.trainer import TrainConfig, Trainer

ABLATION_NAME = "ablation.json"
ABLATION_RECORD = "gstrim.ablation/1"
# as long as the baselines gstrim trains: 3DGS's 30,000 on a GPU, 7,000 (3DGS's first checkpoint) on the CPU
DEFAULT_ITERATIONS = {"cuda": 30_000, "cpu": 7_000}


def no_prior_densify(iterations: int, prune_opacity: float, base: DensifyConfig | None = None) -> DensifyConfig:
    """Densify as usual (until `stop_for`), prune by opacity a third of the run longer, then only optimise."""
    base = base or DensifyConfig()
    return replace(base, prune_until=base.stop_for(iterations) + iterations // 3, prune_opacity=prune_opacity)


def _row(out: Path, ablation: str, summary: RunSummary, settings: dict) -> dict:
    o = summary.output
    if o is None:
        raise GstrimError("an ablation row compares held-out views, and this dataset has no test split", out)
    row = {"record": ABLATION_RECORD, "ablation": ablation, "gaussians": summary.gaussians_out,
           "mb": FORMATS["ply"].size(summary.gaussians_out, summary.sh_degree) / 1e6, "psnr": o.psnr, "ssim": o.ssim,
           "lpips": o.lpips, "iterations": summary.iterations, "wall_s": summary.wall_s, "settings": settings}
    write_text_atomic(out / ABLATION_NAME, json.dumps(row, indent=1))
    return row


def read_ablation(folder: Path) -> dict | None:
    """The row an ablation run wrote, or None when it has not finished."""
    row = read_json(Path(folder) / ABLATION_NAME)
    return row if row.get("record") == ABLATION_RECORD else None


@dataclass
class AblationConfig:
    iterations: int | None = option(None, "training iterations (no-prior default: 7000 on the CPU, 30000 on a GPU; "
                                    "lottery-ticket default: as long as the model's own baseline was trained)")
    prune_opacity: float = option(0.005, "no-prior: opacity under which Gaussians are pruned (3DGS: 0.005)")
    seed: int = option(0, "seed of the initialisation and of the view order")


def no_prior(data: str | Path | Inputs | None, out_dir: str | Path, config: AblationConfig | None = None,
             setup: TrainSetup | None = None, control: RunControl | None = None) -> dict:
    """Prune while training from photos, without a trained prior; returns (and writes) the table row.
    `setup.densify`: the densification to extend (default: 3DGS's); `setup.init_points`: as `train_model`."""
    out, config, control = Path(out_dir), config or AblationConfig(), control or RunControl()
    iterations, prune_opacity = config.iterations, config.prune_opacity
    if control.resume:
        recorded = read_config(out) or {}
        iterations = recorded.get("train", {}).get("iterations", iterations)
        prune_opacity = recorded.get("densify", {}).get("prune_opacity", prune_opacity)
    iterations = iterations or DEFAULT_ITERATIONS[resolve_device(control.device).type]
    setup = replace(setup or TrainSetup())
    setup.densify = densify = no_prior_densify(iterations, prune_opacity, setup.densify)
    progress.log(f"no-prior ablation: densify until {densify.stop_for(iterations):,}, prune below opacity "
                 f"{prune_opacity} until {densify.prune_until:,}, {iterations:,} iterations in all")
    result = train_model(data, out, TrainConfig(iterations=iterations, seed=config.seed), setup, control)
    settings = {"iterations": iterations, "densify_until": densify.stop_for(iterations),
                "prune_until": densify.prune_until, "prune_opacity": prune_opacity, "seed": config.seed}
    return _row(out, "no-prior", result.summary, settings)


def reinitialized(scene: GaussianScene, seed: int) -> GaussianScene:
    """The scene's positions with everything else as 3DGS initialises a point cloud (random colours)."""
    colors = np.random.default_rng(seed).uniform(0, 1, size=(len(scene), 3)).astype(np.float32)
    return scene_from_points(scene.means.detach().cpu().numpy(), colors, scene.sh_degree)


def baseline_iterations(model: Model) -> int | None:
    """How long the model's baseline was trained: followed through the run folders' recorded inputs."""
    config, root = model.config, model.root
    for _ in range(8):  # trim of a trim of ... a training run
        if not config:
            return None
        if config.get("verb") == "train":
            return int(config["train"]["iterations"])
        if "input" not in config:
            return None
        source = resolve_recorded(config["input"], root)
        root = next((p for p in source.parents if (p / CONFIG_NAME).is_file()), None)
        if root is None:
            return None
        config = read_config(root)
    return None


class LotteryTicketRun(Run):
    """A pruned scene's Gaussians re-initialised at their positions and trained from scratch."""

    verb, config_cls, evaluates_input = "ablate", AblationConfig, False
    photos_required = True  # the paper's test is on photos

    def configure(self, recorded: dict | None) -> dict:
        if recorded is not None:
            return recorded["ablate"]
        c = self.config or AblationConfig()
        model = self.opened.model
        iterations = c.iterations or baseline_iterations(model) or DEFAULT_ITERATIONS[resolve_device(
            self.control.device).type]
        return {"ablation": "lottery-ticket", "seed": c.seed, "iterations": iterations}

    def settings(self) -> dict:
        return {"ablate": self.config}

    def start_scene(self, opened, dataset: Dataset) -> GaussianScene:
        scene = reinitialized(opened.model.scene, self.config["seed"])
        if opened.folder is None:
            progress.log(f"lottery-ticket ablation: {len(scene):,} Gaussians re-initialised at their positions, "
                         f"{self.config['iterations']:,} iterations")
        return scene

    def prepare(self, scene: GaussianScene, dataset: Dataset) -> None:
        config = TrainConfig(iterations=self.config["iterations"], sh_degree=scene.sh_degree,
                             seed=self.config["seed"], device=self.control.device)
        self.trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=config,
                               background=dataset.background)

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        trainer = self.trainer
        wall = self.fit(folder, trainer, "lottery ticket")
        return Outcome(trainer.scene(), f"ours_{trainer.step}", trainer.step, wall, dict(self.config))

    def summary_details(self, opened) -> dict:
        return {}


def lottery_ticket(inputs: Inputs | str | Path | None, out_dir: str | Path, config: AblationConfig | None = None,
                   control: RunControl | None = None) -> dict:
    """Retrain a pruned scene's Gaussians from scratch at their positions; returns (and writes) the table row."""
    run = LotteryTicketRun(inputs, out_dir, config, control)
    result = run.execute()
    return _row(result.model_dir, "lottery-ticket", result.summary, run.config)

"""Vanilla 3DGS training into an INRIA-layout model folder: `gstrim train` in Python."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from gstrim import __version__, progress
from gstrim.data import load_dataset
from gstrim.errors import GstrimError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import CONFIG_NAME, read_config, write_cameras_json, write_cfg_args
from gstrim.scene import GaussianScene
from gstrim.train import run
from gstrim.train.densify import DensifyConfig, DensifyStrategy
from gstrim.train.init import RANDOM_HALF_SIZE, initial_scene
from gstrim.train.trainer import TrainConfig, Trainer

DEFAULT_SAVE_ITERATIONS = (7_000, 30_000)  # the iterations 3DGS saves and reports


@dataclass
class TrainResult:
    model_dir: Path
    scene: GaussianScene
    iterations: int
    wall_s: float


def train_model(data: str | Path, out_dir: str | Path, *, data_options: dict | None = None,
                config: TrainConfig | None = None, densify: DensifyConfig | None = None,
                init_points: int | None = None, init_half_size: float = RANDOM_HALF_SIZE,
                checkpoint_every: int = 1_000, save_iterations=DEFAULT_SAVE_ITERATIONS,
                resume: bool = False) -> TrainResult:
    """Train a 3DGS scene from a COLMAP / Blender dataset with adaptive density control.

    `densify=None` uses the 3DGS defaults. With `resume=True` the run continues from the newest
    checkpoint in `out_dir` with the options it was started with (only `config.iterations` may grow)."""
    out_dir = Path(out_dir)
    if resume:
        saved = read_config(out_dir)
        if saved is None:
            raise GstrimError(f"nothing to resume: no {CONFIG_NAME}", out_dir)
        iterations = config.iterations if config is not None else None
        config = TrainConfig.from_dict(saved["train"])
        if iterations is not None:
            config.iterations = max(iterations, config.iterations)
        densify = DensifyConfig(**saved["densify"])
        data, data_options = saved["data"]["path"], {k: v for k, v in saved["data"].items() if k != "path"}
        init_points, init_half_size = saved["init"]["points"], saved["init"]["half_size"]
    else:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another",
                              out_dir)
        config = config or TrainConfig()
        densify = densify or DensifyConfig()
    if config.iterations < 1:
        raise GstrimError(f"--iterations must be at least 1, got {config.iterations}")
    data_options = dict(data_options or {})
    dataset = load_dataset(data, **data_options)
    if not dataset.train:
        raise GstrimError("the dataset has no training views", dataset.root)
    white = tuple(dataset.background) == (1.0, 1.0, 1.0)
    strategy = DensifyStrategy(densify, dataset.extent, white_background=white, iterations=config.iterations)

    if resume:
        trainer = Trainer(GaussianScene.empty(config.sh_degree), dataset.train, extent=dataset.extent,
                          config=config, strategy=strategy, background=dataset.background)
        elapsed = float(run.resume(trainer, out_dir).get("elapsed", 0.0))
        trainer.config.iterations = config.iterations
        progress.log(f"resuming {out_dir} at iteration {trainer.step}")
    else:
        scene = initial_scene(dataset, sh_degree=config.sh_degree, random_points=init_points,
                              half_size=init_half_size, seed=config.seed)
        trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=config, strategy=strategy,
                          background=dataset.background)
        elapsed = 0.0
        out_dir.mkdir(parents=True, exist_ok=True)
        run_config = {
            "gstrim": __version__, "verb": "train",
            "data": {"path": str(Path(data).resolve()), **data_options},
            "init": {"points": init_points, "half_size": init_half_size, "initial_gaussians": len(scene)},
            "train": config.to_dict(), "densify": asdict(densify),
        }
        write_text_atomic(out_dir / CONFIG_NAME, json.dumps(run_config, indent=1))
        write_cfg_args(out_dir / "cfg_args", out_dir, run_config["data"], config.sh_degree, white)
        write_cameras_json(out_dir / "cameras.json", dataset.train + dataset.test)
    wall = run.run(trainer, out_dir, checkpoint_every=checkpoint_every, save_iterations=save_iterations,
                   elapsed=elapsed)
    return TrainResult(out_dir, trainer.scene(), trainer.step, wall)

"""Vanilla 3DGS training into an INRIA-layout model folder: `gstrim train` in Python."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from gstrim import progress
from gstrim.data import load_dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.records import Evaluation, RunSummary
from gstrim.run_folder import RunFolder, refuse_nonempty
from gstrim.scene import GaussianScene
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
    evaluation: Evaluation | None
    summary: RunSummary


def train_model(data: str | Path, out_dir: str | Path, *, data_options: dict | None = None,
                config: TrainConfig | None = None, densify: DensifyConfig | None = None,
                init_points: int | None = None, init_half_size: float = RANDOM_HALF_SIZE,
                checkpoint_every: int = 1_000, save_iterations=DEFAULT_SAVE_ITERATIONS,
                resume: bool = False, evaluate_test: bool = True) -> TrainResult:
    """Train a 3DGS scene from a COLMAP / Blender dataset with adaptive density control, then evaluate it on
    the test views (unless `evaluate_test` is False).

    `densify=None` uses the 3DGS defaults. With `resume=True` the run continues from the newest
    checkpoint in `out_dir` with the options it was started with (only `config.iterations` may grow)."""
    out_dir = Path(out_dir)
    folder = None
    if resume:
        folder = RunFolder.open(out_dir, "train")
        saved = folder.config
        iterations = config.iterations if config is not None else None
        config = TrainConfig.from_dict(saved["train"])
        if iterations is not None:
            config.iterations = max(iterations, config.iterations)
        densify = DensifyConfig(**saved["densify"])
        init_points, init_half_size = saved["init"]["points"], saved["init"]["half_size"]
        dataset = folder.dataset()
    else:
        refuse_nonempty(out_dir)
        config = config or TrainConfig()
        densify = densify or DensifyConfig()
        data_options = dict(data_options or {})
        dataset = load_dataset(data, **data_options)
    if config.iterations < 1:
        raise ConfigError(f"{{iterations}} must be at least 1, got {config.iterations}", "iterations")
    if not dataset.train:
        raise GstrimError("the dataset has no training views", dataset.root)
    white = tuple(dataset.background) == (1.0, 1.0, 1.0)
    strategy = DensifyStrategy(densify, dataset.extent, white_background=white, iterations=config.iterations)

    if folder is not None:
        trainer = Trainer(GaussianScene.empty(config.sh_degree), dataset.train, extent=dataset.extent,
                          config=config, strategy=strategy, background=dataset.background)
        elapsed = folder.resume(trainer)
        trainer.config.iterations = config.iterations
        progress.log(f"resuming {out_dir} at iteration {trainer.step}")
        initial_gaussians = folder.config["init"]["initial_gaussians"]
    else:
        scene = initial_scene(dataset, sh_degree=config.sh_degree, random_points=init_points,
                              half_size=init_half_size, seed=config.seed)
        trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=config, strategy=strategy,
                          background=dataset.background)
        elapsed, initial_gaussians = 0.0, len(scene)
        settings = {"init": {"points": init_points, "half_size": init_half_size, "initial_gaussians": len(scene)},
                    "train": config.to_dict(), "densify": asdict(densify)}
        folder = RunFolder.create(out_dir, "train", data=data, data_options=data_options, settings=settings)
        folder.write_layout(dataset, config.sh_degree)
    wall = folder.fit(trainer, checkpoint_every=checkpoint_every, save_iterations=save_iterations, elapsed=elapsed)
    result = trainer.scene()
    evaluation = folder.evaluate(result, f"ours_{trainer.step}", dataset, config.device) if evaluate_test else None
    summary = RunSummary("train", initial_gaussians, len(result), result.sh_degree, trainer.step, wall,
                         output=evaluation.metrics() if evaluation else None,
                         details={"densify_until": strategy.stop})
    folder.write_summary(summary)
    return TrainResult(out_dir, result, trainer.step, wall, evaluation, summary)

"""`gstrim train`: vanilla 3DGS training with adaptive density control into an INRIA-layout model folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gstrim import progress
from gstrim.data import Dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.options import option
from gstrim.pipelines.inputs import Inputs, OpenedInputs, RunControl
from gstrim.pipelines.run import Outcome, Run, RunResult
from gstrim.pipelines.run_folder import RunFolder, refuse_nonempty
from gstrim.scene import GaussianScene
from gstrim.train.densify import DensifyConfig, DensifyStrategy
from gstrim.train.init import RANDOM_HALF_SIZE, initial_scene
from gstrim.train.trainer import TrainConfig, Trainer

DEFAULT_SAVE_ITERATIONS = (7_000, 30_000)  # the iterations 3DGS saves and reports


@dataclass
class TrainSetup:
    """How a training run starts and what it saves, beside the trainer's and the densification's settings."""
    init_points: int | None = option(None, "start from N random points (default: COLMAP points, or 100000 for "
                                           "Blender data)")
    init_half_size: float = RANDOM_HALF_SIZE  # of the cube random points are drawn in, in units of the extent
    save_iterations: list[int] = option(list(DEFAULT_SAVE_ITERATIONS), "also save the scene at these iterations "
                                        "(the last is always saved)", nargs="*")
    densify: DensifyConfig = field(default_factory=DensifyConfig)


class TrainRun(Run):
    """Train from a COLMAP / Blender dataset, then evaluate on the test views. Resumed, the run continues from its
    newest checkpoint with the options it was started with (only `iterations` may grow)."""

    verb, config_cls, evaluates_input = "train", TrainConfig, False

    def __init__(self, inputs: Inputs, out_dir: str | Path, config: TrainConfig | None, setup: TrainSetup | None,
                 control: RunControl | None):
        super().__init__(inputs, out_dir, config, control)
        self.setup = setup or TrainSetup()

    def open(self) -> OpenedInputs:
        if self.control.resume:
            folder = RunFolder.open(self.out, self.verb)
            return OpenedInputs(None, folder.data_path, folder.data_options, folder)
        refuse_nonempty(self.out)
        return OpenedInputs(None, self.inputs.data, dict(self.inputs.data_options))

    def configure(self, recorded: dict | None) -> TrainConfig:
        if recorded is None:
            config = self.config or TrainConfig()
        else:
            given = self.config.iterations if self.config is not None else None
            config = TrainConfig.from_dict(recorded["train"])
            config.iterations = max(given or 0, config.iterations)
            init = recorded["init"]
            self.setup = replace(self.setup, densify=DensifyConfig(**recorded["densify"]), init_points=init["points"],
                                 init_half_size=init["half_size"])
            self.initial_gaussians = recorded["init"]["initial_gaussians"]
        config.device = self.control.device
        if config.iterations < 1:
            raise ConfigError(f"{{iterations}} must be at least 1, got {config.iterations}", "iterations")
        return config

    def start_scene(self, opened: OpenedInputs, dataset: Dataset) -> GaussianScene:
        if not dataset.train:
            raise GstrimError("the dataset has no training views", dataset.root)
        if opened.folder is not None and opened.folder.has_checkpoint():  # the checkpoint holds the scene
            return GaussianScene.empty(self.config.sh_degree)
        scene = initial_scene(dataset, sh_degree=self.config.sh_degree, random_points=self.setup.init_points,
                              half_size=self.setup.init_half_size, seed=self.config.seed)
        self.initial_gaussians = len(scene)
        return scene

    def settings(self) -> dict:
        s = self.setup
        return {"init": {"points": s.init_points, "half_size": s.init_half_size,
                         "initial_gaussians": self.initial_gaussians},
                "train": self.config.to_dict(), "densify": asdict(s.densify)}

    def prepare(self, scene: GaussianScene, dataset: Dataset) -> None:
        white = tuple(dataset.background) == (1.0, 1.0, 1.0)
        self.strategy = DensifyStrategy(self.setup.densify, dataset.extent, white_background=white,
                                        iterations=self.config.iterations)
        self.trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=self.config,
                               strategy=self.strategy, background=dataset.background)

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        trainer, strategy = self.trainer, self.strategy
        if self.control.resume:
            progress.log(f"resuming {self.out}")
        wall = self.fit(folder, trainer, "train", save_iterations=self.setup.save_iterations)
        return Outcome(trainer.scene(), f"ours_{trainer.step}", trainer.step, wall,
                       {"densify_until": strategy.stop})

    def summary_details(self, opened: OpenedInputs) -> dict:
        return {}


def train_model(data: str | Path | Inputs | None, out_dir: str | Path, config: TrainConfig | None = None,
                setup: TrainSetup | None = None, control: RunControl | None = None) -> RunResult:
    """Train a 3DGS scene from `data` (a dataset folder, or `Inputs` with `data` and `data_options`) into
    `out_dir`; `setup.densify` defaults to 3DGS's densification."""
    inputs = data if isinstance(data, Inputs) else Inputs(data=data)
    return TrainRun(inputs, out_dir, config, setup, control).execute()

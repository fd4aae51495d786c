"""A run folder: `config.json` (how the run was made: verb, dataset path and loading options, input scene, the
verb's settings; paths relative to the folder where the two share a parent, so a run and its data can move
together between machines), the INRIA layout beside it, its checkpoints and its evaluations.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from gstrim.data import Dataset
from gstrim.data.virtual import ViewConfig
from gstrim.errors import GstrimError
from gstrim.evaluate import evaluate
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import (
    CONFIG_NAME,
    latest_checkpoint,
    read_config,
    relative_to_folder,
    resolve_recorded,
    write_cameras_json,
    write_cfg_args,
)
from gstrim.records import Evaluation
from gstrim.scene import GaussianScene
from gstrim.train import loop
from gstrim.train.trainer import Trainer
from gstrim.version import __version__

CONFIG_RECORD = "gstrim.config/1"


def _leftover(path: Path) -> bool:
    """A temporary of an atomic write that a kill left behind (`io.atomic`): not part of any run."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def refuse_nonempty(root: Path) -> None:
    if root.exists() and any(not _leftover(p) for p in root.iterdir()):
        raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another", root)


def nothing_recorded(root: Path) -> bool:
    """A run stopped before it recorded itself (or never started): `--resume` then starts it."""
    return not (root / CONFIG_NAME).is_file() and (not root.exists() or all(_leftover(p) for p in root.iterdir()))


# ---- the run folder -----------------------------------------------------------------------------------------


class RunFolder:
    def __init__(self, root: Path, config: dict):
        self.root = Path(root)
        self.config = config

    @classmethod
    def create(cls, root: str | Path, verb: str, *, data: str | Path | None, data_options: dict, settings: dict,
               input: str | Path | None = None, views: ViewConfig | None = None,
               teacher: str | Path | None = None) -> RunFolder:
        """Start a run in an empty (or new) folder and write its `config.json` (`views`: a photo-free run, whose
        targets are the renders of `teacher` when it is not the input)."""
        root = Path(root)
        refuse_nonempty(root)
        root.mkdir(parents=True, exist_ok=True)
        recorded = {"virtual": views.to_dict()} if views is not None else \
            {"path": relative_to_folder(data, root), **data_options}
        if views is not None and teacher is not None:
            recorded["teacher"] = relative_to_folder(teacher, root)
        config = {"record": CONFIG_RECORD, "gstrim": __version__, "verb": verb, "data": recorded}
        if input is not None:
            config["input"] = relative_to_folder(input, root)
        config |= settings
        write_text_atomic(root / CONFIG_NAME, json.dumps(config, indent=1))
        return cls(root, config)

    @classmethod
    def open(cls, root: str | Path, verb: str) -> RunFolder:
        """An existing run of `verb`, to resume."""
        root = Path(root)
        config = read_config(root)
        if config is None or config.get("verb") != verb:
            raise GstrimError(f"nothing to resume: no {verb} {CONFIG_NAME}", root)
        return cls(root, config)

    @property
    def data_path(self) -> Path:
        return resolve_recorded(self.config["data"]["path"], self.root)

    @property
    def data_options(self) -> dict:
        return {k: v for k, v in self.config["data"].items() if k not in ("path", "virtual", "teacher")}

    @property
    def teacher_path(self) -> Path | None:
        """A photo-free run's teacher, when it is not the run's input."""
        teacher = self.config["data"].get("teacher")
        return resolve_recorded(teacher, self.root) if teacher is not None else None

    @property
    def input_path(self) -> Path | None:
        return resolve_recorded(self.config["input"], self.root) if "input" in self.config else None

    def write_layout(self, dataset: Dataset, sh_degree: int) -> None:
        """The INRIA files viewers and scripts look for: `cfg_args` and `cameras.json`."""
        white = dataset.background is not None and tuple(dataset.background) == (1.0, 1.0, 1.0)
        write_cfg_args(self.root / "cfg_args", self.root, {"path": dataset.root, **self.data_options}, sh_degree,
                       white)
        write_cameras_json(self.root / "cameras.json", dataset.train + dataset.test)

    def has_checkpoint(self) -> bool:
        return latest_checkpoint(self.root) is not None

    def fit(self, trainer: Trainer, **options) -> float:
        """Run `trainer` to its last iteration here (`train.loop.fit`); returns the wall time."""
        return loop.fit(trainer, self.root, **options)

    def resume(self, trainer: Trainer) -> float:
        """Load the newest checkpoint into `trainer`; returns the wall time spent before it."""
        return float(loop.resume(trainer, self.root).get("elapsed", 0.0))

    def evaluate(self, scene: GaussianScene, label: str, dataset: Dataset, device: str = "auto") -> Evaluation | None:
        """Test-view metrics of `scene`, written under `label` (`label_virtual` when the references are renders of
        virtual views, not photos); None when the dataset has no test views."""
        if not dataset.test:
            return None
        if dataset.kind == "virtual":
            label += "_virtual"
        evaluation = evaluate(scene, dataset.test, label=label, background=dataset.background, device=device,
                              dataset=dataset.root)
        evaluation.write(self.root)
        return evaluation

    def evaluate_input(self, scene: GaussianScene, dataset: Dataset, device: str = "auto",
                       known: Evaluation | None = None) -> Evaluation | None:
        """The input's evaluation under "input": `known` when another run of the same scene made it; none when
        the references are the input's own renders (photo-free)."""
        if dataset.kind == "virtual":
            return None
        if known is None:
            return self.evaluate(scene, "input", dataset, device)
        evaluation = replace(known, label="input")
        evaluation.write(self.root)
        return evaluation

    def read_evaluation(self, label: str) -> Evaluation | None:
        return Evaluation.read(self.root, label)

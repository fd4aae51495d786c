"""A run folder: the one owner of the steps every gstrim job (train, trim, and later compress and sweep)
takes in its output folder.

    folder = RunFolder.create(out, "trim", data=..., data_options=..., settings={...}, input=...)
    folder.write_layout(dataset, sh_degree)          # cfg_args, cameras.json (INRIA layout)
    before = folder.evaluate(scene, "input", dataset)  # a records.Evaluation, also in results.json
    wall = folder.fit(trainer)                       # the training loop with checkpoints and resume
    folder.write_summary(RunSummary(...))

`RunFolder.open(out, verb)` reopens a run to resume it. `config.json` records how the run was made (verb,
dataset path and loading options, input scene, the verb's settings); paths are stored relative to the run
folder where the two share a parent, so a run and its data can move together between machines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from gstrim import __version__
from gstrim.data import Dataset, load_dataset
from gstrim.errors import GstrimError
from gstrim.evaluate import evaluate
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import (
    CONFIG_NAME,
    Model,
    load_model,
    read_config,
    relative_to_folder,
    resolve_recorded,
    write_cameras_json,
    write_cfg_args,
)
from gstrim.records import Evaluation, RunSummary
from gstrim.scene import GaussianScene

CONFIG_RECORD = "gstrim.config/1"


def refuse_nonempty(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another", root)


@dataclass
class RunInputs:
    """What a verb works on: the scene, its dataset, and when resuming, the reopened run and its settings."""
    model: Model
    data: str | Path
    data_options: dict
    folder: RunFolder | None = None
    settings: dict | None = None


def open_inputs(out_dir: str | Path, verb: str, model_path: str | Path | None, *, data: str | Path | None,
                data_options: dict | None, resume: bool, iteration: int | None, nonfinite: str) -> RunInputs:
    """Reopen the run in `out_dir` (resume: its recorded input, dataset and `verb` settings) or refuse a
    non-empty folder before anything is written; then load the scene and find its dataset (the given one,
    else the one recorded with the model)."""
    folder = settings = None
    if resume:
        folder = RunFolder.open(out_dir, verb)
        model_path, settings = folder.input_path, folder.config[verb]
        data, data_options = folder.data_path, folder.data_options
    else:
        refuse_nonempty(Path(out_dir))
    model = load_model(model_path, iteration=iteration, nonfinite=nonfinite)
    if data is None:
        data, recorded = model.recorded_dataset()
        data_options = {**recorded, **(data_options or {})}
    return RunInputs(model, data, dict(data_options or {}), folder, settings)


class RunFolder:
    def __init__(self, root: Path, config: dict):
        self.root = Path(root)
        self.config = config

    # ---- start and resume ----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, verb: str, *, data: str | Path, data_options: dict, settings: dict,
               input: str | Path | None = None) -> RunFolder:
        """Start a run in an empty (or new) folder and write its `config.json`."""
        root = Path(root)
        refuse_nonempty(root)
        root.mkdir(parents=True, exist_ok=True)
        config = {"record": CONFIG_RECORD, "gstrim": __version__, "verb": verb,
                  "data": {"path": relative_to_folder(data, root), **data_options}}
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

    # ---- what the run works on -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return resolve_recorded(self.config["data"]["path"], self.root)

    @property
    def data_options(self) -> dict:
        return {k: v for k, v in self.config["data"].items() if k != "path"}

    @property
    def input_path(self) -> Path | None:
        return resolve_recorded(self.config["input"], self.root) if "input" in self.config else None

    def dataset(self) -> Dataset:
        return load_dataset(self.data_path, **self.data_options)

    def write_layout(self, dataset: Dataset, sh_degree: int) -> None:
        """The INRIA files viewers and scripts look for: `cfg_args` and `cameras.json`."""
        white = tuple(dataset.background) == (1.0, 1.0, 1.0)
        write_cfg_args(self.root / "cfg_args", self.root, {"path": self.data_path, **self.data_options}, sh_degree,
                       white)
        write_cameras_json(self.root / "cameras.json", dataset.train + dataset.test)

    # ---- the work ----------------------------------------------------------------------------------
    def fit(self, trainer, **options) -> float:
        """Run `trainer` to its last iteration here (`train.loop.fit`); returns the wall time."""
        from gstrim.train.loop import fit  # the train package's verbs import this module

        return fit(trainer, self.root, **options)

    def resume(self, trainer) -> float:
        """Load the newest checkpoint into `trainer`; returns the wall time spent before it."""
        from gstrim.train.loop import resume

        return float(resume(trainer, self.root).get("elapsed", 0.0))

    def evaluate(self, scene: GaussianScene, label: str, dataset: Dataset, device: str = "auto") -> Evaluation | None:
        """Test-view metrics of `scene`, written under `label`; None when the dataset has no test views."""
        if not dataset.test:
            return None
        evaluation = evaluate(scene, dataset.test, label=label, background=dataset.background, device=device)
        evaluation.write(self.root)
        return evaluation

    def evaluate_input(self, scene: GaussianScene, dataset: Dataset, device: str = "auto",
                       known: Evaluation | None = None) -> Evaluation | None:
        """The input's evaluation under "input": `known` when another run of the same scene made it."""
        if known is None:
            return self.evaluate(scene, "input", dataset, device)
        evaluation = replace(known, label="input")
        evaluation.write(self.root)
        return evaluation

    def read_evaluation(self, label: str) -> Evaluation | None:
        return Evaluation.read(self.root, label)

    def write_summary(self, summary: RunSummary) -> None:
        summary.write(self.root)

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

import torch

from gstrim import __version__, progress
from gstrim.data import Dataset, load_dataset
from gstrim.data.virtual import ViewConfig, VirtualViews, virtual_dataset
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
from gstrim.render.project import project
from gstrim.scene import GaussianScene

CONFIG_RECORD = "gstrim.config/1"
MIN_IN_VIEW = 0.05  # below this fraction of Gaussians seen by some training camera, the data is another scene


def refuse_nonempty(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another", root)


def check_scene_matches(scene: GaussianScene, dataset: Dataset, source: Path) -> None:
    """Refuse a dataset whose training cameras see almost none of the scene."""
    seen = torch.zeros(len(scene), dtype=torch.bool)
    with torch.no_grad():
        for cam in dataset.train:
            proj = project(scene.means, scene.quats, scene.scales, cam.viewmat, cam.K, cam.width, cam.height)
            seen |= proj.radii > 0
    fraction = float(seen.float().mean()) if len(scene) else 0.0
    if fraction < MIN_IN_VIEW:
        raise GstrimError(f"the dataset {dataset.root} does not match this scene: only {100 * fraction:.1f} % of "
                          "its Gaussians are in view of any training camera", source)


@dataclass
class RunInputs:
    """What a verb works on: the scene, its dataset (photos, or with `views` the scene's own renders from
    virtual views: `data.virtual`), and when resuming, the reopened run and its settings."""
    model: Model
    data: str | Path | None
    data_options: dict
    folder: RunFolder | None = None
    settings: dict | None = None
    views: ViewConfig | None = None
    virtual: VirtualViews | None = None  # set by `dataset()` in photo-free runs

    def dataset(self, device: str = "auto") -> Dataset:
        """The photos (refused when their cameras do not see the scene) or, photo-free, the virtual views with the
        scene's renders as their images."""
        if self.views is None:
            dataset = load_dataset(self.data, **self.data_options)
            check_scene_matches(self.model.scene, dataset, self.model.source)
            return dataset
        from gstrim.render import resolve_device

        dataset, self.virtual = virtual_dataset(self.model.scene, self.views, self.model.source,
                                                resolve_device(device))
        progress.log(self.virtual.describe(dataset))
        return dataset

    def create_folder(self, out_dir: str | Path, verb: str, settings: dict) -> RunFolder:
        return RunFolder.create(out_dir, verb, data=self.data, data_options=self.data_options, input=self.model.source,
                                settings=settings, views=self.views)

    def details(self) -> dict:
        """What a run summary records about where its targets came from."""
        if self.views is None:
            return {"mode": "photos"}
        virtual = self.virtual.to_dict() if self.virtual is not None else None
        return {"mode": "photo-free", "reference": "the input scene's renders on held-out virtual views",
                "views": self.views.to_dict(), "virtual": virtual}


def open_inputs(out_dir: str | Path, verb: str, model_path: str | Path | None, *, data: str | Path | None,
                data_options: dict | None, resume: bool, iteration: int | None, nonfinite: str,
                views: ViewConfig | None = None, photo_free: bool = False,
                photos_required: bool = False) -> RunInputs:
    """Reopen the run in `out_dir` (resume: its recorded input, dataset and `verb` settings) or refuse a
    non-empty folder before anything is written; then load the scene and find its dataset: the given one,
    else the one recorded with the model, else (or with `photo_free`) virtual views of the scene itself
    (`views`, or those recorded with a photo-free model). A verb whose result means nothing without photos
    (`photos_required`) gets the model's one-line "pass --data" error instead."""
    folder = settings = None
    if resume:
        folder = RunFolder.open(out_dir, verb)
        model_path, settings = folder.input_path, folder.config[verb]
        recorded_views = folder.config["data"].get("virtual")
        if recorded_views is not None:
            photo_free, views = True, ViewConfig(**recorded_views)
        else:
            data, data_options = folder.data_path, folder.data_options
    else:
        refuse_nonempty(Path(out_dir))
    model = load_model(model_path, iteration=iteration, nonfinite=nonfinite)
    if data is None and not photo_free:
        recorded = dict(model.data_options or {})
        if photos_required:
            data, recorded = model.recorded_dataset()
            data_options = {**recorded, **(data_options or {})}
        elif "path" in recorded:
            data = resolve_recorded(recorded.pop("path"), model.root)
            data_options = {**recorded, **(data_options or {})}
        else:
            photo_free = True
            if views is None and "virtual" in recorded:
                views = ViewConfig(**recorded["virtual"])
            progress.log(f"photo-free: no dataset given (--data) or recorded with {model.source}; the scene will "
                         "teach itself from virtual views")
    if photo_free:
        return RunInputs(model, None, {}, folder, settings, views or ViewConfig())
    return RunInputs(model, data, dict(data_options or {}), folder, settings)


class RunFolder:
    def __init__(self, root: Path, config: dict):
        self.root = Path(root)
        self.config = config

    # ---- start and resume ----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, verb: str, *, data: str | Path | None, data_options: dict, settings: dict,
               input: str | Path | None = None, views: ViewConfig | None = None) -> RunFolder:
        """Start a run in an empty (or new) folder and write its `config.json` (`views`: a photo-free run)."""
        root = Path(root)
        refuse_nonempty(root)
        root.mkdir(parents=True, exist_ok=True)
        recorded = {"virtual": views.to_dict()} if views is not None else \
            {"path": relative_to_folder(data, root), **data_options}
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

    # ---- what the run works on -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return resolve_recorded(self.config["data"]["path"], self.root)

    @property
    def data_options(self) -> dict:
        return {k: v for k, v in self.config["data"].items() if k not in ("path", "virtual")}

    @property
    def input_path(self) -> Path | None:
        return resolve_recorded(self.config["input"], self.root) if "input" in self.config else None

    def dataset(self) -> Dataset:
        return load_dataset(self.data_path, **self.data_options)

    def write_layout(self, dataset: Dataset, sh_degree: int) -> None:
        """The INRIA files viewers and scripts look for: `cfg_args` and `cameras.json`."""
        white = dataset.background is not None and tuple(dataset.background) == (1.0, 1.0, 1.0)
        write_cfg_args(self.root / "cfg_args", self.root, {"path": dataset.root, **self.data_options}, sh_degree,
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
        """Test-view metrics of `scene`, written under `label` (`label_virtual` when the references are renders of
        virtual views, not photos); None when the dataset has no test views."""
        if not dataset.test:
            return None
        if dataset.kind == "virtual":
            label += "_virtual"
        evaluation = evaluate(scene, dataset.test, label=label, background=dataset.background, device=device)
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

    def write_summary(self, summary: RunSummary) -> None:
        summary.write(self.root)

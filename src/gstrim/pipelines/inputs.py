"""What a run reads and how it runs: one `Inputs` (scene, dataset or photo-free views) and one `RunControl`
(device, resume, checkpoints, evaluation); the dataset policy (`model_dataset`: given, else recorded with the
model; photo-free when there is none); and `open_inputs`, which loads them for a run (or reopens the run it
resumes) and refuses a dataset whose cameras do not see the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gstrim import progress
from gstrim.data import Dataset, dataset_kind, load_dataset
from gstrim.data.virtual import ViewConfig, VirtualViews, virtual_dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.io.model import (
    CONFIG_NAME,
    Model,
    load_model,
    names_path,
    recorded_config,
)
from gstrim.options import option
from gstrim.pipelines.run_folder import RunFolder, nothing_recorded, refuse_nonempty
from gstrim.render import resolve_device
from gstrim.render.project import project
from gstrim.scene import GaussianScene

MIN_IN_VIEW = 0.05  # below this fraction of Gaussians seen by some training camera, the data is another scene


# ---- what a run reads and how it runs ----------------------------------------------------------------------


@dataclass
class Inputs:
    """What a run reads: a scene (model folder, scene file or checkpoint) and its dataset: the given photos,
    else the ones recorded with the model, else (or with `photo_free`) virtual views of the scene itself."""

    scene: str | Path | None = None
    data: str | Path | None = None
    data_options: dict = field(default_factory=dict)  # `data.load_dataset` keywords (images, downscale, ...)
    iteration: int | None = None  # of a model folder; default: its latest
    nonfinite: str = "error"  # Gaussians with NaN / Inf parameters: error, drop or keep
    views: ViewConfig | None = None  # photo-free views (default: ViewConfig())
    photo_free: bool = False
    teacher: str | Path | None = None  # photo-free: the scene whose renders are the targets (default: `scene`)

    def record(self) -> dict:
        """The input as a resumed search or chain must find it again."""
        return {"scene": str(Path(self.scene).resolve()), "data": str(Path(self.data).resolve()) if self.data
                else None, "data_options": self.data_options, "iteration": self.iteration,
                "nonfinite": self.nonfinite}

    @classmethod
    def of(cls, value: Inputs | str | Path | None, **fields) -> Inputs:
        """`value` itself, or a scene path made into Inputs (with `fields`)."""
        return value if isinstance(value, Inputs) else cls(scene=value, **fields)


@dataclass
class RunControl:
    """How a run runs, whatever its verb."""

    resume: bool = option(False, "continue the run in OUTPUT from its last checkpoint, with its recorded settings")
    checkpoint_every: int | None = option(None, "iterations between checkpoints (default: 1000 for train, trim "
                                          "and ablate; 500 for compress and export)")
    no_eval: bool = option(False, "skip the test-view evaluation")
    device: str = option("auto", "auto: an NVIDIA GPU through gsplat when available, else the CPU rasterizer",
                         choices=("auto", "cpu", "cuda"))

    @property
    def evaluate(self) -> bool:
        return not self.no_eval


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
class OpenedInputs:
    """The inputs of one run, loaded: the scene, its dataset (photos, or with `views` the scene's own renders from
    virtual views: `data.virtual`), and when resuming, the reopened run folder."""
    model: Model | None
    data: str | Path | None
    data_options: dict
    folder: RunFolder | None = None
    views: ViewConfig | None = None
    virtual: VirtualViews | None = None  # set by `dataset()` in photo-free runs
    teacher: Path | None = None  # photo-free: the scene whose renders are the targets, when not the input

    @property
    def data_kind(self) -> str:
        """What `dataset()` will load: 'virtual' (photo-free views), 'blender' or 'colmap'."""
        return "virtual" if self.views is not None else dataset_kind(self.data)

    def dataset(self, device: str = "auto") -> Dataset:
        """The photos (refused when their cameras do not see the scene) or, photo-free, the virtual views with the
        scene's (or the teacher's) renders as their images."""
        if self.views is None:
            dataset = load_dataset(self.data, **self.data_options)
            if self.model is not None:
                check_scene_matches(self.model.scene, dataset, self.model.source)
            return dataset
        teacher = load_model(self.teacher) if self.teacher is not None else self.model
        dataset, self.virtual = virtual_dataset(teacher.scene, self.views, teacher.source, resolve_device(device))
        progress.log(self.virtual.describe(dataset))
        return dataset

    def create_folder(self, out_dir: str | Path, verb: str, settings: dict) -> RunFolder:
        source = self.model.source if self.model is not None else None
        return RunFolder.create(out_dir, verb, data=self.data, data_options=self.data_options, input=source,
                                settings=settings, views=self.views, teacher=self.teacher)

    def details(self) -> dict:
        """What a run summary records about where its targets came from."""
        if self.views is None:
            return {"mode": "photos"}
        virtual = self.virtual.to_dict() if self.virtual is not None else None
        whose = "the input scene's" if self.teacher is None else f"{self.teacher}'s"
        return {"mode": "photo-free", "reference": f"{whose} renders on held-out virtual views",
                "views": self.views.to_dict(), "virtual": virtual}


def model_dataset(model: Model, data: str | Path | None, data_options: dict | None = None) -> tuple[str | Path, dict]:
    """The dataset of `model`: `data` when given, else the one recorded with it. The recorded loading options
    (resolution, background) hold for the recorded dataset, also when `data` names it again, unless
    `data_options` overrides them; for another dataset only `data_options` count."""
    given = dict(data_options or {})
    recorded = dict(model.data_options or {})
    if data is None:
        path, options = model.recorded_dataset()
        return path, {**options, **given}
    same = "path" in recorded and names_path(recorded.pop("path"), model.root, data)
    if same:
        kept = {k: v for k, v in recorded.items() if k != "virtual" and k not in given}
        if kept:
            progress.log(f"{data}: the dataset recorded with {model.source}; keeping its recorded "
                         + ", ".join(f"{k}={v}" for k, v in kept.items()) + " (give them to change)")
        return data, {**kept, **given}
    return data, given


def runs_photo_free(inputs: Inputs) -> bool:
    """Whether a run of `inputs` will learn from virtual views (as `open_inputs` decides), known before the scene
    is read, so that settings that need photos fail in the first second."""
    if inputs.photo_free:
        return True
    if inputs.data is not None or inputs.scene is None:
        return False
    return "path" not in ((recorded_config(inputs.scene) or {}).get("data") or {})


def check_budget_possible(max_loss: float | None, inputs: Inputs | None, control: RunControl) -> None:
    """A quality budget (`--max-loss`) is measured on test photos: refused up front without them."""
    if max_loss is None:
        return
    if not control.evaluate:
        raise ConfigError("{max_loss} measures the loss on the test views; it cannot be used with {no_eval}",
                          "max_loss", "no_eval")
    if inputs is not None and runs_photo_free(inputs):
        raise ConfigError("{max_loss} needs test photos to measure the loss on (--data with a test split); a "
                          "photo-free run has none", "max_loss")


def require_test_photos(dataset: Dataset) -> None:
    """A quality budget's loss is measured on test photos: refused on a dataset without them."""
    if not dataset.test or dataset.kind == "virtual":
        raise ConfigError("{max_loss} needs test photos to measure the loss on (--data with a test split); a "
                          "photo-free run has none", "max_loss")


def model_and_dataset(inputs: Inputs) -> tuple[Model, Dataset]:
    """The scene of `inputs` and its photos (given, else recorded with the model: `model_dataset`), loaded."""
    model = load_model(inputs.scene, iteration=inputs.iteration, nonfinite=inputs.nonfinite)
    data, options = model_dataset(model, inputs.data, inputs.data_options)
    return model, load_dataset(data, **options)


def continuing(inputs: Inputs | str | Path | None, out: Path, control: RunControl, *,
               when_asked: bool = False) -> tuple[Inputs | str | Path | None, RunControl]:
    """(inputs, control) of a run into `out`: resumed from what it recorded (no inputs) when `out` holds a
    started run (with `when_asked`, only if `control.resume` asks for it), else started from `inputs`."""
    again = (control.resume or not when_asked) and (Path(out) / CONFIG_NAME).is_file()
    return (None if again else inputs), replace(control, resume=again)


def open_inputs(out_dir: str | Path, verb: str, inputs: Inputs, *, resume: bool,
                photos_required: bool = False, model: Model | None = None) -> OpenedInputs:
    """Reopen the run in `out_dir` (resume: its recorded input and dataset) or refuse a non-empty folder before
    anything is written; then load the scene (a new run takes `model`, the scene of `inputs` loaded already, when
    given) and find its dataset (`Inputs`). A verb whose result means nothing without photos (`photos_required`)
    gets the model's one-line "pass --data" error instead."""
    folder = None
    data, data_options, views, photo_free = inputs.data, inputs.data_options, inputs.views, inputs.photo_free
    scene_path, teacher = inputs.scene, inputs.teacher
    if resume and inputs.scene is not None and nothing_recorded(Path(out_dir)):
        progress.log(f"{out_dir}: nothing recorded to resume yet (stopped before it started): starting the run")
        resume = False
    if resume:
        folder = RunFolder.open(out_dir, verb)
        scene_path = folder.input_path
        recorded_views = folder.config["data"].get("virtual")
        if recorded_views is not None:
            photo_free, views = True, ViewConfig(**recorded_views)
            teacher = folder.teacher_path
        else:
            data, data_options = folder.data_path, folder.data_options
    else:
        refuse_nonempty(Path(out_dir))
    if model is None or resume:
        model = load_model(scene_path, iteration=inputs.iteration, nonfinite=inputs.nonfinite)
    if data is None and not photo_free:
        recorded = dict(model.data_options or {})
        if photos_required or "path" in recorded:
            data, data_options = model_dataset(model, None, data_options)
        else:
            photo_free = True
            if views is None and "virtual" in recorded:
                views = ViewConfig(**recorded["virtual"])
            progress.log(f"photo-free: no dataset given (--data) or recorded with {model.source}; the scene will "
                         "teach itself from virtual views")
    elif data is not None and not resume:
        data, data_options = model_dataset(model, data, data_options)
    if photo_free:
        return OpenedInputs(model, None, {}, folder, views or ViewConfig(),
                            teacher=Path(teacher) if teacher is not None else None)
    return OpenedInputs(model, data, dict(data_options or {}), folder)

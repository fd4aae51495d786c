"""The run template: the steps every verb that writes a run folder takes (train, trim, compress, export's
fine-tuning, the ablations), written once. A verb subclasses `Run` and states only what differs.

    open or resume  ->  record (config.json)  ->  layout (cfg_args, cameras.json)  ->  evaluate the input
    ->  work (`Run.work`: usually fit a trainer, `Run.fit`)  ->  evaluate the output  ->  summary

What a run reads is one `Inputs` (scene, dataset or photo-free views); how it runs is one `RunControl`
(device, resume, checkpoints, evaluation). `config.json` records how the run was made (verb, dataset path
and loading options, input scene, the verb's settings); paths are stored relative to the run folder where
the two share a parent, so a run and its data can move together between machines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from gstrim import devices, kernel_cache, progress, timing
from gstrim.data import Dataset, dataset_kind, load_dataset
from gstrim.data.virtual import ViewConfig, VirtualViews, virtual_dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.evaluate import evaluate
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS
from gstrim.io.model import (
    CONFIG_NAME,
    Model,
    latest_checkpoint,
    load_model,
    read_config,
    recorded_config,
    relative_to_folder,
    resolve_recorded,
    write_cameras_json,
    write_cfg_args,
)
from gstrim.options import from_record, option
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.render.project import project
from gstrim.resources import check_free_space, describe_peak, peak_memory, where
from gstrim.scene import GaussianScene
from gstrim.train import loop
from gstrim.train.trainer import Trainer
from gstrim.version import __version__

CONFIG_RECORD = "gstrim.config/1"
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


def _leftover(path: Path) -> bool:
    """A temporary of an atomic write that a kill left behind (`io.atomic`): not part of any run."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def refuse_nonempty(root: Path) -> None:
    if root.exists() and any(not _leftover(p) for p in root.iterdir()):
        raise GstrimError("output folder is not empty; pass --resume to continue its run or choose another", root)


def nothing_recorded(root: Path) -> bool:
    """A run stopped before it recorded itself (or never started): `--resume` then starts it."""
    return not (root / CONFIG_NAME).is_file() and (not root.exists() or all(_leftover(p) for p in root.iterdir()))


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
    same = "path" in recorded and Path(resolve_recorded(recorded.pop("path"), model.root)).resolve() == \
        Path(data).resolve()
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


def open_inputs(out_dir: str | Path, verb: str, inputs: Inputs, *, resume: bool,
                photos_required: bool = False) -> OpenedInputs:
    """Reopen the run in `out_dir` (resume: its recorded input and dataset) or refuse a non-empty folder before
    anything is written; then load the scene and find its dataset (`Inputs`). A verb whose result means nothing
    without photos (`photos_required`) gets the model's one-line "pass --data" error instead."""
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


# ---- the template ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a verb's work produced: the result as written (decoded from disk where it is a file), the label
    it is evaluated under, and the verb's part of the summary."""
    scene: GaussianScene
    label: str
    iterations: int
    wall_s: float
    details: dict = field(default_factory=dict)
    file: Path | None = None  # the file the run wrote, where it is not the INRIA .ply


@dataclass
class RunResult:
    model_dir: Path
    scene: GaussianScene
    before: Evaluation | None
    after: Evaluation | None
    summary: RunSummary
    file: Path | None = None

    @property
    def record(self) -> dict:
        return self.summary.details


class Run:
    """One run of a verb in its folder. Subclasses set `verb` and `config_cls` and implement `work`; the
    other hooks have defaults that suit a run on a trained scene."""

    verb: ClassVar[str]
    config_cls: ClassVar[type]
    checkpoint_every: ClassVar[int] = 1_000
    photos_required: ClassVar[bool] = False  # the result means nothing without photos
    evaluates_input: ClassVar[bool] = True

    def __init__(self, inputs: Inputs | str | Path | None, out_dir: str | Path, config: Any = None,
                 control: RunControl | None = None, known_input: Evaluation | None = None):
        self.inputs = Inputs.of(inputs)
        self.out = Path(out_dir)
        self.config = config
        self.control = control or RunControl()
        self.known_input = known_input  # the input's evaluation when another run of the same scene made it

    # ---- hooks -------------------------------------------------------------------------------------------
    def open(self) -> OpenedInputs:
        return open_inputs(self.out, self.verb, self.inputs, resume=self.control.resume,
                           photos_required=self.photos_required)

    def configure(self, recorded: dict | None) -> Any:
        """The verb's settings: those recorded in a resumed run's config.json, else those given; resolved and
        checked."""
        config = (from_record(self.config_cls, recorded[self.verb], self.out / CONFIG_NAME) if recorded is not None
                  else (self.config or self.config_cls()))
        if hasattr(config, "resolved"):
            config = config.resolved(resolve_device(self.control.device))
        if hasattr(config, "validate"):
            config.validate()
        return config

    def settings(self) -> dict:
        """What config.json records of the verb's settings (top-level keys)."""
        return {self.verb: self.config.to_dict()}

    def announce(self) -> None:
        """A line at the start of a new run."""

    def start_scene(self, opened: OpenedInputs, dataset: Dataset) -> GaussianScene:
        """The scene the work starts from."""
        return opened.model.scene

    def prepare(self, scene: GaussianScene, dataset: Dataset) -> None:
        """What can fail on bad settings (the trainer and its strategy), done before the folder is written."""

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        raise NotImplementedError

    def before_fit(self, trainer: Trainer) -> None:
        """Called on a trainer that starts from iteration 0 (not restored from a checkpoint)."""

    def cpu_kernels(self) -> tuple[str, ...]:
        """The Numba kernels (`kernel_cache.SIGNATURES`) a CPU run will call: compiled in parallel up front."""
        return kernel_cache.RENDERER

    # ---- the steps ---------------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        with timing.recording() as phases:
            result = self._execute(phases)
        progress.log(f"{self.verb}: time: {phases.describe()}")
        return result

    def _execute(self, phases: timing.Phases) -> RunResult:
        device, control = self.control.device, self.control
        with timing.phase("load"):
            self.opened = opened = self.open()
            folder = opened.folder
            self.config = self.configure(folder.config if folder is not None else None)
            if folder is None:
                self.announce()
            # on the CPU, the kernels the run will use compile in parallel while the data loads
            cpu = devices.uses_cpu_kernels(resolve_device(device))
            warming = kernel_cache.start_warming(self.cpu_kernels() if cpu else ())
            try:
                dataset = opened.dataset(device)
                scene = self.start_scene(opened, dataset)
            except BaseException:
                warming.cancel()
                raise
        with timing.phase("compile"):
            warming.wait()
        with timing.phase("setup"):
            self.prepare(scene, dataset)
        evaluate_input = control.evaluate and self.evaluates_input
        if folder is None:
            check_free_space(self.out, self.disk_needed(scene), f"the {self.verb} run")
            folder = opened.create_folder(self.out, self.verb, self.settings())
            folder.write_layout(dataset, scene.sh_degree)
            before = None
        else:
            before = folder.read_evaluation("input")  # None: stopped before it was written
        if before is None and evaluate_input:
            with timing.phase("evaluation"):
                before = folder.evaluate_input(opened.model.scene, dataset, device, self.known_input)
        self.folder = folder
        with timing.phase(self.verb):  # what the verb's own phases (fit, scoring, write...) leave
            outcome = self.work(folder, scene, dataset)
        after = None
        if control.evaluate:
            with timing.phase("evaluation"):
                after = folder.evaluate(outcome.scene, outcome.label, dataset, device)
        gaussians_in = len(opened.model.scene) if opened.model is not None else self.initial_gaussians
        summary = RunSummary(self.verb, gaussians_in, len(outcome.scene), scene.sh_degree, outcome.iterations,
                             outcome.wall_s, input=before.metrics() if before else None,
                             output=after.metrics() if after else None,
                             details={**outcome.details, **self.summary_details(opened)}, peak_memory=peak_memory(),
                             host=where(), phases=phases.to_json())
        summary.write(folder.root)
        progress.log(f"{self.verb}: {describe_peak(summary.peak_memory)}")
        return RunResult(folder.root, outcome.scene, before, after, summary, outcome.file)

    def disk_needed(self, scene: GaussianScene) -> int:
        """Bytes the run will write at most: a checkpoint (parameters and two Adam moments) and the output."""
        return 4 * FORMATS["ply"].size(len(scene), scene.sh_degree)

    def summary_details(self, opened: OpenedInputs) -> dict:
        return opened.details()

    def fit(self, folder: RunFolder, trainer: Trainer, description: str, **options) -> float:
        """Fit `trainer` in the folder: from its last checkpoint when resuming, else from iteration 0."""
        if self.control.resume and folder.has_checkpoint():
            elapsed = folder.resume(trainer)
        else:
            self.before_fit(trainer)
            elapsed = 0.0
        every = self.control.checkpoint_every or self.checkpoint_every
        return folder.fit(trainer, checkpoint_every=every, description=description, elapsed=elapsed, **options)

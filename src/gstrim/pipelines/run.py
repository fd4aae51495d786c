"""The run template: the steps every verb that writes a run folder takes (train, trim, compress, export's
fine-tuning, the ablations), written once. A verb subclasses `Run` and states only what differs.

    open or resume  ->  record (config.json)  ->  layout (cfg_args, cameras.json)  ->  evaluate the input
    ->  work (`Run.work`: usually fit a trainer, `Run.fit`)  ->  evaluate the output  ->  summary

What a run reads and how it runs are `pipelines.inputs`; its folder is `pipelines.run_folder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gstrim import devices, kernel_cache, progress, timing
from gstrim.data import Dataset
from gstrim.io.formats import ply_size
from gstrim.io.model import CONFIG_NAME, Model
from gstrim.options import from_record
from gstrim.pipelines.inputs import Inputs, OpenedInputs, RunControl, open_inputs
from gstrim.pipelines.run_folder import RunFolder
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.resources import check_free_space, describe_peak, peak_memory, where
from gstrim.scene import GaussianScene
from gstrim.train.trainer import Trainer

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
                 control: RunControl | None = None, known_input: Evaluation | None = None,
                 model: Model | None = None):
        self.inputs = Inputs.of(inputs)
        self.model = model  # the input's scene when the caller has it loaded already (a search's candidates)
        self.out = Path(out_dir)
        self.config = config
        self.control = control or RunControl()
        self.known_input = known_input  # the input's evaluation when another run of the same scene made it

    # ---- hooks -------------------------------------------------------------------------------------------
    def open(self) -> OpenedInputs:
        return open_inputs(self.out, self.verb, self.inputs, resume=self.control.resume,
                           photos_required=self.photos_required, model=self.model)

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
        return 4 * ply_size(scene)

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

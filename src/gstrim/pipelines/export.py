"""`gstrim export`: a scene into a file that viewers open (every registered viewer format), either converted
plainly or, with the photos, fine-tuned through the format's own quantiser first (its registration's
`quantiser`; `compress.format_finetune`), which no plain converter can do.

A fine-tuning run works in a folder beside the file, `OUT.finetune/` (config, checkpoints, `results.json`
with an `export` record: size, ratio, stage times, and test metrics of the file as written, decoded from
disk), so it resumes after an interruption; the file itself is written last, atomically. Nothing here knows
a format by name: writer options and quantisers come with each format's registration (`io.formats`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from gstrim import progress, timing
from gstrim.compress.format_finetune import FormatParameters
from gstrim.compress.sensitivity import sensitivity
from gstrim.compress.stages import FINETUNE  # as compress: c3dgs's 5,000 on a GPU, a fifth on the CPU
from gstrim.data import Dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.evaluate import evaluate
from gstrim.io.atomic import atomic_path
from gstrim.io.formats import FORMATS, SceneFormat, format_of, load_scene, ply_size, viewer_formats, written_size
from gstrim.io.model import Model, load_model
from gstrim.io.quantiser import QuantiserContext
from gstrim.options import option
from gstrim.pipelines.budget import trim_budget_left
from gstrim.pipelines.export_budget import export_within_budget
from gstrim.pipelines.inputs import Inputs, RunControl, check_budget_possible, continuing, model_and_dataset
from gstrim.pipelines.run import Outcome, Run
from gstrim.pipelines.run_folder import RunFolder
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer

RUN_SUFFIX = ".finetune"
QUANTISER_NAME = "quantiser.pt"


@dataclass
class ExportConfig:
    finetune: int | None = option(None, "iterations of fine-tuning through the format's quantiser (default with "
                                  "--data: 5000 on a GPU, 1000 on the CPU; without --data: 0, a plain conversion)")
    seed: int = option(0, "seed of the codebooks and of the view order", flag="--seed")
    max_loss: float | None = option(None, "choose the format's writer options (.spz SH bits, .sog palette size) "
                                    "for the smallest file within this many dB of the input's test PSNR")
    # the writer options of each format that has some, by format name (default: the format's own defaults)
    formats: dict[str, Any] = field(default_factory=dict)

    def options_for(self, fmt: SceneFormat) -> Any:
        options = self.formats.get(fmt.name) or fmt.default_options()
        if options is not None and "seed" in {f.name for f in fields(options)}:
            options = replace(options, seed=self.seed)
        return options

    def resolved(self, device) -> ExportConfig:
        """With the fine-tuning a pipeline that fine-tunes gives a file when none is set (trim --format, sweep)."""
        if self.finetune is not None:
            return self
        return replace(self, finetune=FINETUNE[torch.device(device).type])

    def validate(self) -> None:
        if self.finetune is not None and self.finetune < 0:
            raise ConfigError(f"{{finetune}} must not be negative, got {self.finetune}", "finetune")
        if self.max_loss is not None and self.max_loss < 0:
            raise ConfigError(f"{{max_loss}} must not be negative, got {self.max_loss}", "max_loss")
        for options in self.formats.values():
            options.validate()

    def record(self, fmt: SceneFormat) -> dict:
        """What config.json records: the fine-tuning and the options of the one format written."""
        options = self.options_for(fmt)
        return {"finetune": self.finetune, "seed": self.seed, "max_loss": self.max_loss, "format": fmt.name,
                "options": {f.name: getattr(options, f.name) for f in fields(options)} if options else {}}

    @classmethod
    def from_record(cls, d: dict) -> ExportConfig:
        fmt = FORMATS[d["format"]]
        formats = {fmt.name: fmt.options(**d["options"])} if fmt.options is not None else {}
        return cls(finetune=d["finetune"], seed=d["seed"], max_loss=d.get("max_loss"), formats=formats)


def run_dir_of(out: Path) -> Path:
    return out.with_name(out.name + RUN_SUFFIX)


def _target(out: Path) -> SceneFormat:
    fmt = format_of(out)
    if not fmt.viewer:
        raise GstrimError(f"export writes viewer formats; {fmt.name} files are made by another verb (gstrim "
                          "compress writes .gsz)", out)
    return fmt


def _fit_scene(scene: GaussianScene, fmt: SceneFormat) -> GaussianScene:
    return scene.with_sh_degree(fmt.max_sh_degree) if scene.sh_degree > fmt.max_sh_degree else scene


def _record(out: Path, fmt: SceneFormat, size: int, input_ply: int, stages: dict) -> dict:
    return {"file": str(out), "format": fmt.name, "mb": size / 1e6, "input_ply_mb": input_ply / 1e6,
            "ratio": input_ply / size, "stages_s": {k: round(v, 2) for k, v in stages.items()}}


@dataclass
class ExportResult:
    file: Path
    scene: GaussianScene  # decoded from the written file
    bytes: int
    input_ply_bytes: int
    before: object = None  # Evaluation of the input (fine-tuning runs)
    after: object = None  # Evaluation of the file as written
    summary: object = None  # RunSummary, fine-tuning runs only
    run_dir: Path | None = None
    budget: dict | None = None  # `--max-loss`: the search's record

    @property
    def ratio(self) -> float:
        return self.input_ply_bytes / max(self.bytes, 1)


class ExportRun(Run):
    """Fine-tuning through a format's quantiser in `OUT.finetune/`, then the file `OUT`."""

    verb, config_cls, checkpoint_every = "export", ExportConfig, 500

    def __init__(self, inputs, target: Path, config: ExportConfig, control: RunControl,
                 known_input: Evaluation | None = None, model: Model | None = None):
        super().__init__(inputs, run_dir_of(target), config, control, known_input, model)
        self.target, self.fmt = target, _target(target)

    def configure(self, recorded: dict | None) -> ExportConfig:
        config = ExportConfig.from_record(recorded["export"]) if recorded is not None else self.config
        config.validate()
        return config

    def settings(self) -> dict:
        return {"export": self.config.record(self.fmt)}

    def start_scene(self, opened, dataset: Dataset) -> GaussianScene:
        return _fit_scene(opened.model.scene, self.fmt)

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        config, fmt = self.config, self.fmt
        t0 = time.perf_counter()
        with timing.phase("quantiser"):
            quantiser = self._quantiser(folder, scene, dataset)
        stages = {"codebooks_s": time.perf_counter() - t0}
        parameterization = FormatParameters(quantiser)
        train_config = TrainConfig(iterations=config.finetune, sh_degree=scene.sh_degree, sh_interval=0,
                                   seed=config.seed, device=self.control.device)
        trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=train_config,
                          background=dataset.background, parameterization=parameterization)
        stages["finetune_s"] = self.fit(folder, trainer, f"export {fmt.name}")
        t0 = time.perf_counter()
        with timing.phase("write"):
            parameterization.write(self.target, trainer.params)
        stages["write_s"] = time.perf_counter() - t0
        self.input_ply = ply_size(self.opened.model.scene)
        record = _record(self.target, fmt, written_size(self.target), self.input_ply, stages) | quantiser.details()
        return Outcome(load_scene(self.target), f"{fmt.name}_{trainer.step}", trainer.step, sum(stages.values()),
                       record, self.target)

    def _quantiser(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset):
        """The format's quantiser: fitted once (weighted by c3dgs's colour sensitivity where it asks for an
        importance), its fit cached in the run folder for a resumed run."""
        path = folder.root / QUANTISER_NAME
        state = torch.load(path, weights_only=True) if path.exists() else None
        importance = lambda: sensitivity(scene, dataset.train, device=self.control.device).color  # noqa: E731
        context = QuantiserContext(importance=importance, seed=self.config.seed, state=state,
                                   device=resolve_device(self.control.device))
        quantiser = self.fmt.quantiser(scene, self.config.options_for(self.fmt), context)
        cached = quantiser.cached_state()
        if state is None and cached:
            progress.log(f"{self.fmt.name} quantiser fitted: {quantiser.details()}")
            with atomic_path(path) as tmp:
                torch.save(cached, tmp)
        return quantiser


def export_model(inputs: Inputs | str | Path | None, out: str | Path, config: ExportConfig | None = None,
                 control: RunControl | None = None, known_input: Evaluation | None = None) -> ExportResult:
    """Write `inputs` (a scene path or `Inputs`) as `out`; with a dataset (`inputs.data`, or `config.finetune` > 0
    and the model's recorded one, or without photos the scene's own renders from virtual views) fine-tune through
    the format's quantiser first."""
    inputs, out, control = Inputs.of(inputs), Path(out), control or RunControl()
    fmt = _target(out)
    config = config or ExportConfig()
    config.validate()
    check_budget_possible(config.max_loss, inputs if inputs.scene is not None else None, control)
    finetune = config.finetune
    if finetune is None:
        asked = inputs.data is not None or control.resume or inputs.photo_free
        finetune = FINETUNE[resolve_device(control.device).type] if asked else 0
    if config.max_loss is not None:
        return _within_budget(inputs, out, fmt, replace(config, finetune=finetune), control)
    if finetune == 0:
        return _convert(inputs, out, fmt, config, control)
    if fmt.quantiser is None:
        raise GstrimError(f"{fmt.name} has no quantiser to fine-tune through; export it with --finetune 0", out)
    return _fine_tuned(inputs, out, replace(config, finetune=finetune), control, known_input)


def _fine_tuned(inputs: Inputs | None, out: Path, config: ExportConfig, control: RunControl,
                known_input: Evaluation | None, model: Model | None = None) -> ExportResult:
    """The export run: fine-tuning through the format's quantiser in `run_dir_of(out)`, then the file."""
    run = ExportRun(inputs, out, config, control, known_input, model)
    result = run.execute()
    return ExportResult(out, result.scene, written_size(out), run.input_ply, result.before, result.after,
                        result.summary, result.model_dir)


def _within_budget(inputs: Inputs, out: Path, fmt: SceneFormat, config: ExportConfig,
                   control: RunControl) -> ExportResult:
    """`export --max-loss`: the search of `export_budget` on the input opened once, each candidate an export run
    of its own (resumed where one was interrupted) that starts from the same loaded scene."""
    model, dataset = model_and_dataset(inputs)

    def candidate(settings: ExportConfig, target: Path, known_input: Evaluation | None) -> ExportResult:
        start, resume = continuing(inputs, run_dir_of(target), control)
        return _fine_tuned(start, target, settings, resume, known_input, model)

    run_dir, budget = export_within_budget(model, dataset, out, fmt, config, control, candidate, run_dir_of)
    summary = RunSummary.read(run_dir, "export")  # the chosen candidate's run, which measured its input
    after = Evaluation.read(run_dir, f"{fmt.name}_{summary.iterations}")
    input_ply = round(summary.details["input_ply_mb"] * 1e6)
    return ExportResult(out, load_scene(out), written_size(out), input_ply, Evaluation.read(run_dir, "input"), after,
                        summary, run_dir, budget)


def _convert(inputs: Inputs, out: Path, fmt: SceneFormat, config: ExportConfig, control: RunControl) -> ExportResult:
    """A plain conversion, scored on the test photos when they are given."""
    scored = inputs.data is not None and control.evaluate
    model, dataset = model_and_dataset(inputs) if scored else \
        (load_model(inputs.scene, iteration=inputs.iteration, nonfinite=inputs.nonfinite), None)
    fmt.write_scene(out, _fit_scene(model.scene, fmt), config.options_for(fmt))
    decoded = load_scene(out)
    result = ExportResult(out, decoded, written_size(out), ply_size(model.scene))
    if dataset is not None and dataset.test:
        result.after = evaluate(decoded, dataset.test, label=fmt.name, background=dataset.background,
                                device=control.device)
    return result


def check_trim_export(format_name: str, config: ExportConfig | None, inputs: Inputs | None,
                      control: RunControl) -> None:
    """What `trim --format` will ask of the export, checked before the trim starts (it runs for hours)."""
    if format_name not in FORMATS or not FORMATS[format_name].viewer:
        raise GstrimError(f"{format_name!r} is not a viewer format ({', '.join(viewer_formats())})")
    config = config or ExportConfig()
    config.validate()
    if config.max_loss is not None and FORMATS[format_name].budget_options is None:
        raise ConfigError(f"{format_name} has no writer options to search; export it without {{max_loss}}",
                          "max_loss")
    check_budget_possible(config.max_loss, inputs, control)


def trim_and_export(out_dir: str | Path, format_name: str, config: ExportConfig | None = None,
                    control: RunControl | None = None, known_input: Evaluation | None = None) -> ExportResult:
    """After `gstrim trim ... -o OUT`: the trimmed scene fine-tuned through a viewer format into
    `OUT/scene.<suffix>` (its run in `OUT/scene.<suffix>.finetune`), on the trim's dataset (`known_input`: the
    trim's evaluation of its result, which the export then does not repeat)."""
    out_dir, control = Path(out_dir), control or RunControl()
    fmt = FORMATS[format_name]
    target = out_dir / fmt.file_name("scene")
    config = (config or ExportConfig()).resolved(resolve_device(control.device))
    if config.max_loss is not None:  # against the trim's input: the file gets what the trim left
        config = replace(config, max_loss=trim_budget_left(config.max_loss, out_dir))
    inputs, control = continuing(out_dir, run_dir_of(target), control, when_asked=True)
    return export_model(inputs, target, config, control, known_input)


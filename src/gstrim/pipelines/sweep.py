"""`gstrim sweep`: the paper's tables as one command. One trained scene is trimmed at several levels, by
several scores, iteratively and one-shot, over seeds, optionally compressed (c3dgs) and exported to viewer
formats; the unpruned model fine-tuned as long is the reference row. Every run is an ordinary run folder
under `SWEEP/runs/`, so a finished run is skipped, an interrupted one resumed, and each can be opened with
every other verb. The input is evaluated once (`SWEEP/input/`), render speed is re-measured side by side for
every row at the end (`metrics.fps`), and the table goes to `SWEEP/table.{json,csv,md}`.

What runs is planned by the registered run kinds (`pipelines.run_kinds`); the settings are in
`pipelines.sweep_config`.

Layout: SWEEP/sweep.json (what was asked), input/, runs/<name>/ (a trim; its compressed/ and scene.<ext>
exports inside, as `gstrim trim --compress/--format` writes them), runs/input+compress/, table.*; the rows
of `gstrim ablate ... -o SWEEP/ablations/<name>` join the table when the sweep runs again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from gstrim import progress
from gstrim.data import Dataset, load_dataset
from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.errors import GstrimError
from gstrim.io import load_scene
from gstrim.io.atomic import holds_other_files, write_text_atomic
from gstrim.io.model import Model, load_model, names_path, relative_to_folder
from gstrim.metrics.fps import measure_fps
from gstrim.options import differing
from gstrim.pipelines.claims import holding, try_claim
from gstrim.pipelines.executors import Executor, ExecutorConfig, drive, make_executor
from gstrim.pipelines.inputs import Inputs, RunControl, model_dataset
from gstrim.pipelines.jobs import Job, Report, first_failure
from gstrim.pipelines.run_folder import RunFolder
from gstrim.pipelines.run_kinds import INPUT, PlannedRun, Table, plan, ran_on
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs, check_sweep_settings
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.report.table import Row, write_table

SWEEP_RECORD = "gstrim.sweep/1"
SWEEP_NAME = "sweep.json"


@dataclass
class SweepResult:
    root: Path
    rows: list[Row]


@dataclass
class SweepSpec:
    """A sweep folder and all its runs need, picklable, paths absolute: a worker on any node that sees the
    folder rebuilds the `Sweep` from it."""
    root: Path
    inputs: Inputs  # the scene (with its iteration and non-finite rule) and its dataset, or its photo-free views
    source: Path  # the model's own source (the compressed input's input; photo-free: every run's teacher)
    config: SweepConfig
    configs: SweepRunConfigs
    control: RunControl

    @property
    def views(self) -> ViewConfig | None:
        """Photo-free sweeps: the virtual views on which every run learns and is scored against the input."""
        return self.inputs.views if self.inputs.photo_free else None


@dataclass
class SweepStep:
    """One job of a sweep (its input's evaluation, or one planned run), as an executor runs it anywhere."""
    spec: SweepSpec
    name: str

    def __call__(self) -> str:
        return Sweep(self.spec).step(self.name)


class Sweep:
    """One sweep folder: its planned runs, each a job (claimed, executed or resumed wherever an executor puts
    it), collected into one table with the render speed of every row measured side by side."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.root, self.config, self.configs, self.control = spec.root, spec.config, spec.configs, spec.control
        self.data, self.data_options = spec.inputs.data, spec.inputs.data_options
        self.runs = plan(self.config, self.configs.trim)
        self.fps_device = ""  # what the FPS column was measured on, once measured

    @cached_property
    def model(self) -> Model:
        inputs = self.spec.inputs
        return load_model(inputs.scene, iteration=inputs.iteration, nonfinite=inputs.nonfinite)

    @cached_property
    def dataset(self) -> Dataset:
        if self.spec.views is not None:
            return virtual_dataset(self.model.scene, self.spec.views, self.model.source,
                                   resolve_device(self.control.device))[0]
        return load_dataset(self.data, **self.data_options)

    # ---- the jobs -------------------------------------------------------------------------------------
    def jobs(self, prefix: str = "") -> list[Job]:
        """The input's evaluation, then every planned run after it (a file's run after its trim); keys are
        `prefix` + the run's name."""
        gpu = {"cuda": True, "cpu": False}.get(self.control.device)  # auto: where the cluster has GPUs
        # photo-free, the input is the reference itself: nothing to evaluate
        first = [Job(prefix + INPUT, SweepStep(self.spec, INPUT), gpu=gpu)] if self.spec.views is None else []
        jobs = list(first)
        for run in self.runs:
            after = tuple(j.key for j in first) + ((prefix + run.source,) if run.source not in (None, INPUT) else ())
            jobs.append(Job(prefix + run.name, SweepStep(self.spec, run.name), after, gpu))
        return jobs

    def step(self, name: str) -> str:
        """Run the job `name` here: "done"; "found" when it had been done (before, or by another worker); "held"
        when another worker has claimed it."""
        if name == INPUT:
            if self.known_input() is not None:
                return "found"
            claim = try_claim(self.claim_path(INPUT))
            if claim is None:
                return "held"
            with holding(claim):
                progress.log("== input: test-view evaluation")
                folder = RunFolder(self.root / INPUT, {})
                folder.root.mkdir(parents=True, exist_ok=True)
                folder.evaluate(self.model.scene, INPUT, self.dataset, self.control.device)
            return "done"
        run = next(r for r in self.runs if r.name == name)
        if self._checked(run) is not None:
            return "found"
        claim = try_claim(self.claim_path(name))
        if claim is None:
            return "held"
        with holding(claim):
            if self.finished(run) is not None:  # finished by another worker between the look and the claim
                return "found"
            self.execute(run, self.known_input())
        return "done"

    def claim_path(self, name: str) -> Path:
        return self.root / "claims" / f"{name}.claim"

    def known_input(self) -> Evaluation | None:
        """The input's evaluation, made once into SWEEP/input/results.json and read back by every run."""
        return RunFolder(self.root / INPUT, {}).read_evaluation(INPUT)

    def finished(self, run: PlannedRun) -> RunSummary | None:
        return RunSummary.read(run.folder(self.root), run.type.verb)

    def source_of(self, run: PlannedRun) -> Path:
        """The scene a run starts from: the input's source, or the folder of the planned run it is made from."""
        if run.source == INPUT:
            return self.spec.source
        return next(r for r in self.runs if r.name == run.source).folder(self.root)

    def execute(self, run: PlannedRun, known: Evaluation | None) -> RunSummary:
        """One run, started or resumed in its folder."""
        out = run.folder(self.root)
        again = run.type.started(run, self.root)
        progress.log(f"== {out.relative_to(self.root)} ({'resuming' if again else 'starting'})")
        return run.type.execute(self, run, replace(self.control, resume=again), known)

    def _checked(self, run: PlannedRun) -> RunSummary | None:
        """A finished run's summary; a run made with other settings than the sweep asks for now is refused, naming
        them (a run started with other settings is never resumed or counted with these)."""
        settings = run.type.recorded_settings(self, run)
        changed = differing(*settings) if settings is not None else []
        if changed:
            raise GstrimError(f"this run was made with other {run.kind} settings than the sweep asks for now "
                              f"({', '.join(changed)}); sweep into another folder or remove the run",
                              run.folder(self.root))
        return self.finished(run)

    # ---- collect --------------------------------------------------------------------------------------
    def collect(self, known: Evaluation, summaries: dict[str, RunSummary]) -> tuple[list[Row], dict[str, Path]]:
        """The table's rows (input, compressed input, trims, files, ablations) and where each row's scene is."""
        reference = {run.config.seed: summaries[run.name].output.psnr for run in self.runs
                     if run.variant == "no-prune"}
        table = Table(self.model, known, reference)
        rows, scenes = [table.input_row()], {}
        from_input = []  # rows of files made from the input itself follow the input's row
        for run in self.runs:
            s = summaries[run.name]
            for row, scene in run.type.rows(table, run, s, self.root):
                (from_input if run.source == INPUT else rows).append(row)
                scenes[row.name] = scene
        rows[1:1] = from_input
        for folder in sorted((self.root / "ablations").glob("*/")):
            row = table.ablation_row(folder, self.root)
            if row is not None:
                rows.append(row)
                scenes[row.name] = folder
        return rows, scenes

    def measure_fps(self, rows: list[Row], scenes: dict[str, Path]) -> None:
        """Render speed of every row, side by side on this machine."""
        cameras = (self.dataset.test or self.dataset.train)[: self.config.fps_views]
        for row in progress.track(rows, "FPS of every row"):
            if row.kind == "input":
                scene = self.model.scene  # loaded already
            else:
                source = scenes[row.name]
                scene = load_model(source).scene if source.is_dir() else load_scene(source)
            fps = measure_fps(scene, cameras, background=self.dataset.background, device=self.control.device,
                              repeats=self.config.fps_repeats)
            row.fps, row.fps_p10_ms, row.fps_p90_ms = fps.fps, fps.p10_ms, fps.p90_ms
            self.fps_device = f"{fps.backend}: {fps.device}"

    def meta(self) -> dict:
        return {"model": relative_to_folder(self.model.source, self.root),
                "data": _data_record(self.spec, self.root),
                "fps": {"views": min(self.config.fps_views, len(self.dataset.test or self.dataset.train)),
                        "repeats": self.config.fps_repeats, "device": self.fps_device},
                "trim": self.configs.trim.resolved(resolve_device(self.control.device)).to_dict(),
                "sweep": asdict(self.config)}

    def finish(self) -> SweepResult:
        """The table of a sweep whose runs are all done: collected, FPS measured here, written."""
        known = self.known_input()
        rows, scenes = self.collect(known, {run.name: self.finished(run) for run in self.runs})
        self.measure_fps(rows, scenes)
        write_table(self.root, rows, self.meta())
        return SweepResult(self.root, rows)


def prepare_sweep(inputs: Inputs | str | Path, out_dir: str | Path, config: SweepConfig | None = None,
                  configs: SweepRunConfigs | None = None, control: RunControl | None = None) -> Sweep:
    """The sweep of `inputs` in `out_dir`, checked (settings, scene, a dataset with test views) and recorded
    (`sweep.json`), its runs not started."""
    inputs, out = Inputs.of(inputs), Path(out_dir).absolute()
    config, configs, control = config or SweepConfig(), configs or SweepRunConfigs(), control or RunControl()
    check_sweep_settings(config, configs)
    model = load_model(inputs.scene, iteration=inputs.iteration, nonfinite=inputs.nonfinite)
    recorded = dict(model.data_options or {})
    scene = Path(inputs.scene).absolute()
    if inputs.photo_free or (inputs.data is None and "path" not in recorded):
        views = inputs.views or (ViewConfig(**recorded["virtual"]) if "virtual" in recorded else ViewConfig())
        progress.log(f"photo-free: no dataset given or recorded with {model.source}; every run learns from the "
                     "input's renders on virtual views and is scored against them on held-out ones")
        resolved = Inputs(scene, None, {}, inputs.iteration, inputs.nonfinite, views, photo_free=True)
    else:
        data, data_options = model_dataset(model, inputs.data, inputs.data_options)
        if not load_dataset(data, **data_options).test:
            raise GstrimError("a sweep compares held-out views, and this dataset has no test split", data)
        resolved = Inputs(scene, Path(data).absolute(), data_options, inputs.iteration, inputs.nonfinite)
    spec = SweepSpec(out, resolved, Path(model.source).absolute(), config, configs, control)
    _record(spec)
    return Sweep(spec)


def run_sweep(inputs: Inputs | str | Path, out_dir: str | Path, config: SweepConfig | None = None,
              configs: SweepRunConfigs | None = None, control: RunControl | None = None,
              executor: ExecutorConfig | None = None) -> SweepResult:
    """Run (or continue, or join another driver on) the sweep of `inputs` in `out_dir` with `executor` (default:
    one run at a time here); returns its table rows."""
    inputs = Inputs.of(inputs)
    runner = start_executor(executor or ExecutorConfig(), Path(out_dir).absolute(), [inputs])
    try:
        sweep = prepare_sweep(inputs, out_dir, config, configs, control)
    except BaseException:
        runner.close()
        raise
    reports = drive(sweep.jobs(), runner, describe_report)  # closes the executor
    failed = first_failure(reports.values())
    if failed is not None:
        raise GstrimError(failed.error)
    return sweep.finish()


def start_executor(config: ExecutorConfig, out: Path, inputs: list[Inputs]) -> Executor:
    """The executor, started before anything is written (joining a cluster and checking that its nodes see the
    output folder and the given inputs can fail)."""
    given = [Path(p).absolute() for i in inputs for p in (i.scene, i.data) if p is not None and Path(p).exists()]
    return make_executor(config, [out, *given])


def describe_report(report: Report) -> str:
    """A driver's line about a finished job: what, how it ended, how long and where."""
    if report.status == "failed":
        return f"{report.key}: failed: {report.error}"
    if report.status == "found":
        return f"{report.key}: done before (or by another driver)"
    where = f" on {ran_on(report.host)}" if report.host else ""
    return f"{report.key}: done in {progress.duration(report.wall_s)}{where}"


def _data_record(spec: SweepSpec, root: Path) -> dict:
    if spec.views is not None:
        return {"virtual": spec.views.to_dict()}
    return {"path": relative_to_folder(spec.inputs.data, root), **spec.inputs.data_options}


def _record(spec: SweepSpec) -> None:
    """sweep.json: the scene and dataset (or photo-free views) of this folder's runs; a later sweep into it must
    use the same."""
    out = spec.root
    path = out / SWEEP_NAME
    entry = {"record": SWEEP_RECORD, "model": relative_to_folder(spec.source, out), "data": _data_record(spec, out)}
    if path.is_file():
        recorded = json.loads(path.read_text())
        same_model = names_path(recorded["model"], out, spec.source)
        data = recorded["data"]
        if spec.views is not None:
            same_data = data.get("virtual") == entry["data"]["virtual"]
        else:
            same_data = "path" in data and names_path(data["path"], out, spec.inputs.data)
        if not (same_model and same_data):
            raise GstrimError("this sweep folder holds runs of another scene or dataset; choose another folder", out)
        return
    if holds_other_files(out, SWEEP_NAME):
        raise GstrimError("output folder is not empty and holds no sweep; choose another", out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(entry, indent=1))

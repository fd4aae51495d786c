"""`gstrim sweep`: the paper's tables as one command. One trained scene is trimmed at several levels, by
several scores, iteratively and one-shot, over seeds, optionally compressed (c3dgs) and exported to viewer
formats; the unpruned model fine-tuned as long is the reference row. Every run is an ordinary run folder
under `SWEEP/runs/`, so a finished run is skipped, an interrupted one resumed, and each can be opened with
every other verb. The input is evaluated once (`SWEEP/input/`), render speed is re-measured side by side for
every row at the end (`metrics.fps`), and the table goes to `SWEEP/table.{json,csv,md}`.

Layout: SWEEP/sweep.json (what was asked), input/, runs/<name>/ (a trim; its compressed/ and scene.<ext>
exports inside, as `gstrim trim --compress/--format` writes them), runs/input+compress/, table.*; the rows
of `gstrim ablate ... -o SWEEP/ablations/<name>` join the table when the sweep runs again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

from gstrim import progress
from gstrim.compress.stages import CompressConfig
from gstrim.data import Dataset, load_dataset
from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.io import load_scene
from gstrim.io.atomic import holds_other_files, write_text_atomic
from gstrim.io.formats import FORMATS, viewer_formats
from gstrim.io.model import CONFIG_NAME, Model, load_model, read_config, relative_to_folder, resolve_recorded
from gstrim.metrics.fps import measure_fps
from gstrim.options import differing, from_record, option
from gstrim.pipelines.ablate import read_ablation
from gstrim.pipelines.claims import holding, try_claim
from gstrim.pipelines.compress import COMPRESSED_DIR, compress_model
from gstrim.pipelines.executors import Executor, ExecutorConfig, drive, make_executor
from gstrim.pipelines.export import ExportConfig, export_model, run_dir_of
from gstrim.pipelines.jobs import Job, Report, first_failure
from gstrim.pipelines.run import Inputs, RunControl, RunFolder, model_dataset
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.report.table import Row, write_table

SWEEP_RECORD = "gstrim.sweep/1"
SWEEP_NAME = "sweep.json"
# fields a sweep sets per run; the others (schedule, statistics, restarts) are shared by all its trims
PER_RUN_FIELDS = ("score", "gamma", "target_removal", "target_count", "target_mb", "one_shot", "no_prune", "seed")


@dataclass
class SweepConfig:
    removals: list[float] = option([0.8, 0.9], "fractions of the Gaussians to remove", metavar="R",
                                   exclusive="levels")
    gammas: list[float] | None = option(None, "quantile levels per prune step instead", metavar="G",
                                        exclusive="levels")
    scores: list[str] = option(["gradient", "opacity"], "importance scores, each pruned iteratively",
                               choices=lambda: list(SCORES))
    one_shot: bool = option(False, "also one-shot runs of the first score")
    seeds: list[int] = option([0], "seeds of every run")
    baseline: bool = option(True, "leave out the unpruned model fine-tuned as long (the no-prune reference)",
                            flag="--no-baseline")
    compress: bool = option(False, "also c3dgs compression of the input and of the first score's iterative trims")
    formats: list[str] = option([], "also export the first score's iterative trims to these viewer formats, "
                                "fine-tuned through their quantisers", choices=viewer_formats)
    # named sets of TrimConfig fields, each run like the first score's iterative trims at every level and seed
    variants: dict[str, dict] = field(default_factory=dict)
    fps_views: int = option(20, "test views timed per row")
    fps_repeats: int = option(3, "renders of each timed view")

    def validate(self) -> None:
        for score in self.scores:
            if score not in SCORES:
                raise ConfigError(f"unknown score {score!r}; use one of {', '.join(SCORES)}", "scores")
        if not self.scores:
            raise ConfigError("give at least one score", "scores")
        for fmt in self.formats:
            if fmt not in viewer_formats():
                raise ConfigError(f"unknown viewer format {fmt!r}", "formats")
        for removal in self.removals:
            if not 0 < removal < 1:
                raise ConfigError(f"removal fractions must be in (0, 1), got {removal}", "removals")
        if not self.seeds:
            raise ConfigError("give at least one seed", "seeds")
        for name, overrides in self.variants.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise ConfigError(f"variant name {name!r}: use letters, digits, '.', '_' and '-' only", "variant")
            unknown = set(overrides) - {f.name for f in dataclasses.fields(TrimConfig)}
            if unknown:
                raise ConfigError(f"variant {name!r}: unknown trim settings {', '.join(sorted(unknown))}", "variant")


@dataclass
class PlannedRun:
    name: str  # unique in the sweep: trims by their setting, files as <trim>+compress, <trim>+<format>
    kind: str  # trim, compress or format
    variant: str  # iterative, one-shot, no-prune, input or a variant's name
    config: TrimConfig  # the trim's settings (for a file: those of the trim it is made from)
    group: str  # the name without the seed
    source: str | None = None  # files: the trim run they are made from ("input": the input scene)
    format: str | None = None  # format runs: the viewer format

    def folder(self, root: Path) -> Path:
        """Where the run works: its run folder (format runs: the fine-tuning folder beside the file)."""
        if self.kind == "trim":
            return root / "runs" / self.name
        if self.source == "input":
            return root / "runs" / "input+compress"
        if self.kind == "compress":
            return root / "runs" / self.source / COMPRESSED_DIR
        return run_dir_of(self.file(root))

    def file(self, root: Path) -> Path:
        """Format runs: the file they write."""
        return root / "runs" / self.source / FORMATS[self.format].file_name("scene")


def _level_name(config: SweepConfig, level: float) -> str:
    return f"g{level:g}" if config.gammas is not None else f"{level:g}"


def plan(config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
    """Every run of the sweep in the order they run: the trims (the no-prune references first), then the files
    made from the first score's iterative trims (Table 2: compressed, viewer formats), then the compressed input.
    A file's run comes after the trim it is made from."""
    levels = config.gammas if config.gammas is not None else config.removals
    target = "gamma" if config.gammas is not None else "target_removal"
    trims = []

    def add(group: str, variant: str, seed: int, **settings) -> None:
        name = group if seed == 0 else f"{group}-s{seed}"
        run_config = replace(base, seed=seed, **settings)
        if run_config.recipe == "auto":  # a sweep makes the paper's tables: its recipe unless another is named
            run_config = replace(run_config, recipe="paper")
        trims.append(PlannedRun(name, "trim", variant, run_config, group))

    for seed in config.seeds:
        if config.baseline:
            add("no-prune", "no-prune", seed, no_prune=True)
        for level in levels:
            lv = _level_name(config, level)
            for score in config.scores:
                add(f"{score}-{lv}", "iterative", seed, score=score, **{target: level})
            if config.one_shot:
                add(f"{config.scores[0]}-oneshot-{lv}", "one-shot", seed, score=config.scores[0], one_shot=True,
                    **{"target_removal": level} if target == "target_removal" else {"gamma": level})
            for name, overrides in config.variants.items():
                # a variant naming a recipe prunes by the recipe's score unless it names one
                score = None if "recipe" in overrides else config.scores[0]
                add(f"{config.scores[0]}-{lv}-{name}", name, seed, **{"score": score, target: level, **overrides})
    files = []
    for trim in trims:
        if trim.variant != "iterative" or trim.config.score != config.scores[0]:
            continue
        for suffix in (["compress"] if config.compress else []) + list(config.formats):
            kind = "compress" if suffix == "compress" else "format"
            files.append(PlannedRun(f"{trim.name}+{suffix}", kind, trim.variant, trim.config,
                                    f"{trim.group}+{suffix}", trim.name, None if kind == "compress" else suffix))
    if config.compress:
        files.append(PlannedRun("input+compress", "compress", "input", replace(base, no_prune=True),
                                "input+compress", "input"))
    return trims + files


def parse_variant(tokens: list[str]) -> tuple[str, dict]:
    """`NAME KEY=VALUE ...` (the command line's --variant) -> (NAME, TrimConfig fields typed)."""
    if len(tokens) < 2:
        raise ConfigError("--variant takes a name and at least one KEY=VALUE trim setting", "variant")
    hints = typing.get_type_hints(TrimConfig)
    settings = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in hints or key in ("seed",):
            raise ConfigError(f"--variant {tokens[0]}: {token!r} is not KEY=VALUE of a trim setting", "variant")
        kinds = [t for t in typing.get_args(hints[key]) if t is not type(None)] or [hints[key]]
        kind = kinds[0]
        try:
            settings[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise ConfigError(f"--variant {tokens[0]}: {key} needs a {kind.__name__}, got {value!r}",
                              "variant") from None
    return tokens[0], settings


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


INPUT = "input"  # the job that evaluates the input, which every run compares against


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
        verb = "trim" if run.kind == "trim" else ("compress" if run.kind == "compress" else "export")
        return RunSummary.read(run.folder(self.root), verb)

    def execute(self, run: PlannedRun, known: Evaluation) -> RunSummary:
        """One run, started or resumed in its folder."""
        out = run.folder(self.root)
        again = (out / CONFIG_NAME).is_file()
        progress.log(f"== {out.relative_to(self.root)} ({'resuming' if again else 'starting'})")
        control = replace(self.control, resume=again)
        if run.kind == "trim":
            return trim_scene(Inputs() if again else self.spec.inputs, out, run.config, control, known).summary
        source = self.spec.source if run.source == INPUT else self.root / "runs" / run.source
        views = self.spec.views
        if again:
            inputs = Inputs()
        elif views is not None:  # scored, like the trims, against the input's renders
            inputs = Inputs(source, views=views, photo_free=True, teacher=self.spec.source)
        elif run.source == INPUT:
            inputs = Inputs(source, self.data, self.data_options)
        else:
            inputs = Inputs(source)  # a trim folder records its dataset
        if run.kind == "compress":
            trimmed = known if run.source == INPUT or views is not None else \
                Evaluation.read(source, f"ours_{self.finished_trim(run)}")
            return compress_model(inputs, out, self.configs.compress, control, trimmed).summary
        export = self.configs.export.resolved(resolve_device(self.control.device))
        return export_model(inputs, run.file(self.root), export, control).summary

    def finished_trim(self, run: PlannedRun) -> int:
        return RunSummary.read(self.root / "runs" / run.source, "trim").iterations

    def _checked(self, run: PlannedRun) -> RunSummary | None:
        """A finished run's summary; a run made with other settings than the sweep asks for now is refused, naming
        them (a run started with other settings is never resumed or counted with these)."""
        out = run.folder(self.root)
        if (out / CONFIG_NAME).is_file():
            recorded, wanted = self._recorded_and_wanted(run, read_config(out) or {})
            changed = differing(recorded, wanted)
            if changed:
                raise GstrimError(f"this run was made with other {run.kind} settings than the sweep asks for now "
                                  f"({', '.join(changed)}); sweep into another folder or remove the run", out)
        return self.finished(run)

    def _recorded_and_wanted(self, run: PlannedRun, config: dict) -> tuple[dict, dict]:
        """The settings `config` (a run's config.json) records and those the sweep would give the run, as flat
        dicts (a run recorded before an option existed reads as that option's default, so it matches)."""
        device = resolve_device(self.control.device)
        if run.kind == "trim":
            recorded = _recorded_trim(config)
            return (asdict(recorded) if recorded else {"trim": None}), asdict(run.config.resolved(device))
        if run.kind == "compress":
            try:
                recorded = asdict(from_record(CompressConfig, config.get("compress") or {}))
            except GstrimError:
                recorded = {"compress": None}
            return recorded, asdict(self.configs.compress.resolved(device))
        wanted = self.configs.export.resolved(device).record(FORMATS[run.format])
        recorded = dict(config.get("export") or {})
        options, wanted_options = recorded.pop("options", {}) or {}, wanted.pop("options")
        return ({**recorded, **{f"options.{k}": v for k, v in options.items()}},
                {**wanted, **{f"options.{k}": v for k, v in wanted_options.items()}})

    # ---- collect --------------------------------------------------------------------------------------
    def collect(self, known: Evaluation, summaries: dict[str, RunSummary]) -> tuple[list[Row], dict[str, Path]]:
        """The table's rows (input, compressed input, trims, files, ablations) and where each row's scene is."""
        reference = {run.config.seed: summaries[run.name].output.psnr for run in self.runs
                     if run.variant == "no-prune"}
        table = Table(self.model, known, reference)
        rows, scenes = [table.input_row()], {}
        files = []
        for run in self.runs:
            s = summaries[run.name]
            if run.kind == "trim":
                rows.append(table.trim_row(run, s))
                scenes[run.name] = run.folder(self.root)
                continue
            path = run.folder(self.root) if run.kind == "compress" else run.file(self.root)
            row = table.file_row(run, s, str(path.relative_to(self.root)))
            (rows.insert(1, row) if run.source == "input" else files.append(row))
            scenes[run.name] = path / s.details["file"] if run.kind == "compress" else path
        rows += files
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


class Table:
    """Rows of a sweep's table, each PSNR also against the no-prune model of its own seed."""

    def __init__(self, model: Model, known: Evaluation | None, reference: dict[int, float]):
        self.gaussians = len(model.scene)
        self.input_mb = FORMATS["ply"].size(len(model.scene), model.scene.sh_degree) / 1e6
        self.reference = reference
        # photo-free (no evaluation of the input), the references are the input's renders: identical by definition
        m = known.metrics() if known is not None else None
        self.input_metrics = (m.psnr, m.ssim, m.lpips) if m is not None else (math.inf, 1.0, 0.0)

    def dpsnr(self, psnr: float, seed: int) -> float:
        """Against the no-prune model of the same seed (the input when the sweep has none)."""
        return psnr - self.reference.get(seed, self.input_metrics[0])

    def input_row(self) -> Row:
        psnr, ssim, lpips = self.input_metrics
        return Row("input", "input", "input", "", None, "none", 0, self.gaussians, self.input_mb, 1.0, 0.0,
                   psnr, ssim, lpips, self.dpsnr(psnr, 0), path="input", group="input")

    @staticmethod
    def _target(config: TrimConfig) -> tuple[float | None, str]:
        if config.gamma is not None:
            return config.gamma, "gamma"
        if config.no_prune:
            return None, "none"
        return config.target_removal, "removal"

    def trim_row(self, run: PlannedRun, s: RunSummary) -> Row:
        o = s.output
        target, kind = self._target(run.config)
        return Row(run.name, "no-prune" if run.variant == "no-prune" else "trim", run.variant,
                   "" if run.variant == "no-prune" else run.config.with_recipe().score, target, kind, run.config.seed,
                   s.gaussians_out, s.mb_out, self.input_mb / s.mb_out, s.removed, o.psnr, o.ssim, o.lpips,
                   self.dpsnr(o.psnr, run.config.seed), wall_s=s.wall_s, path=f"runs/{run.name}", group=run.group,
                   stages_s={"trim_s": round(s.wall_s, 1)}, host=ran_on(s.host))

    def file_row(self, run: PlannedRun, s: RunSummary, path: str) -> Row:
        """The row of a file made from a trim's scene (or the input's): its compressed or viewer-format file."""
        o = s.output
        target, target_kind = self._target(run.config)
        mb = s.details["mb"]
        score = run.config.with_recipe().score if run.variant != "input" else ""
        return Row(run.name, run.kind, run.variant, score, target, target_kind, run.config.seed, s.gaussians_out, mb,
                   self.input_mb / mb, 1.0 - s.gaussians_out / self.gaussians, o.psnr, o.ssim, o.lpips,
                   self.dpsnr(o.psnr, run.config.seed), wall_s=s.wall_s, path=path, group=run.group,
                   stages_s=s.details.get("stages_s", {}), host=ran_on(s.host))

    def ablation_row(self, folder: Path, root: Path) -> Row | None:
        """The row of a `gstrim ablate` run kept in SWEEP/ablations/ (None when it has not finished)."""
        a = read_ablation(folder)
        if a is None:
            return None
        return Row(folder.name, "ablation", a["ablation"], "", None, "none", a["settings"].get("seed", 0),
                   a["gaussians"], a["mb"], self.input_mb / a["mb"], 1.0 - a["gaussians"] / self.gaussians,
                   a["psnr"], a["ssim"], a["lpips"], self.dpsnr(a["psnr"], 0), wall_s=a["wall_s"],
                   path=str(folder.relative_to(root)), group=folder.name)


def ran_on(host: dict) -> str:
    """`host` or `host/node` (the first 8 characters of a Ray node id) of a run summary's `host` record."""
    if not host:
        return ""
    node = host.get("node")
    return host["host"] + (f"/{node[:8]}" if node else "")


def _recorded_trim(config: dict | None) -> TrimConfig | None:
    settings = (config or {}).get("trim")
    if not isinstance(settings, dict):
        return None
    try:
        return from_record(TrimConfig, settings)
    except GstrimError:  # a setting this version no longer has changed what the run did
        return None


@dataclass
class SweepRunConfigs:
    """The settings every run of a sweep shares: the trims' (but what the sweep sets per run), the
    compressions' and the viewer formats'."""
    trim: TrimConfig = field(default_factory=TrimConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def check_sweep_settings(config: SweepConfig, configs: SweepRunConfigs) -> None:
    """Every setting of every run the sweep will make, checked before the first run starts."""
    config.validate()
    if config.compress:
        configs.compress.validate()
    if config.formats:
        configs.export.validate()
    given = {f: getattr(configs.trim, f) for f in PER_RUN_FIELDS
             if getattr(configs.trim, f) != getattr(TrimConfig(), f)}
    if given:
        raise ConfigError(f"a sweep sets {', '.join(given)} per run; give its levels, scores and seeds instead",
                          *given)


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
        same_model = resolve_recorded(recorded["model"], out).resolve() == spec.source.resolve()
        data = recorded["data"]
        if spec.views is not None:
            same_data = data.get("virtual") == entry["data"]["virtual"]
        else:
            same_data = "path" in data and resolve_recorded(data["path"], out).resolve() == \
                Path(spec.inputs.data).resolve()
        if not (same_model and same_data):
            raise GstrimError("this sweep folder holds runs of another scene or dataset; choose another folder", out)
        return
    if holds_other_files(out, SWEEP_NAME):
        raise GstrimError("output folder is not empty and holds no sweep; choose another", out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(entry, indent=1))

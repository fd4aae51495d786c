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
import re
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gstrim import progress
from gstrim.ablations import read_ablation
from gstrim.compress.pipeline import COMPRESSED_DIR, CompressConfig, compress_model
from gstrim.data import load_dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.export import ExportConfig, export_model, run_dir_of
from gstrim.io import load_scene
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS
from gstrim.io.model import CONFIG_NAME, Model, load_model, read_config, relative_to_folder, resolve_recorded
from gstrim.metrics.fps import measure_fps
from gstrim.prune.pipeline import trim_scene
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.report.table import Row, write_table
from gstrim.run_folder import RunFolder

SWEEP_RECORD = "gstrim.sweep/1"
SWEEP_NAME = "sweep.json"
# fields a sweep sets per run; the others (schedule, statistics, restarts) are shared by all its trims
PER_RUN_FIELDS = ("score", "gamma", "target_removal", "target_count", "target_mb", "one_shot", "no_prune", "seed")


@dataclass
class SweepConfig:
    removals: list[float] = field(default_factory=lambda: [0.8, 0.9])
    gammas: list[float] | None = None  # instead of removals: quantile levels per prune step
    scores: list[str] = field(default_factory=lambda: ["gradient", "opacity"])
    one_shot: bool = False  # also one-shot runs of the first score
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: bool = True  # the unpruned model fine-tuned as long, per seed
    compress: bool = False  # c3dgs compression of the input and of the first score's iterative trims
    formats: list[str] = field(default_factory=list)  # viewer formats those trims are exported to (fine-tuned)
    # named sets of TrimConfig fields, each run like the first score's iterative trims at every level and seed
    variants: dict[str, dict] = field(default_factory=dict)
    fps_views: int = 20
    fps_repeats: int = 3

    def validate(self) -> None:
        for score in self.scores:
            if score not in SCORES:
                raise ConfigError(f"unknown score {score!r}; use one of {', '.join(SCORES)}", "scores")
        if not self.scores:
            raise ConfigError("give at least one score", "scores")
        for fmt in self.formats:
            if fmt not in FORMATS or fmt == "gsz":
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
class PlannedTrim:
    name: str
    variant: str  # iterative, one-shot, no-prune or a variant's name
    config: TrimConfig
    group: str  # the name without the seed


def _level_name(config: SweepConfig, level: float) -> str:
    return f"g{level:g}" if config.gammas is not None else f"{level:g}"


def plan(config: SweepConfig, base: TrimConfig) -> list[PlannedTrim]:
    """Every trim run of the sweep, the no-prune references first."""
    levels = config.gammas if config.gammas is not None else config.removals
    target = "gamma" if config.gammas is not None else "target_removal"
    runs = []

    def add(group: str, variant: str, seed: int, **settings) -> None:
        name = group if seed == 0 else f"{group}-s{seed}"
        runs.append(PlannedTrim(name, variant, replace(base, seed=seed, **settings), group))

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
                add(f"{config.scores[0]}-{lv}-{name}", name, seed, **{"score": config.scores[0], target: level,
                                                                       **overrides})
    return runs


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


class Sweep:
    """One sweep folder: its runs, done or resumed in order, and the table of their results."""

    def __init__(self, root: Path, model: Model, model_path: Path, data: str | Path, data_options: dict,
                 config: SweepConfig, trim: TrimConfig, compress: CompressConfig, export: ExportConfig, device: str):
        self.root, self.model, self.model_path = root, model, model_path
        self.data, self.data_options = data, data_options
        self.config, self.trim, self.compress, self.export = config, trim, compress, export
        self.device = device
        self.dataset = load_dataset(data, **data_options)
        self.fps_device = ""  # what the FPS column was measured on, once measured

    # ---- the input ---------------------------------------------------------------------------------
    def input_evaluation(self) -> Evaluation:
        """Evaluated once, into SWEEP/input/results.json, and read back by every later sweep."""
        folder = RunFolder(self.root / "input", {})
        known = folder.read_evaluation("input")
        if known is None:
            progress.log("== input: test-view evaluation")
            folder.root.mkdir(parents=True, exist_ok=True)
            known = folder.evaluate(self.model.scene, "input", self.dataset, self.device)
        return known

    # ---- runs --------------------------------------------------------------------------------------
    def run_trim(self, run: PlannedTrim, known: Evaluation) -> RunSummary:
        out = self.root / "runs" / run.name
        wanted = run.config.resolved(resolve_device(self.device))
        recorded = read_config(out) if (out / CONFIG_NAME).is_file() else None
        # compared as configurations, so that a run made before a new option existed (its default) still matches
        if recorded is not None and _recorded_trim(recorded) != wanted:
            raise GstrimError("this run was made with other trim settings than the sweep asks for now; sweep "
                              "into another folder or remove the run", out)
        finished = RunSummary.read(out, "trim")
        if finished is not None:
            return finished
        progress.log(f"== {run.name} ({'resuming' if recorded else 'starting'})")
        return trim_scene(None if recorded else self.model_path, out, data=self.data, data_options=self.data_options,
                          config=run.config, device=self.device, resume=recorded is not None,
                          input_evaluation=known).summary

    def run_compress(self, source: Path | None, out: Path, known: Evaluation | None) -> RunSummary:
        finished = RunSummary.read(out, "compress")
        if finished is not None:
            return finished
        again = (out / CONFIG_NAME).is_file()
        progress.log(f"== {out.relative_to(self.root)} ({'resuming' if again else 'starting'})")
        data = {} if source is not None and source.is_dir() else {"data": self.data,
                                                                  "data_options": self.data_options}
        return compress_model(None if again else source, out, config=self.compress, device=self.device,
                              resume=again, input_evaluation=known, **(data if not again else {})).summary

    def run_export(self, trim_dir: Path, fmt: str) -> RunSummary:
        target = trim_dir / f"scene{FORMATS[fmt].suffixes[0]}"
        finished = RunSummary.read(run_dir_of(target), "export")
        if finished is not None:
            return finished
        again = (run_dir_of(target) / CONFIG_NAME).is_file()
        progress.log(f"== {target.relative_to(self.root)} ({'resuming' if again else 'starting'})")
        return export_model(None if again else trim_dir, target, data=None if again else self.data,
                            data_options=None if again else self.data_options, config=self.export,
                            device=self.device, resume=again).summary

    # ---- the table -------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        known = self.input_evaluation()
        runs = plan(self.config, self.trim)
        summaries = {run.name: self.run_trim(run, known) for run in runs}
        extra: list[Row] = []
        scene_of: dict[str, Path] = {}
        self.known = known
        self.reference = {run.config.seed: summaries[run.name].output.psnr for run in runs
                          if run.variant == "no-prune"}
        rows = [self._input_row()]
        for run in runs:
            s = summaries[run.name]
            out = self.root / "runs" / run.name
            rows.append(self._trim_row(run, s))
            scene_of[run.name] = out
            if run.variant != "iterative" or run.config.score != self.config.scores[0]:
                continue  # Table 2: the method's own trims go on to compression and viewer formats
            if self.config.compress:
                trimmed = Evaluation.read(out, f"ours_{s.iterations}")
                c = self.run_compress(out, out / COMPRESSED_DIR, trimmed)
                extra.append(self._file_row("compress", "compress", run, c,
                                            str((out / COMPRESSED_DIR).relative_to(self.root))))
                scene_of[f"{run.name}+compress"] = self._compressed_file(out / COMPRESSED_DIR, c)
            for fmt in self.config.formats:
                e = self.run_export(out, fmt)
                file = Path(e.details["file"])
                extra.append(self._file_row(fmt, "format", run, e, str(file.relative_to(self.root))))
                scene_of[f"{run.name}+{fmt}"] = file
        if self.config.compress:
            out = self.root / "runs" / "input+compress"
            c = self.run_compress(self.model.source, out, known)
            source = PlannedTrim("input", "input", replace(self.trim, no_prune=True), "input")
            rows.insert(1, self._file_row("compress", "compress", source, c, str(out.relative_to(self.root))))
            scene_of["input+compress"] = self._compressed_file(out, c)
        rows += extra
        for folder in sorted((self.root / "ablations").glob("*/")):
            row = self._ablation_row(folder)
            if row is not None:
                rows.append(row)
                scene_of[row.name] = folder
        self._measure_fps(rows, scene_of)
        meta = self.meta()
        write_table(self.root, rows, meta)
        return SweepResult(self.root, rows)

    @staticmethod
    def _compressed_file(run_dir: Path, summary: RunSummary) -> Path:
        return run_dir / summary.details["file"]

    def _dpsnr(self, psnr: float, seed: int) -> float:
        """Against the no-prune model of the same seed (the input when the sweep has none)."""
        return psnr - self.reference.get(seed, self.known.metrics().psnr)

    def _input_row(self) -> Row:
        m = self.known.metrics()
        return Row("input", "input", "input", "", None, "none", 0, len(self.model.scene), self._input_mb(), 1.0, 0.0,
                   m.psnr, m.ssim, m.lpips, self._dpsnr(m.psnr, 0), path="input", group="input")

    def _input_mb(self) -> float:
        return FORMATS["ply"].size(len(self.model.scene), self.model.scene.sh_degree) / 1e6

    def _target(self, config: TrimConfig) -> tuple[float | None, str]:
        if config.gamma is not None:
            return config.gamma, "gamma"
        if config.no_prune:
            return None, "none"
        return config.target_removal, "removal"

    def _trim_row(self, run: PlannedTrim, s: RunSummary) -> Row:
        o = s.output
        target, kind = self._target(run.config)
        return Row(run.name, "no-prune" if run.variant == "no-prune" else "trim", run.variant,
                   "" if run.variant == "no-prune" else run.config.score, target, kind, run.config.seed,
                   s.gaussians_out, s.mb_out, self._input_mb() / s.mb_out, s.removed, o.psnr, o.ssim, o.lpips,
                   self._dpsnr(o.psnr, run.config.seed), wall_s=s.wall_s, path=f"runs/{run.name}", group=run.group,
                   stages_s={"trim_s": round(s.wall_s, 1)})

    def _file_row(self, suffix: str, kind: str, run: PlannedTrim, s: RunSummary, path: str) -> Row:
        """The row of a file made from `run`'s scene (its compressed or viewer-format file): `<run>+<suffix>`."""
        o = s.output
        target, target_kind = self._target(run.config)
        mb = s.details["mb"]
        removed = 1.0 - s.gaussians_out / len(self.model.scene)
        score = run.config.score if run.variant != "input" else ""
        return Row(f"{run.name}+{suffix}", kind, run.variant, score, target, target_kind, run.config.seed,
                   s.gaussians_out, mb, self._input_mb() / mb, removed, o.psnr, o.ssim, o.lpips,
                   self._dpsnr(o.psnr, run.config.seed), wall_s=s.wall_s, path=path,
                   group=f"{run.group}+{suffix}", stages_s=s.details.get("stages_s", {}))

    def _ablation_row(self, folder: Path) -> Row | None:
        """The row of a `gstrim ablate` run kept in SWEEP/ablations/ (None when it has not finished)."""
        a = read_ablation(folder)
        if a is None:
            return None
        return Row(folder.name, "ablation", a["ablation"], "", None, "none", a["settings"].get("seed", 0),
                   a["gaussians"], a["mb"], self._input_mb() / a["mb"], 1.0 - a["gaussians"] / len(self.model.scene),
                   a["psnr"], a["ssim"], a["lpips"], self._dpsnr(a["psnr"], 0), wall_s=a["wall_s"],
                   path=str(folder.relative_to(self.root)), group=folder.name)

    def _measure_fps(self, rows: list[Row], scene_of: dict[str, Path]) -> None:
        cameras = (self.dataset.test or self.dataset.train)[: self.config.fps_views]
        for row in progress.track(rows, "FPS of every row"):
            if row.kind == "input":
                scene = self.model.scene  # loaded already
            else:
                source = scene_of[row.name]
                scene = load_model(source).scene if source.is_dir() else load_scene(source)
            fps = measure_fps(scene, cameras, background=self.dataset.background, device=self.device,
                              repeats=self.config.fps_repeats)
            row.fps, row.fps_p10_ms, row.fps_p90_ms = fps.fps, fps.p10_ms, fps.p90_ms
            self.fps_device = f"{fps.backend}: {fps.device}"

    def meta(self) -> dict:
        return {"model": relative_to_folder(self.model.source, self.root),
                "data": {"path": relative_to_folder(self.data, self.root), **self.data_options},
                "fps": {"views": min(self.config.fps_views, len(self.dataset.test or self.dataset.train)),
                        "repeats": self.config.fps_repeats, "device": self.fps_device},
                "trim": self.trim.resolved(resolve_device(self.device)).to_dict(),
                "sweep": asdict(self.config)}


def _recorded_trim(config: dict) -> TrimConfig | None:
    names = {f.name for f in dataclasses.fields(TrimConfig)}
    settings = config.get("trim")
    if not isinstance(settings, dict) or not set(settings) <= names:
        return None
    return TrimConfig(**settings)


def run_sweep(model_path: str | Path, out_dir: str | Path, *, data: str | Path | None = None,
              data_options: dict | None = None, config: SweepConfig | None = None, trim: TrimConfig | None = None,
              compress: CompressConfig | None = None, export: ExportConfig | None = None,
              device: str = "auto") -> SweepResult:
    """Run (or continue) the sweep of `model_path` in `out_dir`; returns its table rows."""
    out = Path(out_dir)
    config = config or SweepConfig()
    config.validate()
    trim = trim or TrimConfig()
    given = {f: getattr(trim, f) for f in PER_RUN_FIELDS if getattr(trim, f) != getattr(TrimConfig(), f)}
    if given:
        raise ConfigError(f"a sweep sets {', '.join(given)} per run; give its levels, scores and seeds instead",
                          *given)
    model = load_model(model_path)
    if data is None:
        data, recorded = model.recorded_dataset()
        data_options = {**recorded, **(data_options or {})}
    data_options = dict(data_options or {})
    _record(out, model.source, data, data_options)
    sweep = Sweep(out, model, Path(model_path), data, data_options, config, trim, compress or CompressConfig(),
                  export or ExportConfig(), device)
    if not sweep.dataset.test:
        raise GstrimError("a sweep compares held-out views, and this dataset has no test split", sweep.dataset.root)
    return sweep.run()


def _record(out: Path, source: Path, data, data_options: dict) -> None:
    """sweep.json: the scene and dataset of this folder's runs; a later sweep into it must use the same."""
    path = out / SWEEP_NAME
    entry = {"record": SWEEP_RECORD, "model": relative_to_folder(source, out),
             "data": {"path": relative_to_folder(data, out), **data_options}}
    if path.is_file():
        recorded = json.loads(path.read_text())
        same_model = resolve_recorded(recorded["model"], out).resolve() == Path(source).resolve()
        same_data = resolve_recorded(recorded["data"]["path"], out).resolve() == Path(data).resolve()
        if not (same_model and same_data):
            raise GstrimError("this sweep folder holds runs of another scene or dataset; choose another folder", out)
        return
    if out.exists() and any(out.iterdir()):
        raise GstrimError("output folder is not empty and holds no sweep; choose another", out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(entry, indent=1))

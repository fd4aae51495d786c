"""The kinds of run a sweep makes, each one registration (`register_run_kind`). A kind says how its runs are
planned (from the sweep's input, or from the scene of another planned run), where each works, how it runs or
resumes, which settings it records (so a run made with other settings is refused, not reused) and its row of
the table. The sweep itself never branches on a kind's name: a new kind of row is one `RunKind` subclass.

Registered here: `trim` (the paper's runs and the no-prune reference), `compress` (c3dgs of the first score's
iterative trims and of the input), `format` (those trims exported to viewer formats through their quantisers)
and `lod` (the input's levels of detail, a row per level).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from gstrim.compress.stages import CompressConfig
from gstrim.errors import GstrimError
from gstrim.io.formats import FORMATS, ply_size
from gstrim.io.model import CONFIG_NAME, Model, read_config
from gstrim.options import from_record
from gstrim.pipelines import lod
from gstrim.pipelines.ablate import read_ablation
from gstrim.pipelines.compress import COMPRESSED_DIR, compress_model
from gstrim.pipelines.export import export_model, run_dir_of
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.report.table import Row


class Sweep(Protocol):
    """What a kind sees of the sweep that runs it (`pipelines.sweep.Sweep`)."""
    root: Path
    spec: Any  # SweepSpec: inputs, views (photo-free), source (the input's own source)
    configs: SweepRunConfigs
    control: RunControl
    data: Path | None
    data_options: dict

    def source_of(self, run: PlannedRun) -> Path: ...


INPUT = "input"  # the sweep's input: the job that evaluates it, and the source of runs made from it


@dataclass
class PlannedRun:
    name: str  # unique in the sweep: trims by their setting, files as <trim>+compress, <trim>+<format>
    kind: str  # its registered RunKind's name
    variant: str  # iterative, one-shot, no-prune, input or a variant's name
    config: TrimConfig  # the trim's settings (for a file: those of the trim it is made from)
    group: str  # the name without the seed
    source: str | None = None  # the planned run whose scene it starts from ("input": the input; trims: None)
    format: str | None = None  # format runs: the viewer format

    @property
    def type(self) -> RunKind:
        return RUN_KINDS[self.kind]

    def folder(self, root: Path) -> Path:
        return self.type.folder(self, root)


class RunKind:
    """One kind of sweep run. Override what differs; the defaults fit a run that makes a file from another
    planned run's scene."""

    name: ClassVar[str]
    verb: ClassVar[str]  # whose run summary (results.json entry) a finished run of the kind leaves

    def plan_from_input(self, config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
        """Runs of this kind made from the sweep's input (planned first, in registration order)."""
        return []

    def plan_from_run(self, config: SweepConfig, run: PlannedRun) -> list[PlannedRun]:
        """Runs of this kind made from the scene of `run`, one of the runs planned from the input."""
        return []

    def folder(self, run: PlannedRun, root: Path) -> Path:
        """Where the run works and leaves its summary."""
        raise NotImplementedError

    def path(self, run: PlannedRun, root: Path) -> Path:
        """What the run's row points at (a run folder, a file)."""
        return run.folder(root)

    def scene(self, run: PlannedRun, root: Path, summary: RunSummary) -> Path:
        """The row's scene, as `load_model` or `load_scene` opens it (its render speed is timed)."""
        return self.path(run, root)

    def execute(self, sweep: Sweep, run: PlannedRun, control: RunControl, known: Evaluation | None) -> RunSummary:
        """Make the run in its folder (`control.resume`: it had started) and return its summary."""
        raise NotImplementedError

    def settings(self, sweep: Sweep, run: PlannedRun, recorded: dict) -> tuple[dict, dict]:
        """The settings the run's config.json (`recorded`) holds and those the sweep would give it, as flat
        dicts (a run recorded before an option existed reads as that option's default, so it matches)."""
        raise NotImplementedError

    def started(self, run: PlannedRun, root: Path) -> bool:
        """Whether the run has recorded its settings (so it resumes, and is checked against the sweep's)."""
        return (run.folder(root) / CONFIG_NAME).is_file()

    def recorded_settings(self, sweep: Sweep, run: PlannedRun) -> tuple[dict, dict] | None:
        """(recorded, wanted) settings of a run that has started; None before it starts."""
        if not self.started(run, sweep.root):
            return None
        return self.settings(sweep, run, read_config(run.folder(sweep.root)) or {})

    def rows(self, table: Table, run: PlannedRun, summary: RunSummary, root: Path) -> list[tuple[Row, Path]]:
        """The run's rows of the table, each with its scene (`scene`)."""
        return [(table.file_row(run, summary, str(self.path(run, root).relative_to(root))),
                 self.scene(run, root, summary))]


RUN_KINDS: dict[str, RunKind] = {}


def register_run_kind(kind: RunKind) -> RunKind:
    """Make `kind` part of every sweep planned from now on (its runs come after those of the kinds before it)."""
    if kind.name in RUN_KINDS:
        raise ValueError(f"run kind {kind.name!r} is registered already")
    RUN_KINDS[kind.name] = kind
    return kind


def plan(config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
    """Every run of the sweep in the order they run: those made from the input (the trims, the no-prune
    references first), then those made from each of them (a file's run after the trim it is made from)."""
    first = [run for kind in RUN_KINDS.values() for run in kind.plan_from_input(config, base)]
    return first + [made for run in first for kind in RUN_KINDS.values() for made in kind.plan_from_run(config, run)]


def source_inputs(sweep: Sweep, run: PlannedRun) -> Inputs:
    """What a run made from another run's scene (or from the input) opens: photo-free, scored like the trims
    against the input's renders; with photos, the input's dataset or the one its trim folder records."""
    source = sweep.source_of(run)
    if sweep.spec.views is not None:
        return Inputs(source, views=sweep.spec.views, photo_free=True, teacher=sweep.spec.source)
    if run.source == INPUT:
        return Inputs(source, sweep.data, sweep.data_options)
    return Inputs(source)


def is_method_trim(config: SweepConfig, run: PlannedRun) -> bool:
    """The runs files are made from: the first score's iterative trims (the paper's Table 2)."""
    return run.kind == TrimKind.name and run.variant == "iterative" and run.config.score == config.scores[0]


def sweep_recipe(config: TrimConfig) -> TrimConfig:
    """A sweep makes the paper's tables: its runs take the paper's recipe unless another is named."""
    return replace(config, recipe="paper") if config.recipe == "auto" else config


def _level_name(config: SweepConfig, level: float) -> str:
    return f"g{level:g}" if config.gammas is not None else f"{level:g}"


class TrimKind(RunKind):
    name = verb = "trim"

    def plan_from_input(self, config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
        levels = config.gammas if config.gammas is not None else config.removals
        target = "gamma" if config.gammas is not None else "target_removal"
        trims = []

        def add(group: str, variant: str, seed: int, **settings) -> None:
            name = group if seed == 0 else f"{group}-s{seed}"
            trims.append(PlannedRun(name, self.name, variant, sweep_recipe(replace(base, seed=seed, **settings)),
                                    group))

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
        return trims

    def folder(self, run: PlannedRun, root: Path) -> Path:
        return root / "runs" / run.name

    def execute(self, sweep: Sweep, run: PlannedRun, control: RunControl, known: Evaluation | None) -> RunSummary:
        inputs = Inputs() if control.resume else sweep.spec.inputs
        return trim_scene(inputs, run.folder(sweep.root), run.config, control, known).summary

    def settings(self, sweep: Sweep, run: PlannedRun, recorded: dict) -> tuple[dict, dict]:
        trim = _recorded_trim(recorded)
        wanted = asdict(run.config.resolved(resolve_device(sweep.control.device)))
        return (asdict(trim) if trim else {"trim": None}), wanted

    def rows(self, table: Table, run: PlannedRun, summary: RunSummary, root: Path) -> list[tuple[Row, Path]]:
        return [(table.trim_row(run, summary), run.folder(root))]


class CompressKind(RunKind):
    name = verb = "compress"

    def plan_from_input(self, config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
        if not config.compress:
            return []
        return [PlannedRun("input+compress", self.name, "input", replace(base, no_prune=True), "input+compress",
                           INPUT)]

    def plan_from_run(self, config: SweepConfig, run: PlannedRun) -> list[PlannedRun]:
        if not (config.compress and is_method_trim(config, run)):
            return []
        return [PlannedRun(f"{run.name}+compress", self.name, run.variant, run.config, f"{run.group}+compress",
                           run.name)]

    def folder(self, run: PlannedRun, root: Path) -> Path:
        if run.source == INPUT:
            return root / "runs" / "input+compress"
        return root / "runs" / run.source / COMPRESSED_DIR

    def scene(self, run: PlannedRun, root: Path, summary: RunSummary) -> Path:
        return run.folder(root) / summary.details["file"]

    def execute(self, sweep: Sweep, run: PlannedRun, control: RunControl, known: Evaluation | None) -> RunSummary:
        if run.source == INPUT or sweep.spec.views is not None:
            trimmed = known
        else:  # the trim's own evaluation of its final scene
            source = sweep.source_of(run)
            trimmed = Evaluation.read(source, f"ours_{RunSummary.read(source, TrimKind.verb).iterations}")
        inputs = Inputs() if control.resume else source_inputs(sweep, run)
        return compress_model(inputs, run.folder(sweep.root), sweep.configs.compress, control, trimmed).summary

    def settings(self, sweep: Sweep, run: PlannedRun, recorded: dict) -> tuple[dict, dict]:
        try:
            settings = asdict(from_record(CompressConfig, recorded.get("compress") or {}))
        except GstrimError:
            settings = {"compress": None}
        return settings, asdict(sweep.configs.compress.resolved(resolve_device(sweep.control.device)))


class FormatKind(RunKind):
    name, verb = "format", "export"

    def plan_from_run(self, config: SweepConfig, run: PlannedRun) -> list[PlannedRun]:
        if not is_method_trim(config, run):
            return []
        return [PlannedRun(f"{run.name}+{fmt}", self.name, run.variant, run.config, f"{run.group}+{fmt}", run.name,
                           fmt) for fmt in config.formats]

    def folder(self, run: PlannedRun, root: Path) -> Path:
        return run_dir_of(self.path(run, root))  # the fine-tuning folder beside the file

    def path(self, run: PlannedRun, root: Path) -> Path:
        return root / "runs" / run.source / FORMATS[run.format].file_name("scene")

    def execute(self, sweep: Sweep, run: PlannedRun, control: RunControl, known: Evaluation | None) -> RunSummary:
        export = sweep.configs.export.resolved(resolve_device(sweep.control.device))
        inputs = Inputs() if control.resume else source_inputs(sweep, run)
        return export_model(inputs, self.path(run, sweep.root), export, control).summary

    def settings(self, sweep: Sweep, run: PlannedRun, recorded: dict) -> tuple[dict, dict]:
        wanted = sweep.configs.export.resolved(resolve_device(sweep.control.device)).record(FORMATS[run.format])
        recorded = dict(recorded.get("export") or {})
        options, wanted_options = recorded.pop("options", {}) or {}, wanted.pop("options")
        return ({**recorded, **{f"options.{k}": v for k, v in options.items()}},
                {**wanted, **{f"options.{k}": v for k, v in wanted_options.items()}})


class LodKind(RunKind):
    """The input's levels of detail (`gstrim lod` with its defaults and the sweep's trim settings): one chain,
    a row per level."""
    name, verb = "lod", lod.VERB

    def plan_from_input(self, config: SweepConfig, base: TrimConfig) -> list[PlannedRun]:
        if not config.lod:
            return []
        return [PlannedRun("lod", self.name, "nested", sweep_recipe(base), "lod")]

    def folder(self, run: PlannedRun, root: Path) -> Path:
        return root / "runs" / run.name

    def execute(self, sweep: Sweep, run: PlannedRun, control: RunControl, known: Evaluation | None) -> RunSummary:
        # each level fine-tuned through SOG as long as the sweep's viewer formats are
        sog = sweep.configs.export.resolved(resolve_device(sweep.control.device)).finetune
        lod.make_levels(sweep.spec.inputs, run.folder(sweep.root), lod.LodConfig(sog_finetune=sog), run.config,
                        control=control)
        return RunSummary.read(run.folder(sweep.root), self.verb)

    def started(self, run: PlannedRun, root: Path) -> bool:
        return (run.folder(root) / lod.RECORD_NAME).is_file()

    def settings(self, sweep: Sweep, run: PlannedRun, recorded: dict) -> tuple[dict, dict]:
        return recorded, run.config.resolved(resolve_device(sweep.control.device)).to_dict()

    def recorded_settings(self, sweep: Sweep, run: PlannedRun) -> tuple[dict, dict] | None:
        if not self.started(run, sweep.root):
            return None
        record = json.loads((run.folder(sweep.root) / lod.RECORD_NAME).read_text())
        return self.settings(sweep, run, record.get("settings", {}).get("trim", {}))

    def rows(self, table: Table, run: PlannedRun, summary: RunSummary, root: Path) -> list[tuple[Row, Path]]:
        folder = run.folder(root)
        levels = json.loads((folder / "levels.json").read_text())["levels"][1:]
        rows = []
        for level in levels:
            mb = level["ply_mb"]
            name = f"{run.name}-{level['level']}"
            rows.append((Row(name, self.name, run.variant, run.config.with_recipe().score, level["gaussians"],
                             "count", run.config.seed, level["gaussians"], mb, table.input_mb / mb,
                             1.0 - level["gaussians"] / table.gaussians, level["psnr"], level["ssim"], level["lpips"],
                             table.dpsnr(level["psnr"], run.config.seed), wall_s=level["wall_s"],
                             path=f"runs/{run.name}/{level['folder']}", group=name, host=ran_on(summary.host)),
                         folder / level["folder"]))
        return rows


for _kind in (TrimKind(), CompressKind(), FormatKind(), LodKind()):
    register_run_kind(_kind)


def _recorded_trim(config: dict | None) -> TrimConfig | None:
    settings = (config or {}).get("trim")
    if not isinstance(settings, dict):
        return None
    try:
        return from_record(TrimConfig, settings)
    except GstrimError:  # a setting this version no longer has changed what the run did
        return None


class Table:
    """Rows of a sweep's table, each PSNR also against the no-prune model of its own seed."""

    def __init__(self, model: Model, known: Evaluation | None, reference: dict[int, float]):
        self.gaussians = len(model.scene)
        self.input_mb = ply_size(model.scene) / 1e6
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
        """The row of a file made from a trim's scene (or the input's); its size is the summary's `mb` detail."""
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

"""`gstrim lod`: levels of detail from one trim, published as a Streamed SOG.

An iterative trim passes through every coarser count on its way down, so one pass makes every level: level k
is a trim of level k-1 (of the input for the first) to its count, with the prune steps of the trim's schedule
shared among the levels by how far each one goes (log of its count ratio) and `level_finetune` iterations
after each level's prunes, taken out of the coarsest level's: the chain runs as many iterations as one trim.
Each level is thus a subset of the finer one (nested), fine-tuned after its own prunes. `chain independent`
trims every level from the input with the whole schedule instead, for comparison (docs/lod.md has both).

    OUT/lod.json                 what was asked (input, counts, settings); a resume must ask the same
    OUT/level-K/                 each level a trim run folder (INRIA layout, results.json), resumable
    OUT/level-K/scene.sog        with photos, the level fine-tuned through the SOG quantiser (`export`)
    OUT/levels.json, levels.md   level, Gaussians, MB, PSNR / SSIM / LPIPS, FPS, wall time
    OUT/lod-meta.json, OUT/L_i/  the Streamed SOG: level 0 the input, level K the K-th trim
    OUT/results.json             the chain's summary ("lod"), written last
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gstrim import progress
from gstrim.errors import ConfigError, GstrimError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS
from gstrim.io.model import load_model
from gstrim.io.sog import read_sog_books
from gstrim.io.streamed_sog import (
    INDEX_NAME,
    StreamedSogOptions,
    level_counts,
    level_sizes,
    write_streamed_sog,
)
from gstrim.io.streamed_sog import written_size as streamed_size
from gstrim.options import differing, option
from gstrim.pipelines.export import ExportConfig, run_dir_of, trim_and_export
from gstrim.pipelines.inputs import Inputs, RunControl, continuing, runs_photo_free
from gstrim.pipelines.run_folder import refuse_nonempty
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device

RECORD_NAME = "lod.json"
VERB = "lod"
CHAINS = ("nested", "independent")
DEFAULT_LEVELS = [0.5, 0.25, 0.125, 0.0625]  # halving per level, as splat-transform's decimated chains


@dataclass
class LodConfig:
    levels: list[float] = option(DEFAULT_LEVELS, "fraction of the input's Gaussians each level keeps, finest "
                                 "first", exclusive="levels", metavar="F")
    level_counts: list[int] | None = option(None, "Gaussians of each level instead, finest first",
                                            exclusive="levels", metavar="N")
    chain: str = option("nested", "nested: each level trimmed from the finer one in one pass down; independent: "
                        "each level trimmed from the input with the whole schedule", choices=CHAINS)
    level_finetune: int | None = option(None, "fine-tuning iterations after each nested level's prunes but the "
                                        "coarsest's, which gets the rest of the trim's --finetune (default: an "
                                        "eighth of it)")
    sog_finetune: int | None = option(None, "iterations of fine-tuning each trimmed level through the SOG quantiser "
                                      "before it is chunked, as `export --finetune` (default with photos: export's, "
                                      "1000 on the CPU, 5000 on a GPU; photo-free: 0, plain SOG)")

    def to_dict(self) -> dict:
        return asdict(self)

    def counts(self, n: int) -> list[int]:
        """The Gaussians of each level for an input of `n`, checked: strictly decreasing, 1..n-1."""
        counts = list(self.level_counts) if self.level_counts else [round(n * f) for f in self.levels]
        if self.level_counts is None and not all(0 < f < 1 for f in self.levels):
            raise ConfigError("{levels} are fractions of the input in (0, 1)", "levels")
        if not counts or any(not 1 <= c < n for c in counts):
            raise ConfigError(f"each level needs 1 to {n - 1:,} Gaussians (the input has {n:,}); got "
                              + ", ".join(f"{c:,}" for c in counts), "levels", "level_counts")
        if any(b >= a for a, b in zip(counts, counts[1:], strict=False)):
            raise ConfigError("levels must get strictly coarser: " + " > ".join(f"{c:,}" for c in counts),
                              "levels", "level_counts")
        return counts

    def validate(self) -> None:
        if self.chain not in CHAINS:
            raise ConfigError(f"unknown {{chain}} {self.chain!r}; use nested or independent", "chain")
        for name in ("level_finetune", "sog_finetune"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{{{name}}} must not be negative, got {getattr(self, name)}", name)


def share_steps(steps: int, counts: list[int], n: int) -> list[int]:
    """The prune steps of each nested level: `steps` shared by the log of each level's count ratio (largest
    remainders), at least one each."""
    ratios = [math.log(a / b) for a, b in zip([n, *counts], counts, strict=False)]
    exact = [max(steps, len(counts)) * r / sum(ratios) for r in ratios]
    shares = [max(1, math.floor(e)) for e in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: (shares[i] - exact[i], -i))
    for i in by_remainder[: max(0, max(steps, len(counts)) - sum(shares))]:
        shares[i] += 1
    return shares


def level_configs(lod: LodConfig, trim: TrimConfig, counts: list[int], n: int) -> list[TrimConfig]:
    """Each level's trim settings (`trim` resolved: its schedule concrete)."""
    base = replace(trim, gamma=None, target_removal=None, target_mb=None, one_shot=False, no_prune=False)
    if lod.chain == "independent":
        return [replace(base, target_count=c) for c in counts]
    between = lod.level_finetune if lod.level_finetune is not None else trim.finetune // 8
    steps = share_steps(trim.steps, counts, n)
    last = len(counts) - 1
    # the chain runs the schedule's iterations once: the finer levels' fine-tuning comes out of the coarsest's
    coarsest = max(trim.finetune - last * between, between)
    return [replace(base, target_count=c, steps=s, finetune=coarsest if k == last else between)
            for k, (c, s) in enumerate(zip(counts, steps, strict=True))]


@dataclass
class LevelRow:
    level: int
    gaussians: int
    ply_mb: float
    sog_mb: float | None
    psnr: float | None
    ssim: float | None
    lpips: float | None
    fps: float | None
    wall_s: float | None
    folder: str | None
    sog_psnr: float | None = None  # of the level fine-tuned through SOG, as its file decodes


def _flat(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def _checked_record(path: Path, settings: dict, resume: bool) -> None:
    """Write what the run asks, or (resuming) check that the recorded run asked the same: never reused silently."""
    if path.exists():
        saved = json.loads(path.read_text()).get("settings", {})
        changed = differing(_flat(saved), _flat(settings))
        if changed:
            raise GstrimError(f"holds levels made with other settings ({', '.join(changed)}); choose another output "
                              "or remove it", path)
        return
    write_text_atomic(path, json.dumps({"settings": settings}, indent=1))


def make_levels(inputs: Inputs, out_dir: str | Path, lod: LodConfig | None = None, trim: TrimConfig | None = None,
                streamed: StreamedSogOptions | None = None, control: RunControl | None = None) -> list[LevelRow]:
    """Trim `inputs` into every level of `lod` in `out_dir`, then write the table and the Streamed SOG."""
    out, control = Path(out_dir), control or RunControl()
    lod, streamed = lod or LodConfig(), streamed or StreamedSogOptions()
    lod.validate()
    streamed.validate()
    trim = (trim or TrimConfig()).resolved(resolve_device(control.device))
    trim.validate()
    if inputs.scene is None:
        raise ConfigError("gstrim lod needs a scene")
    if not control.resume:
        refuse_nonempty(out)
    source = load_model(inputs.scene, iteration=inputs.iteration, nonfinite=inputs.nonfinite)
    n = len(source.scene)
    counts = lod.counts(n)
    configs = level_configs(lod, trim, counts, n)
    out.mkdir(parents=True, exist_ok=True)
    asked = {"input": {**inputs.record(), "photo_free": inputs.photo_free}, "counts": counts, "lod": lod.to_dict(),
             "trim": trim.to_dict(), "streamed": asdict(streamed)}
    _checked_record(out / RECORD_NAME, asked, control.resume)
    photo_free = runs_photo_free(inputs)
    progress.log(f"lod: {len(counts)} levels of {n:,} Gaussians ({lod.chain}): "
                 + " > ".join(f"{c:,}" for c in counts))
    folders = [out / f"level-{k}" for k in range(1, len(counts) + 1)]
    summaries, known, previous = [], None, None
    for k, (count, config, folder) in enumerate(zip(counts, configs, folders, strict=True), start=1):
        level_inputs = inputs
        if lod.chain == "nested" and previous is not None:  # from the finer level, on the same targets
            level_inputs = (Inputs(previous, photo_free=True, views=inputs.views, teacher=inputs.scene)
                            if photo_free else Inputs(previous, data=inputs.data, data_options=inputs.data_options))
        summary = RunSummary.read(folder, "trim")
        if summary is None:
            progress.log(f"lod: level {k} of {len(counts)}: {count:,} Gaussians ({config.steps} prunes, then "
                         f"{config.finetune:,} iterations)")
            level_inputs, level_control = continuing(level_inputs, folder, control)
            summary = trim_scene(level_inputs, folder, config, level_control, known).summary
        # the next level's input was evaluated already: the input itself, or (nested) this level's output
        known = Evaluation.read(folder, "input" if lod.chain == "independent" else f"ours_{summary.iterations}")
        summaries.append(summary)
        previous = folder
    default_finetune = 0 if photo_free else ExportConfig().resolved(resolve_device(control.device)).finetune
    finetune = lod.sog_finetune if lod.sog_finetune is not None else default_finetune
    levels = [(load_model(f).scene, None, None) for f in folders] if finetune == 0 else \
        [_sog_level(f, s, ExportConfig(finetune=finetune, seed=trim.seed), control)
         for f, s in zip(folders, summaries, strict=True)]
    return _publish(out, source, summaries, folders, levels, streamed)


def _sog_level(folder: Path, summary: RunSummary, config: ExportConfig, control: RunControl):
    """(the level as its SOG decodes, the SOG's tables, the file's test metrics): the trimmed level fine-tuned
    through the SOG quantiser into `folder/scene.sog` (done once; a finished file is read again). Its input is
    the level, which its trim evaluated already."""
    target = folder / FORMATS["sog"].file_name("scene")
    if not target.exists():
        progress.log(f"lod: {folder.name}: fine-tuning through SOG ({config.finetune:,} iterations)")
        trim_and_export(folder, "sog", config, control, Evaluation.read(folder, f"ours_{summary.iterations}"))
    scene, books = read_sog_books(target)
    export = RunSummary.read(run_dir_of(target), "export")
    return scene, books, export.output if export is not None else None


def _publish(out: Path, source, summaries: list[RunSummary], folders: list[Path], levels: list,
             streamed: StreamedSogOptions) -> list[LevelRow]:
    """The Streamed SOG of the input and every level (`levels`: (scene, SOG tables or None, SOG metrics or None)
    of each trimmed level, run in `folders`), and the table."""
    scenes = [source.scene] + [scene for scene, _, _ in levels]
    index = out / INDEX_NAME
    expected = [len(s) for s in scenes]
    if not index.exists() or level_counts(index) != expected:
        progress.log(f"lod: writing the Streamed SOG ({sum(expected):,} Gaussians in {len(scenes)} levels)")
        write_streamed_sog(index, scenes, streamed, [None] + [books for _, books, _ in levels])
    sog_bytes = level_sizes(index)
    first = summaries[0]
    rows = [_row(0, first.gaussians_in, first.sh_degree, sog_bytes[0], first.input, None, None, None)]
    for k, (summary, folder, level) in enumerate(zip(summaries, folders, levels, strict=True), start=1):
        rows.append(_row(k, summary.gaussians_out, summary.sh_degree, sog_bytes[k], summary.output, summary.wall_s,
                         folder.name, level[2]))
    write_text_atomic(out / "levels.json", json.dumps({"levels": [asdict(r) for r in rows],
                                                       "streamed_sog": INDEX_NAME,
                                                       "streamed_sog_bytes": streamed_size(index)}, indent=1))
    write_text_atomic(out / "levels.md", levels_markdown(rows))
    last = summaries[-1]
    # the chain's summary, as every verb leaves one: what a sweep's lod row reads to know the chain is done
    RunSummary(VERB, first.gaussians_in, last.gaussians_out, first.sh_degree, sum(s.iterations for s in summaries),
               sum(s.wall_s for s in summaries), first.input, last.output,
               details={"counts": [r.gaussians for r in rows[1:]], "streamed_sog_bytes": streamed_size(index)}
               ).write(out)
    return rows


def _row(level: int, gaussians: int, sh_degree: int, sog_bytes: int, metrics, wall: float | None,
         folder: str | None, sog_metrics) -> LevelRow:
    ply = FORMATS["ply"].size(gaussians, sh_degree) / 1e6
    sog_psnr = sog_metrics.psnr if sog_metrics is not None else None
    if metrics is None:
        return LevelRow(level, gaussians, ply, sog_bytes / 1e6, None, None, None, None, wall, folder, sog_psnr)
    return LevelRow(level, gaussians, ply, sog_bytes / 1e6, metrics.psnr, metrics.ssim, metrics.lpips, metrics.fps,
                    wall, folder, sog_psnr)


def levels_markdown(rows: list[LevelRow]) -> str:
    def num(v, fmt):
        return "" if v is None else format(v, fmt)
    lines = ["| level | Gaussians | .ply MB | SOG MB | PSNR | SSIM | LPIPS | SOG PSNR | FPS | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = "0 (input)" if r.level == 0 else str(r.level)
        lines.append(f"| {name} | {r.gaussians:,} | {r.ply_mb:.2f} | {num(r.sog_mb, '.3f')} | {num(r.psnr, '.3f')} "
                     f"| {num(r.ssim, '.4f')} | {num(r.lpips, '.4f')} | {num(r.sog_psnr, '.3f')} | {num(r.fps, '.1f')} "
                     f"| {num(r.wall_s, '.0f')} |")
    return "\n".join(lines) + "\n"

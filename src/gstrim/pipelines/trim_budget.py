"""`trim --max-loss DB` without a removal target: the smallest scene within a loss, the removal level searched
together with the codec (`--compress`, `--format`) that follows the trim.

Each candidate level is a whole trim in `OUT/search/removal-R/` (then, when the trim leaves room, the codec
with what the trim left of the budget: `pipelines.budget` and the export search choose its settings). The
trim's loss grows with the removal, so the levels are searched by bisection on a grid, from 80 % (the
default recipe's level without loss on every scene kind measured: docs/pruning.md), at most MAX_TRIMS trims.
The smallest final file within the budget is chosen and its run folder moved into OUT, which then is the trim
run (and its compressed run or viewer file) that a plain `trim` would have written. `search.json` records
every level, so an interrupted search resumes (`--resume`) without trimming a level again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gstrim import progress
from gstrim.compress.stages import CompressConfig
from gstrim.errors import ConfigError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS, written_size
from gstrim.io.model import CONFIG_NAME, relative_to_folder, resolve_recorded
from gstrim.pipelines.budget import checked_search
from gstrim.pipelines.compress import compress_trimmed
from gstrim.pipelines.export import ExportConfig, trim_and_export
from gstrim.pipelines.inputs import Inputs, RunControl, check_budget_possible, continuing
from gstrim.pipelines.run_folder import refuse_nonempty
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary

SEARCH_DIR = "search"
REMOVALS = (0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
FIRST_REMOVAL = 0.8
MAX_TRIMS = 3
# A level whose trim leaves the codec less than this is not worth a codec search (c3dgs costs 0.14 dB on
# chair's 80 % trim at its default settings, docs/compression.md): the search then looks shallower.
CODEC_RESERVE_DB = 0.1


@dataclass
class Level:
    removal: float
    gaussians: int = 0
    trim_loss: float | None = None  # dB below the input, the trimmed .ply on the test views
    bytes: int | None = None  # of the final file: the trimmed .ply, or the codec's; None: no codec run
    loss: float | None = None  # dB below the input of the final file (decoded from disk)
    file: str | None = None  # the final file, relative to the level's folder

    @property
    def name(self) -> str:
        return f"removal-{self.removal:.2f}"


@dataclass
class Finish:
    """What follows the trim of each level (`run(level_dir, control) -> (file, PSNR of the file)`), and the
    settings a resumed search must match."""
    name: str
    settings: dict
    run: Callable[[Path, RunControl], tuple[Path, float]]


def next_removal(levels: list[Level], budget: float, reserve: float = 0.0, max_trims: int = MAX_TRIMS) -> float | None:
    """The next level to trim: the middle untried grid level between the deepest level whose trim left at least
    `reserve` of the budget and the shallowest that did not; None when the bracket is empty or the trims are spent."""
    if len(levels) >= max_trims:
        return None
    if not levels:
        return FIRST_REMOVAL
    usable = [lv.removal for lv in levels if lv.trim_loss <= budget - reserve]
    low = max(usable, default=-1.0)
    high = min((lv.removal for lv in levels if lv.trim_loss > budget - reserve), default=2.0)
    between = [r for r in REMOVALS if low < r < high]
    return between[(len(between) - 1) // 2] if between else None


def choose(levels: list[Level], budget: float) -> tuple[Level, bool]:
    """(the level with the smallest final file within the budget, True), or (the one closest to it, False)."""
    within = [lv for lv in levels if lv.loss is not None and lv.loss <= budget]
    if within:
        return min(within, key=lambda lv: lv.bytes), True
    made = [lv for lv in levels if lv.loss is not None] or levels
    return min(made, key=lambda lv: lv.loss if lv.loss is not None else lv.trim_loss), False


def check_search_possible(config: TrimConfig, max_loss: float, finish: Finish | None, inputs: Inputs | None,
                          control: RunControl) -> None:
    """Everything the search will need, checked before its first trim."""
    config.validate()
    if max_loss < 0:
        raise ConfigError(f"{{max_loss}} must not be negative, got {max_loss}", "max_loss")
    if config.no_prune:
        raise ConfigError("{max_loss} searches the removal level: it cannot be used with {no_prune}",
                          "max_loss", "no_prune")
    if config.has_target and finish is None:
        raise ConfigError("{max_loss} chooses the removal level itself; give no target ({gamma}, {target_removal}, "
                          "{target_count}, {target_mb}), or add --compress / --format to spend the budget left "
                          "after a fixed trim", "max_loss", "gamma", "target_removal", "target_count", "target_mb")
    check_budget_possible(max_loss, inputs if inputs is not None and inputs.scene is not None else None, control)


def trim_within_budget(inputs: Inputs, out_dir: str | Path, config: TrimConfig, max_loss: float,
                       finish: Finish | None = None, control: RunControl | None = None) -> dict:
    """Search the removal level of `config` (it has no target) for the smallest final file within `max_loss` dB
    of the input's test PSNR; the chosen level's run ends in `out_dir`. Returns the search's record."""
    out_dir, control = Path(out_dir), control or RunControl()
    check_search_possible(config, max_loss, finish, inputs, control)
    record_path = out_dir / SEARCH_DIR / "search.json"
    if not control.resume:
        refuse_nonempty(out_dir)
    settings = {"input": inputs.record(), "max_loss": max_loss, "trim": config.to_dict(),
                "finish": {"name": finish.name, **finish.settings} if finish else None}
    saved = checked_search(record_path, settings, resume=True) if control.resume else {}
    if saved.get("chosen"):
        return saved
    levels = [Level(**lv) for lv in saved.get("levels", [])]
    reserve = CODEC_RESERVE_DB if finish is not None else 0.0

    def save(**extra) -> dict:
        record = {"settings": settings, "levels": [asdict(lv) for lv in levels], **extra}
        write_text_atomic(record_path, json.dumps(record, indent=1))
        return record

    known_input = None
    while (removal := next_removal(levels, max_loss, reserve)) is not None:
        level = Level(removal)
        root = out_dir / SEARCH_DIR / level.name
        progress.log(f"budget: trimming {100 * removal:.0f} % ({len(levels) + 1} of at most {MAX_TRIMS})")
        summary = RunSummary.read(root, "trim")
        if summary is None:
            level_inputs, level_control = continuing(inputs, root, control)
            summary = trim_scene(level_inputs, root, replace(config, target_removal=removal), level_control,
                                 known_input).summary
        before = Evaluation.read(root, "input")
        known_input = before
        input_psnr = before.mean("PSNR")
        level.gaussians = summary.gaussians_out
        level.trim_loss = input_psnr - Evaluation.read(root, f"ours_{summary.iterations}").mean("PSNR")
        if finish is None:
            ply = next(root.glob(f"point_cloud/iteration_{summary.iterations}/point_cloud.ply"))
            level.file, level.bytes, level.loss = str(ply.relative_to(root)), ply.stat().st_size, level.trim_loss
        elif level.trim_loss <= max_loss - reserve:
            file, psnr = finish.run(root, control)
            level.file, level.bytes, level.loss = str(file.relative_to(root)), written_size(file), input_psnr - psnr
        progress.log(f"budget: {100 * removal:.0f} % removed: trim {level.trim_loss:+.3f} dB"
                     + (f", {finish.name if finish else 'ply'} {level.bytes / 1e3:.1f} kB at {level.loss:+.3f} dB"
                        if level.loss is not None else ", no room left for the codec"))
        levels.append(level)
        save()
    best, within = choose(levels, max_loss)
    progress.log(f"budget: chose {100 * best.removal:.0f} % removed" + (
        f" ({best.bytes / 1e3:.1f} kB, {best.loss:+.3f} dB)" if within else
        f": nothing within {max_loss:g} dB; the closest"))
    promote(out_dir / SEARCH_DIR / best.name, out_dir)
    return save(chosen=best.name, within=within)


def compress_finish(compress: CompressConfig) -> Finish:
    """c3dgs after each level's trim (`trim --compress`), its own budget search given what the trim left."""
    compress.validate()  # before the first trim, not after it
    def run(level_dir: Path, control: RunControl) -> tuple[Path, float]:
        result = compress_trimmed(level_dir, compress, control)
        return result.file, result.after.mean("PSNR")
    return Finish("gsz", compress.to_dict(), run)


def export_finish(format_name: str, config: ExportConfig) -> Finish:
    """A viewer file after each level's trim (`trim --format`), fine-tuned through its quantiser."""
    def run(level_dir: Path, control: RunControl) -> tuple[Path, float]:
        result = trim_and_export(level_dir, format_name, config, control)
        return result.file, result.after.mean("PSNR")
    return Finish(format_name, config.record(FORMATS[format_name]), run)


# ---- moving the chosen level's run into OUT --------------------------------------------------------------


def promote(level_dir: Path, out_dir: Path) -> None:
    """Move the run in `level_dir` into `out_dir` (entry by entry, its records last) and rewrite the paths its
    `config.json` files record relative to their folders; a move interrupted half-way completes on a resume."""
    if not level_dir.exists():
        return
    entries = sorted(level_dir.iterdir(), key=lambda p: p.name in ("config.json", "results.json"))
    for entry in entries:
        os.replace(entry, out_dir / entry.name)
    for config in sorted(out_dir.rglob(CONFIG_NAME)):
        if config.relative_to(out_dir).parts[0] != SEARCH_DIR:
            _rebase(config, level_dir / config.parent.relative_to(out_dir), level_dir, out_dir)
    level_dir.rmdir()


def _rebase(config_path: Path, old_folder: Path, old_root: Path, new_root: Path) -> None:
    """Rewrite the relative paths of a moved `config.json` (its dataset, input, teacher): a path into the moved
    tree follows it, any other keeps its target. Paths that resolve from the new folder already are kept, so
    rebasing twice changes nothing."""
    config = json.loads(config_path.read_text())
    folder = config_path.parent
    changed = False

    def moved(path: str) -> str:
        nonlocal changed
        if Path(path).is_absolute() or resolve_recorded(path, folder).exists():
            return path
        target = resolve_recorded(path, old_folder)
        if target.is_relative_to(old_root.resolve()):
            target = new_root.resolve() / target.relative_to(old_root.resolve())
        changed = True
        return relative_to_folder(target, folder)

    if "input" in config:
        config["input"] = moved(config["input"])
    for key in ("path", "teacher"):
        if key in config.get("data", {}):
            config["data"][key] = moved(config["data"][key])
    if changed:
        write_text_atomic(config_path, json.dumps(config, indent=1))

"""A sweep's table, shaped like Table 1 / Table 2 of Trimming the Fat: one row per scene a sweep produced
(the input, the unpruned model fine-tuned as long, every trim, its compressed file and viewer exports),
written as JSON (the record `report` reads), CSV and Markdown. With several seeds the Markdown adds the mean
and standard deviation of each configuration over its seeds.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from gstrim.errors import GstrimError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import read_json

TABLE_RECORD = "gstrim.table/1"
TABLE_NAME = "table"


@dataclass
class Row:
    name: str  # unique in the table; the run folder under `runs/` for trims
    kind: str  # input, no-prune, trim, compress, format
    variant: str  # iterative, one-shot, no-prune, input, or the name of a sweep variant
    score: str
    target: float | None  # removal fraction (or gamma, see `target_kind`) asked for
    target_kind: str  # removal, gamma or none
    seed: int
    gaussians: int
    mb: float  # file size: the INRIA .ply for input and trims, the written file for compress and formats
    ratio: float  # input .ply size / mb
    removed: float  # fraction of the input's Gaussians removed
    psnr: float
    ssim: float
    lpips: float
    dpsnr: float  # PSNR minus the no-prune model's of the same seed (the input's when there is none)
    fps: float | None = None
    fps_p10_ms: float | None = None
    fps_p90_ms: float | None = None
    wall_s: float | None = None
    path: str = ""  # the scene's folder or file, relative to the sweep folder
    group: str = ""  # the configuration, shared by the seeds of one setting
    stages_s: dict = field(default_factory=dict)
    host: str = ""  # where the run ran: host name and cluster node (a Ray node id), when known
    scene: str = ""  # batches: the scene's name (its folder in the batch)


def rows_to_json(rows: list[Row], meta: dict) -> dict:
    return {"record": TABLE_RECORD, **meta, "rows": [asdict(r) for r in rows]}


def read_table(sweep_dir: Path) -> tuple[list[Row], dict]:
    """(rows, metadata) of a sweep folder's table.json."""
    path = Path(sweep_dir) / f"{TABLE_NAME}.json"
    data = read_json(path)  # a file that is not JSON is refused there, naming it
    if not data:
        raise GstrimError("no sweep table here: run `gstrim sweep` into this folder first", path)
    if data.get("record") != TABLE_RECORD:
        raise GstrimError(f"not a {TABLE_RECORD} record", path)
    names = {f.name for f in fields(Row)}
    rows = [Row(**{k: v for k, v in r.items() if k in names}) for r in data["rows"]]
    return rows, {k: v for k, v in data.items() if k not in ("rows", "record")}


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(rows: list[Row]) -> str:
    head = ("run", "variant", "score", "removed", "Gaussians", "MB", "ratio", "PSNR", "dPSNR", "SSIM", "LPIPS", "FPS",
            "wall s", "ran on")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.name} | {r.variant} | {r.score} | {100 * r.removed:.0f} % | {r.gaussians:,} | {r.mb:.3f} | "
                     f"{r.ratio:.1f}x | {r.psnr:.3f} | {r.dpsnr:+.3f} | {r.ssim:.4f} | {r.lpips:.4f} | "
                     f"{_fmt(r.fps, '.1f')} | {_fmt(r.wall_s, '.0f')} | {r.host} |")
    summary = seed_summary(rows)
    if summary:
        lines += ["", "Over seeds (mean ± sample standard deviation):", "",
                  "| configuration | seeds | PSNR | dPSNR | SSIM | LPIPS |", "|---|---|---|---|---|---|"]
        for group, s in summary.items():
            lines.append(f"| {group} | {s['seeds']} | {s['psnr']:.3f} ± {s['psnr_sd']:.3f} | "
                         f"{s['dpsnr']:+.3f} ± {s['dpsnr_sd']:.3f} | {s['ssim']:.4f} | {s['lpips']:.4f} |")
    return "\n".join(lines) + "\n"


def by_group(rows: list[Row]) -> dict[str, list[Row]]:
    """The rows of each configuration (`Row.group`), in the order they first appear."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    return groups


def seed_summary(rows: list[Row]) -> dict[str, dict]:
    """Mean and sample standard deviation per configuration run with more than one seed."""
    out = {}
    for group, members in by_group(rows).items():
        if len({m.seed for m in members}) < 2:
            continue
        entry = {"seeds": len(members)}
        for key in ("psnr", "dpsnr", "ssim", "lpips"):
            values = [getattr(m, key) for m in members]
            entry[key] = statistics.fmean(values)
            entry[f"{key}_sd"] = statistics.stdev(values)
        out[group] = entry
    return out


def csv_text(rows: list[Row]) -> str:
    buffer = io.StringIO()
    names = [f.name for f in fields(Row) if f.name != "stages_s"]
    writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def write_table(sweep_dir: Path, rows: list[Row], meta: dict) -> None:
    sweep_dir = Path(sweep_dir)
    write_text_atomic(sweep_dir / f"{TABLE_NAME}.json", json.dumps(rows_to_json(rows, meta), indent=1))
    write_text_atomic(sweep_dir / f"{TABLE_NAME}.csv", csv_text(rows))
    write_text_atomic(sweep_dir / f"{TABLE_NAME}.md", markdown(rows))

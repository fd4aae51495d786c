"""A batch's table: every scene's sweep rows side by side, the mean of each setting over the scenes (Table 1
of Trimming the Fat reports means over a dataset's scenes), and the scenes that failed with their one-line
reasons. Written as JSON (the record), CSV (one line per row, failed scenes included) and Markdown.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, fields, replace
from pathlib import Path

from gstrim.io.atomic import write_text_atomic
from gstrim.report.table import TABLE_NAME, Row, by_group, markdown

BATCH_TABLE_RECORD = "gstrim.batch-table/1"
MEAN_KEYS = ("gaussians", "mb", "ratio", "removed", "psnr", "dpsnr", "ssim", "lpips", "fps")


def scene_rows(scene: str, rows: list[Row]) -> list[Row]:
    """A scene's sweep rows as batch rows: named by their scene, paths relative to the batch folder."""
    return [replace(r, scene=scene, path=f"{scene}/{r.path}") for r in rows]


def means_over_scenes(rows: list[Row]) -> dict[str, dict]:
    """Per setting (a row's group, seeds pooled): the mean of each figure over the scenes that have it."""
    out = {}
    for group, members in by_group(rows).items():
        entry: dict = {"scenes": len({m.scene for m in members}), "runs": len(members), "kind": members[0].kind}
        for key in MEAN_KEYS:
            values = [getattr(m, key) for m in members if getattr(m, key) is not None]
            entry[key] = statistics.fmean(values) if values else None
        out[group] = entry
    return out


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def batch_markdown(rows: list[Row], errors: dict[str, str], meta: dict) -> str:
    lines = []
    scenes = list(dict.fromkeys(r.scene for r in rows))
    for scene in scenes:
        lines += [f"## {scene}", "", markdown([r for r in rows if r.scene == scene])]
    means = means_over_scenes(rows)
    if means:
        head = ("setting", "scenes", "removed", "Gaussians", "MB", "ratio", "PSNR", "dPSNR", "SSIM", "LPIPS", "FPS")
        lines += [f"## Mean over {len(scenes)} scenes", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for group, m in means.items():
            lines.append(f"| {group} | {m['scenes']} | {100 * m['removed']:.0f} % | {m['gaussians']:,.0f} | "
                         f"{m['mb']:.3f} | {m['ratio']:.1f}x | {m['psnr']:.3f} | {m['dpsnr']:+.3f} | {m['ssim']:.4f} | "
                         f"{m['lpips']:.4f} | {_fmt(m['fps'], '.1f')} |")
        lines.append("")
    if meta.get("fps_device"):
        lines += [f"FPS measured after the runs on one machine, {meta['fps_device']}, for every row.", ""]
    if errors:
        lines += ["## Scenes that failed", "", "| scene | error |", "|---|---|"]
        lines += [f"| {scene} | {error.replace('|', '/')} |" for scene, error in errors.items()]
        lines.append("")
    return "\n".join(lines)


def batch_csv(rows: list[Row], errors: dict[str, str]) -> str:
    buffer = io.StringIO()
    names = ["scene"] + [f.name for f in fields(Row) if f.name not in ("stages_s", "scene")] + ["error"]
    writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    for scene, error in errors.items():
        writer.writerow({"scene": scene, "error": error})
    return buffer.getvalue()


def write_batch_table(root: Path, rows: list[Row], errors: dict[str, str], meta: dict) -> None:
    root = Path(root)
    record = {"record": BATCH_TABLE_RECORD, **meta, "rows": [asdict(r) for r in rows],
              "means": means_over_scenes(rows), "errors": errors}
    write_text_atomic(root / f"{TABLE_NAME}.json", json.dumps(record, indent=1))
    write_text_atomic(root / f"{TABLE_NAME}.csv", batch_csv(rows, errors))
    write_text_atomic(root / f"{TABLE_NAME}.md", batch_markdown(rows, errors, meta))

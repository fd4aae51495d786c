"""`gstrim report SWEEP`: the figures of a sweep as PNG files and one self-contained HTML page (figures
embedded, no network) in `SWEEP/report/`."""

from __future__ import annotations

import base64
import datetime
import html
import platform
from pathlib import Path

import torch

from gstrim import progress
from gstrim.data import load_dataset
from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.errors import GstrimError
from gstrim.evaluate import quantize
from gstrim.io.atomic import write_text_atomic
from gstrim.io.model import load_model, resolve_recorded
from gstrim.render import rasterize, resolve_device
from gstrim.report import figures
from gstrim.report.table import Row, read_table, seed_summary
from gstrim.version import __version__

REPORT_DIR = "report"


def _shown_trims(rows: list[Row], meta: dict) -> list[Row]:
    """The trims shown side by side: the first score's iterative runs of seed 0, least pruned first, then each
    named variant at its highest level."""
    scores = meta.get("sweep", {}).get("scores") or [r.score for r in rows if r.kind == "trim"][:1]
    trims = [r for r in rows if r.kind == "trim" and r.seed == 0]
    shown = sorted((r for r in trims if r.variant == "iterative" and r.score == scores[0]), key=lambda r: r.removed)
    for variant in dict.fromkeys(r.variant for r in trims if r.variant not in ("iterative", "one-shot")):
        shown.append(max((r for r in trims if r.variant == variant), key=lambda r: r.removed))
    return shown


def _render(scene, camera, background, device) -> torch.Tensor:
    with torch.no_grad():
        return quantize(rasterize(scene.to(device), camera, background=background).image.cpu())


def write_report(sweep_dir: str | Path, *, device: str = "auto", views: int = 1) -> Path:
    """Write the figures and `index.html` of the sweep in `sweep_dir`; returns the page's path."""
    root = Path(sweep_dir)
    rows, meta = read_table(root)
    out = root / REPORT_DIR
    data = meta["data"]
    target = resolve_device(device)
    model = load_model(resolve_recorded(meta["model"], root))
    if "virtual" in data:  # a photo-free sweep: the input's renders on its virtual views are the ground truth
        dataset, _ = virtual_dataset(model.scene, ViewConfig(**data["virtual"]), model.source, target)
    else:
        dataset = load_dataset(resolve_recorded(data["path"], root), **{k: v for k, v in data.items() if k != "path"})
    if not dataset.test:
        raise GstrimError("the sweep's dataset has no test views to show", dataset.root)
    pictures: list[tuple[str, Path]] = []

    progress.log("report: plots")
    pictures.append(("Quality against size (Fig. 3)", figures.quality_vs_size(rows, out / "psnr_vs_size.png")))
    pictures.append(("Render speed against size (Fig. 7b)",
                     figures.quality_vs_size(rows, out / "fps_vs_size.png", metric="fps")))
    shot = figures.iterative_vs_one_shot(rows, out / "iterative_vs_one_shot.png")
    if shot is not None:
        pictures.append(("Iterative against one-shot (Fig. 7a)", shot))

    shown = _shown_trims(rows, meta)
    scenes = {"input": model.scene}
    for row in shown:
        scenes[f"{row.name} ({100 * row.removed:.0f} % removed)"] = load_model(root / row.path).scene
    opacities = {label: scene.activated_opacities().detach().cpu() for label, scene in scenes.items()}
    pictures.append(("Opacities before and after pruning (Fig. 7c)",
                     figures.opacity_histograms(opacities, out / "opacity_histograms.png")))

    progress.log("report: side-by-side renders")
    for i, camera in enumerate(dataset.test[:views]):
        renders = [(label, _render(scene, camera, dataset.background, target)) for label, scene in scenes.items()]
        truth = camera.image
        crop = figures.worst_crop(truth, renders[-1][1])
        pictures.append((f"Test view {i}: ground truth, input and pruned, same zoomed crop (Figs. 4-6)",
                         figures.side_by_side(truth, renders, out / f"renders_view{i}.png", crop)))
        pictures.append((f"Test view {i}: per-pixel error", figures.error_maps(truth, renders,
                                                                            out / f"error_view{i}.png")))
    page = out / "index.html"
    write_text_atomic(page, _page(rows, meta, pictures, _viewer_commands(root, rows, shown)))
    return page


def _viewer_commands(root: Path, rows: list[Row], shown: list[Row]) -> list[str]:
    """`gstrim view` lines that open the input beside each shown trim and the smallest file, in the browser."""
    names = [r.name for r in shown] + [min(rows, key=lambda r: r.mb).name]
    return [f"gstrim view {root} --runs input {name}" for name in dict.fromkeys(names) if name != "input"]


def _table_html(rows: list[Row]) -> str:
    head = ("run", "kind", "variant", "removed", "Gaussians", "MB", "ratio", "PSNR", "dPSNR", "SSIM", "LPIPS", "FPS")
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = (r.name, r.kind, r.variant, f"{100 * r.removed:.0f} %", f"{r.gaussians:,}", f"{r.mb:.3f}",
                 f"{r.ratio:.1f}x", f"{r.psnr:.3f}", f"{r.dpsnr:+.3f}", f"{r.ssim:.4f}", f"{r.lpips:.4f}",
                 "" if r.fps is None else f"{r.fps:.1f}")
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    summary = seed_summary(rows)
    if summary:
        lines.append("</table><h3>Over seeds (mean ± sd)</h3><table><tr><th>configuration</th><th>seeds</th>"
                     "<th>PSNR</th><th>dPSNR</th></tr>")
        for group, s in summary.items():
            lines.append(f"<tr><td>{html.escape(group)}</td><td>{s['seeds']}</td><td>{s['psnr']:.3f} ± "
                         f"{s['psnr_sd']:.3f}</td><td>{s['dpsnr']:+.3f} ± {s['dpsnr_sd']:.3f}</td></tr>")
    return "\n".join(lines) + "</table>"


def _page(rows: list[Row], meta: dict, pictures: list[tuple[str, Path]], viewer: list[str]) -> str:
    fps = meta.get("fps", {})
    trim = meta.get("trim", {})
    facts = [
        ("scene", meta.get("model", "")), ("dataset", meta.get("data", {}).get("path", "")),
        ("schedule", f"{trim.get('preset')} preset: {trim.get('steps')} prunes {trim.get('every')} apart, then "
                     f"{trim.get('finetune')} fine-tuning iterations"),
        ("render speed", f"{fps.get('device', '')}, median of {fps.get('views')} test views x "
                         f"{fps.get('repeats')} after warm-up"),
        ("made", f"{datetime.date.today().isoformat()} by gstrim {__version__} on {platform.node()} "
                 f"({platform.processor() or platform.machine()})"),
    ]
    figures_html = "\n".join(
        f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,"
        f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>{html.escape(title)}</figcaption></figure>"
        for title, path in pictures)
    facts_html = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gstrim sweep report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 14px; }}
</style></head><body>
<h1>Trimming the Fat: sweep report</h1>
<table>{facts_html}</table>
<h2>Results</h2>
<p>PSNR, SSIM and LPIPS on the held-out views; dPSNR against the unpruned model fine-tuned as long (same seed);
MB: the INRIA .ply for trims, the written file for compressed and viewer formats.</p>
{_table_html(rows)}
<h2>Figures</h2>
{figures_html}
<h2>In the browser</h2>
<p>Each command opens the input and a run side by side, under one camera that you move (docs/viewer.md):</p>
<pre>{html.escape(chr(10).join(viewer))}</pre>
</body></html>
"""

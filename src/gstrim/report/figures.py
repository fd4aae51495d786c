"""The figures of Trimming the Fat drawn from a sweep's table and scenes (matplotlib, Agg, PNG):

* `quality_vs_size`: PSNR against file size, one line per method, the input and the unpruned model
  fine-tuned as long as reference points (the paper's Fig. 3); also FPS against size (Fig. 7b);
* `iterative_vs_one_shot`: PSNR against the fraction removed, iterative and one-shot (Fig. 7a);
* `opacity_histograms`: opacities before and after pruning (Fig. 7c);
* `side_by_side`: ground truth | input | pruned at several levels, with the same zoomed crop under each
  (Figs. 4-6), and the per-pixel error of each render as a heat map.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gstrim.io.atomic import atomic_path  # noqa: E402
from gstrim.report.table import Row  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def method_of(row: Row) -> str:
    """The line a row belongs to: its kind, variant and score, without level or seed."""
    if row.kind in ("input", "no-prune"):
        return row.kind
    if row.kind == "ablation":
        return f"ablation: {row.variant}"
    label = {"iterative": row.score, "one-shot": f"{row.score} one-shot"}.get(row.variant, row.variant)
    if row.kind == "trim":
        return label
    if row.kind == "compress":
        return f"{label} + c3dgs"
    if "+" in row.name:  # a file made from a trim: <trim>+<format>
        return f"{label} + {row.name.rsplit('+', 1)[-1]}"
    return f"{row.kind} ({label})"  # another kind of run, e.g. levels of detail: one line per chain


def _lines(rows: list[Row]) -> dict[str, list[Row]]:
    lines: dict[str, list[Row]] = {}
    for row in rows:
        if row.kind not in ("input", "no-prune") and row.variant != "input":
            lines.setdefault(method_of(row), []).append(row)
    return {k: sorted(v, key=lambda r: r.mb) for k, v in lines.items()}


def _seed0(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.seed == 0]


def quality_vs_size(rows: list[Row], path: Path, metric: str = "psnr") -> Path:
    """`metric` (psnr or fps) against size in MB, log scale, one line per method."""
    rows = _seed0(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, members in _lines(rows).items():
        ax.plot([r.mb for r in members], [getattr(r, metric) for r in members], "o-", label=name, ms=5)
    for row in rows:
        if row.kind in ("input", "no-prune") or row.variant == "input":
            marker = {"input": "*", "no-prune": "s"}.get(row.kind, "D")
            label = {"input": "input", "no-prune": "no-prune (fine-tuned as long)"}.get(row.kind, row.name)
            ax.plot([row.mb], [getattr(row, metric)], marker, ms=11, label=label, ls="none")
    ax.set_xscale("log")
    ax.set_xlabel("size (MB, log scale)")
    ax.set_ylabel({"psnr": "test PSNR (dB)", "fps": "render FPS (median)"}[metric])
    ax.set_title({"psnr": "Quality against size", "fps": "Render speed against size"}[metric])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def iterative_vs_one_shot(rows: list[Row], path: Path) -> Path | None:
    """PSNR against the fraction removed for the iterative and one-shot trims of the same score."""
    rows = [r for r in _seed0(rows) if r.kind == "trim"]
    shots = {r.score for r in rows if r.variant == "one-shot"}
    if not shots:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in ("iterative", "one-shot"):
        members = sorted((r for r in rows if r.variant == variant and r.score in shots), key=lambda r: r.removed)
        ax.plot([100 * r.removed for r in members], [r.psnr for r in members], "o-", label=variant)
    reference = next((r for r in _seed0([r for r in rows]) if r.kind == "no-prune"), None)
    if reference is not None:
        ax.axhline(reference.psnr, ls="--", c="gray", label="no-prune")
    ax.set_xlabel("Gaussians removed (%)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(f"Iterative against one-shot pruning ({', '.join(sorted(shots))})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def opacity_histograms(opacities: dict[str, torch.Tensor], path: Path) -> Path:
    """Histograms of activated opacities, one per scene, on shared bins (counts on a log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(0, 1, 41)
    for label, values in opacities.items():
        ax.hist(values.numpy(), bins=bins, histtype="step", lw=1.6, label=f"{label} ({len(values):,})")
    ax.set_yscale("log")
    ax.set_xlabel("opacity")
    ax.set_ylabel("Gaussians")
    ax.set_title("Opacity before and after pruning")
    ax.legend(fontsize=8)
    return _save(fig, path)


def worst_crop(truth: torch.Tensor, render: torch.Tensor, fraction: float = 0.3) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) of the window (a `fraction` of each side) where `render` is furthest from `truth`."""
    H, W = truth.shape[:2]
    h, w = max(int(H * fraction), 1), max(int(W * fraction), 1)
    error = (render - truth).abs().mean(dim=-1)
    window = torch.nn.functional.avg_pool2d(error[None, None], (h, w), stride=1)[0, 0]
    index = int(torch.argmax(window))
    return index // window.shape[1], index % window.shape[1], h, w


def side_by_side(truth: torch.Tensor, renders: list[tuple[str, torch.Tensor]], path: Path,
                 crop: tuple[int, int, int, int]) -> Path:
    """Row 1: ground truth and each render with the crop outlined; row 2: the crops, enlarged."""
    import matplotlib.patches as patches

    y0, x0, h, w = crop
    panels = [("ground truth", truth), *renders]
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.4), squeeze=False)
    for col, (label, image) in enumerate(panels):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(image.clamp(0, 1).numpy())
        top.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, ec="red", lw=1.2))
        top.set_title(label, fontsize=8)
        bottom.imshow(image[y0:y0 + h, x0:x0 + w].clamp(0, 1).numpy(), interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path)


def error_maps(truth: torch.Tensor, renders: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """|render - truth| averaged over colour, one heat map per render on a shared colour scale."""
    errors = [(label, (image - truth).abs().mean(dim=-1).numpy()) for label, image in renders]
    top = max(float(np.percentile(e, 99.5)) for _, e in errors) or 1.0
    fig, axes = plt.subplots(1, len(errors), figsize=(2.8 * len(errors), 3), squeeze=False)
    for ax, (label, error) in zip(axes[0], errors, strict=True):
        shown = ax.imshow(error, cmap="inferno", vmin=0, vmax=top)
        ax.set_title(f"{label}\nmean |error| {error.mean():.4f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes[0]), shrink=0.8, label="|error|")
    return _save(fig, path)

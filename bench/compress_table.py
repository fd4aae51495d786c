"""The paper's Table 2 on one trained baseline, beside what a user would otherwise do: a `gstrim sweep
--compress` (the input .ply, c3dgs compression alone, Trimming the Fat + compression at 80 % and 90 %, the
unpruned model fine-tuned as long as the trims: the quality reference), plus `splat-transform` writing .sog
and .spz of the input and .spz of the first trim, scored by converting back to .ply with the same tool and
evaluating with gstrim.

Usage: python bench/compress_table.py MODEL OUT [--data DATA] [--images images_4] [--downscale 2]
       [--removals 0.8 0.9] [--qat-iterations N] [--preset cpu] [--no-sog]
Needs `bash scripts/install_splat_transform.sh` for the splat-transform rows (skipped when absent).
The sweep lives in OUT (finished runs reused, interrupted ones resumed, its own table in OUT/table.md);
prints the combined Markdown table and writes OUT/compare.md and OUT/compare.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from gstrim import progress
from gstrim.compress.stages import CompressConfig
from gstrim.data import load_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.model import load_model
from gstrim.pipelines.inputs import Inputs
from gstrim.pipelines.sweep import run_sweep
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs
from gstrim.prune.strategy import PRESETS, TrimConfig

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"


def splat_transform_row(ply: Path, out: Path, suffix: str, dataset) -> dict | None:
    """Write `ply` as `suffix` with splat-transform, read it back to .ply with it, evaluate that."""
    if not SPLAT_TRANSFORM.exists():
        return None
    target, back = out / f"scene{suffix}", out / f"scene{suffix}.ply"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not target.exists():
        extra = ["-g", "cpu"] if suffix == ".sog" else []
        subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", *extra, str(ply), str(target)], check=True)
    wall = time.perf_counter() - t0
    if not back.exists():
        subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", str(target), str(back)], check=True)
    scene = load_scene(back)
    m = evaluate(scene, dataset.test, label=suffix, background=dataset.background).metrics()
    return {"gaussians": len(scene), "mb": target.stat().st_size / 1e6, "psnr": m.psnr, "ssim": m.ssim,
            "lpips": m.lpips, "stages_s": {"write_s": round(wall, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--data")
    parser.add_argument("--images")
    parser.add_argument("--downscale", type=int)
    parser.add_argument("--removals", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--qat-iterations", type=int)
    parser.add_argument("--no-sog", action="store_true", help="skip splat-transform's .sog (minutes on a CPU)")
    args = parser.parse_args()
    out = Path(args.out)
    options = {k: v for k, v in (("images", args.images), ("downscale", args.downscale)) if v is not None}
    configs = SweepRunConfigs(TrimConfig(preset=args.preset), CompressConfig(qat_iterations=args.qat_iterations))
    sweep = run_sweep(Inputs(args.model, args.data, options), out,
                      SweepConfig(removals=args.removals, scores=["gradient"], compress=True), configs)
    model = load_model(args.model)
    data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
    dataset = load_dataset(data, **{**recorded, **options})
    rows = {r.name: {"gaussians": r.gaussians, "mb": r.mb, "psnr": r.psnr, "ssim": r.ssim, "lpips": r.lpips,
                     "stages_s": r.stages_s} for r in sweep.rows}
    for suffix in ([] if args.no_sog else [".sog"]) + [".spz"]:
        progress.log(f"== splat-transform {suffix}")
        row = splat_transform_row(Path(model.source), out / f"splat-transform{suffix}", suffix, dataset)
        if row is not None:
            rows[f"splat-transform {suffix}"] = row
    first = f"gradient-{args.removals[0]:g}"
    trimmed_ply = load_model(out / "runs" / first).source
    row = splat_transform_row(trimmed_ply, out / f"splat-transform-{first}.spz", ".spz", dataset)
    if row is not None:
        rows[f"{first} + splat-transform .spz"] = row

    ply_mb, ref_psnr = rows["input"]["mb"], rows["no-prune"]["psnr"]
    lines = ["| row | Gaussians | MB | ratio | PSNR | dPSNR vs no-prune | SSIM | LPIPS | wall s (stages) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        stages = ", ".join(f"{k.removesuffix('_s')} {v:.0f}" for k, v in r.get("stages_s", {}).items())
        lines.append(f"| {name} | {r['gaussians']:,} | {r['mb']:.3f} | {ply_mb / r['mb']:.1f}x | {r['psnr']:.3f} | "
                     f"{r['psnr'] - ref_psnr:+.3f} | {r['ssim']:.4f} | {r['lpips']:.4f} | {stages} |")
    table = "\n".join(lines)
    print(table)
    (out / "compare.md").write_text(table + "\n")
    (out / "compare.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

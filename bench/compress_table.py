"""The paper's Table 2 on one trained baseline: the input .ply, c3dgs compression alone, Trimming the Fat
+ compression at 80 % and 90 %, the unpruned model fine-tuned as long as the trims (the quality
reference), and what a user would otherwise do: `splat-transform` writing .sog and .spz of the input and
.spz of the 80 % trim, scored by converting back to .ply with the same tool and evaluating with gstrim.

Usage: python bench/compress_table.py MODEL OUT [--data DATA] [--images images_4] [--downscale 2]
       [--removals 0.8 0.9] [--qat-iterations N] [--no-sog]
Needs `bash scripts/install_splat_transform.sh` for the splat-transform rows (skipped when absent).
Finished runs in OUT are reused, interrupted ones resumed. Prints a Markdown table and writes
OUT/table.md and OUT/table.json.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from trim_table import data_options, run_variant, table_parser

from gstrim import progress
from gstrim.compress.pipeline import CompressConfig, compress_model
from gstrim.data import load_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.formats import FORMATS
from gstrim.io.model import load_model
from gstrim.prune.strategy import PRESETS, TrimConfig
from gstrim.records import Evaluation, RunSummary

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"


def compress_run(model: Path, out: Path, config: CompressConfig, known: Evaluation | None) -> dict:
    finished = RunSummary.read(out, "compress")
    if finished is None:
        resume = (out / "config.json").is_file()
        finished = compress_model(None if resume else model, out, config=config, resume=resume,
                                  input_evaluation=known).summary
    o, d = finished.output, finished.details
    return {"gaussians": finished.gaussians_out, "mb": d["mb"], "psnr": o.psnr, "ssim": o.ssim, "lpips": o.lpips,
            "stages_s": d["stages_s"]}


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
    parser = table_parser(__doc__.splitlines()[0], [0.8, 0.9])
    parser.add_argument("--qat-iterations", type=int)
    parser.add_argument("--no-sog", action="store_true", help="skip splat-transform's .sog (minutes on a CPU)")
    args = parser.parse_args()
    out = Path(args.out)
    options = data_options(args)
    model = load_model(args.model)
    data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
    dataset = load_dataset(data, **{**recorded, **options})
    schedule = PRESETS[args.preset]
    config = CompressConfig(qat_iterations=args.qat_iterations)

    rows: dict[str, dict] = {}
    progress.log("== no-prune")
    reference = run_variant(args.model, out / "no-prune", TrimConfig(no_prune=True, **schedule), args.data, options)
    i = reference.input
    ply_mb = FORMATS["ply"].size(reference.gaussians_in, reference.sh_degree) / 1e6
    rows["input .ply"] = {"gaussians": reference.gaussians_in, "mb": ply_mb, "psnr": i.psnr, "ssim": i.ssim,
                          "lpips": i.lpips}
    o = reference.output
    rows[f"no-prune fine-tuned ({reference.iterations:,} it)"] = {
        "gaussians": reference.gaussians_out, "mb": reference.mb_out, "psnr": o.psnr, "ssim": o.ssim,
        "lpips": o.lpips, "stages_s": {"trim_s": round(reference.wall_s)}}
    known = Evaluation.read(out / "no-prune", "input")
    progress.log("== compress only")
    rows["compress only"] = compress_run(Path(args.model), out / "compress", config, known)
    for removal in args.removals:
        name = f"gradient-{removal}"
        progress.log(f"== trim {removal} + compress")
        trim = run_variant(args.model, out / name, TrimConfig(target_removal=removal, **schedule), args.data,
                           options)
        t = trim.output
        rows[f"trim {removal:.0%}"] = {"gaussians": trim.gaussians_out, "mb": trim.mb_out, "psnr": t.psnr,
                                       "ssim": t.ssim, "lpips": t.lpips, "stages_s": {"trim_s": round(trim.wall_s)}}
        trimmed = Evaluation.read(out / name, f"ours_{trim.iterations}")
        row = compress_run(out / name, out / f"{name}-compress", config, trimmed)
        row["stages_s"] = {"trim_s": round(trim.wall_s), **row["stages_s"]}
        rows[f"trim {removal:.0%} + compress"] = row
    ply = model.source  # the input's .ply
    for suffix in ([] if args.no_sog else [".sog"]) + [".spz"]:
        progress.log(f"== splat-transform {suffix}")
        row = splat_transform_row(Path(ply), out / f"splat-transform{suffix}", suffix, dataset)
        if row is not None:
            rows[f"splat-transform {suffix}"] = row
    first = args.removals[0]
    trimmed_ply = sorted((out / f"gradient-{first}" / "point_cloud").glob("iteration_*/point_cloud.ply"))[-1]
    row = splat_transform_row(trimmed_ply, out / f"splat-transform-trim{first}.spz", ".spz", dataset)
    if row is not None:
        rows[f"trim {first:.0%} + splat-transform .spz"] = row

    ref_psnr = o.psnr
    lines = ["| row | Gaussians | MB | ratio | PSNR | dPSNR vs no-prune | SSIM | LPIPS | wall s (stages) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        stages = ", ".join(f"{k.removesuffix('_s')} {v:.0f}" for k, v in r.get("stages_s", {}).items())
        lines.append(f"| {name} | {r['gaussians']:,} | {r['mb']:.3f} | {ply_mb / r['mb']:.1f}x | {r['psnr']:.3f} | "
                     f"{r['psnr'] - ref_psnr:+.3f} | {r['ssim']:.4f} | {r['lpips']:.4f} | {stages} |")
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

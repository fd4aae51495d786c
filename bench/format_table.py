"""Viewer formats of one trimmed scene: for .spz, .sog and compressed .ply, (a) splat-transform writing it
from the trimmed .ply, (b) gstrim's plain conversion, (c) gstrim fine-tuned through the format's quantiser;
size, and test PSNR / SSIM / LPIPS of each file as decoded (gstrim reads splat-transform's files directly:
tests/test_splat_transform.py checks that it decodes them as splat-transform does).

Usage: python bench/format_table.py TRIMMED OUT [--data DATA] [--images images_4] [--formats spz sog ...]
       [--finetune N] [--no-splat-transform-sog]
TRIMMED: a trim output folder (or any model). Finished rows in OUT are reused. Prints a Markdown table and
writes OUT/table.md and OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from gstrim import progress
from gstrim.data import load_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.formats import FORMATS, written_size
from gstrim.io.model import load_model
from gstrim.io.sog_codec import SogOptions
from gstrim.pipelines.export import ExportConfig, export_model
from gstrim.pipelines.inputs import Inputs, RunControl

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"


def score(path: Path, dataset, wall: float) -> dict:
    m = evaluate(load_scene(path), dataset.test, label=path.name, background=dataset.background).metrics()
    return {"mb": written_size(path) / 1e6, "psnr": m.psnr, "ssim": m.ssim, "lpips": m.lpips, "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--data")
    parser.add_argument("--images")
    parser.add_argument("--formats", nargs="+", default=["spz", "sog", "compressed-ply"])
    parser.add_argument("--finetune", type=int, default=1000)
    parser.add_argument("--sog-palette", type=int)
    parser.add_argument("--no-splat-transform-sog", action="store_true", help="its .sog k-means takes minutes")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
    options = {**recorded, **({"images": args.images} if args.images else {})}
    dataset = load_dataset(data, **options)
    saved = out / "table.json"
    rows: dict[str, dict] = json.loads(saved.read_text()) if saved.exists() else {}
    ply = FORMATS["ply"].size(len(model.scene), model.scene.sh_degree) / 1e6

    def row(name: str, make) -> None:
        if name not in rows:
            progress.log(f"== {name}")
            rows[name] = make()
            saved.write_text(json.dumps(rows, indent=1))

    source = model.source  # the trimmed scene's file (.ply in a trim output)
    row("trimmed scene (.ply, unquantised)", lambda: score(source, dataset, 0.0))
    for name in args.formats:
        suffix = FORMATS[name].suffixes[0]
        if SPLAT_TRANSFORM.exists() and not (name == "sog" and args.no_splat_transform_sog):
            def by_splat_transform(suffix=suffix) -> dict:
                target = out / f"splat-transform{suffix}"
                t0 = time.perf_counter()
                extra = ["-g", "cpu"] if suffix == ".sog" else []
                subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", *extra, str(source), str(target)], check=True)
                return score(target, dataset, time.perf_counter() - t0)
            row(f"{name}: (a) splat-transform", by_splat_transform)

        def by_gstrim(finetune: int, suffix=suffix) -> dict:
            target = out / f"gstrim-{'plain' if finetune == 0 else f'ft{finetune}'}{suffix}"
            t0 = time.perf_counter()
            config = ExportConfig(finetune=finetune, formats={"sog": SogOptions(palette=args.sog_palette)})
            resume = (target.with_name(target.name + ".finetune") / "config.json").exists()
            export_model(Inputs(None if resume else args.model, data, options), target, config,
                         RunControl(resume=resume, no_eval=True))
            return score(target, dataset, time.perf_counter() - t0)
        row(f"{name}: (b) gstrim plain", lambda f=by_gstrim: f(0))
        row(f"{name}: (c) gstrim fine-tuned {args.finetune}", lambda f=by_gstrim: f(args.finetune))

    reference = rows["trimmed scene (.ply, unquantised)"]["psnr"]
    lines = ["| row | MB | x smaller than .ply | PSNR | vs unquantised | SSIM | LPIPS | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['mb']:.3f} | {ply / r['mb']:.1f} | {r['psnr']:.3f} | {r['psnr'] - reference:+.3f} "
                     f"| {r['ssim']:.4f} | {r['lpips']:.4f} | {r['wall_s']:.0f} |")
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()

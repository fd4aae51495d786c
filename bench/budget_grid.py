"""How close `compress --max-loss` comes to the best file of a full grid (issue 27's aim: within the budget,
at most 0.05 dB under it, and within 15 % of the grid's smallest file within budget).

Runs `gstrim compress MODEL -o OUT --max-loss DB` (or reads OUT when it exists), then fine-tunes every
candidate the search did not (in OUT/search/<name>/, the same code path as the search's own verifications)
and prints the whole grid, the search's choice and the grid's best. Usage:
python bench/budget_grid.py MODEL OUT [--max-loss 0.3] [--qat-iterations N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gstrim.compress.budget import Point
from gstrim.compress.stages import INPUT, CompressConfig, CompressionJob, run_stages
from gstrim.data import load_dataset
from gstrim.io.model import load_model
from gstrim.pipelines.budget import BudgetSearch
from gstrim.pipelines.compress import compress_model
from gstrim.pipelines.run_folder import RunFolder
from gstrim.records import Evaluation
from gstrim.train import loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-loss", type=float, default=0.3)
    parser.add_argument("--qat-iterations", type=int)
    args = parser.parse_args()
    config = CompressConfig(max_loss=args.max_loss, qat_iterations=args.qat_iterations)
    if not (args.out / "results.json").exists():
        compress_model(args.model, args.out, config)
    folder = RunFolder.open(args.out, "compress")
    recorded = json.loads((args.out / "results.json").read_text())["compress"]["details"]["budget"]
    dataset = load_dataset(folder.data_path, **folder.data_options)
    scene = load_model(folder.input_path).scene
    config = CompressConfig(**{**folder.config["compress"], "max_loss": args.max_loss})
    job = CompressionJob(scene, dataset, config, args.out, "cpu", fit=None)
    run_stages(job, (INPUT,))
    input_psnr = Evaluation.read(args.out, "input").mean("PSNR")
    search = BudgetSearch(job, input_psnr, lambda root: lambda trainer, d: loop.fit(trainer, root, description=d))
    saved = json.loads(search.record.read_text())
    points = [Point(**p) for p in saved["points"]]
    grid_file = args.out / "search" / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.exists() else {}
    for p in points:
        if p.loss is None and p.name not in grid:
            grid[p.name] = search.verify(p)
            grid_file.write_text(json.dumps(grid))
        p.loss = p.loss if p.loss is not None else grid[p.name]
    within = [p for p in points if p.loss <= args.max_loss]
    best = min(within, key=lambda p: p.bytes) if within else None
    chosen = next(p for p in points if p.name == recorded["chosen"])
    fine_tunings = len(recorded["verified"])
    print(f"input {input_psnr:.3f} dB; budget {args.max_loss} dB; {fine_tunings} fine-tunings by the search")
    print("| candidate | kB | proxy loss | loss of the file | |")
    print("|---|---|---|---|---|")
    for p in sorted(points, key=lambda p: p.bytes):
        mark = "search" if p.name == chosen.name else ""
        mark += " grid best" if best is not None and p.name == best.name else ""
        print(f"| {p.name} | {p.bytes / 1e3:.1f} | {p.proxy_loss:+.3f} | {p.loss:+.3f} | {mark.strip()} |")
    if best is not None:
        print(f"search: {chosen.bytes / 1e3:.1f} kB at {chosen.loss:+.3f} dB; grid best {best.bytes / 1e3:.1f} kB at "
              f"{best.loss:+.3f} dB; the search's file is {100 * (chosen.bytes / best.bytes - 1):+.1f} % larger")


if __name__ == "__main__":
    main()

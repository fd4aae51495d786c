"""The paper's Table 1 on one trained baseline: gradient-aware vs opacity-only iterative pruning, one-shot,
and the unpruned model fine-tuned as long, at several removal fractions.

Usage: python bench/trim_table.py MODEL OUT [--removals 0.8 0.85 0.9] [--preset cpu] [--data DATA ...]
       [--variants gradient opacity lightgaussian pup one-shot no-prune]
Each run is a `gstrim trim` into OUT/<variant>-<removal>; finished runs are reused, interrupted ones resumed,
and the input's test evaluation is shared between them.
Prints a Markdown table (PSNR, SSIM, LPIPS, Gaussians, MB, CPU FPS, wall time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gstrim import progress
from gstrim.prune.pipeline import trim_scene
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import PRESETS, TrimConfig
from gstrim.records import Evaluation, RunSummary


def run_variant(model: str, out: Path, config: TrimConfig, data: str | None, options: dict) -> RunSummary:
    finished = RunSummary.read(out, "trim")
    if finished is not None:
        return finished
    resume = (out / "config.json").is_file()
    # every variant trims the same input: evaluate it once
    known = next(filter(None, (Evaluation.read(d, "input") for d in out.parent.glob("*/"))), None)
    result = trim_scene(None if resume else model, out, data=data, data_options=options, config=config,
                        resume=resume, input_evaluation=known)
    return result.summary


def table_parser(description: str, removals: list[float]) -> argparse.ArgumentParser:
    """The arguments every table bench shares: the baseline, the output folder, its data and schedule."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--data")
    parser.add_argument("--images")
    parser.add_argument("--downscale", type=int)
    parser.add_argument("--removals", type=float, nargs="+", default=removals)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    return parser


def data_options(args) -> dict:
    return {k: v for k, v in (("images", args.images), ("downscale", args.downscale)) if v is not None}


def main() -> None:
    parser = table_parser(__doc__.splitlines()[0], [0.8, 0.85, 0.9])
    parser.add_argument("--variants", nargs="+", default=["gradient", "opacity", "one-shot", "no-prune"],
                        choices=[*SCORES, "one-shot", "no-prune"], help="a score name runs iterative pruning by it")
    args = parser.parse_args()
    options = data_options(args)
    schedule = PRESETS[args.preset]
    rows = []
    for variant in args.variants:
        for removal in [None] if variant == "no-prune" else args.removals:
            kwargs = {"no_prune": True} if variant == "no-prune" else {"target_removal": removal}
            if variant in SCORES:
                kwargs["score"] = variant
            if variant == "one-shot":
                kwargs["one_shot"] = True
            name = variant if removal is None else f"{variant}-{removal}"
            progress.log(f"== {name}")
            s = run_variant(args.model, Path(args.out) / name, TrimConfig(**kwargs, **schedule), args.data, options)
            rows.append((name, s))
    print("| run | removed | Gaussians | MB | PSNR | SSIM | LPIPS | FPS (CPU) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = rows[0][1]
    i = first.input
    print(f"| input | 0 % | {first.gaussians_in:,} | {first.mb_in:.2f} | {i.psnr:.3f} | {i.ssim:.4f} | "
          f"{i.lpips:.4f} | {i.fps:.1f} | |")
    for name, s in rows:
        o = s.output
        print(f"| {name} | {100 * s.removed:.0f} % | {s.gaussians_out:,} | {s.mb_out:.2f} | {o.psnr:.3f} | "
              f"{o.ssim:.4f} | {o.lpips:.4f} | {o.fps:.1f} | {s.wall_s:.0f} |")


if __name__ == "__main__":
    main()

"""The experiment verbs: `sweep` (the paper's tables), `report` (its figures and a page) and `ablate`
(Sec. 4.3's ablations)."""

from __future__ import annotations

from pathlib import Path

from gstrim.cli.flags import (
    add_config_options,
    add_device,
    add_inputs,
    add_output,
    add_run_control,
    config_from_args,
    control_from_args,
    inputs_from_args,
)
from gstrim.cli.run_commands import add_format_options, export_config_from_args
from gstrim.compress.stages import CompressConfig
from gstrim.pipelines.ablate import AblationConfig
from gstrim.pipelines.export import ExportConfig
from gstrim.pipelines.sweep import PER_RUN_FIELDS, SweepConfig
from gstrim.prune.strategy import TrimConfig


def cmd_sweep(args) -> int:
    from gstrim.pipelines.sweep import SweepRunConfigs, parse_variant, run_sweep
    from gstrim.report.table import markdown

    per_run_defaults = {f: getattr(TrimConfig(), f) for f in PER_RUN_FIELDS}  # the sweep's own flags set these
    config = config_from_args(args, SweepConfig, variants=dict(parse_variant(v) for v in args.variant))
    configs = SweepRunConfigs(config_from_args(args, TrimConfig, **per_run_defaults),
                              config_from_args(args, CompressConfig), export_config_from_args(args))
    result = run_sweep(inputs_from_args(args), args.output, config, configs, control_from_args(args))
    print(markdown(result.rows), end="")
    print(f"table in {Path(args.output) / 'table.md'} (.csv, .json); figures: gstrim report {args.output}")
    return 0


def cmd_report(args) -> int:
    from gstrim.report.page import write_report

    page = write_report(args.sweep, device=control_from_args(args).device, views=args.views)
    print(f"report: {page} (figures beside it)")
    return 0


def cmd_ablate(args) -> int:
    from gstrim.pipelines.ablate import lottery_ticket, no_prior
    from gstrim.pipelines.run import Inputs

    config, control = config_from_args(args, AblationConfig), control_from_args(args)
    if args.ablation == "no-prior":
        inputs = inputs_from_args(args, "input")
        row = no_prior(Inputs(data=inputs.scene, data_options=inputs.data_options), args.output, config,
                       control=control)
    else:
        row = lottery_ticket(inputs_from_args(args, "input"), args.output, config, control)
    print(f"{row['ablation']}: {row['gaussians']:,} Gaussians, {row['mb']:.2f} MB, test PSNR {row['psnr']:.3f}  "
          f"SSIM {row['ssim']:.4f}  LPIPS {row['lpips']:.4f}  ({row['iterations']:,} iterations, "
          f"{row['wall_s']:.0f} s)")
    print(f"row in {Path(args.output) / 'ablation.json'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="the paper's tables: trim one scene at several levels, scores and seeds "
                                     "(plus compression and viewer formats), one table of all runs")
    add_inputs(p)
    add_output(p, "sweep folder; running the same command again skips finished runs and resumes the others, and "
                  "several workers on one folder share its runs")
    add_config_options(p, SweepConfig)
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a named variant of the first score's trims with other trim settings, e.g. "
                        "--variant restart restart_lr=1.6e-5 (repeatable)")
    add_device(p)
    add_config_options(p, TrimConfig, skip=PER_RUN_FIELDS)
    add_config_options(p.add_argument_group("compression (--compress)"), CompressConfig, skip=("seed",))
    g = p.add_argument_group("viewer formats (--formats)")
    add_config_options(g, ExportConfig, skip=("seed", "finetune"))
    add_format_options(g)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="figures (PSNR and FPS vs size, iterative vs one-shot, opacity histograms, "
                                      "side-by-side renders, error maps) and one HTML page of a sweep")
    p.add_argument("sweep", help="a folder written by gstrim sweep")
    p.add_argument("--views", type=int, default=1, help="test views shown side by side (default: 1)")
    add_device(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ablate", help="the paper's ablations (Sec. 4.3): no-prior (prune while training, no "
                                      "trained prior) and lottery-ticket (retrain a pruned scene from scratch)")
    p.add_argument("ablation", choices=("no-prior", "lottery-ticket"))
    add_inputs(p, "input")
    add_output(p, "run folder (INRIA layout) with ablation.json")
    add_run_control(p, skip=("no_eval",))  # the row compares held-out views
    add_config_options(p, AblationConfig)
    p.set_defaults(func=cmd_ablate)

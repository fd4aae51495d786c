"""The experiment verbs: `sweep` (the paper's tables), `batch` (sweeps of many scenes, on a cluster too),
`report` (the figures and a page) and `ablate` (Sec. 4.3's ablations)."""

from __future__ import annotations

from pathlib import Path

from gstrim.cli.flags import (
    add_config_options,
    add_device,
    add_inputs,
    add_nonfinite,
    add_output,
    add_photo_free,
    add_run_control,
    config_from_args,
    control_from_args,
    data_options,
    inputs_from_args,
    views_from_args,
)
from gstrim.cli.run_commands import add_format_finetune, add_format_options, export_config_from_args
from gstrim.compress.stages import CompressConfig
from gstrim.data import DataOptions
from gstrim.pipelines.ablate import AblationConfig
from gstrim.pipelines.executors import ExecutorConfig
from gstrim.pipelines.export import ExportConfig
from gstrim.pipelines.sweep_config import PER_RUN_FIELDS, SweepConfig
from gstrim.prune.strategy import TrimConfig


def sweep_settings_from_args(args):
    """(SweepConfig, SweepRunConfigs, RunControl, ExecutorConfig) of a sweep or batch command line."""
    from gstrim.pipelines.sweep_config import SweepRunConfigs, parse_variant

    per_run_defaults = {f: getattr(TrimConfig(), f) for f in PER_RUN_FIELDS}  # the sweep's own flags set these
    config = config_from_args(args, SweepConfig, variants=dict(parse_variant(v) for v in args.variant))
    configs = SweepRunConfigs(config_from_args(args, TrimConfig, **per_run_defaults),
                              config_from_args(args, CompressConfig), export_config_from_args(args, beside_trim=True))
    executor = config_from_args(args, ExecutorConfig, threads=args.threads)
    return config, configs, control_from_args(args), executor


def cmd_sweep(args) -> int:
    from gstrim.pipelines.sweep import run_sweep
    from gstrim.report.table import markdown

    result = run_sweep(inputs_from_args(args), args.output, *sweep_settings_from_args(args))
    print(markdown(result.rows), end="")
    print(f"table in {Path(args.output) / 'table.md'} (.csv, .json); figures: gstrim report {args.output}")
    return 0


def cmd_batch(args) -> int:
    from gstrim.pipelines.batch import run_batch, scenes_with_data

    scenes = scenes_with_data(args.scenes, args.data, data_options(args), iteration=args.iteration,
                              nonfinite=args.nonfinite, views=views_from_args(args), photo_free=args.photo_free)
    result = run_batch(scenes, args.output, *sweep_settings_from_args(args))
    print((Path(args.output) / "table.md").read_text(), end="")
    print(f"{len(result.sweeps)} of {len(scenes)} scenes done; table in {Path(args.output) / 'table.md'} "
          f"(.csv, .json); figures per scene: gstrim report {Path(args.output) / '<scene>'}")
    return 1 if result.errors else 0


def cmd_report(args) -> int:
    from gstrim.report.page import write_report

    page = write_report(args.sweep, device=control_from_args(args).device, views=args.views)
    print(f"report: {page} (figures beside it)")
    return 0


def cmd_ablate(args) -> int:
    from gstrim.pipelines.ablate import lottery_ticket, no_prior
    from gstrim.pipelines.inputs import Inputs

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


def add_sweep_options(p) -> None:
    """The options `sweep` and `batch` share: what runs, with which settings, and where it executes."""
    add_config_options(p, SweepConfig)
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a named variant of the first score's trims with other trim settings, e.g. "
                        "--variant restart restart_lr=1.6e-5 (repeatable)")
    add_run_control(p, skip=("resume", "no_eval"))  # a sweep resumes by itself and compares held-out views
    add_config_options(p.add_argument_group("executor (where the runs execute; docs/cluster.md)"), ExecutorConfig)
    add_config_options(p, TrimConfig, skip=PER_RUN_FIELDS)
    # a sweep's table compares fixed settings: no quality-budget searches in it
    add_config_options(p.add_argument_group("compression (--compress)"), CompressConfig, skip=("seed", "max_loss"))
    g = p.add_argument_group("viewer formats (--formats)")
    add_config_options(g, ExportConfig, skip=("seed", "finetune", "max_loss"))
    add_format_finetune(g)
    add_format_options(g)


def register(sub) -> None:
    p = sub.add_parser("sweep", help="the paper's tables: trim one scene at several levels, scores and seeds "
                                     "(plus compression and viewer formats), one table of all runs")
    add_inputs(p, photo_free=True)
    add_output(p, "sweep folder; running the same command again skips finished runs and resumes the others, and "
                  "several drivers on one folder share its runs")
    add_sweep_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("batch", help="the sweep of many scenes (one folder each) and one table across them with "
                                     "the mean per setting; on this machine or a Ray cluster")
    p.add_argument("scenes", nargs="+", metavar="SCENE", help="model folders or scene files, each with its recorded "
                   "dataset, --data, or photo-free (neither: its own renders on virtual views)")
    p.add_argument("--data", nargs="+", metavar="DATA", help="one dataset folder for every scene, or one per scene "
                   "in order ('-': that scene's recorded dataset)")
    p.add_argument("--iteration", type=int, help="saved iteration of the model folders (default: latest)")
    add_nonfinite(p)
    add_config_options(p.add_argument_group("dataset options"), DataOptions)
    add_photo_free(p)
    add_output(p, "batch folder (a sweep folder per scene); running the same command again finishes what is "
                  "left, and several drivers on one folder share its runs")
    add_sweep_options(p)
    p.set_defaults(func=cmd_batch)

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

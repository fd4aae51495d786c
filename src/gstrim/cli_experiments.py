"""The experiment verbs of the command line: `sweep` (the paper's tables), `report` (its figures and a page),
`fps` (render speed measured properly) and `ablate` (Sec. 4.3's ablations). Thin, as `cli.py`: parse, call
the library, print."""

from __future__ import annotations

from pathlib import Path


def cmd_sweep(args) -> int:
    from gstrim.cli import _data_options, config_from_args
    from gstrim.compress.pipeline import CompressConfig
    from gstrim.export import ExportConfig
    from gstrim.prune.strategy import TrimConfig
    from gstrim.report.table import markdown
    from gstrim.sweep import PER_RUN_FIELDS, SweepConfig, parse_variant, run_sweep

    per_run_defaults = {f: getattr(TrimConfig(), f) for f in PER_RUN_FIELDS}  # the sweep's own flags set these
    config = SweepConfig(removals=args.removals, gammas=args.gammas, scores=args.scores, one_shot=args.one_shot,
                         seeds=args.seeds, baseline=not args.no_baseline, compress=args.compress,
                         formats=args.formats, variants=dict(parse_variant(v) for v in args.variant),
                         fps_views=args.fps_views, fps_repeats=args.fps_repeats)
    result = run_sweep(args.model, args.output, data=args.data, data_options=_data_options(args), config=config,
                       trim=config_from_args(args, TrimConfig, **per_run_defaults),
                       compress=config_from_args(args, CompressConfig),
                       export=config_from_args(args, ExportConfig), device=args.device)
    print(markdown(result.rows), end="")
    print(f"table in {Path(args.output) / 'table.md'} (.csv, .json); figures: gstrim report {args.output}")
    return 0


def cmd_report(args) -> int:
    from gstrim.report.page import write_report

    page = write_report(args.sweep, device=args.device, views=args.views)
    print(f"report: {page} (figures beside it)")
    return 0


def cmd_fps(args) -> int:
    from gstrim.cli import _data_options
    from gstrim.data import load_dataset
    from gstrim.io.model import load_model
    from gstrim.metrics.fps import measure_fps

    print("| model | Gaussians | backend | device | views x repeats | ms / frame (median) | p10-p90 ms | FPS |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load_model(path, iteration=args.iteration, nonfinite=args.nonfinite)
        data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
        dataset = load_dataset(data, **{**recorded, **_data_options(args)})
        cameras = (dataset.test or dataset.train)[: args.views]
        r = measure_fps(model.scene, cameras, background=dataset.background, device=args.device, warmup=args.warmup,
                        repeats=args.repeats)
        print(f"| {path} | {r.gaussians:,} | {r.backend} | {r.device} | {r.views} x {args.repeats} | "
              f"{r.median_ms:.2f} | {r.p10_ms:.2f}-{r.p90_ms:.2f} | {r.fps:.1f} |", flush=True)
    return 0


def cmd_ablate(args) -> int:
    from gstrim.ablations import lottery_ticket, no_prior
    from gstrim.cli import _data_options

    if args.ablation == "no-prior":
        row = no_prior(args.input, args.output, data_options=_data_options(args), iterations=args.iterations,
                       prune_opacity=args.prune_opacity, resume=args.resume, device=args.device, seed=args.seed)
    else:
        row = lottery_ticket(args.input, args.output, data=args.data, data_options=_data_options(args),
                             iterations=args.iterations, resume=args.resume, device=args.device, seed=args.seed)
    print(f"{row['ablation']}: {row['gaussians']:,} Gaussians, {row['mb']:.2f} MB, test PSNR {row['psnr']:.3f}  "
          f"SSIM {row['ssim']:.4f}  LPIPS {row['lpips']:.4f}  ({row['iterations']:,} iterations, "
          f"{row['wall_s']:.0f} s)")
    print(f"row in {Path(args.output) / 'ablation.json'}")
    return 0


def add_experiment_commands(sub, TrimConfig, CompressConfig, ExportConfig) -> None:
    from gstrim.cli import _add_data_options, _add_device, _add_model_input, add_config_options
    from gstrim.export import viewer_formats
    from gstrim.prune.scores import SCORES
    from gstrim.sweep import PER_RUN_FIELDS

    p = sub.add_parser("sweep", help="the paper's tables: trim one scene at several levels, scores and seeds "
                                     "(plus compression and viewer formats), one table of all runs")
    _add_model_input(p)
    p.add_argument("-o", "--output", required=True,
                   help="sweep folder; running the same command again skips finished runs and resumes the others")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--removals", type=float, nargs="+", default=[0.8, 0.9], metavar="R",
                   help="fractions of the Gaussians to remove (default: 0.8 0.9)")
    g.add_argument("--gammas", type=float, nargs="+", metavar="G", help="quantile levels per prune step instead")
    p.add_argument("--scores", nargs="+", default=["gradient", "opacity"], choices=list(SCORES),
                   help="importance scores, each pruned iteratively (default: gradient opacity)")
    p.add_argument("--one-shot", action="store_true", help="also one-shot runs of the first score")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of every run (default: 0)")
    p.add_argument("--no-baseline", action="store_true", help="leave out the unpruned model fine-tuned as long")
    p.add_argument("--compress", action="store_true",
                   help="also c3dgs compression of the input and of the first score's iterative trims")
    p.add_argument("--formats", nargs="+", default=[], choices=viewer_formats(),
                   help="also export the first score's iterative trims to these viewer formats, fine-tuned through "
                        "their quantisers")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                   help="a named variant of the first score's trims with other trim settings, e.g. "
                        "--variant restart restart_lr=1.6e-5 (repeatable)")
    p.add_argument("--fps-views", type=int, default=20, help="test views timed per row (default: 20)")
    p.add_argument("--fps-repeats", type=int, default=3, help="renders of each timed view (default: 3)")
    _add_device(p)
    add_config_options(p, TrimConfig, skip=PER_RUN_FIELDS)
    add_config_options(p.add_argument_group("compression (--compress)"), CompressConfig, skip=("seed",))
    add_config_options(p.add_argument_group("viewer formats (--formats)"), ExportConfig, skip=("seed", "finetune"))
    _add_data_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="figures (PSNR and FPS vs size, iterative vs one-shot, opacity histograms, "
                                      "side-by-side renders, error maps) and one HTML page of a sweep")
    p.add_argument("sweep", help="a folder written by gstrim sweep")
    p.add_argument("--views", type=int, default=1, help="test views shown side by side (default: 1)")
    _add_device(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("fps", help="render speed: warm-up, then the median frame time over repeated test views")
    p.add_argument("models", nargs="+", help="model folders, scene files or checkpoints")
    p.add_argument("--data", help="dataset folder (default: the one each model was trained on)")
    p.add_argument("--iteration", type=int, help="saved iteration of a model folder (default: latest)")
    p.add_argument("--views", type=int, default=50, help="the first N test views (default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed renders first (default: 5)")
    p.add_argument("--repeats", type=int, default=5, help="timed renders of every view (default: 5)")
    p.add_argument("--nonfinite", choices=("error", "drop", "keep"), default="error",
                   help="what to do with Gaussians that have NaN/Inf parameters (default: error)")
    _add_device(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_fps)

    p = sub.add_parser("ablate", help="the paper's ablations (Sec. 4.3): no-prior (prune while training, no "
                                      "trained prior) and lottery-ticket (retrain a pruned scene from scratch)")
    p.add_argument("ablation", choices=("no-prior", "lottery-ticket"))
    p.add_argument("input", help="no-prior: a dataset folder; lottery-ticket: a pruned model (its positions are kept)")
    p.add_argument("-o", "--output", required=True, help="run folder (INRIA layout) with ablation.json")
    p.add_argument("--data", help="lottery-ticket: dataset folder (default: the one the model was trimmed on)")
    p.add_argument("--iterations", type=int,
                   help="training iterations (no-prior default: 7000 on the CPU, 30000 on a GPU; lottery-ticket "
                        "default: as long as the model's own baseline was trained)")
    p.add_argument("--prune-opacity", type=float, default=0.005,
                   help="no-prior: opacity under which Gaussians are pruned (3DGS: 0.005)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in OUTPUT")
    _add_device(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_ablate)

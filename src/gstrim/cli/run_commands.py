"""Verbs that write a run folder: train, trim (with --compress / --format), compress, export, demo."""

from __future__ import annotations

from pathlib import Path

from gstrim.cli import show
from gstrim.cli.flags import (
    add_config_options,
    add_inputs,
    add_output,
    add_run_control,
    config_from_args,
    control_from_args,
    data_options,
    inputs_from_args,
)
from gstrim.compress.stages import CompressConfig
from gstrim.data import DataOptions
from gstrim.errors import GstrimError
from gstrim.io.formats import FORMATS, viewer_formats
from gstrim.io.streamed_sog import StreamedSogOptions
from gstrim.pipelines.export import ExportConfig
from gstrim.pipelines.lod import LodConfig
from gstrim.pipelines.train import TrainSetup
from gstrim.prune.strategy import TrimConfig
from gstrim.records import RunSummary
from gstrim.train import DensifyConfig, TrainConfig


def add_format_options(p) -> None:
    """The writer options of every registered format that has some (`--spz-version`, `--sog-palette`, ...)."""
    for fmt in FORMATS.values():
        if fmt.options is not None:
            add_config_options(p, fmt.options)


FORMAT_FINETUNE_HELP = ("iterations of fine-tuning the viewer file through its format's quantiser, its own setting "
                        "apart from the trim's --finetune (default: 5000 on a GPU, 1000 on the CPU)")


def add_format_finetune(p) -> None:
    """Beside a trim, `--finetune` is the trim's: the viewer file's fine-tuning is `--format-finetune`."""
    p.add_argument("--format-finetune", type=int, metavar="N", help=FORMAT_FINETUNE_HELP)


def export_config_from_args(args, *, beside_trim: bool = False, **overrides) -> ExportConfig:
    """The export settings of a command line; `beside_trim`: a trim's command line, whose --finetune is the trim's
    own and never reaches the export (its fine-tuning is --format-finetune)."""
    formats = {fmt.name: config_from_args(args, fmt.options) for fmt in FORMATS.values() if fmt.options is not None}
    if beside_trim:
        overrides["finetune"] = args.format_finetune
    return config_from_args(args, ExportConfig, formats=formats, **overrides)


def cmd_train(args) -> int:
    from gstrim.pipelines.inputs import Inputs
    from gstrim.pipelines.train import train_model

    setup = config_from_args(args, TrainSetup, densify=config_from_args(args, DensifyConfig))
    result = train_model(Inputs(data=args.data, data_options=data_options(args)), args.output,
                         config_from_args(args, TrainConfig), setup, control_from_args(args))
    s = result.summary
    print(f"trained {s.iterations:,} iterations in {s.wall_s:.0f} s: {len(result.scene):,} Gaussians")
    print(f"  scene        {result.model_dir / 'point_cloud' / f'iteration_{s.iterations}' / 'point_cloud.ply'}")
    if result.after is not None:
        m = result.after.metrics()
        print(f"{m.label} on {m.views} test views ({m.gaussians:,} Gaussians):")
        show.metrics(m)
        print(f"  results in {result.model_dir / 'results.json'} and per_view.json")
    return 0


def cmd_trim(args) -> int:
    from gstrim.pipelines.compress import trim_and_compress
    from gstrim.pipelines.export import check_trim_export, trim_and_export
    from gstrim.pipelines.trim import trim_scene

    inputs, control = inputs_from_args(args, "scene"), control_from_args(args)
    config = config_from_args(args, TrimConfig)
    export = export_config_from_args(args, beside_trim=True, seed=config.seed) if args.format else None
    if args.format:  # every stage's settings checked before the trim starts
        check_trim_export(args.format, export, inputs, control)
    if args.max_loss is not None and (not config.has_target or not (args.compress or args.format)):
        return _trim_within_budget(args, inputs, config, export, control)
    if args.compress:
        s, compressed = trim_and_compress(inputs, args.output, config,
                                          config_from_args(args, CompressConfig, seed=config.seed), control)
    else:
        s = trim_scene(inputs, args.output, config, control).summary
    show.trim(s, Path(args.output))
    if args.compress:
        show.compress(compressed, s.mb_in)
    if args.format:
        exported = trim_and_export(args.output, args.format, export, control)
        show.export(exported, s.mb_in)
    return 0


def _trim_within_budget(args, inputs, config: TrimConfig, export: ExportConfig | None, control) -> int:
    """`trim --max-loss` without a target: the removal level searched with the codec that follows."""
    from gstrim.pipelines.trim_budget import compress_finish, export_finish, trim_within_budget

    if args.compress and args.format:
        raise GstrimError("--max-loss searches one final file: give --compress or --format, not both")
    finish = (compress_finish(config_from_args(args, CompressConfig, seed=config.seed)) if args.compress else
              export_finish(args.format, export) if args.format else None)
    out = Path(args.output)
    record = trim_within_budget(inputs, out, config, args.max_loss, finish, control)
    show.trim(RunSummary.read(out, "trim"), out)
    show.trim_budget(record, out)
    return 0


def cmd_compress(args) -> int:
    from gstrim.pipelines.compress import compress_model

    result = compress_model(inputs_from_args(args), args.output, config_from_args(args, CompressConfig),
                            control_from_args(args))
    show.compress(result)
    return 0


def cmd_export(args) -> int:
    from gstrim.pipelines.export import export_model

    result = export_model(inputs_from_args(args), args.output, export_config_from_args(args),
                          control_from_args(args))
    show.export(result)
    return 0


def cmd_demo(args) -> int:
    from gstrim.pipelines.demo import run_demo

    summary = run_demo(Path(args.output), seed=args.seed, iterations=args.iterations)
    print(f"built-in example scene (seed {args.seed}), Blender format:")
    show.dataset(summary["dataset"])
    trained = summary["train"].summary
    print(f"baseline: {trained.iterations:,} iterations in {trained.wall_s:.0f} s -> {trained.gaussians_out:,} "
          f"Gaussians ({summary['train'].model_dir})")
    m = trained.output
    print(f"  test PSNR {m.psnr:.2f}  SSIM {m.ssim:.4f}  LPIPS {m.lpips:.4f}  ({m.lpips_label})")
    t = summary["trim"].summary
    recipe = f"{t.details['recipe']} recipe, " if t.details.get("recipe") else ""
    print(f"trimmed (Trimming the Fat, {recipe}{100 * t.removed:.0f} % removed): {t.gaussians_out:,} Gaussians, "
          f"{t.mb_in:.2f} -> {t.mb_out:.2f} MB, {t.wall_s:.0f} s ({summary['trim'].model_dir})")
    o = t.output
    print(f"  test PSNR {o.psnr:.2f}  SSIM {o.ssim:.4f}  LPIPS {o.lpips:.4f}  "
          f"render {t.input.fps:.0f} -> {o.fps:.0f} FPS on this machine")
    c = summary["compress"]
    print(f"compressed (c3dgs codebooks + quantisation-aware fine-tuning): {c.record['mb']:.3f} MB .gsz, "
          f"x{t.mb_in / c.record['mb']:.1f} smaller than the baseline .ply, {c.summary.wall_s:.0f} s ({c.file})")
    if c.after is not None:
        m = c.after.metrics()
        print(f"  test PSNR {m.psnr:.2f}  SSIM {m.ssim:.4f}  LPIPS {m.lpips:.4f}  (decoded from the file)")
    print(f"look at them side by side: gstrim view {summary['train'].model_dir} {c.model_dir}")
    return 0


def cmd_lod(args) -> int:
    from gstrim.pipelines.lod import levels_markdown, make_levels

    rows = make_levels(inputs_from_args(args, "scene"), args.output, config_from_args(args, LodConfig),
                       config_from_args(args, TrimConfig), config_from_args(args, StreamedSogOptions),
                       control_from_args(args))
    out = Path(args.output)
    print(levels_markdown(rows), end="")
    print(f"levels in {out / 'levels.md'}; Streamed SOG in {out / 'lod-meta.json'} "
          f"(gstrim view {out / 'lod-meta.json'})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a 3DGS scene from photos (vanilla 3DGS with densification)")
    p.add_argument("data", help="COLMAP or Blender dataset folder")
    add_output(p, "model folder to write (INRIA layout)")
    add_run_control(p)
    add_config_options(p, TrainConfig)
    add_config_options(p, DensifyConfig)
    add_config_options(p, TrainSetup)
    add_config_options(p.add_argument_group("dataset options"), DataOptions)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("trim", help="prune a trained scene (Trimming the Fat) and fine-tune it")
    add_inputs(p, "scene", photo_free=True)
    add_output(p, "model folder to write (INRIA layout)")
    add_run_control(p)
    add_config_options(p, TrimConfig)
    g = p.add_argument_group("compression (--compress)")
    g.add_argument("--compress", action="store_true",
                   help="then compress the trimmed scene (c3dgs) into OUTPUT/compressed: the paper's whole pipeline")
    add_config_options(g, CompressConfig, skip=("seed",))
    g = p.add_argument_group("viewer format (--format)")
    g.add_argument("--format", choices=viewer_formats(),
                   help="then fine-tune the trimmed scene through this format's quantiser and write it as "
                        "OUTPUT/scene.<suffix>, ready for a viewer")
    # --finetune is the trim's; --max-loss the compression's, read by both (and, without a target, by the trim)
    add_config_options(g, ExportConfig, skip=("seed", "finetune", "max_loss"))
    add_format_finetune(g)
    add_format_options(g)
    p.set_defaults(func=cmd_trim)

    p = sub.add_parser("lod", help="levels of detail from one trim, each fine-tuned, written as a Streamed SOG "
                                   "(lod-meta.json) with a table of every level")
    add_inputs(p, "scene", photo_free=True)
    add_output(p, "folder to write: level-K/ (a trim run per level), levels.md, lod-meta.json and its chunks")
    add_run_control(p)
    add_config_options(p, LodConfig)
    add_config_options(p.add_argument_group("each level's trim"), TrimConfig,
                       skip=("gamma", "target_removal", "target_count", "target_mb", "one_shot", "no_prune"))
    add_config_options(p.add_argument_group("Streamed SOG chunks"), StreamedSogOptions)
    p.set_defaults(func=cmd_lod)

    p = sub.add_parser("compress", help="compress a scene (c3dgs: codebooks, quantisation-aware fine-tuning) to .gsz")
    add_inputs(p, photo_free=True)
    add_output(p, "model folder to write (INRIA layout)")
    add_run_control(p)
    add_config_options(p, CompressConfig)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("export", help="write a scene for viewers (" + ", ".join(viewer_formats()) + "); with "
                                      "--data, fine-tuned through the format's own quantiser first")
    add_inputs(p, photo_free=True)
    add_output(p, "file to write (.spz, .sog, DIR/meta.json for an unbundled SOG, .compressed.ply, .splat, .ply); "
                  "a fine-tuning run works in OUTPUT.finetune")
    add_run_control(p)
    add_config_options(p, ExportConfig)
    add_format_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="generate the built-in example scene and run the pipeline on it")
    add_output(p, "output folder (default: gstrim-demo)", required=False, default="gstrim-demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=2_000, help="baseline training iterations (default: 2000)")
    p.set_defaults(func=cmd_demo)

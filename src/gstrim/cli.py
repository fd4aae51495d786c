"""`gstrim <verb>`: parses arguments, calls the library, prints. No logic of its own.

The options of `train` and `trim` are derived from the library's configuration dataclasses
(`gstrim.options.option` fields: help, choices, default), so a new field, score or preset reaches the
command line without an edit here. Errors about a field come back naming its flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from gstrim import __version__, progress
from gstrim.errors import ConfigError, GstrimError
from gstrim.options import flag_name

# ---- options derived from configuration dataclasses ------------------------------------------------------


def _config_classes():
    from gstrim.compress.pipeline import CompressConfig
    from gstrim.data.virtual import ViewConfig
    from gstrim.export import ExportConfig
    from gstrim.prune.strategy import TrimConfig
    from gstrim.train import DensifyConfig, TrainConfig

    return TrainConfig, DensifyConfig, TrimConfig, CompressConfig, ExportConfig, ViewConfig


def _field_type(hint) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_options(p: argparse.ArgumentParser, config_cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per described field of `config_cls` (but those in `skip`, which another config of the same
    verb provides); a flag left out keeps the library's default, so the defaults live in one place."""
    hints = typing.get_type_hints(config_cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if "help" not in meta or f.name in skip:
            continue
        target = p
        if meta.get("exclusive"):
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = p.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
        kind = _field_type(hints[f.name])
        choices = meta.get("choices")
        choices = choices() if callable(choices) else choices
        default_text = "" if f.default is None or f.default is False else f" (default: {f.default})"
        kwargs = {"dest": f.name, "default": None, "help": meta["help"] + default_text}
        if kind is bool:
            kwargs |= {"action": "store_true"}
        else:
            metavar = meta.get("metavar") or (None if choices else {int: "N", float: "X"}.get(kind))
            kwargs |= {"type": kind, "choices": choices, "metavar": metavar}
        target.add_argument(flag_name(config_cls, f.name), **kwargs)


def config_from_args(args, config_cls, **overrides):
    """`config_cls` with the fields given on the command line (the namespace is only read)."""
    given = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name, None)
        if value is not None and value is not False:
            given[f.name] = value
    return config_cls(**{**given, **overrides})


def _flag_of(field: str) -> str:
    for cls in _config_classes():
        if field in {f.name for f in dataclasses.fields(cls)}:
            return flag_name(cls, field)
    return flag_name(None, field)


# ---- shared option groups -------------------------------------------------------------------------------


def _add_nonfinite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nonfinite", choices=("error", "drop", "keep"), default="error",
                   help="what to do with Gaussians that have NaN/Inf parameters (default: error)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: an NVIDIA GPU through gsplat when available, else the CPU rasterizer")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset options")
    g.add_argument("--images", help="COLMAP image folder name (default: images, or images_N with --downscale N)")
    g.add_argument("--downscale", type=int, help="divide the image resolution by N")
    g.add_argument("--background", choices=("black", "white"),
                   help="colour behind RGBA images and renders (default: white for Blender, black for COLMAP)")
    g.add_argument("--missing-images", choices=("error", "skip"),
                   help="images named by the dataset but absent: stop (default) or leave those views out")


def _add_model_input(p: argparse.ArgumentParser, name: str = "model") -> None:
    """The model a verb reads: a folder (with --iteration), a scene file or a checkpoint."""
    p.add_argument(name, help="model folder, scene file (.ply, .splat) or checkpoint chkpnt*.pt")
    p.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
    p.add_argument("--iteration", type=int, help="saved iteration of a model folder (default: latest)")
    _add_nonfinite(p)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="model folder to write (INRIA layout)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=1_000, help="iterations between checkpoints (1000)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-view evaluation")
    _add_device(p)


def _add_photo_free_options(p: argparse.ArgumentParser) -> None:
    from gstrim.data.virtual import ViewConfig

    g = p.add_argument_group("photo-free (without --data: the scene renders its own targets from virtual views)")
    g.add_argument("--photo-free", action="store_true",
                   help="use virtual views even when the model records a dataset")
    add_config_options(g, ViewConfig, skip=("seed",))


def _photo_free_options(args) -> dict:
    """`views` (a ViewConfig when a photo-free option was typed) and `photo_free`, for the library's verbs."""
    from gstrim.data.virtual import ViewConfig

    given = any(getattr(args, f.name, None) not in (None, False) for f in dataclasses.fields(ViewConfig)
                if f.name != "seed")
    return {"views": config_from_args(args, ViewConfig) if given else None, "photo_free": args.photo_free}


def _data_options(args) -> dict:
    """The dataset options typed on the command line (defaults left to the loader and the recorded run)."""
    given = {"images": args.images, "downscale": args.downscale, "background": args.background,
             "missing_images": args.missing_images}
    return {k: v for k, v in given.items() if v is not None}


def _model_and_data(args):
    """The model named on the command line and its dataset (--data, or the one it was trained on)."""
    from gstrim.data import load_dataset
    from gstrim.io.model import load_model

    model = load_model(args.model, iteration=args.iteration, nonfinite=args.nonfinite)
    data, recorded = (args.data, {}) if args.data is not None else model.recorded_dataset()
    return model, load_dataset(data, **{**recorded, **_data_options(args)})


# ---- verbs --------------------------------------------------------------------------------------------


def _print_dataset(ds) -> None:
    s = ds.summary()
    print(f"{s['root']}")
    print(f"  kind         {s['kind']}")
    print(f"  views        {s['train_views']} train, {s['test_views']} test")
    print(f"  resolution   {', '.join(f'{w}x{h}' for w, h in s['resolution'])}")
    print(f"  points       {s['points']:,}")
    print(f"  extent       {s['extent']}")


def _print_metrics(m, indent: str = "  ") -> None:
    print(f"{indent}PSNR {m.psnr:.3f}  SSIM {m.ssim:.4f}  LPIPS {m.lpips:.4f}  render {m.render_ms:.1f} ms/view  "
          f"[{m.lpips_label}, SSIM {m.ssim_mode}]")


def cmd_info(args) -> int:
    from gstrim.info import scene_info

    if Path(args.file).is_dir():
        from gstrim.data import load_dataset

        ds = load_dataset(args.file, **_data_options(args))
        if args.json:
            print(json.dumps(ds.summary(), indent=2))
        else:
            _print_dataset(ds)
        return 0
    info = scene_info(args.file, nonfinite=args.nonfinite)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}")
    print(f"  format        {info['format']}")
    print(f"  gaussians     {info['count']:,}")
    print(f"  sh degree     {info['sh_degree']}")
    print(f"  size          {info['size_mb']:.3f} MB")
    lo, hi = info["bbox_min"], info["bbox_max"]
    print(f"  bbox min      {lo[0]:.4g} {lo[1]:.4g} {lo[2]:.4g}")
    print(f"  bbox max      {hi[0]:.4g} {hi[1]:.4g} {hi[2]:.4g}")
    for key, label in (("opacity", "opacity"), ("scale", "max scale")):
        s = info[key]
        print(f"  {label:<13} min {s['min']:.4g}  p50 {s['p50']:.4g}  mean {s['mean']:.4g}  max {s['max']:.4g}")
    if info.get("extra_properties"):
        print(f"  ignored props {', '.join(info['extra_properties'])}")
    return 0


def cmd_convert(args) -> int:
    from gstrim.io.formats import format_of, load_scene, save_scene

    scene = load_scene(args.input, nonfinite=args.nonfinite)
    out = format_of(args.output)
    if scene.sh_degree > out.max_sh_degree:
        progress.log(f"note: {out.name} stores SH up to degree {out.max_sh_degree}; dropping the higher bands "
                     f"of degree {scene.sh_degree}")
    save_scene(args.output, scene)
    print(f"wrote {args.output} ({len(scene):,} Gaussians, {Path(args.output).stat().st_size / 1e6:.3f} MB)")
    return 0


def cmd_train(args) -> int:
    from gstrim.train import DensifyConfig, TrainConfig, train_model

    result = train_model(
        args.data, args.output, data_options=_data_options(args),
        config=config_from_args(args, TrainConfig, device=args.device),
        densify=config_from_args(args, DensifyConfig), init_points=args.init_points,
        checkpoint_every=args.checkpoint_every, save_iterations=args.save_iterations, resume=args.resume,
        evaluate_test=not args.no_eval,
    )
    print(f"trained {result.iterations:,} iterations in {result.wall_s:.0f} s: {len(result.scene):,} Gaussians")
    print(f"  scene        {result.model_dir / 'point_cloud' / f'iteration_{result.iterations}' / 'point_cloud.ply'}")
    if result.evaluation is not None:
        m = result.evaluation.metrics()
        print(f"{m.label} on {m.views} test views ({m.gaussians:,} Gaussians):")
        _print_metrics(m)
        print(f"  results in {result.model_dir / 'results.json'} and per_view.json")
    return 0


def cmd_render(args) -> int:
    from gstrim.evaluate import write_renders

    model, ds = _model_and_data(args)
    out = Path(args.output) if args.output else model.root / args.split / model.label
    count = write_renders(model.scene, ds.split(args.split), out, background=ds.background, device=args.device)
    print(f"wrote {count} renders and ground-truth images to {out}")
    return 0


def cmd_eval(args) -> int:
    from gstrim.evaluate import evaluate

    model, ds = _model_and_data(args)
    cameras = ds.split(args.split)
    result = evaluate(model.scene, cameras, label=model.label, background=ds.background, lpips_net=args.lpips,
                      lpips_input=args.lpips_input, ssim_mode=args.ssim, device=args.device)
    result.write(model.root)
    m = result.metrics()
    print(f"{model.label} on {len(cameras)} {args.split} views ({m.gaussians:,} Gaussians):")
    _print_metrics(m)
    print(f"  results in {model.root / 'results.json'} and per_view.json")
    return 0


def cmd_trim(args) -> int:
    from gstrim.prune.pipeline import trim_scene
    from gstrim.prune.strategy import TrimConfig

    options = dict(data=args.data, data_options=_data_options(args), device=args.device, resume=args.resume,
                   checkpoint_every=args.checkpoint_every, evaluate_test=not args.no_eval, iteration=args.iteration,
                   nonfinite=args.nonfinite, **_photo_free_options(args))
    config = config_from_args(args, TrimConfig)
    if args.compress:
        from gstrim.compress.pipeline import CompressConfig, trim_and_compress

        s, compressed = trim_and_compress(args.scene, args.output, trim_config=config,
                                          compress_config=config_from_args(args, CompressConfig, seed=config.seed),
                                          **options)
    else:
        s = trim_scene(args.scene, args.output, config=config, **options).summary
    _print_trim(s, Path(args.output))
    if args.compress:
        _print_compress(compressed, s.mb_in)
    if args.format:
        from gstrim.export import ExportConfig, trim_and_export

        exported = trim_and_export(args.output, args.format, config_from_args(args, ExportConfig, seed=config.seed),
                                   resume=args.resume, device=args.device, evaluate_test=not args.no_eval)
        _print_export(exported, s.mb_in)
    return 0


def _print_export(result, original_mb: float | None = None) -> None:
    how = (f"fine-tuned {result.summary.iterations:,} iterations through its quantiser"
           f"{_photo_free_note(result.summary.details)}" if result.summary else "plain")
    line = f"exported {len(result.scene):,} Gaussians ({how}): {result.bytes / 1e6:.3f} MB"
    line += f", x{result.ratio:.1f} smaller than the .ply"
    if original_mb is not None:
        line += f" (x{original_mb * 1e6 / result.bytes:.1f} smaller than the untrimmed .ply)"
    print(line)
    if result.before is not None and result.after is not None:
        _print_change(result.before.metrics(), result.after.metrics(), "   (of the file as written)")
    elif result.after is not None and result.after.label.endswith("_virtual"):
        _print_virtual(result.after.metrics())
    elif result.after is not None:
        o = result.after.metrics()
        print(f"  test PSNR    {o.psnr:.3f}   SSIM {o.ssim:.4f}   LPIPS {o.lpips:.4f}   (of the file as written)")
    print(f"  file         {result.file}")


def cmd_export(args) -> int:
    from gstrim.export import ExportConfig, export_model

    result = export_model(args.model, args.output, data=args.data, data_options=_data_options(args),
                          config=config_from_args(args, ExportConfig), device=args.device, resume=args.resume,
                          checkpoint_every=args.checkpoint_every, evaluate_test=not args.no_eval,
                          iteration=args.iteration, nonfinite=args.nonfinite, **_photo_free_options(args))
    _print_export(result)
    return 0


def _print_change(i, o, note: str = "") -> None:
    """Test metrics before -> after."""
    print(f"  test PSNR    {i.psnr:.3f} -> {o.psnr:.3f}   SSIM {i.ssim:.4f} -> {o.ssim:.4f}   "
          f"LPIPS {i.lpips:.4f} -> {o.lpips:.4f}{note}")


def _print_virtual(o) -> None:
    """Photo-free metrics: against the input's own renders, so there is no "before"."""
    if o is not None and o.label.endswith("_virtual"):
        print(f"  held-out     PSNR {o.psnr:.3f}  SSIM {o.ssim:.4f}  LPIPS {o.lpips:.4f} against the input's renders "
              f"of {o.views} virtual views (not photos)")


def _photo_free_note(details: dict) -> str:
    return ", photo-free: taught by its own renders" if details.get("mode") == "photo-free" else ""


def _print_trim(s, model_dir: Path) -> None:
    print(f"trimmed {s.gaussians_in:,} -> {s.gaussians_out:,} Gaussians ({100 * s.removed:.1f} % removed, "
          f"{s.details['variant']}, score {s.details['score']}{_photo_free_note(s.details)}) in {s.wall_s:.0f} s")
    print(f"  size         {s.mb_in:.2f} MB -> {s.mb_out:.2f} MB (x{s.ratio:.2f} smaller)")
    if s.input is not None and s.output is not None:
        _print_change(s.input, s.output)
        print(f"  render       {s.input.fps:.1f} -> {s.output.fps:.1f} FPS")
    _print_virtual(s.output if s.input is None else None)
    print(f"  scene        {model_dir / 'point_cloud' / f'iteration_{s.iterations}' / 'point_cloud.ply'}")


def _print_compress(result, original_mb: float | None = None) -> None:
    r, s = result.record, result.summary
    stages = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in r["stages_s"].items())
    print(f"compressed {s.gaussians_in:,} -> {s.gaussians_out:,} Gaussians, {r['sh_entries']:,} colour and "
          f"{r['shape_entries']:,} shape codebook entries ({stages}{_photo_free_note(s.details)})")
    line = f"  size         {r['input_ply_mb']:.2f} MB .ply -> {r['mb']:.3f} MB .gsz (x{r['ratio']:.1f} smaller"
    if original_mb is not None:
        line += f"; x{original_mb * 1e6 / (r['mb'] * 1e6):.1f} smaller than the untrimmed .ply"
    print(line + ")")
    if s.input is not None and s.output is not None:
        _print_change(s.input, s.output, "   (of the file as written)")
    _print_virtual(s.output if s.input is None else None)
    print(f"  file         {result.file}")


def cmd_compress(args) -> int:
    from gstrim.compress.pipeline import CompressConfig, compress_model

    result = compress_model(args.model, args.output, data=args.data, data_options=_data_options(args),
                            config=config_from_args(args, CompressConfig), device=args.device, resume=args.resume,
                            checkpoint_every=args.checkpoint_every, evaluate_test=not args.no_eval,
                            iteration=args.iteration, nonfinite=args.nonfinite, **_photo_free_options(args))
    _print_compress(result)
    return 0


def cmd_demo(args) -> int:
    from gstrim.demo import run_demo

    summary = run_demo(Path(args.output), seed=args.seed, iterations=args.iterations)
    print(f"built-in example scene (seed {args.seed}), Blender format:")
    _print_dataset(summary["dataset"])
    trained = summary["train"]
    print(f"baseline: {trained.iterations:,} iterations in {trained.wall_s:.0f} s -> {len(trained.scene):,} Gaussians "
          f"({trained.model_dir})")
    m = trained.summary.output
    print(f"  test PSNR {m.psnr:.2f}  SSIM {m.ssim:.4f}  LPIPS {m.lpips:.4f}  ({m.lpips_label})")
    t = summary["trim"].summary
    print(f"trimmed (Trimming the Fat, {100 * t.removed:.0f} % removed): {t.gaussians_out:,} Gaussians, "
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gstrim.io.formats import suffixes

    TrainConfig, DensifyConfig, TrimConfig, CompressConfig, ExportConfig, _ = _config_classes()
    from gstrim.export import viewer_formats
    parser = argparse.ArgumentParser(
        prog="gstrim",
        description="Make trained 3D Gaussian Splatting scenes small and fast without losing quality.",
    )
    parser.add_argument("--version", action="version", version=f"gstrim {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    parser.add_argument("--threads", type=int,
                        help="threads for torch and Numba together (default: $GSTRIM_THREADS, else one per core)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formats = ", ".join(suffixes())

    p = sub.add_parser("info", help=f"summarise a scene file ({formats}) or a dataset folder")
    p.add_argument("file", help="scene file, or a COLMAP / Blender dataset folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_nonfinite(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help=f"convert a scene between formats ({formats})")
    p.add_argument("input")
    p.add_argument("output")
    _add_nonfinite(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("decompress", help="decode a compressed .gsz scene to another format (a convert)")
    p.add_argument("input", help=".gsz file")
    p.add_argument("output", help=f"scene file to write ({formats})")
    _add_nonfinite(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train a 3DGS scene from photos (vanilla 3DGS with densification)")
    p.add_argument("data", help="COLMAP or Blender dataset folder")
    _add_run_options(p)
    add_config_options(p, TrainConfig)
    add_config_options(p, DensifyConfig)
    p.add_argument("--init-points", type=int,
                   help="start from N random points (default: COLMAP points, or 100000 for Blender data)")
    p.add_argument("--save-iterations", type=int, nargs="*", default=[7_000, 30_000],
                   help="also save the scene at these iterations (default: 7000 30000; the last is always saved)")
    _add_data_options(p)
    p.set_defaults(func=cmd_train)

    for name, func, help_text in (
            ("render", cmd_render, "render a model's views to PNG, with the ground truth beside them"),
            ("eval", cmd_eval, "PSNR, SSIM and LPIPS on held-out views -> results.json, per_view.json")):
        p = sub.add_parser(name, help=help_text)
        _add_model_input(p)
        p.add_argument("--split", choices=("train", "test"), default="test")
        _add_device(p)
        _add_data_options(p)
        p.set_defaults(func=func)
        if name == "render":
            p.add_argument("-o", "--output", help="folder for renders/ and gt/ (default: MODEL/<split>/ours_<N>)")
        else:
            p.add_argument("--lpips", choices=("vgg", "alex"), default="vgg",
                           help="LPIPS network (default: vgg, as 3DGS)")
            p.add_argument("--lpips-input", choices=("3dgs", "standard"), default="3dgs",
                           help="3dgs: [0,1] images as the 3DGS scripts feed them (default); standard: [-1,1]")
            p.add_argument("--ssim", choices=("3dgs", "valid"), default="3dgs",
                           help="3dgs: zero-padded windows as 3DGS (default); valid: interior windows only")

    p = sub.add_parser("trim", help="prune a trained scene (Trimming the Fat) and fine-tune it")
    _add_model_input(p, "scene")
    _add_run_options(p)
    add_config_options(p, TrimConfig)
    g = p.add_argument_group("compression (--compress)")
    g.add_argument("--compress", action="store_true",
                   help="then compress the trimmed scene (c3dgs) into OUTPUT/compressed: the paper's whole pipeline")
    add_config_options(g, CompressConfig, skip=("seed",))
    g = p.add_argument_group("viewer format (--format)")
    g.add_argument("--format", choices=viewer_formats(),
                   help="then fine-tune the trimmed scene through this format's quantiser and write it as "
                        "OUTPUT/scene.<suffix>, ready for a viewer")
    add_config_options(g, ExportConfig, skip=("seed", "finetune"))  # --finetune is the trim's; the default here
    _add_data_options(p)
    _add_photo_free_options(p)
    p.set_defaults(func=cmd_trim)

    p = sub.add_parser("compress", help="compress a scene (c3dgs: codebooks, quantisation-aware fine-tuning) to .gsz")
    _add_model_input(p)
    _add_run_options(p)
    add_config_options(p, CompressConfig)
    _add_data_options(p)
    _add_photo_free_options(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("export", help="write a scene for viewers (.spz, .sog, .compressed.ply, .splat, .ply); "
                                      "with --data, fine-tuned through the format's own quantiser first")
    _add_model_input(p)
    p.add_argument("-o", "--output", required=True,
                   help="file to write (.spz, .sog, DIR/meta.json for an unbundled SOG, .compressed.ply, .splat, .ply)")
    p.add_argument("--resume", action="store_true", help="continue the fine-tuning run in OUTPUT.finetune")
    p.add_argument("--checkpoint-every", type=int, default=500, help="iterations between checkpoints (500)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-view evaluation")
    _add_device(p)
    add_config_options(p, ExportConfig)
    _add_data_options(p)
    _add_photo_free_options(p)
    p.set_defaults(func=cmd_export)

    from gstrim.cli_experiments import add_experiment_commands

    add_experiment_commands(sub, TrimConfig, CompressConfig, ExportConfig)

    p = sub.add_parser("demo", help="generate the built-in example scene and run the pipeline on it")
    p.add_argument("-o", "--output", default="gstrim-demo", help="output folder (default: gstrim-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=2_000, help="baseline training iterations (default: 2000)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gstrim.threads import set_threads

    args = build_parser().parse_args(argv)
    if args.quiet:
        progress.set_enabled(False)
    try:
        set_threads(args.threads)
        return args.func(args)
    except ConfigError as exc:
        print(f"gstrim: error: {exc.for_flags(_flag_of)}", file=sys.stderr)
        return 1
    except GstrimError as exc:
        print(f"gstrim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gstrim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

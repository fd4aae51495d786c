"""`gstrim <verb>`: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gstrim import __version__, progress
from gstrim.errors import GstrimError


def _add_nonfinite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nonfinite", choices=("error", "drop", "keep"), default="error",
                   help="what to do with Gaussians that have NaN/Inf parameters (default: error)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: an NVIDIA GPU through gsplat when available, else the CPU rasterizer")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="COLMAP image folder name (default: images, or images_N with --downscale N)")
    p.add_argument("--downscale", type=int, help="divide the image resolution by N")
    p.add_argument("--background", choices=("black", "white"),
                   help="colour behind RGBA images and renders (default: white for Blender, black for COLMAP)")
    p.add_argument("--missing-images", choices=("error", "skip"), default="error",
                   help="images named by the dataset but absent: stop (default) or leave those views out")


def _given_data_options(args) -> dict:
    """The dataset options typed on the command line (defaults left out)."""
    given = {"images": args.images, "downscale": args.downscale, "background": args.background,
             "missing_images": None if args.missing_images == "error" else args.missing_images}
    return {k: v for k, v in given.items() if v is not None}


def _data_options(args, saved: dict | None = None) -> dict:
    """Dataset options from the command line, falling back to those a model was trained with."""
    saved = {k: v for k, v in (saved or {}).items() if k != "path"}
    return {"missing_images": "error", **saved, **_given_data_options(args)}


def _load_data(args, saved: dict | None = None):
    from gstrim.data import load_dataset

    return load_dataset(args.data, **_data_options(args, saved))


def _model_and_data(args):
    """The model named on the command line and its dataset (--data, or the one it was trained on)."""
    from gstrim.io.model import load_model

    model = load_model(args.model, iteration=args.iteration, nonfinite=args.nonfinite)
    saved = model.data_options
    if args.data is None:
        args.data = model.recorded_dataset()[0]
    return model, _load_data(args, saved)


def _print_dataset(ds) -> None:
    s = ds.summary()
    print(f"{s['root']}")
    print(f"  kind         {s['kind']}")
    print(f"  views        {s['train_views']} train, {s['test_views']} test")
    print(f"  resolution   {', '.join(f'{w}x{h}' for w, h in s['resolution'])}")
    print(f"  points       {s['points']:,}")
    print(f"  extent       {s['extent']}")


def cmd_info(args) -> int:
    from gstrim.inspect import scene_info

    if Path(args.file).is_dir():
        args.data = args.file
        ds = _load_data(args)
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
    from gstrim.io import load_scene, save_scene

    scene = load_scene(args.input, nonfinite=args.nonfinite)
    if Path(args.output).suffix.lower() == ".splat" and scene.sh_degree > 0:
        progress.log(f"note: .splat stores no SH beyond DC; dropping SH degree {scene.sh_degree} bands")
    save_scene(args.output, scene)
    print(f"wrote {args.output} ({len(scene):,} Gaussians, {Path(args.output).stat().st_size / 1e6:.3f} MB)")
    return 0


def _train_config(args):
    from gstrim.train import TrainConfig

    return TrainConfig(iterations=args.iterations, sh_degree=args.sh_degree, seed=args.seed, device=args.device)


def cmd_train(args) -> int:
    from gstrim.train import DensifyConfig, train_model

    densify = DensifyConfig(stop=args.densify_until, grad_threshold=args.densify_grad_threshold)
    result = train_model(
        args.data, args.output, data_options=_data_options(args), config=_train_config(args),
        densify=densify, init_points=args.init_points, checkpoint_every=args.checkpoint_every,
        save_iterations=args.save_iterations, resume=args.resume,
    )
    print(f"trained {result.iterations:,} iterations in {result.wall_s:.0f} s: {len(result.scene):,} Gaussians")
    print(f"  scene        {result.model_dir / 'point_cloud' / f'iteration_{result.iterations}' / 'point_cloud.ply'}")
    if not args.no_eval:
        args.model, args.iteration, args.data, args.split = str(result.model_dir), result.iterations, None, "test"
        args.lpips, args.lpips_input, args.ssim, args.nonfinite = "vgg", "3dgs", "3dgs", "error"
        _run_eval(args, quiet_if_no_views=True)
    return 0


def cmd_render(args) -> int:
    from gstrim.evaluate import write_renders

    model, ds = _model_and_data(args)
    out = Path(args.output) if args.output else model.root / args.split / model.label
    count = write_renders(model.scene, ds.split(args.split), out, background=ds.background, device=args.device)
    print(f"wrote {count} renders and ground-truth images to {out}")
    return 0


def _run_eval(args, quiet_if_no_views: bool = False) -> None:
    from gstrim.evaluate import evaluate, write_results

    model, ds = _model_and_data(args)
    cameras = ds.split(args.split)
    if not cameras and quiet_if_no_views:
        return
    result = evaluate(model.scene, cameras, label=model.label, background=ds.background, lpips_net=args.lpips,
                      lpips_input=args.lpips_input, ssim_mode=args.ssim, device=args.device)
    write_results(model.root, result)
    s = result.summary()
    print(f"{model.label} on {len(cameras)} {args.split} views ({s['gaussians']:,} Gaussians):")
    print(f"  PSNR {s['PSNR']:.3f}  SSIM {s['SSIM']:.4f}  LPIPS {s['LPIPS']:.4f}  "
          f"render {s['render_ms']:.1f} ms/view  [{s['lpips']}, SSIM {s['ssim_mode']}]")
    print(f"  results in {model.root / 'results.json'} and per_view.json")


def cmd_eval(args) -> int:
    _run_eval(args)
    return 0


def cmd_trim(args) -> int:
    from gstrim.prune.run import trim_scene
    from gstrim.prune.trim import PRESETS, TrimConfig

    schedule = dict(PRESETS[args.preset])
    for key in ("steps", "every", "finetune"):
        if getattr(args, key) is not None:
            schedule[key] = getattr(args, key)
    config = TrimConfig(score=args.score, gamma=args.gamma, target_removal=args.target_removal,
                        target_count=args.target_count, target_mb=args.target_mb, one_shot=args.one_shot,
                        no_prune=args.no_prune, stats=args.stats, stats_views=args.stats_views, seed=args.seed,
                        **schedule)
    result = trim_scene(args.scene, args.output, data=args.data, data_options=_given_data_options(args), config=config,
                        device=args.device, resume=args.resume, checkpoint_every=args.checkpoint_every,
                        evaluate_test=not args.no_eval)
    s = result.summary
    print(f"trimmed {s['gaussians_in']:,} -> {s['gaussians_out']:,} Gaussians ({100 * s['removed']:.1f} % removed, "
          f"{s['variant']}, score {s['score']}) in {s['wall_s']:.0f} s")
    print(f"  size         {s['mb_in']:.2f} MB -> {s['mb_out']:.2f} MB (x{s['ratio']:.2f} smaller)")
    if "input" in s and "output" in s:
        i, o = s["input"], s["output"]
        print(f"  test PSNR    {i['PSNR']:.3f} -> {o['PSNR']:.3f}   SSIM {i['SSIM']:.4f} -> {o['SSIM']:.4f}   "
              f"LPIPS {i['LPIPS']:.4f} -> {o['LPIPS']:.4f}")
        print(f"  render       {i['fps']:.1f} -> {o['fps']:.1f} FPS")
    iteration = s["iterations"]
    print(f"  scene        {result.model_dir / 'point_cloud' / f'iteration_{iteration}' / 'point_cloud.ply'}")
    return 0


def cmd_demo(args) -> int:
    from gstrim.demo import run_demo

    summary = run_demo(Path(args.output), seed=args.seed, iterations=args.iterations)
    print(f"built-in example scene (seed {args.seed}), Blender format:")
    _print_dataset(summary["dataset"])
    trained = summary["train"]
    print(f"baseline: {trained.iterations:,} iterations in {trained.wall_s:.0f} s -> {len(trained.scene):,} Gaussians "
          f"({trained.model_dir})")
    s = summary["eval"].summary()
    print(f"  test PSNR {s['PSNR']:.2f}  SSIM {s['SSIM']:.4f}  LPIPS {s['LPIPS']:.4f}  ({s['lpips']})")
    t = summary["trim"].summary
    print(f"trimmed (Trimming the Fat, {100 * t['removed']:.0f} % removed): {t['gaussians_out']:,} Gaussians, "
          f"{t['mb_in']:.2f} -> {t['mb_out']:.2f} MB, {t['wall_s']:.0f} s ({summary['trim'].model_dir})")
    o = t["output"]
    print(f"  test PSNR {o['PSNR']:.2f}  SSIM {o['SSIM']:.4f}  LPIPS {o['LPIPS']:.4f}  "
          f"render {t['input']['fps']:.0f} -> {o['fps']:.0f} FPS on this machine")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gstrim",
        description="Make trained 3D Gaussian Splatting scenes small and fast without losing quality.",
    )
    parser.add_argument("--version", action="version", version=f"gstrim {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="summarise a .ply / .splat scene or a dataset folder")
    p.add_argument("file", help="scene file, or a COLMAP / Blender dataset folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_nonfinite(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between .ply and .splat")
    p.add_argument("input")
    p.add_argument("output")
    _add_nonfinite(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train a 3DGS scene from photos (vanilla 3DGS with densification)")
    p.add_argument("data", help="COLMAP or Blender dataset folder")
    p.add_argument("-o", "--output", required=True, help="model folder to write (INRIA layout)")
    p.add_argument("--iterations", type=int, default=30_000, help="training iterations (default: 30000)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its last checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sh-degree", type=int, choices=range(4), default=3, help="final SH degree (default: 3)")
    p.add_argument("--init-points", type=int,
                   help="start from N random points (default: COLMAP points, or 100000 for Blender data)")
    p.add_argument("--densify-until", type=int,
                   help="last densification iteration (default: half the run, at most 15000, as 3DGS)")
    p.add_argument("--densify-grad-threshold", type=float, default=2e-4, help="(default: 0.0002)")
    p.add_argument("--checkpoint-every", type=int, default=1_000, help="iterations between checkpoints (1000)")
    p.add_argument("--save-iterations", type=int, nargs="*", default=[7_000, 30_000],
                   help="also save the scene at these iterations (default: 7000 30000; the last is always saved)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-view evaluation at the end")
    _add_device(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_train)

    def add_model_options(p):
        p.add_argument("model", help="model folder, point_cloud.ply / .splat, or checkpoint chkpnt*.pt")
        p.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
        p.add_argument("--split", choices=("train", "test"), default="test")
        p.add_argument("--iteration", type=int, help="saved iteration of a model folder (default: latest)")
        _add_nonfinite(p)
        _add_device(p)
        _add_data_options(p)

    p = sub.add_parser("render", help="render a model's views to PNG, with the ground truth beside them")
    add_model_options(p)
    p.add_argument("-o", "--output", help="folder for renders/ and gt/ (default: MODEL/<split>/ours_<iteration>)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("eval", help="PSNR, SSIM and LPIPS on held-out views -> results.json, per_view.json")
    add_model_options(p)
    p.add_argument("--lpips", choices=("vgg", "alex"), default="vgg", help="LPIPS network (default: vgg, as 3DGS)")
    p.add_argument("--lpips-input", choices=("3dgs", "standard"), default="3dgs",
                   help="3dgs: [0,1] images as the 3DGS scripts feed them (default); standard: [-1,1]")
    p.add_argument("--ssim", choices=("3dgs", "valid"), default="3dgs",
                   help="3dgs: zero-padded windows as 3DGS (default); valid: interior windows only")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("trim", help="prune a trained scene (Trimming the Fat) and fine-tune it")
    p.add_argument("scene", help="trained scene: .ply, model folder, or checkpoint chkpnt*.pt")
    p.add_argument("-o", "--output", required=True, help="model folder to write (INRIA layout)")
    p.add_argument("--data", help="dataset folder (default: the one the scene was trained on)")
    p.add_argument("--score", choices=("gradient", "opacity", "lightgaussian", "pup"), default="gradient",
                   help="importance score: gradient (Trimming the Fat: kept if opacity OR gradient is high; "
                        "default); opacity, lightgaussian (global significance) or pup (PUP-3DGS Fisher) "
                        "rank alone")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--gamma", type=float, help="quantile level per prune step (paper: 0.225-0.6)")
    target.add_argument("--target-removal", type=float, help="fraction of the Gaussians to remove (default 0.75)")
    target.add_argument("--target-count", type=int, help="Gaussians to keep")
    target.add_argument("--target-mb", type=float, help="largest .ply size to reach, in MB")
    variant = p.add_mutually_exclusive_group()
    variant.add_argument("--one-shot", action="store_true", help="remove the whole target at once, then fine-tune")
    variant.add_argument("--no-prune", action="store_true", help="fine-tune only (the fair baseline)")
    p.add_argument("--preset", choices=("paper", "cpu"), default="paper",
                   help="paper: 10 prunes 500 apart + 10000 fine-tuning iterations; cpu: 100 apart + 2000")
    p.add_argument("--steps", type=int, help="number of prune steps")
    p.add_argument("--every", type=int, help="iterations between prune steps")
    p.add_argument("--finetune", type=int, help="fine-tuning iterations after the last prune step")
    p.add_argument("--stats", choices=("refresh", "checkpoint"), default="refresh",
                   help="refresh the gradient score before each prune (default) or reuse a checkpoint's")
    p.add_argument("--stats-views", type=int, help="training views per gradient refresh (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=1_000)
    p.add_argument("--no-eval", action="store_true", help="skip the test-view evaluations")
    _add_device(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_trim)

    p = sub.add_parser("demo", help="generate the built-in example scene and run the pipeline on it")
    p.add_argument("-o", "--output", default="gstrim-demo", help="output folder (default: gstrim-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=2_000, help="baseline training iterations (default: 2000)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet:
        progress.set_enabled(False)
    try:
        return args.func(args)
    except GstrimError as exc:
        print(f"gstrim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gstrim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

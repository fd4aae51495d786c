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


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="COLMAP image folder name (default: images, or images_N with --downscale N)")
    p.add_argument("--downscale", type=int, help="divide the image resolution by N")
    p.add_argument("--background", choices=("black", "white"),
                   help="colour behind RGBA images and renders (default: white for Blender, black for COLMAP)")
    p.add_argument("--missing-images", choices=("error", "skip"), default="error",
                   help="images named by the dataset but absent: stop (default) or leave those views out")


def _load_data(args):
    from gstrim.data import load_dataset

    return load_dataset(args.data, images=args.images, downscale=args.downscale, background=args.background,
                        missing_images=args.missing_images)


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


def cmd_demo(args) -> int:
    from gstrim.data import load_dataset
    from gstrim.example import generate_example

    out = Path(args.output)
    data_dir = out / "data"
    generate_example(data_dir, seed=args.seed, overwrite=True)
    print(f"built-in example scene (seed {args.seed}), Blender format:")
    _print_dataset(load_dataset(data_dir))
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

    p = sub.add_parser("demo", help="generate the built-in example scene and run the pipeline on it")
    p.add_argument("-o", "--output", default="gstrim-demo", help="output folder (default: gstrim-demo)")
    p.add_argument("--seed", type=int, default=0)
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

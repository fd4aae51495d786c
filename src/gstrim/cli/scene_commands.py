"""Verbs on a scene file or model that write no run folder: info, convert, decompress, render, eval, fps,
view."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gstrim import progress
from gstrim.cli import show
from gstrim.cli.flags import (
    add_config_options,
    add_device,
    add_inputs,
    add_nonfinite,
    add_output,
    config_from_args,
    control_from_args,
    data_options,
)
from gstrim.data import DataOptions
from gstrim.errors import GstrimError
from gstrim.pipelines.view import ViewerConfig


def cmd_info(args) -> int:
    from gstrim.info import scene_info

    if Path(args.file).is_dir():
        from gstrim.data import load_dataset

        ds = load_dataset(args.file, **data_options(args))
        if args.json:
            print(json.dumps(ds.summary(), indent=2))
        else:
            show.dataset(ds)
        return 0
    if args.bits:
        return _print_bits(args)
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


def _print_bits(args) -> int:
    from gstrim.info import gsz_bits
    from gstrim.io.formats import format_of

    if format_of(args.file).name != "gsz":
        raise GstrimError("--bits reads a .gsz file", args.file)
    table = gsz_bits(args.file)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"{table['file']}: {table['gaussians']:,} Gaussians, {table['bytes']:,} bytes, "
          f"{table['total_bits']:.1f} bits per Gaussian")
    print("| stream | shape | codec | bits/G before coding | bits/G in the file |")
    print("|---|---|---|---|---|")
    for s in table["streams"]:
        shape = "x".join(map(str, s["shape"]))
        print(f"| {s['stream']} | {shape} | {s['codec']} | {s['raw_bits']:.2f} | {s['coded_bits']:.2f} |")
    print(f"| header, checksum | | | | {table['overhead_bits']:.2f} |")
    print(f"| **total** | | | {sum(s['raw_bits'] for s in table['streams']):.2f} | {table['total_bits']:.2f} |")
    return 0


def cmd_convert(args) -> int:
    from gstrim.io.formats import format_of, load_scene, save_scene, written_size

    scene = load_scene(args.input, nonfinite=args.nonfinite)
    out = format_of(args.output)
    if scene.sh_degree > out.max_sh_degree:
        progress.log(f"note: {out.name} stores SH up to degree {out.max_sh_degree}; dropping the higher bands "
                     f"of degree {scene.sh_degree}")
    save_scene(args.output, scene)
    print(f"wrote {args.output} ({len(scene):,} Gaussians, {written_size(args.output) / 1e6:.3f} MB)")
    return 0


def _model_and_dataset(args, model: str | None = None):
    """The model named on the command line (or `model`) and its dataset (--data, or the one it was trained on,
    with the recorded loading options unless given)."""
    from gstrim.pipelines.inputs import Inputs, model_and_dataset

    return model_and_dataset(Inputs(model or args.model, args.data, data_options(args), args.iteration,
                                    args.nonfinite))


def cmd_render(args) -> int:
    from gstrim.evaluate import write_renders

    model, ds = _model_and_dataset(args)
    out = Path(args.output) if args.output else model.root / args.split / model.label
    count = write_renders(model.scene, ds.split(args.split), out, background=ds.background,
                          device=control_from_args(args).device)
    print(f"wrote {count} renders and ground-truth images to {out}")
    return 0


def cmd_eval(args) -> int:
    from gstrim.evaluate import evaluate

    model, ds = _model_and_dataset(args)
    cameras = ds.split(args.split)
    result = evaluate(model.scene, cameras, label=model.label, background=ds.background, lpips_net=args.lpips,
                      lpips_input=args.lpips_input, ssim_mode=args.ssim, device=control_from_args(args).device,
                      dataset=ds.root, split=args.split)
    label = result.write(model.root)
    m = result.metrics()
    print(f"{label} on {len(cameras)} {args.split} views ({m.gaussians:,} Gaussians):")
    show.metrics(m)
    print(f"  results in {model.root / 'results.json'} and per_view.json")
    return 0


def cmd_fps(args) -> int:
    from gstrim.metrics.fps import measure_fps

    print("| model | Gaussians | backend | device | views x repeats | ms / frame (median) | p10-p90 ms | FPS |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.models:
        model, dataset = _model_and_dataset(args, path)
        cameras = (dataset.test or dataset.train)[: args.views]
        r = measure_fps(model.scene, cameras, background=dataset.background, device=control_from_args(args).device,
                        warmup=args.warmup, repeats=args.repeats)
        print(f"| {path} | {r.gaussians:,} | {r.backend} | {r.device} | {r.views} x {args.repeats} | "
              f"{r.median_ms:.2f} | {r.p10_ms:.2f}-{r.p90_ms:.2f} | {r.fps:.1f} |", flush=True)
    return 0


def register(sub, formats: str) -> None:
    p = sub.add_parser("info", help=f"summarise a scene file ({formats}) or a dataset folder")
    p.add_argument("file", help="scene file, or a COLMAP / Blender dataset folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--bits", action="store_true", help="of a .gsz file: bits per Gaussian of each stored stream, "
                   "before and after its entropy coding")
    add_nonfinite(p)
    add_config_options(p.add_argument_group("dataset options"), DataOptions)
    p.set_defaults(func=cmd_info)

    for name, help_text in (("convert", f"convert a scene between formats ({formats})"),
                            ("decompress", "decode a compressed .gsz scene to another format (a convert)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", help=".gsz file" if name == "decompress" else "scene file")
        p.add_argument("output", help=f"scene file to write ({formats})")
        add_nonfinite(p)
        p.set_defaults(func=cmd_convert)

    p = sub.add_parser("render", help="render a model's views to PNG, with the ground truth beside them")
    add_inputs(p)
    p.add_argument("--split", choices=("train", "test"), default="test")
    add_output(p, "folder for renders/ and gt/ (default: MODEL/<split>/ours_<N>)", required=False)
    add_device(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("eval", help="PSNR, SSIM and LPIPS on held-out views -> results.json, per_view.json")
    add_inputs(p)
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--lpips", choices=("vgg", "alex"), default="vgg", help="LPIPS network (default: vgg, as 3DGS)")
    p.add_argument("--lpips-input", choices=("3dgs", "standard"), default="3dgs",
                   help="3dgs: [0,1] images as the 3DGS scripts feed them (default); standard: [-1,1]")
    p.add_argument("--ssim", choices=("3dgs", "valid"), default="3dgs",
                   help="3dgs: zero-padded windows as 3DGS (default); valid: interior windows only")
    add_device(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("fps", help="render speed: warm-up, then the median frame time over repeated test views")
    add_inputs(p, "models", nargs="+")
    p.add_argument("--views", type=int, default=50, help="the first N test views (default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed renders first (default: 5)")
    p.add_argument("--repeats", type=int, default=5, help="timed renders of every view (default: 5)")
    add_device(p)
    p.set_defaults(func=cmd_fps)

    p = sub.add_parser("view", help="look at scenes side by side in the browser, one shared camera (or --screenshot)")
    p.add_argument("scenes", nargs="+", metavar="SCENE",
                   help="scene files (any format), model or run folders, sweep folders")
    add_config_options(p, ViewerConfig)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the address without opening a browser")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="draw the page in headless Chromium, save it and exit")
    p.add_argument("--size", metavar="WxH", type=_size, help="screenshot size in pixels (default: the camera's, "
                   "a whole multiple of it up to 800 pixels on the longer side, times the scenes side by side; "
                   "800x600 each without --camera)")
    p.set_defaults(func=cmd_view)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return width, height


def cmd_view(args) -> int:
    from gstrim.pipelines.view import screenshot, serve

    config = config_from_args(args, ViewerConfig)
    if args.screenshot:
        out = screenshot(args.scenes, args.screenshot, config, size=args.size)
        print(f"wrote {out}")
        return 0
    serve(args.scenes, config, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0

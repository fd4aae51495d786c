"""Does the browser viewer show what gstrim renders? `gstrim view --screenshot` of a model at one of its
cameras (cameras.json) against gstrim's own render of that camera, at `--scale` times its resolution (default:
the screenshot's own, 4x for the built-in example), same background: PSNR between the two, and where they differ.

Usage: python bench/viewer_agreement.py MODEL [--camera 0] [--scale S] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gstrim.data.virtual import resized
from gstrim.io.model import read_cameras_json
from gstrim.pipelines.view import ViewerConfig, collect, manifest, screenshot, screenshot_scale
from gstrim.render import rasterize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--camera", type=int, default=0)
    parser.add_argument("--scale", type=int)
    parser.add_argument("--out", default="viewer_agreement")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    camera = read_cameras_json(Path(args.model) / "cameras.json")[args.camera]
    scale = args.scale or screenshot_scale(camera.width, camera.height)
    config = ViewerConfig(camera=args.camera, panels=False)
    (shown,) = collect([args.model], [])
    background = torch.tensor(manifest([shown], config)["background"])
    camera = resized(camera, max(camera.width, camera.height) * scale)
    shot = screenshot([args.model], out / "viewer.png", config, size=(camera.width, camera.height))
    with torch.no_grad():
        ours = rasterize(shown.scene, camera, background=background).image.clamp(0, 1).numpy()
    viewer = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64) / 255
    error = np.abs(viewer - ours).max(axis=2)
    Image.fromarray((ours * 255).round().astype(np.uint8)).save(out / "gstrim.png")
    Image.fromarray((np.clip(4 * error, 0, 1) * 255).astype(np.uint8)).save(out / "error_x4.png")
    psnr = 10 * np.log10(1 / ((viewer - ours) ** 2).mean())
    print(f"{args.model} camera {args.camera} at {camera.width}x{camera.height}: viewer vs gstrim PSNR {psnr:.2f} dB, "
          f"pixels off by > 8/255: {100 * (error > 8 / 255).mean():.2f} %")


if __name__ == "__main__":
    main()

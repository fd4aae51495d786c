"""A look in a real viewer: open a SOG file in PlayCanvas's SuperSplat viewer (the page `splat-transform
--unbundled` writes, with gstrim's file swapped in) in headless Chromium, from one of the dataset's test
cameras, and save the screenshot beside gstrim's own render of that view and the photo.

Needs `bash scripts/install_splat_transform.sh`, Chromium (Debian package `chromium`) and the `playwright`
Python package in some interpreter (`--python`; it drives /usr/bin/chromium, nothing is downloaded).
Usage: python bench/viewer_check.py SCENE.sog MODEL OUT.png [--data DATA] [--view 0] [--python PY] [--wait 20]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gstrim.data import load_dataset
from gstrim.io import load_scene, save_scene
from gstrim.io.model import load_model
from gstrim.render import rasterize

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"
WIDTH = 640
SHOT = """
import sys, time
from playwright.sync_api import sync_playwright
url, out, width, height, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox"])
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: print("viewer console:", m.text))
    page.goto(url)
    time.sleep(wait)
    page.screenshot(path=out)
    browser.close()
"""


def to_viewer(p: np.ndarray) -> list[float]:
    """splat-transform shows a .ply's frame rotated 180 degrees about z (its `Transform.PLY`)."""
    return [float(-p[0]), float(-p[1]), float(p[2])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sog")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--data")
    parser.add_argument("--images")
    parser.add_argument("--view", type=int, default=0)
    parser.add_argument("--python", default="/tmp/pw/bin/python")
    parser.add_argument("--wait", type=float, default=20.0)
    args = parser.parse_args()
    model = load_model(args.model)
    data, recorded = (args.data, {}) if args.data else model.recorded_dataset()
    dataset = load_dataset(data, **{**recorded, **({"images": args.images} if args.images else {})})
    camera = dataset.test[args.view]
    scene = load_scene(args.sog)
    height = round(WIDTH * camera.height / camera.width)

    # the camera: its centre, and the point of its optical axis nearest the scene's centre as the target
    centre = camera.center
    forward = camera.viewmat[:3, :3].double().numpy().T @ np.array([0.0, 0.0, 1.0])
    middle = np.median(scene.means.numpy(), axis=0)
    target = centre + forward * float(np.dot(middle - centre, forward))
    fov_y = math.degrees(2 * math.atan(camera.height / 2 / float(camera.K[1, 1])))

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page"
        page.mkdir()
        save_scene(Path(tmp) / "tiny.ply", scene.subset(torch.arange(min(64, len(scene)))))
        subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", "--unbundled", "-g", "cpu", str(Path(tmp) / "tiny.ply"),
                        str(page / "index.html")], check=True)
        shutil.copy(args.sog, page / "index.sog")
        settings = json.loads((page / "settings.json").read_text())
        settings["cameras"] = [{"initial": {"position": to_viewer(centre), "target": to_viewer(target), "fov": fov_y}}]
        settings["background"] = {"color": [float(c) for c in (dataset.background or (0, 0, 0))]}
        (page / "settings.json").write_text(json.dumps(settings))
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        shot = Path(tmp) / "shot.png"
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html?webgl&noui"
        subprocess.run([args.python, "-c", SHOT, url, str(shot), str(WIDTH), str(height), str(args.wait)], check=True)
        server.shutdown()
        viewer = Image.open(shot).convert("RGB")

    with torch.no_grad():
        ours = rasterize(scene, camera, background=dataset.background).image.clamp(0, 1).numpy()
    panels = [Image.fromarray((camera.image.numpy() * 255).round().astype(np.uint8)),
              Image.fromarray((ours * 255).round().astype(np.uint8)), viewer]
    panels = [p.resize((WIDTH, height)) for p in panels]
    sheet = Image.new("RGB", (WIDTH * 3, height), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, (WIDTH * i, 0))
    sheet.save(args.out)
    print(f"photo | gstrim's render of the file | SuperSplat viewer (headless Chromium): {args.out}")


if __name__ == "__main__":
    main()

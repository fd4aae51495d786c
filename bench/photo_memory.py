"""Memory that a capture's photos hold during a run: 100 photos of 1600x1000 (issue 24's target: <= 0.6 GB).

Usage: python bench/photo_memory.py [WORK] [--views 100] [--size 1600 1000]
Writes a Blender-layout capture of smooth random JPEG photos into WORK (once), loads it as every verb does,
touches every training photo as a trim's passes do (`camera.image`, decoded per use), and prints the growth of
the resident memory against the bytes the photos would take as float32.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from gstrim.data import load_dataset
from gstrim.resources import return_freed_memory


def rss_bytes() -> int:
    """Resident memory now (not the peak): /proc/self/statm's second field, in pages."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_capture(root: Path, views: int, width: int, height: int) -> None:
    if (root / "transforms_train.json").exists():
        return
    (root / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(views):
        small = rng.integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(root / f"train/{i:03d}.jpg",
                                                                                      quality=90)
        a = 2 * math.pi * i / views
        c2w = [[math.cos(a), 0, math.sin(a), 4 * math.sin(a)], [0, 1, 0, 0],
               [-math.sin(a), 0, math.cos(a), 4 * math.cos(a)], [0, 0, 0, 1]]
        frames.append({"file_path": f"train/{i:03d}.jpg", "transform_matrix": c2w})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="?", default="/tmp/gstrim_photo_memory")
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=[1600, 1000])
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's dynamic mmap threshold")
    args = parser.parse_args()
    if not args.default_malloc:
        return_freed_memory()  # as the CLI does
    root = Path(args.work)
    write_capture(root, args.views, *args.size)
    gc.collect()
    before = rss_bytes()
    dataset = load_dataset(root)
    for camera in dataset.train:
        camera.image.sum()  # decode, use, drop: what a scoring pass or an iteration does
    held = rss_bytes() - before
    float_bytes = sum(c.width * c.height * 3 * 4 for c in dataset.train)
    print(f"{len(dataset.train)} photos of {dataset.train[0].width}x{dataset.train[0].height}: resident memory "
          f"+{held / 1e9:.2f} GB after touching all (float32 would hold {float_bytes / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()

"""The built-in example: a multi-view dataset that gstrim makes itself, so the demo and the tests need
no download.

An object-centric scene of textured primitives (spheres, a box, a ground disk) is ray-cast analytically
with Blinn-Phong shading: the specular term moves with the viewpoint, so view-dependent colour (SH degree
above 0) matters. Cameras look at the origin from the upper hemisphere; the output is a Blender /
NeRF-synthetic folder (RGBA PNGs over a transparent background, `transforms_{train,test}.json`),
deterministic from its seed.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from gstrim import progress
from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path

GENERATOR_VERSION = 1
CAMERA_ANGLE_X = 0.6911112070083618  # the NeRF-synthetic field of view (about 39.6 degrees)


def _checker(u: np.ndarray, v: np.ndarray, colors: np.ndarray) -> np.ndarray:
    return colors[((np.floor(u) + np.floor(v)) % 2).astype(int)]


# Each primitive offers `distance(o, d)` for all rays (inf where missed) and `shade(o, d, t)` ->
# (normal, albedo) for the rays it wins only, so the costly part runs once per pixel.


class _Sphere:
    def __init__(self, center, radius, colors, checks, specular, shininess):
        self.c, self.r, self.colors, self.checks = np.asarray(center), radius, colors, checks
        self.specular, self.shininess = specular, shininess

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = o - self.c
        b = d @ oc
        disc = b * b - (oc @ oc - self.r * self.r)
        t = -b - np.sqrt(np.maximum(disc, 0))
        return np.where((disc > 0) & (t > 1e-4), t, np.inf)

    def shade(self, o, d, t):
        n = (o + d * t[:, None] - self.c) / self.r
        theta = np.arccos(np.clip(n[:, 2], -1, 1))
        phi = np.arctan2(n[:, 1], n[:, 0])
        return n, _checker(theta / math.pi * self.checks, phi / math.pi * self.checks, self.colors)


class _Box:
    def __init__(self, center, half, angle, colors, freq, specular, shininess):
        self.c, self.h = np.asarray(center), np.asarray(half)
        ca, sa = math.cos(angle), math.sin(angle)
        self.R = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])  # local -> world
        self.colors, self.freq, self.specular, self.shininess = colors, freq, specular, shininess

    def _slabs(self, o, d):
        ol, dl = (o - self.c) @ self.R, d @ self.R
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t1, t2 = (-self.h - ol) * inv, (self.h - ol) * inv
        return ol, dl, np.minimum(t1, t2), np.maximum(t1, t2)

    def distance(self, o, d):
        _, _, tmin, tmax = self._slabs(o, d)
        # fmax / fmin skip the NaN of rays parallel to a slab (0 * inf)
        tn = np.fmax(np.fmax(tmin[:, 0], tmin[:, 1]), tmin[:, 2])
        tf = np.fmin(np.fmin(tmax[:, 0], tmax[:, 1]), tmax[:, 2])
        return np.where((tn <= tf) & (tn > 1e-4), tn, np.inf)

    def shade(self, o, d, t):
        ol, dl, tmin, _ = self._slabs(o, d)
        axis = np.nan_to_num(tmin, nan=-np.inf).argmax(axis=1)
        rows = np.arange(len(d))
        nl = np.zeros_like(dl)
        nl[rows, axis] = -np.sign(dl[rows, axis])
        u = (ol + dl * t[:, None]) * self.freq
        stripes = (np.floor(u[:, 0]) + np.floor(u[:, 1]) + np.floor(u[:, 2])) % 2
        return nl @ self.R.T, self.colors[stripes.astype(int)]


class _Disk:
    specular, shininess = 0.05, 8.0

    def __init__(self, height, radius, colors, checks):
        self.z, self.r, self.colors, self.checks = height, radius, colors, checks

    def distance(self, o, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.z - o[2]) / d[:, 2]
        x, y = o[0] + d[:, 0] * t, o[1] + d[:, 1] * t
        return np.where((t > 1e-4) & (x * x + y * y < self.r**2) & (d[:, 2] < 0), t, np.inf)

    def shade(self, o, d, t):
        p = o + d * t[:, None]
        rings = np.hypot(p[:, 0], p[:, 1]) * self.checks
        angle = np.arctan2(p[:, 1], p[:, 0]) / math.pi * 8
        return np.tile([0.0, 0.0, 1.0], (len(d), 1)), _checker(rings, angle, self.colors)


def _make_primitives(rng: np.random.Generator) -> list:
    def pair():
        base = rng.uniform(0.15, 0.95, size=3)
        return np.stack([base, base * rng.uniform(0.25, 0.6)])

    return [
        _Sphere((0.0, 0.0, 0.05), 0.45, pair(), int(rng.integers(4, 8)), 0.6, 60.0),
        _Sphere((rng.uniform(0.45, 0.65), rng.uniform(-0.6, -0.3), -0.22), 0.22, pair(), 3, 0.9, 120.0),
        _Box((rng.uniform(-0.7, -0.45), rng.uniform(0.2, 0.5), -0.2), (0.22, 0.18, 0.25),
             rng.uniform(0, math.pi), pair(), rng.uniform(4, 7), 0.25, 20.0),
        _Disk(-0.45, 1.1, pair(), rng.uniform(3, 5)),
    ]


def _look_at_c2w(position: np.ndarray) -> np.ndarray:
    """Blender camera-to-world (camera looks down -z, y up) from `position` towards the origin."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w


def _render(primitives, c2w: np.ndarray, size: int, supersample: int, light: np.ndarray) -> np.ndarray:
    s = size * supersample
    focal = 0.5 * s / math.tan(0.5 * CAMERA_ANGLE_X)
    jj, ii = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5)
    cam_dirs = np.stack([(jj - s / 2) / focal, -(ii - s / 2) / focal, -np.ones_like(jj)], -1).reshape(-1, 3)
    d = cam_dirs @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = c2w[:3, 3]
    distances = np.stack([prim.distance(o, d) for prim in primitives])
    nearest = distances.argmin(axis=0)
    best = distances[nearest, np.arange(len(d))]
    rgb = np.zeros((len(d), 3))
    for k, prim in enumerate(primitives):
        won = (nearest == k) & np.isfinite(best)
        if not won.any():
            continue
        n, albedo = prim.shade(o, d[won], best[won])
        half = light - d[won]
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        diffuse = np.clip(n @ light, 0, 1)[:, None]
        spec = np.clip(np.sum(n * half, axis=1), 0, 1)[:, None] ** prim.shininess * prim.specular
        rgb[won] = albedo * (0.25 + 0.75 * diffuse) + spec
    alpha = np.isfinite(best).astype(np.float64)
    rgba = np.concatenate([np.clip(rgb, 0, 1), alpha[:, None]], axis=1).reshape(size, supersample,
                                                                               size, supersample, 4)
    rgba = rgba.mean(axis=(1, 3))
    # straight (not premultiplied) alpha, as PNG stores it
    rgba[..., :3] /= np.maximum(rgba[..., 3:], 1e-8)
    return (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)


def _camera_positions(rng: np.random.Generator, count: int, radius: float, test: bool) -> np.ndarray:
    if test:  # an even orbit at two heights, between the training views
        az = np.linspace(0, 2 * math.pi, count, endpoint=False) + 0.1
        el = np.where(np.arange(count) % 2 == 0, math.radians(25), math.radians(50))
    else:
        az = rng.uniform(0, 2 * math.pi, count)
        el = np.arcsin(rng.uniform(math.sin(math.radians(10)), math.sin(math.radians(75)), count))
    return radius * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)


def generate_example(out_dir: str | Path, *, seed: int = 0, n_train: int = 100, n_test: int = 20,
                     size: int = 200, supersample: int = 2, overwrite: bool = False) -> Path:
    """Write the example dataset to `out_dir` (atomically) and return its path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise GstrimError("output folder exists (pass overwrite=True / choose another)", out_dir)
    rng = np.random.default_rng(seed)
    primitives = _make_primitives(rng)
    light = np.array([0.4, -0.5, 0.75])
    light /= np.linalg.norm(light)
    splits = {"train": _camera_positions(rng, n_train, 4.0, False),
              "test": _camera_positions(rng, n_test, 4.0, True)}
    jobs = [(split, i, _look_at_c2w(pos)) for split, positions in splits.items()
            for i, pos in enumerate(positions)]
    with atomic_path(out_dir, directory=True) as tmp, progress.task("example scene", len(jobs)) as step:
        for split in splits:
            (tmp / split).mkdir()

        def work(job):
            split, i, c2w = job
            image = Image.fromarray(_render(primitives, c2w, size, supersample, light), "RGBA")
            image.save(tmp / split / f"r_{i}.png")

        # numpy releases the GIL in its kernels: threads use both cores.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for _ in pool.map(work, jobs):
                step()
        for split in splits:
            frames = [{"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()}
                      for s, i, c2w in jobs if s == split]
            (tmp / f"transforms_{split}.json").write_text(
                json.dumps({"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}, indent=1))
        (tmp / "gstrim_example.json").write_text(json.dumps(
            {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
             "n_train": n_train, "n_test": n_test}, indent=1))
    return out_dir

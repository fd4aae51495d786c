"""Render speed measured properly: warm-up renders first, then every view rendered several times, the median
frame time and its spread, with the GPU synchronised before each clock read.

The authors' FPS script times CUDA launches without synchronising (salmanali96/Trimming-the-Fat), which
measures how fast kernels are queued rather than rendered; gstrim waits for the device before reading the
clock. Rendering only: no metric, no copy to the CPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from gstrim import progress
from gstrim.camera import Camera
from gstrim.render import rasterize, resolve_device
from gstrim.scene import GaussianScene


@dataclass
class FpsResult:
    gaussians: int
    views: int
    frames: int  # timed renders: views x repeats
    backend: str  # cpu or gsplat
    device: str  # what ran it, in words
    median_ms: float
    p10_ms: float
    p90_ms: float

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    def to_json(self) -> dict:
        return {**asdict(self), "fps": self.fps}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def _synchronize(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]), as numpy's default."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_fps(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto",
                warmup: int = 3, repeats: int = 3, clock: Callable[[], float] = time.perf_counter) -> FpsResult:
    """Render `cameras` `repeats` times after `warmup` untimed renders; frame times from `clock`, read after
    the device has finished each frame."""
    if not cameras:
        raise ValueError("FPS needs at least one view")
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup not negative")
    target = resolve_device(device)
    scene = scene.to(target)
    sync = _synchronize(target)
    times = []
    with torch.no_grad():
        for i in range(warmup):  # compiled kernels, caches and clocks settle
            rasterize(scene, cameras[i % len(cameras)], background=background)
        sync()
        for _ in progress.track(range(repeats), "FPS"):
            for cam in cameras:
                start = clock()
                rasterize(scene, cam, background=background)
                sync()
                times.append(1000.0 * (clock() - start))
    backend = "gsplat" if target.type == "cuda" else "cpu"
    return FpsResult(len(scene), len(cameras), len(times), backend, device_name(target), statistics.median(times),
                     percentile(times, 10), percentile(times, 90))

"""Bits per axis of the positions' grid (`.gsz` version 2), chosen by the error they cause.

The smallest grid whose renders differ from the unquantised scene's by at most `POSITION_PSNR` dB on a few
training views (PSNR of the quantised render against the unquantised one, not against the photos): the
positions' share of the error then stays far below what the 8-bit attributes and the codebooks cost (c3dgs's
8-bit quantisation alone: -0.02 dB on chair_400's 80 % trim, docs/compression.md), and each bit less saves
3 bits per Gaussian.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from gstrim.camera import Camera, spread_views
from gstrim.io.gsz import CodebookScene
from gstrim.io.positions import MAX_BITS, PositionGrid
from gstrim.metrics.image import psnr
from gstrim.render import rasterize, resolve_device

POSITION_PSNR = 55.0  # dB of a render on the grid against the unquantised render (chair: 12 bits)
PROBE_VIEWS = 4
MIN_BITS = 6


def _renders(cs: CodebookScene, cameras: list[Camera], background, device: str) -> list[torch.Tensor]:
    scene = cs.decode().to(resolve_device(device))
    with torch.no_grad():
        return [rasterize(scene, cam, background=background).image.clamp(0, 1) for cam in cameras]


def grid_error_db(cs: CodebookScene, grid: PositionGrid, cameras: list[Camera], reference: list[torch.Tensor],
                  background=None, device: str = "cpu") -> float:
    """Lowest PSNR over `cameras` of the scene with positions on `grid` against `reference` renders."""
    snapped = replace(cs, means=torch.from_numpy(grid.values(grid.cells(cs.means.numpy()))))
    renders = _renders(snapped, cameras, background, device)
    return min(float(psnr(image, ref)) for image, ref in zip(renders, reference, strict=True))


def choose_position_bits(cs: CodebookScene, cameras: list[Camera], background=None,
                         target_db: float = POSITION_PSNR, device: str = "cpu") -> tuple[int, float]:
    """(bits, PSNR at them): the fewest bits per axis whose grid keeps every probe view within `target_db`,
    by bisection (the error falls as bits grow); rendered on `device`."""
    if len(cs) == 0 or not cameras:
        return MAX_BITS, float("inf")
    probes = spread_views(cameras, PROBE_VIEWS)
    reference = _renders(cs, probes, background, device)
    lo, hi, measured = MIN_BITS, MAX_BITS, {}
    while lo < hi:
        mid = (lo + hi) // 2
        measured[mid] = grid_error_db(cs, PositionGrid.fit(cs.means, mid), probes, reference, background, device)
        if measured[mid] >= target_db:
            hi = mid
        else:
            lo = mid + 1
    if lo not in measured:
        measured[lo] = grid_error_db(cs, PositionGrid.fit(cs.means, lo), probes, reference, background, device)
    return lo, measured[lo]

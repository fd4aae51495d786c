"""The paths a GPU run takes, checked on the CPU: the torch pixel statistics against the Numba kernel, and every
verb run through the gsplat backend (its CPU stand-ins) with the CPU kernels made to raise."""

from __future__ import annotations

import pytest
import torch
from test_render import make_camera, make_scene

from gstrim import devices
from gstrim.render import pixel_statistics


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_path_statistics_match_the_cpu_kernel_on_random_scenes(rng, monkeypatch, dtype):
    """The torch path against the Numba kernel on fresh random scenes of every SH degree, with opaque,
    elongated and off-screen Gaussians, saturating pixels (many layers) and a background."""
    from gstrim.render import pair_statistics

    monkeypatch.setattr(pair_statistics, "PAIR_BUDGET", 3000)  # many bands, so that band edges are crossed
    for degree in (0, 1, 3):
        scene = make_scene(rng, n=400, degree=degree, dtype=dtype)
        cam = make_camera(rng, width=61, height=47, dtype=dtype)
        background = torch.tensor(rng.uniform(0, 1, 3), dtype=dtype)
        monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: True)
        kernel = pixel_statistics(scene, cam, background=background)
        monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: False)
        torch_path = pixel_statistics(scene, cam, background=background)
        assert kernel.hits.sum() > 1000
        # float32: a pair within rounding of the 1/255 or 1e-4 thresholds may go either way
        tolerance = 0 if dtype == torch.float64 else 2
        assert (kernel.hits - torch_path.hits).abs().max() <= tolerance
        assert torch.allclose(kernel.max_weight.double(), torch_path.max_weight.double(),
                              atol=1e-12 if dtype == torch.float64 else 2e-3)
        scale = kernel.fisher2d.double().abs().amax(1, keepdim=True).clamp_min(1e-30)
        difference = ((kernel.fisher2d.double() - torch_path.fisher2d.double()) / scale).abs()
        if dtype == torch.float64:
            assert difference.max() < 1e-9
        else:
            assert (difference > 1e-2).float().mean() < 0.01


def test_seeding_in_rounds_is_as_good_as_kmeans_plus_plus(rng):
    """The device seeding (k-means||-style rounds) against the CPU's k-means++ on fresh random mixtures:
    the clustering cost after the same k-means steps is within 10 %, and no seed repeats."""
    from gstrim.kmeans import _seed, nearest, weighted_kmeans

    costs = {}
    centres = torch.from_numpy(rng.normal(0, 4, (60, 6))).float()
    x = centres[torch.from_numpy(rng.integers(0, 60, 20000))] + torch.from_numpy(rng.normal(0, 1, (20000, 6))).float()
    importance = torch.from_numpy(rng.uniform(0.1, 1.0, 20000)).float()
    for cpu_kernels in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(devices, "uses_cpu_kernels", lambda device, answer=cpu_kernels: answer)
            seeds = _seed(x, importance, 256, torch.Generator().manual_seed(3))
            assert len(torch.unique(seeds, dim=0)) == 256
            found = weighted_kmeans(x, importance, 256, steps=30, batch=4096,
                                    generator=torch.Generator().manual_seed(3))
        costs[cpu_kernels] = float((importance * (x - found[nearest(x, found)]).square().sum(1)).sum())
    assert costs[False] < 1.1 * costs[True], costs

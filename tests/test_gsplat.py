"""The gsplat backend against the CPU backend, forward and every gradient.

Two ways to run gsplat 1.5.3's real `rasterization()` behind gstrim's glue: on a CUDA GPU (skipped without
one), and on the CPU with only its CUDA-only calls replaced by pure-PyTorch stand-ins (`gsplat_stand_ins.py`;
skipped without the gsplat package). Both must pass the same checks.

The backends differ by design in three places: gsplat's alpha cap is 0.999 (3DGS: 0.99); its tile box is
opacity-aware, min(3.33, sqrt(2 ln(255 o))) standard deviations per axis, where 3DGS uses 3 sigma of the
largest axis, so for opacities above 0.35 gsplat can reach a tile that 3DGS does not (alpha there < 0.011);
and it drops Gaussians of opacity < 1/255, so its visible set is a subset of the CPU backend's.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pytest
import torch
from test_render import make_camera, make_scene

from gstrim.render import rasterize
from gstrim.render.gsplat_backend import gsplat_available
from gstrim.scene import GaussianScene


def gsplat_version() -> str | None:
    try:
        return version("gsplat")
    except PackageNotFoundError:
        return None


GSPLAT_DEVICES = [
    # the stand-ins follow gsplat 1.5.3's internals (its _torch_impl and CUDA kernels)
    pytest.param("cpu", marks=pytest.mark.skipif(gsplat_version() != "1.5.3", reason="needs gsplat 1.5.3")),
    pytest.param("cuda", marks=pytest.mark.skipif(not gsplat_available(), reason="needs gsplat and a CUDA GPU")),
]


def render_both(monkeypatch, scene, camera, background, gsplat_device):
    """Both backends' outputs (on the CPU) and the gradients of one weighted loss of image and alpha."""
    rng = np.random.default_rng(0)
    w_img = torch.tensor(rng.normal(size=(camera.height, camera.width, 3)), dtype=torch.float32)
    w_alpha = torch.tensor(rng.normal(size=(camera.height, camera.width)), dtype=torch.float32)
    if gsplat_device == "cpu":
        from gsplat_stand_ins import run_gsplat_on_cpu

        run_gsplat_on_cpu(monkeypatch)
    results = []
    for backend, device in (("cpu", "cpu"), ("gsplat", gsplat_device)):
        s = GaussianScene(**{k: v.detach().to(device).requires_grad_(True) for k, v in scene.params().items()})
        out = rasterize(s, camera, background=background.to(device), backend=backend)
        out.means2d.retain_grad()
        loss = (out.image * w_img.to(device)).sum() + (out.alpha * w_alpha.to(device)).sum()
        loss.backward()
        grads = {k: v.grad.cpu() for k, v in s.params().items()}
        grads["means2d"] = out.normalized_means2d_grad().cpu()
        fields = ("image", "alpha", "means2d", "radii", "depths", "colors")
        results.append(({f: getattr(out, f).detach().cpu() for f in fields}, grads))
    return results


def random_case(rng, degree, opacity_range, n=300):
    camera = make_camera(rng, 64, 48, torch.float32)
    opacity = rng.uniform(*opacity_range, n)
    scene = make_scene(rng, n, degree, torch.float32, opacities=np.log(opacity / (1 - opacity)))
    return scene, camera, torch.tensor(rng.uniform(size=3), dtype=torch.float32)


def relative_error(ours, theirs):
    return float((ours - theirs).norm() / theirs.norm().clamp_min(1e-12))


def assert_images_agree(ours, theirs, atol, max_outliers, max_difference=1.0 / 255.0):
    """Pixels agree to atol except a few, where a Gaussian whose alpha rounds to the 1/255 cut-off (or a
    transmittance at the 1e-4 stop) is blended by one backend and not the other: each such pixel differs by
    less than 1/255."""
    difference = (ours - theirs).abs().reshape(-1, ours.shape[-1] if ours.ndim == 3 else 1).amax(-1)
    assert float(difference.max()) < max_difference
    assert float((difference > atol).float().mean()) <= max_outliers


@pytest.mark.parametrize("gsplat_device", GSPLAT_DEVICES)
@pytest.mark.parametrize("degree", [0, 3])
def test_gsplat_matches_cpu_backend(monkeypatch, rng, gsplat_device, degree):
    """Opacities below 0.35: both tile boxes contain every pixel with alpha >= 1/255 and alpha stays under
    both caps, so the backends blend exactly the same pixel-Gaussian pairs."""
    scene, camera, background = random_case(rng, degree, (0.02, 0.35))
    (cpu, g_cpu), (gs, g_gs) = render_both(monkeypatch, scene, camera, background, gsplat_device)

    assert gs["image"].shape == cpu["image"].shape and gs["alpha"].shape == cpu["alpha"].shape
    assert_images_agree(gs["image"], cpu["image"], 1e-5, 0.003)
    assert_images_agree(gs["alpha"], cpu["alpha"], 1e-5, 0.003)
    torch.testing.assert_close(gs["colors"], cpu["colors"], rtol=1e-5, atol=1e-6)
    # means2d (pixels) and depths: gsplat defines them only for the Gaussians it draws
    shown = gs["radii"] > 0
    assert shown.sum() > len(scene) // 4
    torch.testing.assert_close(gs["means2d"].reshape(-1, 2)[shown], cpu["means2d"][shown], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gs["depths"][shown], cpu["depths"][shown], rtol=1e-5, atol=1e-6)
    # gsplat's tighter box draws a subset; a Gaussian that only the CPU backend calls visible touches no pixel
    cpu_shown = cpu["radii"] > 0
    assert not (shown & ~cpu_shown).any()
    assert not g_cpu["opacities"][cpu_shown & ~shown].any()
    for name, grad in g_cpu.items():
        if grad.numel():
            assert relative_error(g_gs[name], grad) < 5e-3, name


@pytest.mark.parametrize("gsplat_device", GSPLAT_DEVICES)
def test_gsplat_opaque_gaussians(monkeypatch, rng, gsplat_device):
    """Opacities up to 0.98: more differences, where gsplat's 3.33-sigma box reaches a tile that the 3-sigma
    box does not (alpha there <= o exp(-4.5) < 1/255 for o < 0.35, up to 0.011 above)."""
    scene, camera, background = random_case(rng, 3, (0.4, 0.98))
    (cpu, g_cpu), (gs, g_gs) = render_both(monkeypatch, scene, camera, background, gsplat_device)
    assert_images_agree(gs["image"], cpu["image"], 1e-5, 0.01, max_difference=0.05)
    # radii (the screen size densification reads): gsplat's larger axis times >= 3.04 sigma (o >= 0.4), 3DGS's
    # 3 sigma of the largest eigen-axis; the larger of the two axes is >= 1/sqrt(2) of the largest eigen-axis.
    # Compared where both draw: a Gaussian just off the frame can reach into it by gsplat's wider box only.
    shown = (gs["radii"] > 0) & (cpu["radii"] > 0)
    r_gs, r_cpu = gs["radii"][shown].float(), cpu["radii"][shown].float()
    assert ((r_gs >= 0.7 * r_cpu - 1) & (r_gs <= 1.12 * r_cpu + 1)).all()
    for name, grad in g_cpu.items():
        assert relative_error(g_gs[name], grad) < 2e-2, name


@pytest.mark.skipif(gsplat_version() != "1.5.3", reason="needs gsplat 1.5.3")
def test_vectorised_tile_intersection_matches_gsplat_reference(rng):
    """The stand-in's tile intersection against gsplat's own (slow, per-Gaussian loop) `_isect_tiles`."""
    from gsplat.cuda._torch_impl import _isect_tiles
    from gsplat_stand_ins import isect_tiles

    n = 200
    means2d = torch.tensor(rng.uniform(-20, 84, (2, n, 2)), dtype=torch.float32)
    radii = torch.tensor(rng.integers(0, 12, (2, n, 2)), dtype=torch.int32)
    depths = torch.tensor(rng.uniform(0.5, 5, (2, n)), dtype=torch.float32)
    ours = isect_tiles(means2d, radii, depths, 16, 4, 3)
    theirs = _isect_tiles(means2d, radii, depths, 16, 4, 3)
    assert len(theirs[1]) > n
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.long(), b.long())


@pytest.mark.skipif(not gsplat_available(), reason="needs gsplat and a CUDA GPU")
def test_cpu_backend_rejects_gpu_scene(rng):
    scene = make_scene(rng, 10, 0, torch.float32).to("cuda")
    with pytest.raises(Exception, match="cpu backend"):
        rasterize(scene, make_camera(rng, 16, 16, torch.float32), backend="cpu")

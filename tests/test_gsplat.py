"""The gsplat backend against the CPU backend (skipped without gsplat and a CUDA GPU).

Expected differences: gsplat caps alpha at 0.999 instead of 0.99, so scenes here keep opacity below 0.9."""

from __future__ import annotations

import pytest
import torch
from test_render import make_camera, make_scene

from gstrim.render import rasterize
from gstrim.render.gsplat_backend import gsplat_available

pytestmark = pytest.mark.skipif(not gsplat_available(), reason="needs gsplat and a CUDA GPU")


def test_gsplat_matches_cpu(rng):
    cam = make_camera(rng, 64, 48, torch.float32)
    scene = make_scene(rng, 200, 3, torch.float32, opacities=rng.uniform(-3, 2, 200))
    outs = {}
    for device in ("cpu", "cuda"):
        s = scene.to(device)
        for v in s.params().values():
            v.requires_grad_(True)
        out = rasterize(s, cam, backend="cpu" if device == "cpu" else "gsplat")
        out.means2d.retain_grad()
        (out.image * torch.linspace(0, 1, 3, device=device)).sum().backward()
        outs[device] = (out, s)
    (cpu, s_cpu), (gpu, s_gpu) = outs["cpu"], outs["cuda"]
    assert (cpu.image - gpu.image.cpu()).abs().max() < 1e-3
    assert torch.equal(cpu.visible, gpu.visible.cpu())
    for name, value in s_cpu.params().items():
        g_cpu, g_gpu = value.grad, getattr(s_gpu, name).grad.cpu()
        rel = (g_cpu - g_gpu).norm() / g_cpu.norm().clamp_min(1e-12)
        assert rel < 2e-2, (name, float(rel))
    torch.testing.assert_close(cpu.normalized_means2d_grad(), gpu.normalized_means2d_grad().cpu(),
                               rtol=2e-2, atol=1e-5)


def test_cpu_backend_rejects_gpu_scene(rng):
    scene = make_scene(rng, 10, 0, torch.float32).to("cuda")
    with pytest.raises(Exception, match="cpu backend"):
        rasterize(scene, make_camera(rng, 16, 16, torch.float32), backend="cpu")

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from conftest import shared
from PIL import Image

from gstrim import GstrimError
from gstrim.metrics import LPIPS, psnr, ssim
from gstrim.metrics import lpips as lpips_module


def _pair(rng, h=37, w=45):
    a = torch.from_numpy(rng.uniform(size=(h, w, 3)).astype(np.float32))
    b = (a + torch.from_numpy(rng.normal(0, 0.1, size=(h, w, 3)).astype(np.float32))).clamp(0, 1)
    return a, b


def test_psnr_known_value():
    a = torch.zeros(8, 8, 3)
    b = torch.full((8, 8, 3), 0.1)
    assert float(psnr(a, b)) == pytest.approx(20.0, abs=1e-5)


def _ssim_by_hand(x: np.ndarray, y: np.ndarray, pad: bool) -> float:
    """Direct definition: an explicit 11x11 Gaussian window at every pixel, float64."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    if pad:
        x = np.pad(x, ((5, 5), (5, 5), (0, 0)))
        y = np.pad(y, ((5, 5), (5, 5), (0, 0)))
    h, w = x.shape[0] - 10, x.shape[1] - 10
    values = []
    for i in range(h):
        for j in range(w):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx = np.einsum("ij,ijc->c", win, px)
            my = np.einsum("ij,ijc->c", win, py)
            sxx = np.einsum("ij,ijc->c", win, px * px) - mx * mx
            syy = np.einsum("ij,ijc->c", win, py * py) - my * my
            sxy = np.einsum("ij,ijc->c", win, px * py) - mx * my
            c1, c2 = 0.01**2, 0.03**2
            values.append((2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("mode,pad", [("3dgs", True), ("valid", False)])
def test_ssim_matches_direct_definition(rng, mode, pad):
    a, b = _pair(rng, 19, 23)
    expected = _ssim_by_hand(a.double().numpy(), b.double().numpy(), pad)
    assert float(ssim(a.double(), b.double(), mode)) == pytest.approx(expected, abs=1e-10)


def test_ssim_valid_equals_pytorch_msssim(rng):
    from pytorch_msssim import ssim as reference

    for _ in range(3):
        a, b = _pair(rng, int(rng.integers(32, 96)), int(rng.integers(32, 96)))
        ours = float(ssim(a, b, "valid"))
        theirs = float(reference(a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None], data_range=1.0))
        assert abs(ours - theirs) < 1e-4


def test_ssim_modes_differ_and_identity_is_one(rng):
    a, b = _pair(rng)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert abs(float(ssim(a, b, "3dgs")) - float(ssim(a, b, "valid"))) > 1e-4
    with pytest.raises(ValueError):
        ssim(a, b, "other")


def test_ssim_is_differentiable(rng):
    a, b = _pair(rng)
    a.requires_grad_(True)
    (1 - ssim(a, b)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def _lpips_ref_images():
    root = shared("lpips_ref")
    return [torch.from_numpy(np.asarray(Image.open(root / f"{n}.png").convert("RGB"), np.float32) / 255)
            for n in ("ex_ref", "ex_p0", "ex_p1")]


@pytest.mark.shared_data
@pytest.mark.parametrize("net,d0,d1", [("alex", 0.722, 0.138), ("vgg", 0.569, 0.422)])
def test_lpips_reproduces_published_distances(net, d0, d1):
    ref, p0, p1 = _lpips_ref_images()
    metric = LPIPS(net)
    with torch.no_grad():
        assert round(float(metric(ref, p0)), 3) == d0
        assert round(float(metric(ref, p1)), 3) == d1


@pytest.mark.shared_data
def test_lpips_3dgs_input_convention_differs_and_is_labelled():
    ref, _, p1 = _lpips_ref_images()
    quirk = LPIPS("vgg", input="3dgs")
    assert "3DGS" in quirk.label and "3DGS" not in LPIPS("vgg").label
    with torch.no_grad():
        assert abs(float(quirk(ref, p1)) - float(LPIPS("vgg")(ref, p1))) > 0.005


def test_lpips_basic_properties(rng):
    a, b = _pair(rng, 64, 64)
    metric = LPIPS("alex")
    with torch.no_grad():
        assert float(metric(a, a)) == pytest.approx(0.0, abs=1e-6)
        batch = metric(torch.stack([a, a]), torch.stack([b, a]))
    assert batch.shape == (2,) and batch[0] > 0.01 and batch[1] == pytest.approx(0.0, abs=1e-6)


def test_lpips_rejects_unknown_options():
    with pytest.raises(GstrimError, match="unknown LPIPS network"):
        LPIPS("squeeze")
    with pytest.raises(GstrimError, match="input convention"):
        LPIPS("alex", input="raw")


def test_lpips_checkpoint_loader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="refusing"):
        lpips_module._NumpyOnlyUnpickler(f).load()


def test_psnr_of_identical_images_is_infinite():
    a = torch.rand(4, 4, 3)
    assert math.isinf(float(psnr(a, a)))

"""The paths a GPU run takes, checked on the CPU: the torch pixel statistics against the Numba kernel, and every
verb run through the gsplat backend (its CPU stand-ins) with the CPU kernels made to raise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_render import make_camera, make_scene

from gstrim import devices
from gstrim.render import pixel_statistics
from gstrim.render.gsplat_backend import gsplat_available

# where the device path runs: on the CPU (sent there by patching `devices.uses_cpu_kernels`), and on a GPU
WHERE = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not gsplat_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_path_statistics_match_the_cpu_kernel_on_random_scenes(rng, monkeypatch, dtype, where):
    """The torch path against the Numba kernel on fresh random scenes of every SH degree, with opaque,
    elongated and off-screen Gaussians, saturating pixels (many layers) and a background."""
    from gstrim.render import pair_statistics

    monkeypatch.setattr(pair_statistics, "PAIR_BUDGET", 3000)  # many bands, so that band edges are crossed
    for degree in (0, 1, 3):
        scene = make_scene(rng, n=400, degree=degree, dtype=dtype)
        cam = make_camera(rng, width=61, height=47, dtype=dtype)
        background = torch.tensor(rng.uniform(0, 1, 3), dtype=dtype)
        kernel = pixel_statistics(scene, cam, background=background)
        with pytest.MonkeyPatch.context() as patch:
            if where == "cpu":
                patch.setattr(devices, "uses_cpu_kernels", lambda device: False)
            found = pixel_statistics(scene.to(where), cam, background=background.to(where))
        torch_path = type(found)(found.projection, *(t.cpu() for t in (found.hits, found.max_weight,
                                                                         found.fisher2d)))
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


@pytest.mark.parametrize("where", WHERE)
def test_device_sensitivity_matches_the_cpu_path(rng, monkeypatch, where):
    """c3dgs's sensitivities through gsplat (on CUDA, or its CPU stand-ins) against the CPU pixel stage, on random
    scenes of opacity below 0.35, where gsplat's opacity-aware box and the CPU's 3-sigma box draw the same pixels."""
    from gstrim.compress.sensitivity import sensitivity

    scene = make_scene(rng, n=150, degree=2, dtype=torch.float32, opacities=rng.uniform(-4.0, -0.7, 150))
    cameras = [make_camera(rng, width=40, height=32, dtype=torch.float32) for _ in range(3)]
    cpu = sensitivity(scene, cameras)
    if where == "cpu":
        from gsplat_stand_ins import run_gsplat_on_cpu

        run_gsplat_on_cpu(monkeypatch)
        monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: False)
    device = sensitivity(scene, cameras, device=where)
    assert (cpu.color > 0).sum() > 50
    for name in ("color", "shape", "rest"):
        ours, theirs = getattr(device, name), getattr(cpu, name)
        torch.testing.assert_close(ours, theirs, rtol=2e-3, atol=1e-4 * float(theirs.max()), msg=name)


NUMBA_MODULES = ("gstrim.render.cpu_kernels", "gstrim.render.gaussian_kernels", "gstrim.kmeans_kernels",
                 "gstrim.train.knn_kernels")


@pytest.fixture
def gpu_run_on_the_cpu(monkeypatch):
    """A run as on a GPU: rendering through gsplat (its CPU stand-ins), every device decision taking the device
    path, and every Numba kernel of gstrim raising if anything calls it. The bit packing of `.gsz` positions
    (io/bit_kernels.py) is left alone: a file is written from host memory whatever the device."""
    import importlib

    from gsplat_stand_ins import run_gsplat_on_cpu
    from numba.core.dispatcher import Dispatcher

    run_gsplat_on_cpu(monkeypatch)
    monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: False)
    touched = []
    for name in NUMBA_MODULES:
        module = importlib.import_module(name)
        for attribute, value in vars(module).copy().items():
            if isinstance(value, Dispatcher):
                def forbidden(*args, _name=f"{name}.{attribute}", **kwargs):
                    touched.append(_name)
                    raise AssertionError(f"a GPU run reached the CPU kernel {_name}")

                monkeypatch.setattr(module, attribute, forbidden)
    yield touched
    assert not touched


def test_no_verb_of_a_gpu_run_reaches_a_cpu_kernel(baseline, tmp_path, capsys, gpu_run_on_the_cpu):
    """Trim (both recipes), compress, compress --max-loss, export to SOG and a photo-free trim, with evaluation,
    through the gsplat backend: none touches the CPU kernels."""
    import shutil

    from test_cli import run

    data, model = baseline
    small = ["--steps", "2", "--every", "3", "--finetune", "4", "--target-removal", "0.5"]
    codebooks = ["--codebook-sh", "64", "--codebook-shape", "64", "--kmeans-steps-sh", "3", "--kmeans-steps-shape",
                 "3", "--kmeans-batch", "256", "--qat-iterations", "4"]
    commands = {
        "trim paper": ["trim", model, "-o", tmp_path / "paper", "--recipe", "paper", *small],
        "trim objects": ["trim", model, "-o", tmp_path / "objects", "--recipe", "objects", *small],
        "compress": ["compress", model, "-o", tmp_path / "c", *codebooks],
        "compress --max-loss": ["compress", model, "-o", tmp_path / "budget", *codebooks, "--max-loss", "0.5"],
        "export sog": ["export", model, "-o", tmp_path / "x.sog", "--finetune", "3", "--data", data],
    }
    bare = tmp_path / "bare" / "scene.ply"
    bare.parent.mkdir()
    shutil.copy(model / "point_cloud/iteration_40/point_cloud.ply", bare)
    commands["photo-free trim"] = ["trim", bare, "-o", tmp_path / "free", *small, "--views", "8", "--resolution",
                                   "32"]
    for what, argv in commands.items():
        code, _, err = run(capsys, *argv, "--device", "cpu")  # the CPU device, down the GPU's paths
        assert code == 0, f"{what}: {err}"
        assert not gpu_run_on_the_cpu, what


SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts, per code line of gstrim, the calls that read a tensor's values on the host (on a GPU each waits
    for the device) while `counting` is set, for float and bool tensors: the values a GPU computes (the camera
    order is an integer permutation drawn on the CPU)."""
    import sys
    from collections import Counter

    import gstrim

    root = str(Path(gstrim.__file__).parent)
    reads, state = Counter(), {"counting": False}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            if state["counting"] and (self.is_floating_point() or self.dtype == torch.bool):
                frame = sys._getframe(1)
                if frame.f_code.co_filename.startswith(root):
                    reads[f"{_name} at {frame.f_code.co_filename[len(root) + 1:]}:{frame.f_lineno}"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return reads, state


def test_fine_tuning_loops_read_the_device_at_most_every_few_iterations(baseline, tmp_path, capsys, monkeypatch,
                                                                         gpu_run_on_the_cpu, host_reads):
    """Over 50 iterations of each fine-tuning loop (trim after its prune, compress's quantisation-aware training,
    .spz, .sog and compressed .ply fine-tuning), gstrim reads device values at most every READ_EVERY iterations."""
    from test_cli import run

    from gstrim.train import Trainer
    from gstrim.train.loop import READ_EVERY

    reads, state = host_reads
    original = Trainer.train_step
    window = (1, 51)  # after step 0, where the trim prunes

    def step(self):
        state["counting"] = window[0] <= self.step < window[1]
        try:
            return original(self)
        finally:
            state["counting"] = window[0] <= self.step < window[1]

    monkeypatch.setattr(Trainer, "train_step", step)
    data, model = baseline
    codebooks = ["--codebook-sh", "64", "--codebook-shape", "64", "--kmeans-steps-sh", "3", "--kmeans-steps-shape",
                 "3", "--kmeans-batch", "256"]
    commands = {
        "trim": ["trim", model, "-o", tmp_path / "t", "--steps", "1", "--every", "1", "--finetune", "60",
                 "--no-eval"],
        "compress": ["compress", model, "-o", tmp_path / "c", *codebooks, "--qat-iterations", "61", "--no-eval"],
        "spz": ["export", model, "-o", tmp_path / "x.spz", "--finetune", "61", "--data", data, "--no-eval"],
        "sog": ["export", model, "-o", tmp_path / "x.sog", "--finetune", "61", "--data", data, "--no-eval"],
        "compressed-ply": ["export", model, "-o", tmp_path / "x.compressed.ply", "--finetune", "61", "--data", data,
                           "--no-eval"],
    }
    for what, argv in commands.items():
        reads.clear()
        code, _, err = run(capsys, *argv, "--device", "cpu")
        assert code == 0, f"{what}: {err}"
        assert sum(reads.values()) <= 50 // READ_EVERY, f"{what}: {dict(reads)}"


@pytest.mark.skipif(not gsplat_available(), reason="needs a CUDA GPU")
def test_evaluation_on_cuda_matches_the_cpu(rng):
    """The metrics of a GPU run are computed on the GPU: the same PSNR, SSIM and LPIPS as on the CPU (the renders
    differ by gsplat's rules at a few pixels, hence the tolerances)."""
    from gstrim.errors import GstrimError
    from gstrim.evaluate import evaluate

    scene = make_scene(rng, n=300, degree=1, dtype=torch.float32)
    cameras = [make_camera(rng, width=64, height=48, dtype=torch.float32) for _ in range(3)]
    for cam in cameras:
        cam.set_image(torch.from_numpy(rng.uniform(0, 1, (48, 64, 3))).float())
    try:
        on_cpu, on_gpu = (evaluate(scene, cameras, device=d) for d in ("cpu", "cuda"))
    except GstrimError as exc:  # the LPIPS weights did not travel to this machine
        pytest.skip(str(exc))
    for metric, tolerance in (("PSNR", 0.05), ("SSIM", 2e-3), ("LPIPS", 2e-3)):
        assert abs(on_cpu.mean(metric) - on_gpu.mean(metric)) < tolerance, metric

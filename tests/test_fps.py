"""`metrics.fps`: warm-up renders are not timed, every view is timed `repeats` times, the median and the spread
come from the clock read after the device finished, and the GPU is synchronised before each read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_scene
from test_render import make_camera

import gstrim.metrics.fps as fps_module
from gstrim.metrics.fps import measure_fps, percentile


def test_warmup_is_untimed_and_the_median_comes_from_the_clock(rng, monkeypatch):
    scene = random_scene(rng, 20, 1)
    cams = [make_camera(rng, width=16, height=12) for _ in range(3)]
    renders = []
    monkeypatch.setattr(fps_module, "rasterize", lambda s, cam, **k: renders.append(cam))
    ticks = iter(np.cumsum([0.0] + [0.002, 0.0, 0.004, 0.0, 0.003, 0.0, 0.010, 0.0, 0.001, 0.0, 0.005] * 10))
    result = measure_fps(scene, cams, device="cpu", warmup=4, repeats=2, clock=lambda: float(next(ticks)))
    assert len(renders) == 4 + 3 * 2 and renders[:4] == [cams[0], cams[1], cams[2], cams[0]]
    times = [2.0, 4.0, 3.0, 10.0, 1.0, 5.0]
    assert result.frames == 6 and result.views == 3 and result.gaussians == 20 and result.backend == "cpu"
    assert result.median_ms == pytest.approx(np.median(times))
    assert result.p10_ms == pytest.approx(np.percentile(times, 10))
    assert result.p90_ms == pytest.approx(np.percentile(times, 90))
    assert result.fps == pytest.approx(1000 / 3.5)


def test_percentile_matches_numpy(rng):
    values = list(rng.uniform(0, 50, 17))
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_cuda_clock_reads_wait_for_the_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    fps_module._synchronize(torch.device("cuda:0"))()
    fps_module._synchronize(torch.device("cpu"))()
    assert calls == [torch.device("cuda:0")]


def test_real_renders_give_a_positive_rate(rng):
    result = measure_fps(random_scene(rng, 30, 1), [make_camera(rng, width=20, height=16)], device="cpu",
                         warmup=1, repeats=2)
    assert result.fps > 0 and result.p10_ms <= result.median_ms <= result.p90_ms
    with pytest.raises(ValueError):
        measure_fps(random_scene(rng, 5, 1), [], device="cpu")


def test_fps_command_prints_one_row_per_model(baseline, capsys, tmp_path):
    from test_cli import assert_one_line_error, run

    data, model = baseline
    code, out, _ = run(capsys, "fps", model, model / "point_cloud/iteration_40/point_cloud.ply", "--data", data,
                       "--views", "2", "--warmup", "1", "--repeats", "2", "--device", "cpu")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "Gaussians" not in line]
    assert code == 0 and len(rows) == 2 and all("| cpu |" in r and "2 x 2" in r for r in rows)
    code, _, err = run(capsys, "fps", tmp_path / "none.ply")
    assert_one_line_error(code, err, "none.ply")

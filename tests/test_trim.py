"""`gstrim trim`: schedules hit their counts, variants, resume, statistics sources and errors."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import assert_one_line_error, run

import gstrim
from gstrim.example import generate_example
from gstrim.io import load_scene, save_scene
from gstrim.prune.pipeline import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.train import DensifyConfig, TrainConfig, Trainer, train_model

SMALL = dict(steps=3, every=4, finetune=6)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("trim")
    data = generate_example(root / "data", seed=7, n_train=6, n_test=2, size=32, supersample=1)
    train_model(data, root / "model", config=TrainConfig(iterations=40, sh_degree=1),
                densify=DensifyConfig(start=10, every=10, stop=35), init_points=600, save_iterations=())
    return data, root / "model"


def test_target_count_is_exact(baseline, tmp_path):
    data, model = baseline
    n_in = len(load_scene(model / "point_cloud/iteration_40/point_cloud.ply"))
    result = gstrim.trim(model, tmp_path / "t", target_count=n_in // 4, **SMALL)  # the Python API
    assert len(result.scene) == n_in // 4
    saved = load_scene(tmp_path / "t/point_cloud/iteration_18/point_cloud.ply")
    assert len(saved) == n_in // 4
    results = json.loads((tmp_path / "t/results.json").read_text())
    assert {"input", "ours_18", "trim"} <= set(results)
    assert results["trim"]["gaussians_out"] == n_in // 4 and results["trim"]["ratio"] > 3.5
    assert results["input"]["gaussians"] == n_in


@pytest.mark.parametrize("variant", [
    dict(score="opacity", target_removal=0.5), dict(score="lightgaussian", target_removal=0.5),
    dict(score="pup", target_removal=0.5), dict(one_shot=True, target_removal=0.5), dict(no_prune=True),
    dict(gamma=0.4)])
def test_variants(baseline, tmp_path, variant):
    data, model = baseline
    n_in = len(load_scene(model / "point_cloud/iteration_40/point_cloud.ply"))
    result = trim_scene(model, tmp_path / "t", config=TrimConfig(**variant, **SMALL), evaluate_test=False)
    if "target_removal" in variant:
        assert len(result.scene) == round(n_in * 0.5)
    elif variant.get("no_prune"):
        assert len(result.scene) == n_in
    else:  # gamma: each step removes between max(0, 2 gamma - 1) and gamma of the population
        assert (1 - 0.4) ** 3 * n_in - 3 <= len(result.scene) < n_in
    assert result.summary.iterations == 18  # every variant trains as long


def test_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch):
    data, model = baseline
    config = dict(target_removal=0.6, **SMALL)
    full = trim_scene(model, tmp_path / "full", config=TrimConfig(**config), evaluate_test=False)
    original = Trainer.train_step

    def interrupted(self):
        if self.step == 7:  # after the second prune
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trim_scene(model, tmp_path / "part", config=TrimConfig(**config), evaluate_test=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = trim_scene(None, tmp_path / "part", resume=True, evaluate_test=False)
    for name, value in full.scene.params().items():
        torch.testing.assert_close(getattr(resumed.scene, name), value, rtol=0, atol=0, msg=name)


def test_checkpoint_statistics(baseline, tmp_path, capsys):
    data, model = baseline
    ckpt = next((model / "checkpoints").glob("chkpnt*.pt"))
    code, out, _ = run(capsys, "trim", ckpt, "-o", tmp_path / "c", "--stats", "checkpoint", "--target-removal", "0.5",
                       "--steps", "2", "--every", "3", "--finetune", "3", "--no-eval")
    assert code == 0 and "50.0 % removed" in out
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "p", "--stats", "checkpoint", "--no-eval")
    assert_one_line_error(code, err, "point_cloud.ply", "--stats checkpoint")


def test_trim_errors(baseline, tmp_path, capsys):
    data, model = baseline
    small = ["--steps", "2", "--every", "2", "--finetune", "2", "--no-eval"]
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--gamma", "1.2", *small)
    assert_one_line_error(code, err, "--gamma", "0.225-0.6")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-removal", "1", *small)
    assert_one_line_error(code, err, "--target-removal")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-count", "0", *small)
    assert_one_line_error(code, err, "outside 1..")
    # a size target below one Gaussian's share of the file would leave an empty scene
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-mb", "0.0001", *small)
    assert_one_line_error(code, err, "--target-mb", "no Gaussian")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--one-shot", "--gamma", "0.3", *small)
    assert_one_line_error(code, err, "--one-shot")
    assert not (tmp_path / "a").exists()
    # a scene far from every camera of the dataset
    scene = load_scene(model / "point_cloud/iteration_40/point_cloud.ply")
    moved = type(scene)(**{**scene.params(), "means": scene.means + 100.0})
    save_scene(tmp_path / "elsewhere.ply", moved)
    code, _, err = run(capsys, "trim", tmp_path / "elsewhere.ply", "--data", data, "-o", tmp_path / "b", *small)
    assert_one_line_error(code, err, "elsewhere.ply", "does not match")
    code, _, err = run(capsys, "trim", tmp_path / "elsewhere.ply", "-o", tmp_path / "b", *small)
    assert_one_line_error(code, err, "--data")
    assert not (tmp_path / "b").exists()

"""`gstrim train / render / eval` end to end on a tiny generated scene, and their errors."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_one_line_error, run

from gstrim.data import load_dataset
from gstrim.evaluate import evaluate
from gstrim.example import generate_example
from gstrim.io import load_scene
from gstrim.train.init import initial_scene


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = generate_example(root / "data", seed=5, n_train=6, n_test=2, size=32, supersample=1)
    from gstrim.cli import main

    assert main(["--quiet", "train", str(data), "-o", str(root / "model"), "--iterations", "30",
                 "--init-points", "300", "--save-iterations", "10", "--checkpoint-every", "20"]) == 0
    return data, root / "model"


def test_train_writes_inria_layout(trained):
    data, model = trained
    for rel in ("cfg_args", "cameras.json", "config.json", "point_cloud/iteration_10/point_cloud.ply",
                "point_cloud/iteration_30/point_cloud.ply", "checkpoints/chkpnt30.pt", "results.json",
                "per_view.json", "train_stats.jsonl"):
        assert (model / rel).is_file(), rel
    assert not (model / "checkpoints" / "chkpnt20.pt").exists()  # only the newest is kept
    cameras = json.loads((model / "cameras.json").read_text())
    assert len(cameras) == 8 and {"position", "rotation", "fx", "fy", "img_name"} <= set(cameras[0])
    assert "white_background=True" in (model / "cfg_args").read_text()
    results = json.loads((model / "results.json").read_text())["ours_30"]
    per_view = json.loads((model / "per_view.json").read_text())["ours_30"]
    assert results["views"] == 2 and set(per_view["PSNR"]) == {"00000.png", "00001.png"}
    scene = load_scene(model / "point_cloud/iteration_30/point_cloud.ply")
    assert len(scene) == results["gaussians"]
    # the stored figures are those of the saved scene, and training improved on its starting point
    ds = load_dataset(data)
    again = evaluate(scene, ds.test, background=ds.background).metrics()
    assert again.psnr == pytest.approx(results["PSNR"], abs=1e-6) and again.ssim == pytest.approx(results["SSIM"])
    start = evaluate(initial_scene(ds, random_points=300), ds.test, background=ds.background).metrics()
    assert results["PSNR"] > start.psnr + 1.0
    summary = json.loads((model / "results.json").read_text())["train"]
    assert summary["iterations"] == 30 and summary["output"]["PSNR"] == results["PSNR"]


def test_render_and_eval(trained, capsys, tmp_path):
    data, model = trained
    code, out, _ = run(capsys, "render", model, "--iteration", "10", "-o", tmp_path / "r")
    assert code == 0 and sorted(p.name for p in (tmp_path / "r" / "renders").iterdir()) == ["00000.png", "00001.png"]
    assert (tmp_path / "r" / "gt" / "00001.png").is_file()
    code, out, _ = run(capsys, "eval", model / "point_cloud/iteration_10/point_cloud.ply", "--lpips", "alex",
                       "--ssim", "valid")
    assert code == 0 and "ours_10" in out
    results = json.loads((model / "results.json").read_text())
    assert {"ours_10", "ours_30"} <= set(results) and "alex" in results["ours_10"]["lpips"]
    # a checkpoint is a model too
    code, out, _ = run(capsys, "eval", model / "checkpoints/chkpnt30.pt", "--split", "train")
    assert code == 0 and "6 train views" in out


def test_train_errors(trained, capsys, tmp_path):
    data, model = trained
    code, _, err = run(capsys, "train", data, "-o", model, "--iterations", "5")
    assert_one_line_error(code, err, str(model), "not empty", "--resume")
    code, _, err = run(capsys, "train", data, "-o", tmp_path / "fresh", "--resume")
    assert_one_line_error(code, err, "nothing to resume")
    code, _, err = run(capsys, "train", tmp_path / "nope", "-o", tmp_path / "m")
    assert_one_line_error(code, err, "nope", "no such dataset")
    assert not (tmp_path / "m").exists()
    code, _, err = run(capsys, "train", data, "-o", tmp_path / "m", "--iterations", "0")
    assert_one_line_error(code, err, "--iterations")


def test_model_errors(trained, capsys, tmp_path):
    data, model = trained
    bare = tmp_path / "bare.ply"
    bare.write_bytes((model / "point_cloud/iteration_30/point_cloud.ply").read_bytes())
    code, _, err = run(capsys, "eval", bare)
    assert_one_line_error(code, err, "bare.ply", "--data")
    code, _, err = run(capsys, "render", model, "--iteration", "7")
    assert_one_line_error(code, err, "no iteration 7", "10, 30")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "eval", tmp_path / "bad.pt", "--data", data)
    assert_one_line_error(code, err, "bad.pt", "checkpoint")
    code, _, err = run(capsys, "eval", tmp_path, "--data", data)
    assert_one_line_error(code, err, "not a model folder")

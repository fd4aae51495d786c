"""`gstrim compress` and `trim --compress`: the file as written is what is evaluated, resume, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import interrupt_training_at
from test_cli import assert_one_line_error, run

from gstrim.compress.stages import STAGES, CompressConfig, Stage, register_stage, unregister_stage
from gstrim.data import load_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.gsz import read_gsz
from gstrim.pipelines.compress import compress_model
from gstrim.pipelines.inputs import RunControl

TINY = dict(codebook_sh=64, codebook_shape=64, kmeans_steps_sh=4, kmeans_steps_shape=4, kmeans_batch=256)


def test_compress_writes_a_small_file_and_evaluates_it_as_written(baseline, tmp_path):
    data, model = baseline
    result = compress_model(model, tmp_path / "c", CompressConfig(qat_iterations=8, **TINY))
    record = json.loads((tmp_path / "c" / "results.json").read_text())["compress"]
    assert record["details"]["file"] == "point_cloud/iteration_8/point_cloud.gsz"
    size = result.file.stat().st_size
    assert record["details"]["mb"] == size / 1e6
    assert record["details"]["ratio"] > 4  # a tiny scene: the codebooks weigh more than at full size
    assert set(record["details"]["stages_s"]) == {"sensitivity_s", "clustering_s", "positions_s", "finetune_s",
                                                  "write_s"}
    # the recorded metrics are those of the file decoded from disk
    scene = read_gsz(result.file).decode()
    ds = load_dataset(data)
    again = evaluate(scene, ds.test, label="again", background=ds.background).metrics()
    assert record["output"]["PSNR"] == pytest.approx(again.psnr, abs=1e-6)
    # fine-tuning rendered exactly what the file decodes to
    trained = load_scene(tmp_path / "c" / "point_cloud/iteration_8/point_cloud.ply")
    order = _lexicographic(trained.means)  # the file is in Morton order, the saved scene in the trainer's
    order_file = _lexicographic(scene.means)
    for name in ("means", "opacities", "sh0", "shN", "scales"):
        torch.testing.assert_close(getattr(scene, name)[order_file], getattr(trained, name)[order],
                                   rtol=0, atol=1e-6, msg=name)
    cs = read_gsz(result.file)
    assert cs.sh_entries < len(cs) and len(cs.rotations) < len(cs)
    assert not cs.shared_dc and len(cs.sh_dc) == len(cs)  # the default: each Gaussian its own DC
    assert len(torch.unique(torch.cat([cs.opacities]))) <= 256


def _lexicographic(means: torch.Tensor) -> torch.Tensor:
    m = means.numpy()
    return torch.from_numpy(np.lexsort((m[:, 2], m[:, 1], m[:, 0])))


def test_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch):
    _, model = baseline
    config = CompressConfig(qat_iterations=10, **TINY)
    control = RunControl(no_eval=True, checkpoint_every=3)
    full = compress_model(model, tmp_path / "full", config, control)
    undo = interrupt_training_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        compress_model(model, tmp_path / "part", config, control)
    undo()
    resumed = compress_model(None, tmp_path / "part", control=RunControl(resume=True, no_eval=True))
    assert resumed.file.read_bytes() == full.file.read_bytes()


def test_a_compression_stage_is_one_registration(baseline, tmp_path):
    """A toy stage between fine-tuning and writing (it moves the scene): it sees the fine-tuned codebooks, changes
    what is written, and is timed in the record, with no edit to the verb."""
    _, model = baseline
    seen = {}

    def shift(job):
        codebooks = job.values["codebooks"]
        seen["iteration"] = job.values["iteration"]
        codebooks.means = codebooks.means + torch.tensor([1.0, 0.0, 0.0])
        origin = codebooks.grid.origin
        codebooks.grid = replace(codebooks.grid, origin=(origin[0] + 1.0, *origin[1:]))  # the grid moves along
        return {"codebooks": codebooks}

    register_stage(Stage("shift", shift), after="finetune")
    try:
        assert [s.name for s in STAGES] == ["sensitivity", "clustering", "positions", "finetune", "shift", "write"]
        result = compress_model(model, tmp_path / "c", CompressConfig(qat_iterations=3, **TINY),
                                RunControl(no_eval=True))
    finally:
        unregister_stage("shift")
    assert seen["iteration"] == 3 and "shift_s" in result.record["stages_s"]
    trained = load_scene(tmp_path / "c" / "point_cloud/iteration_3/point_cloud.ply")  # before the toy stage
    shifted = read_gsz(result.file).decode().means.mean(0) - trained.means.mean(0)
    torch.testing.assert_close(shifted, torch.tensor([1.0, 0.0, 0.0]), atol=1e-2, rtol=0)
    assert [s.name for s in STAGES] == ["sensitivity", "clustering", "positions", "finetune", "write"]


def test_cli_compress_trim_compress_and_decompress(baseline, tmp_path, capsys):
    data, model = baseline
    small = ["--codebook-sh", "64", "--codebook-shape", "64", "--kmeans-steps-sh", "3", "--kmeans-steps-shape", "3",
             "--kmeans-batch", "256"]
    code, out, err = run(capsys, "compress", model, "-o", tmp_path / "c", "--qat-iterations", "4", *small)
    assert code == 0, err
    assert ".gsz (x" in out and "of the file as written" in out
    gsz = tmp_path / "c" / "point_cloud/iteration_4/point_cloud.gsz"
    code, out, err = run(capsys, "info", gsz)
    assert code == 0 and "gsz (codebooks" in out
    code, out, err = run(capsys, "decompress", gsz, tmp_path / "back.ply")
    assert code == 0 and len(load_scene(tmp_path / "back.ply")) == len(read_gsz(gsz))
    code, out, err = run(capsys, "eval", gsz, "--data", data)
    assert code == 0, err

    code, out, err = run(capsys, "trim", model, "-o", tmp_path / "t", "--target-removal", "0.5", "--steps", "2",
                         "--every", "3", "--finetune", "3", "--compress", "--qat-iterations", "3", *small)
    assert code == 0, err
    assert "smaller than the untrimmed .ply" in out
    assert (tmp_path / "t" / "compressed" / "point_cloud/iteration_3/point_cloud.gsz").is_file()
    # resuming a finished run redoes nothing and reports the same
    code, out2, err = run(capsys, "trim", model, "-o", tmp_path / "t", "--resume", "--compress")
    assert code == 0, err


def test_bad_options_and_bad_files_are_one_line_errors(baseline, tmp_path, capsys):
    _, model = baseline
    code, _, err = run(capsys, "compress", model, "-o", tmp_path / "c", "--keep-sh", "2")
    assert_one_line_error(code, err, "--keep-sh")
    for flags, named in ((["--max-loss", "-1"], "--max-loss"), (["--sh-bits", "9"], "--sh-bits"),
                         (["--sh-share", "0.5", "--dc", "codebook"], "--sh-share"),
                         (["--position-bits", "30"], "--position-bits")):
        code, _, err = run(capsys, "compress", model, "-o", tmp_path / "c", *flags)
        assert_one_line_error(code, err, named)
    assert not (tmp_path / "c").exists()
    code, _, err = run(capsys, "info", "--bits", model / "point_cloud" / "iteration_40" / "point_cloud.ply")
    assert_one_line_error(code, err, "--bits reads a .gsz")
    bad = tmp_path / "bad.gsz"
    bad.write_bytes(b"GSTRIMZ\0" + b"\1\0\0\0" + b"\0" * 40)
    code, _, err = run(capsys, "info", bad)
    assert_one_line_error(code, err, str(bad), "checksum")

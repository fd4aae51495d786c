"""The command line: outputs, and one-line errors with a non-zero exit for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import random_scene
from test_data import write_colmap

from gstrim.cli import main
from gstrim.io import load_scene, save_scene
from gstrim.io.ply import ply_bytes


def run(capsys, *argv):
    code = main(["--quiet", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gstrim: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_info_and_convert(tmp_path, capsys, rng):
    save_scene(tmp_path / "s.ply", random_scene(rng, 30, 2))
    code, out, _ = run(capsys, "info", tmp_path / "s.ply", "--json")
    info = json.loads(out)
    assert code == 0 and info["count"] == 30 and info["sh_degree"] == 2
    assert info["size_mb"] == pytest.approx((tmp_path / "s.ply").stat().st_size / 1e6)
    code, out, _ = run(capsys, "info", tmp_path / "s.ply")
    assert code == 0 and "gaussians     30" in out
    code, out, _ = run(capsys, "convert", tmp_path / "s.ply", tmp_path / "s.splat")
    assert code == 0 and len(load_scene(tmp_path / "s.splat")) == 30
    code, _, _ = run(capsys, "convert", tmp_path / "s.splat", tmp_path / "back.ply")
    assert code == 0 and load_scene(tmp_path / "back.ply").sh_degree == 0


def test_info_on_a_dataset(tmp_path, capsys):
    write_colmap(tmp_path)
    code, out, _ = run(capsys, "info", tmp_path, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["kind"] == "colmap" and summary["train_views"] + summary["test_views"] == 10


def test_error_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "info", tmp_path / "missing.ply")
    assert_one_line_error(code, err, "missing.ply", "no such file")


def test_error_truncated_ply(tmp_path, capsys, rng):
    (tmp_path / "t.ply").write_bytes(ply_bytes(random_scene(rng, 10))[:-100])
    code, _, err = run(capsys, "convert", tmp_path / "t.ply", tmp_path / "out.splat")
    assert_one_line_error(code, err, "t.ply", "truncated")
    assert not (tmp_path / "out.splat").exists()


def test_error_unknown_property_set(tmp_path, capsys):
    (tmp_path / "m.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                    "property float y\nproperty float z\nend_header\n0 0 0\n")
    code, _, err = run(capsys, "info", tmp_path / "m.ply")
    assert_one_line_error(code, err, "m.ply", "missing properties")


def test_error_nonfinite_unless_flagged(tmp_path, capsys, rng):
    scene = random_scene(rng, 10)
    scene.opacities[2] = float("nan")
    save_scene(tmp_path / "nan.ply", scene)
    code, _, err = run(capsys, "convert", tmp_path / "nan.ply", tmp_path / "o.ply")
    assert_one_line_error(code, err, "nan.ply", "NaN or infinite", "--nonfinite")
    assert not (tmp_path / "o.ply").exists()
    code, _, _ = run(capsys, "convert", tmp_path / "nan.ply", tmp_path / "o.ply", "--nonfinite", "drop")
    assert code == 0 and len(load_scene(tmp_path / "o.ply")) == 9


def test_error_missing_image(tmp_path, capsys):
    write_colmap(tmp_path)
    (tmp_path / "images" / "img_004.png").unlink()
    code, _, err = run(capsys, "info", tmp_path)
    assert_one_line_error(code, err, "img_004.png", "missing")


def test_error_unsupported_camera_model(tmp_path, capsys):
    write_colmap(tmp_path, model="OPENCV_FISHEYE", params=(60.0, 60.0, 40.0, 30.0, 0.1, 0, 0, 0))
    code, _, err = run(capsys, "info", tmp_path)
    assert_one_line_error(code, err, "sparse/0", "OPENCV_FISHEYE")


def test_error_unknown_format(tmp_path, capsys, rng):
    save_scene(tmp_path / "s.ply", random_scene(rng, 3))
    code, _, err = run(capsys, "convert", tmp_path / "s.ply", tmp_path / "s.obj")
    assert_one_line_error(code, err, "s.obj", "unknown scene format")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gstrim.cli", "info", str(tmp_path / "nope.splat")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"gstrim: error: {tmp_path / 'nope.splat'}: no such file"


def test_demo_trains_and_evaluates(tmp_path, capsys, monkeypatch):
    import gstrim.pipelines.demo as demo

    real = demo.generate_example
    monkeypatch.setattr(demo, "generate_example", lambda out, **kw: real(out, **kw, n_train=8, n_test=2, size=48))
    monkeypatch.setattr(demo, "DEMO_INIT_POINTS", 500)
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo", "--iterations", "40")
    assert code == 0 and "8 train, 2 test" in out and "48x48" in out
    assert "baseline: 40 iterations" in out and "test PSNR" in out and "75 % removed" in out
    assert "MB .gsz" in out and "decoded from the file" in out
    assert (tmp_path / "demo" / "compressed" / "point_cloud" / "iteration_20" / "point_cloud.gsz").is_file()
    assert (tmp_path / "demo" / "baseline" / "point_cloud" / "iteration_40" / "point_cloud.ply").is_file()
    results = json.loads((tmp_path / "demo" / "baseline" / "results.json").read_text())
    assert results["ours_40"]["views"] == 2
    # a second run reuses the example and the finished baseline
    mtime = (tmp_path / "demo" / "data" / "transforms_train.json").stat().st_mtime
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo", "--iterations", "40")
    assert code == 0 and (tmp_path / "demo" / "data" / "transforms_train.json").stat().st_mtime == mtime


@pytest.mark.parametrize("verb", ["info", "convert", "decompress", "train", "render", "eval", "trim",
                                  "compress", "demo"])
def test_help_of_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith(f"usage: gstrim {verb}")


def test_trim_flags_come_from_the_config():
    """Every described TrimConfig field is a flag whose help carries the library's default."""
    import dataclasses

    from gstrim.cli import build_parser
    from gstrim.prune.scores import SCORES
    from gstrim.prune.strategy import TrimConfig

    trim = build_parser()._subparsers._group_actions[0].choices["trim"]
    actions = {a.dest: a for a in trim._actions}
    for f in dataclasses.fields(TrimConfig):
        assert f.name in actions, f.name
        assert actions[f.name].default is None  # left out: the library's default applies
    assert list(actions["score"].choices) == list(SCORES)
    assert "(default: refresh)" in actions["stats"].help and "(default: 0)" in actions["seed"].help


@pytest.mark.parametrize("suffix", [".ply", ".spz", ".sog", ".compressed.ply"])
def test_convert_onto_a_full_disk(tmp_path, capsys, rng, monkeypatch, suffix):
    """Every writer's full disk is one line naming the file, with nothing left behind."""
    import errno

    import gstrim.io.atomic as atomic
    import gstrim.resources as resources

    save_scene(tmp_path / "in.ply", random_scene(rng, 300))
    real_replace = atomic.os.replace

    def full(src, dst):  # the last step of every atomic write: the disk filled before it
        if str(dst).endswith(suffix):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full)
    monkeypatch.setattr(resources, "free_bytes", lambda path: 1 << 40)  # ENOSPC alone says the disk filled
    (tmp_path / "out").mkdir()
    code, _, err = run(capsys, "convert", tmp_path / "in.ply", tmp_path / "out" / f"scene{suffix}")
    assert_one_line_error(code, err, f"scene{suffix}", "no space left on the device")
    assert list((tmp_path / "out").iterdir()) == []


def test_convert_refuses_a_file_the_disk_cannot_hold(tmp_path, capsys, rng, monkeypatch):
    import gstrim.resources as resources

    save_scene(tmp_path / "in.ply", random_scene(rng, 300))
    monkeypatch.setattr(resources, "free_bytes", lambda path: 1000)
    code, _, err = run(capsys, "convert", tmp_path / "in.ply", tmp_path / "out" / "scene.ply")
    assert_one_line_error(code, err, "not enough disk space for a ply file", "0.001 MB free")
    assert not (tmp_path / "out" / "scene.ply").exists()

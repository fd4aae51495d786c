"""Photo-free runs: virtual views of a bare scene, its own renders as targets, the CLI in this mode."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from test_cli import assert_one_line_error, run

from gstrim import progress
from gstrim.camera import Camera
from gstrim.data.virtual import (
    MIN_COVERAGE,
    TeacherCamera,
    ViewConfig,
    coverage,
    intrinsics,
    look_at,
    measure_layout,
    sample_views,
    scene_frame,
    virtual_dataset,
)
from gstrim.errors import GstrimError
from gstrim.io import load_scene, save_scene
from gstrim.io.model import read_cameras_json, write_cameras_json
from gstrim.render import rasterize
from gstrim.render.project import project
from gstrim.scene import GaussianScene


def _scene(means: np.ndarray, log_scale: float | np.ndarray, opacity: float = 0.9, seed: int = 0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    n = len(means)
    scales = np.broadcast_to(np.asarray(log_scale, np.float64), (n, 3)).copy()
    return GaussianScene(
        means=torch.tensor(means, dtype=torch.float32),
        scales=torch.tensor(scales, dtype=torch.float32),
        quats=torch.tensor(np.tile([1.0, 0, 0, 0], (n, 1)), dtype=torch.float32),
        opacities=torch.full((n,), math.log(opacity / (1 - opacity)), dtype=torch.float32),
        sh0=torch.tensor(rng.uniform(-1, 1, (n, 1, 3)), dtype=torch.float32),
        shN=torch.zeros(n, 0, 3),
    )


def object_scene(seed: int = 0) -> GaussianScene:
    """A solid blob of Gaussians around (3, -1, 2): an object with empty space around it."""
    rng = np.random.default_rng(seed)
    return _scene(np.array([3.0, -1.0, 2.0]) + rng.normal(0, 0.5, (800, 3)), math.log(0.08), seed=seed)


def room_scene(seed: int = 0) -> GaussianScene:
    """Flat Gaussians on the six inner faces of a 4 m cube, and a table-sized blob off its centre."""
    rng = np.random.default_rng(seed)
    points, scales = [], []
    for axis in range(3):
        for side in (-2.0, 2.0):
            p = rng.uniform(-2, 2, (900, 3))
            p[:, axis] = side
            s = np.full((900, 3), math.log(0.12))
            s[:, axis] = math.log(0.01)
            points.append(p)
            scales.append(s)
    points.append(np.array([0.8, 0.8, -1.5]) + rng.normal(0, 0.15, (200, 3)))
    scales.append(np.full((200, 3), math.log(0.05)))
    return _scene(np.concatenate(points), np.concatenate(scales), seed=seed)


def unbounded_scene(seed: int = 0) -> GaussianScene:
    """An object at the centre with a far background shell all around it (sky, distant walls), as a 360 capture."""
    rng = np.random.default_rng(seed)
    blob = rng.normal(0, 0.5, (1000, 3))
    direction = rng.normal(size=(40, 3))
    shell = 30 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    scales = np.concatenate([np.full((1000, 3), math.log(0.08)), np.full((40, 3), math.log(12.0))])
    return _scene(np.concatenate([blob, shell]), scales, seed=seed)


@pytest.mark.parametrize("make, side", [(object_scene, "outside"), (room_scene, "inside"),
                                        (unbounded_scene, "inside")])
def test_the_layout_rule_tells_objects_from_rooms_and_unbounded_captures(make, side):
    scene = make()
    layout = measure_layout(scene, scene_frame(scene))
    assert layout.side == side, layout.describe()


@pytest.mark.parametrize("make, up", [(object_scene, None), (object_scene, "-y"), (room_scene, None),
                                      (unbounded_scene, "+z")])
def test_every_sampled_camera_sees_the_scene(make, up):
    scene = make(seed=3)
    cameras, side, layout = sample_views(scene, ViewConfig(views=24, up=up, seed=3), 64, 48)
    assert len(cameras) == 24 and layout is not None
    frame = scene_frame(scene)
    for cam in cameras:
        assert (cam.width, cam.height) == (64, 48)
        assert coverage(scene, cam) >= MIN_COVERAGE
        proj = project(scene.means, scene.quats, scene.scales, cam.viewmat, cam.K, cam.width, cam.height)
        assert int((proj.radii > 0).sum()) > 10  # many Gaussians in front of the camera and inside the image
        distance = np.linalg.norm(cam.center - frame.center)
        if side == "outside":
            assert distance > frame.radius  # outside the scene's bounding sphere, looking in
            if up is not None:  # from above or the side, never from far below
                axis = np.zeros(3)
                axis["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
                assert (cam.center - frame.center) @ axis / distance > math.sin(math.radians(-16))
        else:
            assert distance < frame.median_distance  # within the scene
    centres = np.stack([c.center for c in cameras])
    assert len(np.unique(centres.round(4), axis=0)) == 24  # no two views alike


def desk_scene(seed: int = 0) -> GaussianScene:
    """A subject on a wide desk: most opaque Gaussians near the centre, a heavy tail of desk far out."""
    rng = np.random.default_rng(seed)
    subject = rng.normal(0, 0.3, (1500, 3))
    radius = 12 * np.sqrt(rng.uniform(0, 1, 600))
    angle = rng.uniform(0, 2 * math.pi, 600)
    desk = np.stack([radius * np.cos(angle), radius * np.sin(angle), np.full(600, -0.5)], axis=1)
    return _scene(np.concatenate([subject, desk]), math.log(0.1), seed=seed)


def test_outside_views_orbit_a_subject_within_its_surroundings():
    scene = desk_scene()
    frame = scene_frame(scene)
    assert frame.radius >= 2.5 * frame.median_distance and frame.core_radius == frame.median_distance
    cameras, side, _ = sample_views(scene, ViewConfig(views=12, views_from="outside"), 32, 32)
    distances = [np.linalg.norm(c.center - frame.center) for c in cameras]
    assert max(distances) < frame.radius  # within the desk's extent, framing the subject
    compact = scene_frame(object_scene())
    assert compact.core_radius == compact.radius


def test_look_at_points_the_optical_axis_at_the_target():
    position, target = np.array([1.0, 2.0, 3.0]), np.array([-2.0, 0.5, 1.0])
    viewmat = look_at(position, target, np.array([0.0, 0.0, 1.0]))
    K = intrinsics(40, 30, 60.0)
    camera = Camera("c", 40, 30, K, viewmat)
    np.testing.assert_allclose(camera.center, position, atol=1e-5)
    p = viewmat[:3, :3].double() @ torch.tensor(target) + viewmat[:3, 3].double()
    uv = (K.double() @ p)[:2] / p[2]
    np.testing.assert_allclose(uv.numpy(), [20, 15], atol=1e-4)  # the target lands on the image centre
    assert float(torch.linalg.det(viewmat[:3, :3].double())) == pytest.approx(1.0, abs=1e-6)
    assert float(viewmat[1, :3] @ torch.tensor([0.0, 0.0, 1.0])) < 0  # image "down" points away from up


def test_targets_are_the_teachers_renders_made_once_when_cached():
    scene = object_scene()
    cam = sample_views(scene, ViewConfig(views=2), 24, 24)[0][0]
    expected = rasterize(scene, cam, background=(0.2, 0.4, 0.6)).image.clamp(0, 1)
    expected = torch.round(expected * 255) / 255  # 8 bits, as a PNG target holds it
    cached = TeacherCamera(cam, scene, (0.2, 0.4, 0.6), keep=True)
    live = TeacherCamera(cam, scene, (0.2, 0.4, 0.6), keep=False)
    for _ in range(3):
        torch.testing.assert_close(cached.image, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(live.image, expected, atol=1e-6, rtol=0)
    assert cached.renders == 1 and live.renders == 3


def test_virtual_dataset_holds_one_view_in_eight_out_and_caches_by_default(tmp_path):
    scene = object_scene()
    save_scene(tmp_path / "scene.ply", scene)
    dataset, virtual = virtual_dataset(scene, ViewConfig(views=17, resolution=24), tmp_path / "scene.ply")
    assert (len(dataset.train), len(dataset.test)) == (14, 3) and dataset.kind == "virtual"
    assert virtual.cached and all(c._stored is not None for c in dataset.train + dataset.test)
    assert virtual.side == "outside" and virtual.origin == "sampled"
    backgrounds = {c.background for c in dataset.train}
    assert dataset.background is None and len(backgrounds) == 14  # a random colour per view
    live, virtual = virtual_dataset(scene, ViewConfig(views=17, resolution=24, targets="live",
                                                      target_background="white"), tmp_path / "scene.ply")
    assert not virtual.cached and live.background == (1.0, 1.0, 1.0)
    assert all(c._stored is None for c in live.train)


def test_cameras_json_beside_the_scene_gives_the_capture_poses(tmp_path):
    scene = object_scene()
    cameras = sample_views(scene, ViewConfig(views=9, fov=40), 40, 30)[0]
    folder = tmp_path / "model" / "point_cloud" / "iteration_100"
    folder.mkdir(parents=True)
    save_scene(folder / "point_cloud.ply", scene)
    write_cameras_json(tmp_path / "model" / "cameras.json", cameras)
    for original, read in zip(cameras, read_cameras_json(tmp_path / "model" / "cameras.json"), strict=True):
        torch.testing.assert_close(read.viewmat, original.viewmat, atol=1e-5, rtol=0)
        torch.testing.assert_close(read.K, original.K, atol=1e-4, rtol=0)
    dataset, virtual = virtual_dataset(scene, ViewConfig(resolution=20), folder / "point_cloud.ply")
    assert virtual.origin == "cameras.json" and len(dataset.train) + len(dataset.test) == 9
    assert (dataset.train[0].width, dataset.train[0].height) == (20, 15)
    ignored, virtual = virtual_dataset(scene, ViewConfig(views=4, resolution=20, ignore_cameras_json=True),
                                       folder / "point_cloud.ply")
    assert virtual.origin == "sampled"
    (tmp_path / "model" / "cameras.json").write_text("[{\"id\": 0}]")
    with pytest.raises(GstrimError, match="cameras.json"):
        virtual_dataset(scene, ViewConfig(), folder / "point_cloud.ply")


def test_empty_or_degenerate_scenes_are_refused_in_one_line(tmp_path, capsys):
    empty = _scene(np.zeros((0, 3)), 0.0)
    point = _scene(np.zeros((50, 3)), math.log(0.1))
    clear = _scene(np.random.default_rng(0).normal(size=(50, 3)), math.log(0.1), opacity=0.01)
    for name, scene, fragment in (("empty", empty, "empty"), ("point", point, "one point"),
                                  ("clear", clear, "see it")):
        save_scene(tmp_path / f"{name}.ply", scene)
        code, _, err = run(capsys, "trim", tmp_path / f"{name}.ply", "-o", tmp_path / f"out_{name}")
        assert_one_line_error(code, err, f"{name}.ply", fragment)
        assert not (tmp_path / f"out_{name}").exists()


SMALL = ["--steps", "2", "--every", "3", "--finetune", "4", "--target-removal", "0.5"]
VIEWS = ["--views", "12", "--resolution", "32"]


def test_cli_trims_a_bare_ply_without_photos(baseline, tmp_path, capsys):
    data, model = baseline
    bare = tmp_path / "bare" / "scene.ply"
    bare.parent.mkdir()
    shutil.copy(model / "point_cloud/iteration_40/point_cloud.ply", bare)
    progress.set_enabled(True)  # the status lines are the point here
    code, out, err = run_loud(capsys, "trim", bare, "-o", tmp_path / "t", *SMALL, *VIEWS)
    assert code == 0, err
    assert err.splitlines()[0].startswith("photo-free:") and "scene.ply" in err.splitlines()[0]
    assert "photo-free" in out.splitlines()[0]
    results = json.loads((tmp_path / "t/results.json").read_text())
    details = results["trim"]["details"]
    assert details["mode"] == "photo-free" and details["virtual"]["side"] == "outside"
    assert "ours_10_virtual" in results and "input" not in results  # scored against the untrimmed renders
    assert results["ours_10_virtual"]["views"] == 2  # 12 views, 1 in 8 held out
    config = json.loads((tmp_path / "t/config.json").read_text())
    assert config["data"]["virtual"]["views"] == 12
    assert len(json.loads((tmp_path / "t/cameras.json").read_text())) == 12
    n_in = len(load_scene(bare))
    assert len(load_scene(tmp_path / "t/point_cloud/iteration_10/point_cloud.ply")) == round(n_in / 2)
    # the real photos, when someone has them, score the same result too (and are asked for)
    code, _, err = run(capsys, "eval", tmp_path / "t")
    assert_one_line_error(code, err, "photo-free", "--data")
    code, out, err = run(capsys, "eval", tmp_path / "t", "--data", data)
    assert code == 0, err
    assert "ours_10" in json.loads((tmp_path / "t/results.json").read_text())
    # --data still wins, and --photo-free wins over a recorded dataset
    code, out, err = run(capsys, "trim", bare, "--data", data, "-o", tmp_path / "p", *SMALL, "--no-eval")
    assert code == 0 and "photo-free" not in out
    code, out, err = run(capsys, "trim", model, "--photo-free", "-o", tmp_path / "f", *SMALL, *VIEWS, "--no-eval")
    assert code == 0 and "photo-free" in out.splitlines()[0]
    # an ablation measured on photos still asks for them
    code, _, err = run(capsys, "ablate", "lottery-ticket", bare, "-o", tmp_path / "lt")
    assert_one_line_error(code, err, "scene.ply", "--data")
    assert not (tmp_path / "lt").exists()


def test_photo_free_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch, capsys):
    from conftest import interrupt_training_at

    data, model = baseline
    bare = tmp_path / "scene.ply"
    shutil.copy(model / "point_cloud/iteration_40/point_cloud.ply", bare)
    args = [*SMALL, *VIEWS, "--no-eval", "--checkpoint-every", "2"]
    code, _, err = run(capsys, "trim", bare, "-o", tmp_path / "whole", *args)
    assert code == 0, err
    undo = interrupt_training_at(monkeypatch, 5)
    code, _, err = run(capsys, "trim", bare, "-o", tmp_path / "cut", *args)
    assert code == 130 and "interrupted" in err
    undo()
    code, _, err = run(capsys, "trim", bare, "-o", tmp_path / "cut", "--resume")
    assert code == 0, err
    whole = load_scene(tmp_path / "whole/point_cloud/iteration_10/point_cloud.ply")
    cut = load_scene(tmp_path / "cut/point_cloud/iteration_10/point_cloud.ply")
    torch.testing.assert_close(cut.means, whole.means, rtol=0, atol=0)


def run_loud(capsys, *argv):
    from gstrim.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_and_export_learn_from_the_scene_too(baseline, tmp_path, capsys):
    data, model = baseline
    bare = tmp_path / "scene.ply"
    shutil.copy(model / "point_cloud/iteration_40/point_cloud.ply", bare)
    code, out, err = run(capsys, "compress", bare, "-o", tmp_path / "c", "--qat-iterations", "3", *VIEWS)
    assert code == 0, err
    assert "photo-free" in out.splitlines()[0] and "virtual views (not photos)" in out
    results = json.loads((tmp_path / "c/results.json").read_text())
    assert results["compress"]["details"]["mode"] == "photo-free" and "ours_3_virtual" in results
    code, out, err = run(capsys, "export", bare, "-o", tmp_path / "e.spz", "--finetune", "3", *VIEWS)
    assert code == 0, err
    assert "photo-free" in out.splitlines()[0]
    # a photo-free trim's folder remembers its views: compressing it stays photo-free without a flag
    code, _, err = run(capsys, "trim", bare, "-o", tmp_path / "t", *SMALL, *VIEWS, "--no-eval")
    assert code == 0, err
    code, out, err = run(capsys, "compress", tmp_path / "t", "-o", tmp_path / "tc", "--qat-iterations", "2")
    assert code == 0, err
    config = json.loads((tmp_path / "tc/config.json").read_text())
    assert config["data"]["virtual"]["views"] == 12

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch
from conftest import random_scene, shared
from PIL import Image

from gstrim import GstrimError
from gstrim.data import colmap, load_dataset
from gstrim.example import generate_example


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory):
    return generate_example(tmp_path_factory.mktemp("ex") / "data", seed=3, n_train=12, n_test=4, size=64)


def project(cam, X):
    V, K = cam.viewmat.double().numpy(), cam.K.double().numpy()
    Xc = X @ V[:3, :3].T + V[:3, 3]
    p = Xc @ K.T
    return p[:, :2] / p[:, 2:]


# ---- a synthetic COLMAP capture written by the test itself ----------------------------------------

def _look_at_w2c(center, target=(0.0, 0.0, 0.0)):
    f = np.asarray(target) - center
    f /= np.linalg.norm(f)
    r = np.cross(f, [0, 0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    R = np.stack([r, d, f])  # rows: camera x (right), y (down), z (forward)
    return R, -R @ center


def _rotmat_to_qvec(R):
    w = np.sqrt(max(1e-12, 1 + np.trace(R))) / 2
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


def write_colmap(root, model="PINHOLE", params=(60.0, 62.0, 40.5, 30.5), n_images=10, size=(80, 60),
                 binary=True, rng=None):
    """A tiny COLMAP capture: cameras on a ring, random 3D points, observations projected with the
    model's own distortion (so undistortion can be checked), and gray images."""
    rng = rng or np.random.default_rng(0)
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    pts = rng.uniform(-0.5, 0.5, size=(40, 3))
    model_id = {v[0]: k for k, v in colmap.CAMERA_MODELS.items()}[model]
    images = []
    for i in range(n_images):
        a = 2 * np.pi * i / n_images
        R, t = _look_at_w2c(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]))
        Xc = pts @ R.T + t
        x, y = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]
        if model == "SIMPLE_RADIAL":
            f, cx, cy, k = params
            r2 = x * x + y * y
            x, y = x * (1 + k * r2), y * (1 + k * r2)
            uv = np.stack([f * x + cx, f * y + cy], 1)
        else:
            fx, fy, cx, cy = params[:4]
            uv = np.stack([fx * x + cx, fy * y + cy], 1)
        name = f"img_{(i * 7) % n_images:03d}.png"
        Image.fromarray(np.full((size[1], size[0], 3), 20 * i, np.uint8)).save(root / "images" / name)
        images.append((i + 1, _rotmat_to_qvec(R), t, name, uv))
    if binary:
        with open(sparse / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<iiQQ", 1, model_id, *size))
            f.write(struct.pack(f"<{len(params)}d", *params))
        with open(sparse / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(images)))
            for iid, q, t, name, uv in images:
                f.write(struct.pack("<I7dI", iid, *q, *t, 1) + name.encode() + b"\0")
                f.write(struct.pack("<Q", len(uv)))
                for j, (u, v) in enumerate(uv):
                    f.write(struct.pack("<ddq", u, v, j + 1))
        with open(sparse / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", len(pts)))
            for j, p in enumerate(pts):
                f.write(struct.pack("<Q3d3BdQ", j + 1, *p, 200, 100, 50, 0.5, 1))
                f.write(struct.pack("<ii", 1, j))
    else:
        (sparse / "cameras.txt").write_text(
            f"# Camera list\n1 {model} {size[0]} {size[1]} {' '.join(map(str, params))}\n")
        lines = ["# Image list"]
        for iid, q, t, name, uv in images:
            lines.append(f"{iid} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {name}")
            lines.append(" ".join(f"{u} {v} {j + 1}" for j, (u, v) in enumerate(uv)))
        (sparse / "images.txt").write_text("\n".join(lines) + "\n")
        (sparse / "points3D.txt").write_text(
            "".join(f"{j + 1} {p[0]} {p[1]} {p[2]} 200 100 50 0.5 1 {j}\n" for j, p in enumerate(pts)))
    return pts, images


def mean_reprojection_error(ds, pts, images, scale=1.0):
    by_name = {name: uv for _, _, _, name, uv in images}
    errors = []
    for cam in ds.train + ds.test:
        uv = by_name[cam.name] * scale
        if cam.undistortion is not None:
            uv = cam.undistortion.points(uv)
        errors.append(np.linalg.norm(project(cam, pts) - uv, axis=1))
    return float(np.concatenate(errors).mean())


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_pinhole_binary_and_text(tmp_path, binary):
    pts, images = write_colmap(tmp_path, binary=binary)
    ds = load_dataset(tmp_path)
    assert ds.kind == "colmap"
    names = sorted(name for *_, name, _ in images)
    # 3DGS --eval split: sorted by name, every 8th is a test view
    assert [c.name for c in ds.test] == names[0::8]
    assert [c.name for c in ds.train] == [n for i, n in enumerate(names) if i % 8]
    assert len(ds.points) == 40 and ds.point_colors.max() <= 1.0
    assert mean_reprojection_error(ds, pts, images) < 1e-3
    assert ds.train[0].image.shape == (60, 80, 3)


def test_colmap_downscale_scales_intrinsics_by_image_size(tmp_path):
    pts, images = write_colmap(tmp_path)
    ds = load_dataset(tmp_path, downscale=2)
    cam = ds.train[0]
    assert (cam.width, cam.height) == (40, 30) and cam.image.shape == (30, 40, 3)
    assert mean_reprojection_error(ds, pts, images, scale=0.5) < 1e-3
    # a prepared images_2 folder is used as is
    (tmp_path / "images_2").mkdir()
    for p in (tmp_path / "images").iterdir():
        Image.open(p).resize((40, 30)).save(tmp_path / "images_2" / p.name)
    assert load_dataset(tmp_path, downscale=2).train[0].image_path.parent.name == "images_2"


def test_colmap_simple_radial_is_undistorted(tmp_path):
    pts, images = write_colmap(tmp_path, model="SIMPLE_RADIAL", params=(60.0, 40.0, 30.0, 0.08))
    ds = load_dataset(tmp_path)
    assert ds.train[0].undistortion is not None
    assert mean_reprojection_error(ds, pts, images) < 0.05
    assert ds.train[0].image.shape == (60, 80, 3)  # undistorts without error


def test_unsupported_camera_model(tmp_path):
    write_colmap(tmp_path, model="OPENCV_FISHEYE", params=(60.0, 60.0, 40.0, 30.0, 0.1, 0, 0, 0))
    with pytest.raises(GstrimError, match="unsupported COLMAP model OPENCV_FISHEYE"):
        load_dataset(tmp_path)


def test_missing_image(tmp_path):
    write_colmap(tmp_path)
    (tmp_path / "images" / "img_003.png").unlink()
    with pytest.raises(GstrimError, match="img_003.png.*missing"):
        load_dataset(tmp_path)
    skipped = load_dataset(tmp_path, missing_images="skip")
    assert len(skipped.train) + len(skipped.test) == 9


def test_truncated_colmap_binary(tmp_path):
    write_colmap(tmp_path)
    p = tmp_path / "sparse" / "0" / "images.bin"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(GstrimError, match="images.bin: (truncated COLMAP|COLMAP binary file declares .* hold fewer)"):
        load_dataset(tmp_path)


def test_not_a_dataset(tmp_path):
    with pytest.raises(GstrimError, match="not a dataset"):
        load_dataset(tmp_path)
    with pytest.raises(GstrimError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")


# ---- Blender / the built-in example ---------------------------------------------------------------

def test_example_is_a_blender_dataset(example_dir):
    ds = load_dataset(example_dir)
    assert ds.kind == "blender" and len(ds.train) == 12 and len(ds.test) == 4
    cam = ds.train[0]
    assert cam.image.shape == (64, 64, 3)
    # white background: corners of an object-centric view are empty
    assert torch.allclose(cam.image[0, 0], torch.ones(3))
    black = load_dataset(example_dir, background="black")
    assert torch.allclose(black.train[0].image[0, 0], torch.zeros(3))
    # The object sits at the origin: it projects near the image centre.
    assert np.abs(project(cam, np.zeros((1, 3))) - 32).max() < 1.0
    # extent = 1.1 x max distance of camera centres from their mean (cameras at radius 4)
    centers = np.stack([c.center for c in ds.train])
    assert np.allclose(np.linalg.norm(centers, axis=1), 4.0, atol=1e-4)
    assert ds.extent == pytest.approx(1.1 * np.linalg.norm(centers - centers.mean(0), axis=1).max(), rel=1e-6)


def test_example_is_deterministic(tmp_path, example_dir):
    again = generate_example(tmp_path / "again", seed=3, n_train=12, n_test=4, size=64)
    for p in example_dir.rglob("*.png"):
        assert p.read_bytes() == (again / p.relative_to(example_dir)).read_bytes()
    other = generate_example(tmp_path / "other", seed=4, n_train=12, n_test=4, size=64)
    assert (other / "train" / "r_0.png").read_bytes() != (example_dir / "train" / "r_0.png").read_bytes()


def test_example_has_view_dependent_shading(example_dir):
    """The same surface point seen from two views differs by the specular term: SH > 0 matters."""
    ds = load_dataset(example_dir, background="black")
    center = np.array([[0.0, 0.0, 0.05 + 0.45]])  # top of the central sphere
    values = []
    for cam in ds.train:
        u, v = project(cam, center)[0]
        values.append(cam.image[int(v), int(u)].numpy())
    spread = np.ptp(np.stack(values), axis=0).max()
    assert spread > 0.1


def test_blender_downscale_and_missing_frame(tmp_path, example_dir):
    root = tmp_path / "copy"
    shutil.copytree(example_dir, root)
    ds = load_dataset(root, downscale=2)
    assert ds.train[0].image.shape == (32, 32, 3)
    assert ds.train[0].K[0, 0] == pytest.approx(load_dataset(root).train[0].K[0, 0] / 2)
    (root / "train" / "r_5.png").unlink()
    with pytest.raises(GstrimError, match="r_5.png: image referenced by transforms_train.json is missing"):
        load_dataset(root)


def test_blender_bad_json(tmp_path):
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(GstrimError, match="not a Blender transforms file"):
        load_dataset(tmp_path)
    (tmp_path / "transforms_train.json").write_text("{oops")
    with pytest.raises(GstrimError, match="invalid JSON"):
        load_dataset(tmp_path)


# ---- the shared real captures (skipped when absent) ------------------------------------------------

def _colmap_reprojection(root, **kw):
    model = colmap.read_model(root / "sparse" / "0")
    ds = load_dataset(root, **kw)
    index = {pid: i for i, pid in enumerate(model.point_ids)}
    by_name = {im.name: im for im in model.images.values()}
    errors = []
    for cam in ds.train + ds.test:
        im = by_name[cam.name]
        src = model.cameras[im.camera_id]
        seen = im.point3d_ids >= 0
        uv = im.xys[seen] * np.array([cam.width / src.width, cam.height / src.height])
        if cam.undistortion is not None:
            uv = cam.undistortion.points(uv)
        X = model.points_xyz[[index[p] for p in im.point3d_ids[seen]]]
        errors.append(np.linalg.norm(project(cam, X) - uv, axis=1))
    return ds, float(np.concatenate(errors).mean())


@pytest.mark.shared_data
@pytest.mark.parametrize("name,kw", [("cup", {"images": "images_4"}), ("beer", {"downscale": 8}), ("beer", {})])
def test_shared_colmap_points_reproject(name, kw):
    ds, err = _colmap_reprojection(shared(name), **kw)
    assert err < 1.5, f"{name} {kw}: mean reprojection error {err:.3f} px"
    im = ds.train[0].image
    assert im.shape == (ds.train[0].height, ds.train[0].width, 3)


@pytest.mark.shared_data
def test_shared_chair_loads():
    ds = load_dataset(shared("chair_400"), downscale=2)
    assert len(ds.train) == 100 and len(ds.test) == 200
    assert ds.train[0].image.shape == (200, 200, 3)


# ---- photos: kept as uint8, decoded per use; the 3DGS width cap ----------------------------------------

def _float_reference(path, background):
    """The float path photos took before they were kept as uint8: decode to float, composite in float."""
    arr = np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255.0
    return torch.from_numpy(arr[..., :3] * arr[..., 3:] + np.asarray(background, np.float32) * (1 - arr[..., 3:]))


@pytest.mark.parametrize("background", [(1.0, 1.0, 1.0), (0.2, 0.5, 0.9)])
def test_uint8_photos_give_the_float_path_loss(tmp_path, example_dir, background):
    from gstrim.render import rasterize
    from gstrim.train.loss import photometric_loss

    ds = load_dataset(example_dir, background=background)
    cam = ds.train[0]
    assert cam.pixels.dtype == torch.uint8 and cam.pixels.shape[2] == 4  # RGBA kept as read
    reference = _float_reference(cam.image_path, background)
    torch.testing.assert_close(cam.image, reference, atol=1e-7, rtol=0)
    scene = random_scene(np.random.default_rng(0), 400, sh_degree=0)
    render = rasterize(scene, cam, background=ds.background).image
    assert abs(float(photometric_loss(render, cam.image)) - float(photometric_loss(render, reference))) < 1e-6
    # kept: a quarter of float32's bytes, decoded afresh (not cached as float) on each use
    assert cam.pixels.element_size() == 1 and cam._image is None


def test_photos_wider_than_1600_are_capped_as_3dgs_does(tmp_path):
    write_colmap(tmp_path, params=(2000.0, 2000.0, 1000.0, 600.0), n_images=2, size=(2000, 1200))
    ds = load_dataset(tmp_path, test_every=0)
    cam = ds.train[0]
    assert (cam.width, cam.height) == (1600, 960) and cam.image.shape == (960, 1600, 3)
    assert cam.K[0, 0].item() == pytest.approx(1600.0) and cam.K[0, 2].item() == pytest.approx(800.0)
    full = load_dataset(tmp_path, test_every=0, downscale=1).train[0]  # explicit: the full size
    assert (full.width, full.height) == (2000, 1200)
    assert (load_dataset(tmp_path, test_every=0, downscale=2).train[0].width) == 1000

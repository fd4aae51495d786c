from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_scenes_equal, random_scene, shared

import gstrim.scene as scene_module
from gstrim import GstrimError
from gstrim.io import load_scene, read_ply_scene, save_scene
from gstrim.io.ply import ply_bytes
from gstrim.io.splat import SPLAT_DTYPE
from gstrim.scene import SH_C0, GaussianScene


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_every_sh_degree(tmp_path, rng, degree):
    scene = random_scene(rng, 40, degree)
    save_scene(tmp_path / "s.ply", scene)
    back = load_scene(tmp_path / "s.ply")
    assert back.sh_degree == degree
    assert_scenes_equal(scene, back)
    assert (tmp_path / "s.ply").read_bytes() == ply_bytes(back)


def test_ply_channel_major_f_rest(tmp_path):
    # f_rest_0..K-1 hold red for every coefficient, then green, then blue (INRIA layout).
    shN = np.arange(15 * 3, dtype=np.float32).reshape(1, 15, 3)
    z = np.zeros
    scene = GaussianScene.from_numpy(means=z((1, 3)), scales=z((1, 3)), quats=z((1, 4)), opacities=z(1),
                                     sh0=z((1, 1, 3)), shN=shN)
    save_scene(tmp_path / "a.ply", scene)
    raw = tmp_path.joinpath("a.ply").read_bytes()
    body = np.frombuffer(raw[raw.index(b"end_header\n") + 11 :], dtype="<f4")
    f_rest = body[9 : 9 + 45]
    assert f_rest[:15].tolist() == shN[0, :, 0].tolist()
    assert f_rest[15:30].tolist() == shN[0, :, 1].tolist()


@pytest.mark.shared_data
def test_inria_ply_round_trips_byte_identically(tmp_path):
    src = shared("splats", "indoor_sh3_9k.ply")
    scene = load_scene(src)
    assert len(scene) == 9080 and scene.sh_degree == 3
    save_scene(tmp_path / "out.ply", scene)
    assert (tmp_path / "out.ply").read_bytes() == src.read_bytes()


@pytest.mark.shared_data
def test_ply_without_normals_or_f_rest_loads():
    info = read_ply_scene(shared("splats", "donut_sh0_45k.ply"))
    assert len(info.scene) == 45624 and info.scene.sh_degree == 0
    assert not info.has_normals and info.extra_properties == []


def test_splat_round_trip_within_quantization(tmp_path, rng):
    scene = random_scene(rng, 300, 0)
    scene.sh0.clamp_(-1.7, 1.7)  # keep colours inside [0, 1] where uint8 can hold them
    save_scene(tmp_path / "s.splat", scene)
    assert (tmp_path / "s.splat").stat().st_size == 300 * 32
    back = load_scene(tmp_path / "s.splat")
    # .splat is sorted by size x opacity: match Gaussians by position (stored exactly as float32).
    order = np.lexsort(back.means.numpy().T)
    ref = np.lexsort(scene.means.numpy().T)
    torch.testing.assert_close(back.means[order], scene.means[ref], rtol=0, atol=0)
    torch.testing.assert_close(back.scales[order], scene.scales[ref], rtol=1e-6, atol=1e-6)
    color_step = 1 / 255 / SH_C0
    assert (back.sh0[order] - scene.sh0[ref]).abs().max() <= 0.5 * color_step + 1e-5
    alpha_err = (back.activated_opacities()[order] - scene.activated_opacities()[ref]).abs().max()
    assert alpha_err <= 0.5 / 255 + 1e-6
    # quaternions: normalised, w x y z kept, stored as round(q * 128 + 128) clipped to a byte (a component
    # above 127.5 / 128 saturates at 255)
    stored = (torch.clamp(torch.round(scene.normalized_quats().double()[ref] * 128 + 128), 0, 255) - 128) / 128
    torch.testing.assert_close(back.quats[order].double(), stored, rtol=0, atol=1e-6)
    assert (back.quats[order] - scene.normalized_quats()[ref]).abs().max() <= 1 / 128 + 1e-6


@pytest.mark.shared_data
def test_real_splat_file_rewrites_to_the_same_records(tmp_path):
    src = shared("splats", "plant_114k.splat")
    scene = load_scene(src)
    assert len(scene) == src.stat().st_size // 32
    save_scene(tmp_path / "again.splat", scene)
    a = np.frombuffer(src.read_bytes(), SPLAT_DTYPE)
    b = np.frombuffer((tmp_path / "again.splat").read_bytes(), SPLAT_DTYPE)
    a, b = a[np.lexsort(a["position"].T)], b[np.lexsort(b["position"].T)]
    assert np.array_equal(a["position"], b["position"])
    assert np.array_equal(a["rgba"], b["rgba"])
    np.testing.assert_allclose(a["scale"], b["scale"], rtol=1e-6)
    # rotations: equal after the writer's renormalisation, to one uint8 step
    assert np.abs(a["rot"].astype(int) - b["rot"].astype(int)).max() <= 1


def test_subset_and_sh_degree(rng):
    scene = random_scene(rng, 20, 3)
    mask = torch.arange(20) % 3 == 0
    sub = scene.subset(mask)
    assert len(sub) == 7
    torch.testing.assert_close(sub.means, scene.means[mask])
    assert scene.with_sh_degree(1).shN.shape == (20, 3, 3)
    assert scene.with_sh_degree(0).with_sh_degree(2).shN.abs().sum() == 0


def test_scene_shape_validation():
    z = torch.zeros
    with pytest.raises(ValueError, match="quats"):
        GaussianScene(z(2, 3), z(2, 3), z(2, 3), z(2), z(2, 1, 3), z(2, 0, 3))
    with pytest.raises(ValueError, match="SH degree"):
        GaussianScene(z(2, 3), z(2, 3), z(2, 4), z(2), z(2, 1, 3), z(2, 5, 3))


# ---- bad input ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(GstrimError, match="no such file") as exc:
        load_scene(tmp_path / "nope.ply")
    assert "nope.ply" in str(exc.value)


def test_truncated_ply(tmp_path, rng):
    data = ply_bytes(random_scene(rng, 10, 1))
    (tmp_path / "t.ply").write_bytes(data[:-7])
    with pytest.raises(GstrimError, match="truncated PLY"):
        load_scene(tmp_path / "t.ply")


def test_truncated_header(tmp_path):
    (tmp_path / "h.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    with pytest.raises(GstrimError, match="end_header"):
        load_scene(tmp_path / "h.ply")


def test_ascii_ply_reads(tmp_path, rng):
    scene = random_scene(rng, 5, 0)
    p = scene.numpy()
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    rows = np.concatenate([p["means"], p["sh0"][:, 0], p["opacities"][:, None], p["scales"], p["quats"]], 1)
    text = "ply\nformat ascii 1.0\ncomment written by hand\nelement vertex 5\n"
    text += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    text += "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows)
    (tmp_path / "a.ply").write_text(text)
    back = load_scene(tmp_path / "a.ply")
    torch.testing.assert_close(back.means, scene.means)
    torch.testing.assert_close(back.quats, scene.quats)


def test_unknown_property_set(tmp_path):
    text = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
    text += "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n0 0 0 255 0 0\n"
    (tmp_path / "mesh.ply").write_text(text)
    with pytest.raises(GstrimError, match="not a 3D Gaussian Splatting PLY: missing properties f_dc_0"):
        load_scene(tmp_path / "mesh.ply")


def test_not_a_ply(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(GstrimError, match="not a PLY file"):
        load_scene(tmp_path / "x.ply")


def test_unknown_extension(tmp_path):
    with pytest.raises(GstrimError, match="unknown scene format"):
        load_scene(tmp_path / "scene.obj")


def test_truncated_splat(tmp_path):
    (tmp_path / "t.splat").write_bytes(b"\0" * 70)
    with pytest.raises(GstrimError, match="not a multiple of 32"):
        load_scene(tmp_path / "t.splat")


def test_nonfinite_parameters(tmp_path, rng):
    scene = random_scene(rng, 10, 0)
    scene.scales[3, 1] = float("nan")
    scene.means[7, 0] = float("inf")
    save_scene(tmp_path / "bad.ply", scene)
    with pytest.raises(GstrimError, match="2 Gaussian.*NaN or infinite.*index 3"):
        load_scene(tmp_path / "bad.ply")
    assert len(load_scene(tmp_path / "bad.ply", nonfinite="drop")) == 8
    assert len(load_scene(tmp_path / "bad.ply", nonfinite="keep")) == 10


def test_failed_write_leaves_nothing(tmp_path, rng, monkeypatch):
    import gstrim.io.ply as ply

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ply, "_rows", boom)
    with pytest.raises(RuntimeError):
        save_scene(tmp_path / "out.ply", random_scene(rng))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("degree", [0, 3])
def test_registered_sizes_are_the_written_sizes(tmp_path, rng, degree):
    from gstrim.io.formats import FORMATS

    for n in (0, 1, 9, 10, 123):
        scene = random_scene(rng, n, degree)
        for fmt in FORMATS.values():
            if fmt.size is None:  # an entropy-coded or folder format has no size for a count
                continue
            path = tmp_path / fmt.file_name("s")
            fmt.save(path, scene)
            assert path.stat().st_size == fmt.size(n, degree), (fmt.name, n)


def test_target_mb_meets_the_size_exactly():
    from gstrim.io.formats import FORMATS
    from gstrim.prune.strategy import count_for_size

    size = FORMATS["ply"].size
    for mb in (0.01, 0.5, 1.0, 7.3):
        count = count_for_size(mb, 3)
        assert size(count, 3) <= mb * 1e6 < size(count + 1, 3)


def test_a_new_format_is_one_registration(tmp_path, rng, capsys):
    """A toy format (numpy .npz) registered once is read and written by every verb."""
    from test_cli import run

    from gstrim.io.formats import FORMATS, SceneFormat, register
    from gstrim.io.model import load_model

    def load(path, nonfinite):
        with np.load(path) as z:
            return GaussianScene.from_numpy(**z).check_finite(str(path), nonfinite)

    def save(path, scene):
        with open(path, "wb") as f:
            np.savez(f, **scene.numpy())

    register(SceneFormat("toy", (".toy.npz",), load, save, size=lambda n, degree: -1))
    try:
        scene = random_scene(rng, 12, 2)
        save_scene(tmp_path / "s.ply", scene)
        code, out, _ = run(capsys, "convert", tmp_path / "s.ply", tmp_path / "s.toy.npz")
        assert code == 0 and "12 Gaussians" in out
        assert_scenes_equal(load_model(tmp_path / "s.toy.npz").scene, scene)
        code, out, _ = run(capsys, "info", tmp_path / "s.toy.npz", "--json")
        assert code == 0 and '"format": "toy"' in out and '"count": 12' in out
        code, _, _ = run(capsys, "convert", tmp_path / "s.toy.npz", tmp_path / "back.ply")
        assert_scenes_equal(load_scene(tmp_path / "back.ply"), scene)
    finally:
        FORMATS.pop("toy")


@pytest.mark.parametrize("chunk_rows", [1, 7, 1 << 18])
def test_streamed_ply_round_trip(tmp_path, rng, monkeypatch, chunk_rows):
    """Reading and writing in chunks of rows gives the bytes and the scene of the one-piece layout."""
    scene = random_scene(rng, 50, sh_degree=3)
    monkeypatch.setattr(scene_module, "CHUNK_ROWS", chunk_rows)
    save_scene(tmp_path / "s.ply", scene)
    assert (tmp_path / "s.ply").read_bytes() == ply_bytes(scene)
    assert_scenes_equal(load_scene(tmp_path / "s.ply"), scene)
    (tmp_path / "cut.ply").write_bytes(ply_bytes(scene)[:-5])  # the last chunk is short
    with pytest.raises(GstrimError, match="truncated PLY"):
        load_scene(tmp_path / "cut.ply")


def _fill_disk(monkeypatch, free_after: int):
    """Writes fail as a full disk makes them fail, with `free_after` bytes left."""
    import gstrim.resources as resources

    monkeypatch.setattr(resources, "free_bytes", lambda path: free_after)


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, rng, monkeypatch):
    import errno

    import gstrim.io.ply as ply

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ply, "_rows", enospc)
    with pytest.raises(GstrimError, match=r"out\.ply: no space left on the device: it needs about 0\.0\d\d MB"):
        save_scene(tmp_path / "out.ply", random_scene(rng, 100))
    assert list(tmp_path.iterdir()) == []


def test_library_write_errors_on_a_nearly_full_disk_are_a_full_disk(tmp_path, monkeypatch):
    """torch reports a full disk as its own RuntimeError, without errno: taken as one when no space is left."""
    from gstrim.io.atomic import atomic_path

    def torch_like_failure():
        with atomic_path(tmp_path / "chkpnt.pt") as tmp:
            tmp.write_bytes(b"x" * 1000)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    _fill_disk(monkeypatch, 0)
    with pytest.raises(GstrimError, match=r"chkpnt\.pt: no space left on the device: the disk filled after"):
        torch_like_failure()
    _fill_disk(monkeypatch, 10 << 30)  # the same failure with space left is not a full disk
    with pytest.raises(RuntimeError, match="unexpected pos"):
        torch_like_failure()
    assert list(tmp_path.iterdir()) == []


def test_not_enough_space_is_refused_before_writing(tmp_path, rng, monkeypatch):
    from gstrim.resources import check_free_space

    _fill_disk(monkeypatch, 1_000_000)
    with pytest.raises(GstrimError, match=r"not enough disk space for the run: needs about 5\.0 MB, 1\.0 MB free"):
        check_free_space(tmp_path, 5_000_000, "the run")


def test_nonfinite_rows_found_in_chunks(rng, monkeypatch):
    scene = random_scene(rng, 60, sh_degree=2)
    scene.shN[50, 4, 1] = float("nan")
    scene.scales[3, 0] = float("inf")
    monkeypatch.setattr(scene_module, "CHUNK_ROWS", 7)
    assert torch.nonzero(scene.nonfinite_mask()).flatten().tolist() == [3, 50]

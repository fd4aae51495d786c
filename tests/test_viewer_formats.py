"""Viewer formats (.spz, PlayCanvas compressed .ply, SOG): bit-exact code round trips, decoded values
within each format's quantisation step, known encodings, and malformed files."""

from __future__ import annotations

import gzip
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_scene

import gstrim.scene as scene_module
from gstrim.errors import GstrimError
from gstrim.io import compressed_ply, sog, sog_codec, spz
from gstrim.io.formats import format_of, load_scene, save_scene
from gstrim.io.packing import morton_order
from gstrim.scene import SH_C0, GaussianScene


def _rot_error(a: GaussianScene, b: GaussianScene) -> float:
    return float((1 - (a.normalized_quats() * b.normalized_quats()).sum(1).abs()).max())


def _one(**overrides) -> GaussianScene:
    base = dict(means=[[1.0, -2.0, 0.5]], scales=[[-3.0, -2.0, -1.0]], quats=[[1.0, 0, 0, 0]], opacities=[0.0],
                sh0=[[[0.0, 0.5, -0.5]]], shN=np.zeros((1, 3, 3)))
    base.update(overrides)
    return GaussianScene.from_numpy(**{k: np.asarray(v, dtype=np.float64) for k, v in base.items()})


# ---- .spz ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [3, 4])
def test_spz_codes_round_trip_bit_exact(version):
    scene = random_scene(np.random.default_rng(version), n=300)
    codes = spz.encode(scene)
    back, read_version = spz.codes_from_bytes(spz.spz_bytes(codes, version), Path("x.spz"))
    assert read_version == version and back.fractional_bits == 12
    for name in ("positions", "alphas", "colors", "scales", "rotations", "sh"):
        assert torch.equal(getattr(codes, name), getattr(back, name)), name


def test_spz_decodes_within_quantisation_steps(tmp_path):
    rng = np.random.default_rng(0)
    scene = random_scene(rng, n=400)
    save_scene(tmp_path / "s.spz", scene)
    got = load_scene(tmp_path / "s.spz")
    assert float((got.means - scene.means).abs().max()) <= 0.5 / 4096 + 1e-7
    assert float((got.scales - scene.scales).abs().max()) <= 0.5 / 16 + 1e-6
    alpha_err = (torch.sigmoid(got.opacities) - torch.sigmoid(scene.opacities)).abs().max()
    assert float(alpha_err) <= 0.5 / 255 + 1e-6
    assert float((got.sh0 - scene.sh0).abs().max()) <= 0.5 / (0.15 * 255) + 1e-5
    # rounded to 1/128, then degree 1 to 5 bits of 8 (steps of 8/128) and degrees 2-3 to 4 (16/128)
    assert float((got.shN[:, :3] - scene.shN[:, :3]).abs().max()) <= 4.5 / 128 + 1e-6
    assert float((got.shN[:, 3:] - scene.shN[:, 3:]).abs().max()) <= 8.5 / 128 + 1e-6
    assert _rot_error(got, scene) < 1e-4


def test_spz_sh_bits_are_the_writers_choice():
    scene = random_scene(np.random.default_rng(9), n=200)
    fine = spz.roundtrip(scene, sh1_bits=8, sh_rest_bits=8)
    assert float((fine.shN - scene.shN).abs().max()) <= 0.5 / 128 + 1e-6
    coarse = spz.encode(scene, sh1_bits=2, sh_rest_bits=1).sh
    assert set(coarse[:, 3:].unique().tolist()) <= {0, 128, 256 - 1}  # one bit: buckets of 128, clamped to 255
    with pytest.raises(GstrimError, match="1-8"):
        spz.encode(scene, sh_rest_bits=0)


def test_spz_known_encoding():
    codes = spz.encode(_one(quats=[[0.0, 1.0, 0.0, 0.0]]))  # 180 degrees about x: x is the largest, index 0
    assert codes.positions.tolist() == [[4096, -8192, 2048]]
    assert codes.scales.tolist() == [[112, 128, 144]]  # (log s + 10) x 16
    assert codes.alphas.tolist() == [128]  # round(0.5 x 255) = 127.5 -> 128
    assert codes.colors.tolist() == [[128, 147, 108]]  # f x 38.25 + 127.5
    assert codes.rotations.tolist() == [0]  # index 0, the others all zero
    assert codes.sh.unique().tolist() == [128]
    raw = gzip.decompress(spz.spz_bytes(codes, 3))
    assert raw[:16] == struct.pack("<IIIBBBB", 0x5053474E, 3, 1, 1, 12, 0, 0)
    assert raw[16:19] == bytes([0x00, 0x10, 0x00])  # 4096, little-endian 24 bits
    identity = spz.encode(_one()).rotations.tolist()
    assert identity == [3 << 30]  # w is index 3 in the file's x y z w order


def test_spz_large_scene_uses_fewer_fractional_bits(tmp_path):
    scene = random_scene(np.random.default_rng(1), n=20)
    scene.means[0, 0] = 5000.0  # beyond 2^23 / 4096 = 2048
    save_scene(tmp_path / "big.spz", scene)
    codes, _ = spz.codes_from_bytes((tmp_path / "big.spz").read_bytes(), tmp_path / "big.spz")
    assert codes.fractional_bits == 10
    assert abs(float(load_scene(tmp_path / "big.spz").means[0, 0]) - 5000.0) <= 0.5 / 1024


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[: len(b) // 2], "corrupt .spz gzip"),
    (lambda b: b"NOPE" + b[4:], "not a .spz"),
    (lambda b: gzip.compress(gzip.decompress(b)[:4] + struct.pack("<I", 9) + gzip.decompress(b)[8:]), "version 9"),
    (lambda b: gzip.compress(gzip.decompress(b)[:-10]), "truncated .spz"),
])
def test_spz_malformed_files(tmp_path, damage, message):
    good = spz.spz_bytes(spz.encode(random_scene(np.random.default_rng(2), n=30)), 3)
    bad = tmp_path / "bad.spz"
    bad.write_bytes(damage(good))
    with pytest.raises(GstrimError, match=message) as err:
        load_scene(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_spz_v4_stream_damage_is_an_error(tmp_path):
    good = spz.spz_bytes(spz.encode(random_scene(np.random.default_rng(3), n=30)), 4)
    bad = tmp_path / "bad.spz"
    bad.write_bytes(good[:-5])
    with pytest.raises(GstrimError, match="stream"):
        load_scene(bad)


# ---- PlayCanvas compressed .ply ---------------------------------------------------------------------
def test_compressed_ply_codes_round_trip_bit_exact(tmp_path):
    scene = random_scene(np.random.default_rng(4), n=600)  # 3 chunks, the last one partial
    codes = compressed_ply.encode(scene)
    path = tmp_path / "s.compressed.ply"
    path.write_bytes(compressed_ply.compressed_ply_bytes(codes))
    back = compressed_ply.read_codes(path)
    assert path.stat().st_size == compressed_ply.compressed_ply_size(600, 3)
    assert back.chunks.shape == (3, 18)
    for name in ("chunks", "packed", "sh"):
        assert torch.equal(getattr(codes, name), getattr(back, name)), name


def test_compressed_ply_decodes_within_quantisation_steps(tmp_path):
    scene = random_scene(np.random.default_rng(5), n=700)
    save_scene(tmp_path / "s.compressed.ply", scene)
    got = compressed_ply.roundtrip(scene)  # the scene's own order
    codes = compressed_ply.encode(scene)
    span = (codes.chunks[:, 3:6] - codes.chunks[:, 0:3]).max(0).values.double()
    steps = span / torch.tensor([2047.0, 1023.0, 2047.0], dtype=torch.float64)
    assert ((got.means - scene.means).abs().double().max(0).values <= steps / 2 + 1e-5).all()
    assert float((got.shN - scene.shN).abs().max()) <= 8 / 256 + 1e-6
    assert _rot_error(got, scene) < 1e-5
    # the file read back equals the in-memory decode, in file order
    from_file = load_scene(tmp_path / "s.compressed.ply")
    torch.testing.assert_close(from_file.means, got.means[codes.order])
    torch.testing.assert_close(from_file.sh0 * SH_C0, got.sh0[codes.order] * SH_C0)


def test_compressed_ply_read_under_a_plain_ply_name(tmp_path):
    scene = random_scene(np.random.default_rng(6), n=50)
    compressed_ply.write_compressed_ply(tmp_path / "plain.ply", scene)
    assert format_of(tmp_path / "plain.ply").name == "ply"
    assert len(load_scene(tmp_path / "plain.ply")) == 50
    assert format_of(tmp_path / "x.compressed.ply").name == "compressed-ply"


def test_compressed_ply_malformed(tmp_path):
    scene = random_scene(np.random.default_rng(7), n=300)
    data = compressed_ply.compressed_ply_bytes(compressed_ply.encode(scene))
    wrong_count = tmp_path / "count.compressed.ply"
    wrong_count.write_bytes(data.replace(b"element chunk 2", b"element chunk 1"))
    with pytest.raises(GstrimError, match="chunks for 300|bytes after the PLY"):
        load_scene(wrong_count)
    truncated = tmp_path / "short.compressed.ply"
    truncated.write_bytes(data[:-400])
    with pytest.raises(GstrimError, match="truncated PLY"):
        load_scene(truncated)


# ---- SOG -------------------------------------------------------------------------------------------------
def _sog_scene(n: int = 700) -> GaussianScene:
    return random_scene(np.random.default_rng(8), n=n)


def test_sog_file_equals_the_quantiser_and_steps_hold(tmp_path):
    scene = _sog_scene()
    books = sog_codec.fit_codebooks(scene, palette_size=128)
    sog.write_sog(tmp_path / "s.sog", scene, books)
    got = load_scene(tmp_path / "s.sog")
    expected = sog_codec.quantize(scene, books).subset(torch.from_numpy(morton_order(scene.means.numpy())))
    for name in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=0, msg=name)
    assert _rot_error(got, expected) < 1e-6
    assert _rot_error(got, scene.subset(torch.from_numpy(morton_order(scene.means.numpy())))) < 1e-3
    # 16-bit log-transformed positions: relative error well under 1e-3 here
    order = torch.from_numpy(morton_order(scene.means.numpy()))
    assert float((got.means - scene.means[order]).abs().max()) < 2e-3
    meta = json.loads(zipfile.ZipFile(tmp_path / "s.sog").read("meta.json"))
    assert meta["version"] == 2 and meta["count"] == 700 and meta["shN"]["count"] == 128
    assert len(meta["scales"]["codebook"]) == 256


def test_sog_folder_output_equals_the_bundle(tmp_path):
    scene = _sog_scene(200)
    books = sog_codec.fit_codebooks(scene, palette_size=64)
    sog.write_sog(tmp_path / "b.sog", scene, books)
    (tmp_path / "dir").mkdir()
    sog.write_sog(tmp_path / "dir/meta.json", scene, books)
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == sorted(
        ["meta.json", "means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp",
         "shN_centroids.webp", "shN_labels.webp"])
    a, b = load_scene(tmp_path / "b.sog"), load_scene(tmp_path / "dir/meta.json")
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)


def test_sog_known_quaternion_and_position_codes():
    scene = _one(means=[[0.0, 0.0, 0.0]], quats=[[0.0, 0.0, 1.0, 0.0]])
    assert sog_codec.quat_codes(scene.quats).tolist() == [[128, 128, 128, 254]]  # y (index 2) is the largest
    lo, hi = sog_codec.means_range(torch.tensor([[-1.0, 0.0, 0.0], [1.0, 2.0, 0.0]]))
    codes = sog_codec.means_codes(torch.tensor([[0.0, 2.0, 0.0]]), lo, hi)
    assert codes.tolist() == [[32768, 65535, 0]]  # ln 2 is halfway between -ln 2 and ln 2 (rounded up)


def _sog_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _small_webp(members: dict[str, bytes]) -> dict[str, bytes]:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4)).save(buf, format="WEBP", lossless=True)
    return {**members, "quats.webp": buf.getvalue()}


@pytest.mark.parametrize("damage, message", [
    (lambda m: {**m, "meta.json": b"{not json"}, "bad meta.json"),
    (lambda m: {**m, "meta.json": json.dumps({**json.loads(m["meta.json"]), "version": 1}).encode()}, "version 1"),
    (lambda m: {k: v for k, v in m.items() if k != "sh0.webp"}, "sh0.webp .*missing"),
    (lambda m: {**m, "scales.webp": b"RIFF0000WEBPjunk"}, "not a readable WebP"),
    (_small_webp, "too small for 700"),
    (lambda m: {k: v for k, v in m.items() if k != "meta.json"}, "no meta.json"),
])
def test_sog_malformed_bundles(tmp_path, damage, message):
    good = tmp_path / "good.sog"
    sog.write_sog(good, _sog_scene(), sog_codec.fit_codebooks(_sog_scene(), palette_size=64))
    bad = tmp_path / "bad.sog"
    _rezip(bad, damage(_sog_members(good)))
    with pytest.raises(GstrimError, match=message) as err:
        load_scene(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_sog_not_a_zip(tmp_path):
    bad = tmp_path / "bad.sog"
    bad.write_bytes(b"hello")
    with pytest.raises(GstrimError, match="not a ZIP"):
        load_scene(bad)


def test_spz_encoded_in_chunks_is_the_same_file(rng, monkeypatch):
    scene = random_scene(rng, 300, sh_degree=3)
    whole = spz.spz_bytes(spz.encode(scene))
    monkeypatch.setattr(scene_module, "CHUNK_ROWS", 7)
    assert spz.spz_bytes(spz.encode(scene)) == whole


def test_compressed_ply_encoded_in_chunks_is_the_same_file(rng, monkeypatch):
    scene = random_scene(rng, 700, sh_degree=3)
    whole = compressed_ply.compressed_ply_bytes(compressed_ply.encode(scene))
    monkeypatch.setattr(scene_module, "CHUNK_ROWS", 37)
    assert compressed_ply.compressed_ply_bytes(compressed_ply.encode(scene)) == whole

"""The .gsz container, 8-bit quantisation and the codebook scene: round trips and corrupted files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_scene

from gstrim.compress.quantize import FakeQuant8, QuantParams, fake_half
from gstrim.errors import GstrimError
from gstrim.info import gsz_bits
from gstrim.io.container import CODECS, Entry, read_container, write_container
from gstrim.io.formats import load_scene, save_scene
from gstrim.io.gsz import CodebookScene, read_gsz, stored_order, write_gsz
from gstrim.io.packing import morton_order
from gstrim.io.positions import PositionGrid, decode_cells, encode_cells


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_container_round_trip_is_bit_exact(tmp_path, rng, codec):
    entries = {
        "a": Entry(rng.normal(size=(7, 3)).astype(np.float16), {"note": "x"}),
        "b": Entry(rng.integers(-128, 128, size=(5, 16, 3)).astype(np.int8)),
        "c": Entry(rng.integers(0, 2**32, size=11, dtype=np.uint64).astype(np.uint32)),
        "empty": Entry(np.zeros((0, 4), np.float32)),
    }
    write_container(tmp_path / "x.gsz", entries, {"hello": 1}, codec)
    back, meta = read_container(tmp_path / "x.gsz")
    assert meta == {"hello": 1}
    for name, entry in entries.items():
        assert back[name].data.dtype == entry.data.dtype and back[name].data.shape == entry.data.shape
        assert back[name].data.tobytes() == entry.data.tobytes()
        assert back[name].attrs == entry.attrs


def test_auto_codec_picks_the_smaller_coding_of_each_array(tmp_path, rng):
    """`auto` stores each array in the smallest of its usable codecs: a skewed index codes smaller as rANS, a
    smooth float16 ramp as lzma (floats are not entropy-coded); choosing the larger would still read back."""
    entries = {
        "skewed": Entry(rng.choice(4096, size=5000, p=np.r_[0.9, np.full(4095, 0.1 / 4095)]).astype(np.uint16)),
        "ramp": Entry(np.linspace(0, 1, 5000).astype(np.float16)),
        "noise": Entry(rng.integers(0, 256, size=5000).astype(np.uint8)),
    }
    write_container(tmp_path / "x.gsz", entries, {}, "auto")
    back, _ = read_container(tmp_path / "x.gsz")
    for name, entry in entries.items():
        usable = ["lzma"] + (["ans"] if entry.data.dtype.kind in "iu" else [])
        sizes = {codec: len(CODECS[codec].encode(entry.data)) for codec in usable}
        assert back[name].coded_bytes == min(sizes.values()), (name, back[name].codec, sizes)
    assert back["skewed"].codec == "ans"


def test_corrupted_truncated_and_foreign_files_are_one_line_errors(tmp_path, rng):
    path = tmp_path / "x.gsz"
    write_container(path, {"a": Entry(rng.normal(size=100).astype(np.float32))}, {})
    data = path.read_bytes()
    cases = {
        "flip": data[:60] + bytes([data[60] ^ 1]) + data[61:],
        "truncated": data[:-10],
        "foreign": b"ply\nformat ascii 1.0\n" + data[20:],
        "version": data[:8] + (99).to_bytes(4, "little") + data[12:],
    }
    expected = {"flip": "checksum", "truncated": "checksum", "foreign": "bad magic", "version": "version 99"}
    for name, content in cases.items():
        bad = tmp_path / f"{name}.gsz"
        bad.write_bytes(content)
        with pytest.raises(GstrimError, match=expected[name]) as info:
            read_container(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("bits", [8, 6, 3])
def test_fake_quantisation_equals_the_stored_values(rng, bits):
    x = torch.from_numpy(rng.normal(0.3, 2.0, size=1000).astype(np.float32))
    fq = FakeQuant8(bits)
    with torch.enable_grad():
        y = fq(x.requires_grad_(True))
        y.sum().backward()
    q = fq.params()
    assert q.bits == bits and QuantParams.from_json(q.to_json()) == q
    codes = q.quantize(x.detach().numpy())
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1
    stored = q.dequantize(codes)
    np.testing.assert_array_equal(y.detach().numpy(), stored)
    assert len(np.unique(stored)) <= 2**bits
    assert np.abs(stored - x.detach().numpy()).max() <= q.scale / 2 + 1e-6  # the range holds all of x
    assert torch.all(x.grad == 1)  # straight through inside the range
    h = fake_half(x)
    np.testing.assert_array_equal(h.detach().numpy(), x.detach().numpy().astype(np.float16).astype(np.float32))


def test_quant_params_include_zero_and_span_the_range():
    q = QuantParams.of_range(0.5, 2.0)
    assert q.dequantize(q.quantize(np.array([0.0], np.float32)))[0] == 0.0
    assert abs(q.dequantize(q.quantize(np.array([2.0], np.float32)))[0] - 2.0) <= q.scale


def test_codebook_scene_of_a_scene_decodes_to_it(rng):
    scene = random_scene(rng, 40)
    back = CodebookScene.from_scene(scene).decode()
    for name in ("means", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(back, name), getattr(scene, name))
    torch.testing.assert_close(back.scales, scene.scales, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back.normalized_quats(), scene.normalized_quats())


def test_gsz_version_1_round_trip_matches_quantisation_in_morton_order(tmp_path, rng):
    scene = random_scene(rng, 300)
    cs = CodebookScene.from_scene(scene)
    cs.sh_index = torch.from_numpy(rng.integers(0, 300, 300))  # shared entries, as after clustering
    write_gsz(tmp_path / "s.gsz", cs, codec="lzma", version=1)
    assert read_container(tmp_path / "s.gsz")[1]["kind"] == "gstrim.codebook-scene/1"
    back = read_gsz(tmp_path / "s.gsz")
    order = torch.from_numpy(morton_order(cs.means.numpy()))
    np.testing.assert_array_equal(back.means.numpy(), cs.means[order].numpy().astype(np.float16).astype(np.float32))
    assert torch.equal(back.sh_index, cs.sh_index[order])
    step = (cs.opacities.max() - torch.clamp_max(cs.opacities.min(), 0)) / 255
    assert torch.all((back.opacities - cs.opacities[order]).abs() <= step / 2 + 1e-6)
    assert len(load_scene(tmp_path / "s.gsz")) == 300  # through the registry, as every verb reads it


def test_gsz_version_2_round_trip_grid_positions_and_dc_only_gaussians(tmp_path, rng):
    scene = random_scene(rng, 500)
    cs = CodebookScene.from_scene(scene)
    index = rng.integers(0, 40, 500)
    index[rng.random(500) < 0.6] = -1  # most keep their DC only
    cs.sh_index, cs.sh_rest, cs.shared_dc = torch.from_numpy(index), cs.sh_rest[:40], False
    cs.grid = PositionGrid.fit(cs.means, 11)
    write_gsz(tmp_path / "v2.gsz", cs)
    entries, meta = read_container(tmp_path / "v2.gsz")
    assert meta["kind"] == "gstrim.codebook-scene/3" and "means" not in entries
    back = read_gsz(tmp_path / "v2.gsz")
    order = torch.from_numpy(stored_order(cs))
    assert back.grid == cs.grid and torch.equal(back.sh_index, cs.sh_index[order])
    # positions within half a grid step (and exactly the grid's values)
    assert torch.all((back.means - cs.means[order]).abs() <= cs.grid.step / 2 + 1e-6)
    np.testing.assert_array_equal(back.means.numpy(), cs.grid.values(cs.grid.cells(cs.means[order].numpy())))
    step = (cs.sh_dc.max() - torch.clamp_max(cs.sh_dc.min(), 0)) / 255
    assert torch.all((back.sh_dc - cs.sh_dc[order]).abs() <= step / 2 + 1e-6)
    decoded = back.decode()
    dc_only = back.sh_index < 0
    assert torch.all(decoded.shN[dc_only] == 0)
    torch.testing.assert_close(decoded.shN[~dc_only], back.sh_rest[back.sh_index[~dc_only]])
    assert back.sh_count == int((index >= 0).sum())
    # where the bits go (`gstrim info --bits`): every stream, adding up to the file
    bits = gsz_bits(tmp_path / "v2.gsz")
    streams = {row["stream"]: row for row in bits["streams"]}
    assert {"position_lengths", "position_bits", "sh_index", "sh_rest"} <= set(streams)
    assert streams["position_bits"]["codec"] == "raw" and streams["sh_index"]["raw_bits"] == 8  # 41 symbols: a byte
    total = sum(row["coded_bits"] for row in bits["streams"]) + bits["overhead_bits"]
    assert total == pytest.approx(bits["total_bits"]) == pytest.approx(8 * (tmp_path / "v2.gsz").stat().st_size / 500)
    # a plain conversion through the registry: 16-bit grid, much smaller than a .ply
    save_scene(tmp_path / "plain.gsz", scene)
    assert (tmp_path / "plain.gsz").stat().st_size < 0.4 * 500 * 248
    plain = load_scene(tmp_path / "plain.gsz")
    order = stored_order(CodebookScene.from_scene(scene))
    assert torch.allclose(plain.sh0, scene.sh0[order], atol=(scene.sh0.max() - scene.sh0.min()).item() / 255)


def test_position_cells_round_trip_bit_exact(rng):
    for bits, n in ((1, 5), (12, 3000), (21, 2000)):
        cells = rng.integers(0, 2**bits, size=(n, 3))
        cells[: n // 3] = cells[0]  # repeats: gaps of zero
        order, lengths, packed = encode_cells(cells)
        np.testing.assert_array_equal(decode_cells(lengths, packed, bits), cells[order])
    assert len(decode_cells(*encode_cells(np.zeros((0, 3), np.int64))[1:], 8)) == 0


def test_a_corrupted_version_2_stream_is_a_one_line_error(tmp_path, rng):
    cs = CodebookScene.from_scene(random_scene(rng, 200))
    write_gsz(tmp_path / "ok.gsz", cs)
    entries, meta = read_container(tmp_path / "ok.gsz")
    short = dict(entries)  # intact checksum, but the position bits cut short
    short["position_bits"] = Entry(entries["position_bits"].data[:10], codec="raw")
    cases = {"short": short, "no-grid": {**entries, "position_lengths": Entry(entries["position_lengths"].data)}}
    for name, content in cases.items():
        write_container(tmp_path / f"{name}.gsz", content, meta)
        with pytest.raises(GstrimError, match=f"{name}.gsz.*malformed") as info:
            read_gsz(tmp_path / f"{name}.gsz")
        assert "\n" not in str(info.value)


def test_morton_order_keeps_neighbours_together(rng):
    grid = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    order = morton_order(grid[rng.permutation(len(grid))])
    assert sorted(order.tolist()) == list(range(len(grid)))
    shuffled = grid[rng.permutation(len(grid))]
    sorted_points = shuffled[morton_order(shuffled)]
    # each aligned 2x2x2 block of a Z-order curve is 8 consecutive points
    blocks = (sorted_points // 2).reshape(-1, 8, 3)
    assert np.all(blocks == blocks[:, :1])


def test_a_scene_file_with_a_bad_index_is_an_error(tmp_path, rng):
    cs = CodebookScene.from_scene(random_scene(rng, 10))
    cs.sh_index = torch.arange(10)
    cs.sh_dc, cs.sh_rest = cs.sh_dc[:5], cs.sh_rest[:5]  # indices past the codebook
    write_gsz(tmp_path / "bad.gsz", cs)
    with pytest.raises(GstrimError, match="malformed"):
        read_gsz(tmp_path / "bad.gsz")


def test_quantized_parameters_decode_what_the_file_stores(tmp_path, rng):
    from gstrim.compress.finetune import QuantizedParameters

    for degree, shared_dc, version in ((0, True, 1), (2, True, 1), (2, False, 1), (2, False, 2)):
        cs = CodebookScene.from_scene(random_scene(rng, 30, sh_degree=degree))
        cs.sh_index, cs.shared_dc = torch.from_numpy(rng.integers(0, 30, 30)), shared_dc
        if not shared_dc:  # 30 DCs of their own, 12 higher-band entries (version 2: some Gaussians DC only)
            cs.sh_index, cs.sh_rest = cs.sh_index % (12 + int(version == 2)) - int(version == 2), cs.sh_rest[:12]
        if version == 2:
            cs.grid = PositionGrid.fit(cs.means, 9)
        qp = QuantizedParameters(cs, bits={"sh_rest": 5} if version == 2 else None)  # version 2: 5-bit SH too
        params = {k: torch.nn.Parameter(v.clone()) for k, v in qp.init_params(cs.decode()).items()}
        rendered = qp.decode(params)  # a training step's decode: the observers see the tensors
        written = qp.codebook_scene(params)
        write_gsz(tmp_path / "q.gsz", written, qp.quant_params(params), version=version)
        stored = read_gsz(tmp_path / "q.gsz").decode()
        order = torch.from_numpy(stored_order(written, version))
        for name in ("means", "opacities", "sh0", "shN", "scales", "quats"):
            torch.testing.assert_close(getattr(stored, name), getattr(rendered, name).detach()[order], rtol=0,
                                       atol=1e-6, msg=f"{name} degree {degree}")


def test_a_dc_of_its_own_round_trips_as_kind_2_and_shared_dc_stays_kind_1(tmp_path, rng):
    scene = random_scene(rng, 300)
    cs = CodebookScene.from_scene(scene)
    cs.sh_index, cs.sh_rest, cs.shared_dc = torch.from_numpy(rng.integers(0, 40, 300)), cs.sh_rest[:40], False
    write_gsz(tmp_path / "own.gsz", cs, version=1)
    assert read_container(tmp_path / "own.gsz")[1]["kind"] == "gstrim.codebook-scene/2"
    back = read_gsz(tmp_path / "own.gsz")
    order = torch.from_numpy(morton_order(cs.means.numpy()))
    assert not back.shared_dc and back.sh_entries == 40 and len(back.sh_dc) == 300
    assert torch.equal(back.sh_index, cs.sh_index[order])
    step = (cs.sh_dc.max() - cs.sh_dc.min()) / 255
    assert torch.all((back.sh_dc - cs.sh_dc[order]).abs() <= step / 2 + 1e-6)  # each Gaussian its own DC
    decoded = back.decode()
    torch.testing.assert_close(decoded.sh0, back.sh_dc)
    torch.testing.assert_close(decoded.shN, back.sh_rest[back.sh_index])
    # a shared DC is the c3dgs file of before: kind 1, which older readers read
    write_gsz(tmp_path / "shared.gsz", CodebookScene.from_scene(scene), version=1)
    assert read_container(tmp_path / "shared.gsz")[1]["kind"] == "gstrim.codebook-scene/1"
    assert read_gsz(tmp_path / "shared.gsz").shared_dc


def test_a_bad_shared_dc_header_is_an_error(tmp_path, rng):
    cs = CodebookScene.from_scene(random_scene(rng, 10))
    write_gsz(tmp_path / "bad.gsz", cs, meta={"kind": "gstrim.codebook-scene/2", "shared_dc": "yes"})
    with pytest.raises(GstrimError, match="bad.gsz.*shared_dc"):
        read_gsz(tmp_path / "bad.gsz")

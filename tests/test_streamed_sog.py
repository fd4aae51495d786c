"""Streamed SOG (`lod-meta.json`): the spatial tree and chunking, the round trip through gstrim's reader, the
bounded reading of crafted indexes, and the registry (convert, info, copy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_scene
from test_cli import assert_one_line_error, run

from gstrim.errors import GstrimError
from gstrim.io.formats import copy_scene, format_of, load_scene, written_size
from gstrim.io.streamed_sog import (
    StreamedSogOptions,
    gaussian_boxes,
    level_counts,
    level_sizes,
    read_index,
    read_streamed_sog,
    streamed_layout,
    write_streamed_sog,
)

SMALL = StreamedSogOptions(chunk_count=1, chunk_extent=4.0, chunk_min=1)  # chunks of ~1k Gaussians


def _levels(n: int = 3000, seed: int = 0):
    full = random_scene(np.random.default_rng(seed), n=n, sh_degree=1)
    full.means.mul_(10)
    full.opacities.clamp_(-5, 5)
    return [full, full.subset(torch.arange(0, n, 2)), full.subset(torch.arange(1, n, 5))]


def _matched(back, level):
    """`level` reordered to `back`'s rows: each read-back Gaussian's nearest original, which must be a
    permutation."""
    nearest = torch.cdist(back.means.double(), level.means.double()).argmin(1)
    assert len(set(nearest.tolist())) == len(level)
    return level.subset(nearest)


def _leaves(node):
    if "children" in node:
        for child in node["children"]:
            yield from _leaves(child)
    else:
        yield node


def test_every_level_reads_back_as_its_sog_quantisation(tmp_path):
    levels = _levels()
    path = tmp_path / "lod-meta.json"
    write_streamed_sog(path, levels, SMALL)
    assert level_counts(path) == [len(lv) for lv in levels]
    index = read_index(path)
    assert index["version"] == 1 and index["lodLevels"] == 3 and index["count"] == sum(map(len, levels))
    for k, level in enumerate(levels):
        back = read_streamed_sog(path, k)
        # the same Gaussians, each within SOG's quantisation of its original (positions: 16 bits over the range)
        a, b = back, _matched(back, level)
        span = (level.means.max(0).values - level.means.min(0).values).max()
        assert len(back) == len(level)
        assert float((a.means - b.means).abs().max()) < 2e-3 * float(span)
        assert float((a.activated_opacities() - b.activated_opacities()).abs().max()) <= 1 / 255 + 1e-6


def test_the_tree_splits_into_chunks_whose_bounds_hold_their_gaussians(tmp_path):
    levels = _levels()
    index, chunks = streamed_layout(levels, SMALL)
    leaves = list(_leaves(index["tree"]))
    assert len(leaves) > 1 and len(index["filenames"]) > 3
    lo, hi = zip(*(gaussian_boxes(level) for level in levels), strict=True)
    rows_seen = [set() for _ in levels]
    for leaf in leaves:
        bmin, bmax = np.array(leaf["bound"]["min"]), np.array(leaf["bound"]["max"])
        for key, ref in leaf["lods"].items():
            level = int(key)
            name = index["filenames"][ref["file"]]
            chunk_level, rows = chunks[name]
            assert chunk_level == level  # a chunk holds one level
            held = rows[ref["offset"]:ref["offset"] + ref["count"]].numpy()
            assert np.all(lo[level][held] >= bmin) and np.all(hi[level][held] <= bmax)
            rows_seen[level] |= set(held.tolist())
    assert [len(s) for s in rows_seen] == [len(level) for level in levels]  # every Gaussian exactly once
    # an inner node's bound holds its children's
    def check(node):
        for child in node.get("children", []):
            assert np.all(np.array(child["bound"]["min"]) >= np.array(node["bound"]["min"]))
            assert np.all(np.array(child["bound"]["max"]) <= np.array(node["bound"]["max"]))
            check(child)
    check(index["tree"])
    # chunks close past the chunk size
    for _, rows in chunks.values():
        assert len(rows) <= 2 * SMALL.chunk_count * 1024


def test_level_sizes_share_out_the_whole_folder(tmp_path):
    path = tmp_path / "lod-meta.json"
    write_streamed_sog(path, _levels(), SMALL)
    sizes = level_sizes(path)
    assert abs(sum(sizes) - written_size(path)) <= len(sizes) and sizes[0] > sizes[1] > sizes[2]


def test_registry_converts_copies_and_describes(tmp_path, capsys):
    scene = _levels()[0]
    src = tmp_path / "in.ply"
    from gstrim.io.formats import save_scene
    save_scene(src, scene)
    out = tmp_path / "s" / "lod-meta.json"
    code, _, err = run(capsys, "convert", src, out)
    assert code == 0, err
    assert format_of(out).name == "streamed-sog" and len(load_scene(out)) == len(scene)
    copy = tmp_path / "copy" / "lod-meta.json"
    copy.parent.mkdir()
    copy_scene(out, copy)
    assert written_size(copy) == written_size(out)
    code, printed, _ = run(capsys, "info", out)
    assert code == 0 and "streamed sog" in printed and f"{len(scene):,}" in printed


def _tamper(path, change):
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))


@pytest.mark.parametrize("change, message", [
    (lambda i: i.update(version=2), "unsupported Streamed SOG version"),
    (lambda i: i.update(lodLevels=10**9), "lodLevels"),
    (lambda i: i["filenames"].__setitem__(0, "../../etc/meta.json"), "inside the Streamed SOG's folder"),
    (lambda i: i.update(counts=[1, 2, 3]), "counts"),
    (lambda i: next(_leaves(i["tree"]))["lods"]["0"].update(count=10**9), "holds"),
    (lambda i: next(_leaves(i["tree"]))["lods"]["0"].update(file=99), "file index"),
    (lambda i: i.update(tree=[]), "tree"),
])
def test_crafted_indexes_are_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "lod-meta.json"
    write_streamed_sog(path, _levels(600), StreamedSogOptions(chunk_count=1, chunk_extent=1e9, chunk_min=1))
    _tamper(path, change)
    with pytest.raises(GstrimError, match=message):
        read_streamed_sog(path, 0)


def test_overlapping_references_cannot_multiply_a_chunk(tmp_path):
    path = tmp_path / "lod-meta.json"
    write_streamed_sog(path, _levels(600), StreamedSogOptions(chunk_count=1, chunk_extent=1e9, chunk_min=1))
    index = json.loads(path.read_text())
    leaf = next(_leaves(index["tree"]))
    index["tree"] = {"bound": leaf["bound"], "children": [leaf] * 1000}  # one chunk read a thousand times
    index.pop("counts")
    path.write_text(json.dumps(index))
    with pytest.raises(GstrimError, match="overlap"):
        read_streamed_sog(path, 0)


def test_a_missing_chunk_is_named(tmp_path, capsys):
    path = tmp_path / "lod-meta.json"
    write_streamed_sog(path, _levels(600), SMALL)
    (tmp_path / "0_0" / "meta.json").unlink()
    code, _, err = run(capsys, "info", path)
    assert_one_line_error(code, err, "0_0/meta.json", "missing")

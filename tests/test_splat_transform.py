"""splat-transform (npm @playcanvas/splat-transform 3.7.0) as an independent reader and writer of the viewer
formats: every file gstrim writes, converted back to .ply by splat-transform, equals gstrim's own decoding;
and every file splat-transform writes, read by gstrim, equals splat-transform's own decoding. Skipped when
Node or the package is absent (`bash scripts/install_splat_transform.sh`, which `.ci/run` runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_scene

from gstrim.io.formats import load_scene, save_scene
from gstrim.io.ply import read_ply
from gstrim.scene import GaussianScene

TOOL = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"
pytestmark = pytest.mark.skipif(not TOOL.exists() or shutil.which("node") is None,
                                reason="splat-transform not installed (scripts/install_splat_transform.sh)")
OUTPUTS = ["x.spz", "x.compressed.ply", "x.sog", "x/meta.json"]


def _convert(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra = ["-g", "cpu"] if dst.suffix == ".sog" or dst.name == "meta.json" else []  # no GPU: its k-means on the CPU
    subprocess.run([str(TOOL), "-q", "-w", *extra, str(src), str(dst)], check=True, timeout=300)


def _assert_same(a: GaussianScene, b: GaussianScene) -> None:
    """Equal up to float32 rounding of the two decoders' arithmetic (both read the same integer codes)."""
    for name in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-5, msg=name)
    dots = (a.normalized_quats() * b.normalized_quats()).sum(1).abs()
    assert float((1 - dots).max()) < 1e-5


def _scene(n: int = 2000, degree: int = 3) -> GaussianScene:
    scene = random_scene(np.random.default_rng(11), n=n, sh_degree=degree)
    scene.opacities.clamp_(-5, 5)  # keep alpha codes off 0 and 255, where the two decoders' clamps differ
    return scene


@pytest.mark.parametrize("name", OUTPUTS + ["x4.spz"])
def test_splat_transform_reads_gstrim_files(tmp_path, name):
    scene = _scene()
    out = tmp_path / name
    out.parent.mkdir(parents=True, exist_ok=True)
    if name == "x4.spz":
        from gstrim.io.spz import write_spz
        write_spz(out, scene, version=4)
    else:
        save_scene(out, scene)
    _convert(out, tmp_path / "back.ply")
    _assert_same(load_scene(out), read_ply(tmp_path / "back.ply"))


@pytest.mark.parametrize("name", OUTPUTS)
def test_gstrim_reads_splat_transform_files(tmp_path, name):
    source = tmp_path / "in.ply"
    save_scene(source, _scene(degree=1))
    out = tmp_path / "st" / name
    _convert(source, out)
    _convert(out, tmp_path / "back.ply")
    _assert_same(load_scene(out), read_ply(tmp_path / "back.ply"))


def _matched(a: GaussianScene, b: GaussianScene) -> GaussianScene:
    """`b` reordered to `a`'s rows by nearest position (two readers may list a level's chunks in other orders)."""
    nearest = torch.cdist(a.means.double(), b.means.double()).argmin(1)
    assert len(set(nearest.tolist())) == len(b)
    return b.subset(nearest)


def _select_lod(index: Path, level: int, dst: Path) -> GaussianScene:
    subprocess.run([str(TOOL), "-q", "-w", str(index), "--select-lod", str(level), str(dst)], check=True, timeout=300)
    return read_ply(dst)


def test_splat_transform_reads_every_level_of_gstrim_streamed_sog(tmp_path):
    from gstrim.io.streamed_sog import StreamedSogOptions, read_streamed_sog, write_streamed_sog

    full = _scene(3000, degree=1)
    full.means.mul_(10)
    levels = [full, full.subset(torch.arange(0, 3000, 2)), full.subset(torch.arange(0, 3000, 8))]
    index = tmp_path / "lod" / "lod-meta.json"
    index.parent.mkdir()
    write_streamed_sog(index, levels, StreamedSogOptions(chunk_count=1, chunk_extent=8.0, chunk_min=1))
    for k, level in enumerate(levels):
        theirs = _select_lod(index, k, tmp_path / f"back{k}.ply")
        ours = read_streamed_sog(index, k)
        assert len(theirs) == len(ours) == len(level)
        _assert_same(ours, _matched(ours, theirs))


def test_gstrim_reads_every_level_of_splat_transform_streamed_sog(tmp_path):
    from gstrim.io.streamed_sog import level_counts, read_streamed_sog

    full = _scene(3000, degree=1)
    paths = []
    for k, step in enumerate((1, 3)):
        paths.append(tmp_path / f"l{k}.ply")
        save_scene(paths[-1], full.subset(torch.arange(0, 3000, step)))
    index = tmp_path / "st" / "lod-meta.json"
    index.parent.mkdir()
    subprocess.run([str(TOOL), "-q", "-w", "-g", "cpu", str(paths[0]), "-l", "0", str(paths[1]), "-l", "1",
                    str(index)], check=True, timeout=300)
    assert level_counts(index) == [3000, 1000]
    for k in range(2):
        ours = read_streamed_sog(index, k)
        _assert_same(ours, _matched(ours, _select_lod(index, k, tmp_path / f"back{k}.ply")))

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

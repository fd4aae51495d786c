"""A quick slice of bench/fuzz.py: crafted files of every format are refused in one line, within the time and
memory limits, never with a traceback (the full run and its table: docs/reliability.md)."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_scene

from gstrim.errors import GstrimError
from gstrim.info import scene_info
from gstrim.io import save_scene
from gstrim.io.gsz import CodebookScene, write_gsz

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fuzz  # noqa: E402


def test_every_format_survives_its_mutants(tmp_path):
    fuzz.INFLATE_MB = 64  # the slice's inflated members; the bench's are 512 MB
    table = fuzz.fuzz(list(fuzz.FORMATS), cases=6, seed=1, timeout=20, limit_mb=1024, folder=tmp_path,
                      log=lambda line: None)
    for name, row in table.items():
        assert row["traceback"] == row["limit"] == row["hang"] == 0, (name, row["failures"])
        assert row["peak_mb"] < 300, (name, row)


def _spz_stream(tmp_path, rng) -> bytes:
    """The inflated stream of a valid 10-Gaussian .spz (version 3: one gzip stream)."""
    good = tmp_path / "good.spz"
    save_scene(good, random_scene(rng, 10))
    return gzip.decompress(good.read_bytes())


def _spz_of(tmp_path, stream: bytes):
    bad = tmp_path / "bad.spz"
    bad.write_bytes(gzip.compress(stream))
    return bad


def test_spz_with_trailing_gzip_data_is_refused(tmp_path, rng):
    """A 10-Gaussian header in front of a gzip stream that inflates much further was accepted."""
    bad = _spz_of(tmp_path, _spz_stream(tmp_path, rng) + bytes(1 << 20))
    with pytest.raises(GstrimError, match="bad.spz: .*data after its declared contents"):
        scene_info(bad)


def test_spz_count_beyond_its_bytes_is_refused(tmp_path, rng):
    stream = bytearray(_spz_stream(tmp_path, rng))
    struct.pack_into("<I", stream, 8, 100_000_000)
    with pytest.raises(GstrimError, match="declares 100,000,000 Gaussians but holds"):
        scene_info(_spz_of(tmp_path, bytes(stream)))


def test_gsz_symbol_count_needs_a_plausible_scene(tmp_path, rng):
    """A .gsz whose header declares billions of Gaussians (every array ans-coded as one constant symbol, a few
    bytes each) is refused before anything is decoded."""
    path = tmp_path / "s.gsz"
    write_gsz(path, CodebookScene.from_scene(random_scene(rng, 20)))
    data = path.read_bytes()[:-32]
    header_len = struct.unpack_from("<I", data, 12)[0]
    header = data[16:16 + header_len].replace(b'"gaussians":20', b'"gaussians":4000000000')
    body = data[:12] + struct.pack("<I", len(header)) + header + data[16 + header_len:]
    fuzz_path = tmp_path / "big.gsz"
    fuzz_path.write_bytes(fuzz._sign(body))
    with pytest.raises(GstrimError, match="big.gsz: declares 4,000,000,000 Gaussians"):
        scene_info(fuzz_path)


def test_inflated_zip_member_is_refused_unread(tmp_path, rng):
    good = tmp_path / "good.sog"
    save_scene(good, random_scene(rng, 30))
    members = fuzz._zip_members(good.read_bytes())
    members["means_l.webp"] += bytes(256 << 20)
    bad = tmp_path / "bad.sog"
    bad.write_bytes(fuzz._rezip(members))
    assert bad.stat().st_size < 2 << 20
    with pytest.raises(GstrimError, match="bad.sog: zip member means_l.webp declares"):
        scene_info(bad)


def test_trailing_bytes_after_a_ply_are_refused(tmp_path, rng):
    path = tmp_path / "s.ply"
    save_scene(path, random_scene(rng, 10))
    path.write_bytes(path.read_bytes() + np.zeros(7, np.uint8).tobytes())
    with pytest.raises(GstrimError, match="7 bytes after the PLY's declared elements"):
        scene_info(path)

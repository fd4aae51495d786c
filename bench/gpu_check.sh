#!/usr/bin/env bash
# The prepared GPU check (issues 24, 37): on a machine with an NVIDIA GPU and no network, in one call of at most
# BUDGET seconds (default 480: one device call of 8 minutes, start-up included),
#   1. installs what the machine's Python lacks from wheels carried beside the checkout (WHEELS, default .whl),
#   2. runs the GPU tests: gsplat's CUDA rasterization against gstrim's CPU backend (tests/test_gsplat.py) and
#      the device paths against the CPU kernels (tests/test_device_paths.py),
#   3. times, by phase, a trim (--preset paper, iterations scaled, extrapolated to the full schedule) of a 1M-Gaussian
#      scene on 200 views at 1600 px, its compression and SOG export, and a visibility scoring pass
#      (bench/gpu_check.py), and prints one table whatever fails.
# The 1M scene is grown (bench/large.py's 3DGS-style split) from a short GPU training of the built-in example, and
# its own renders are the photos (a photo-free trim), so nothing but the checkout and the wheels has to travel.
#
# Usage: bash bench/gpu_check.sh [--dry-run] [--phase all|tests|bench] [--count N] [--device cuda|cpu] [-- ARGS]
#   --dry-run   print every step and command without running any (works on any machine)
#   ARGS        more options of bench/gpu_check.py (--views, --resolution, --scale, --visibility-views)
# The CPU check of this script: bash bench/gpu_check.sh --device cpu --count 20000 -- --views 12 --resolution 64
#
# Preparing the wheels, on a machine with network (the GPU image has torch, numpy, numba, rich, jaxtyping,
# ninja, opencv, pillow, matplotlib; gsplat 1.5.3 compiles its CUDA code on first use with the image's nvcc):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl gsplat==1.5.3 zstandard==0.25.0 pytorch-msssim==1.0.0 \
#       constriction==0.4.1 --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any
# (The LPIPS VGG weights, 59 MB, do not fit a 64 MB transfer beside the wheels: the GPU runs pass --no-eval.)
# .whl/ is ignored by git: a lent device gets it only when the call carries it (the device tool's carry: [".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0 PHASE=all COUNT=1000000 DEVICE=cuda FAILED= EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --phase) PHASE=$2; shift ;;
    --count) COUNT=$2; shift ;;
    --device) DEVICE=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
BUDGET=${BUDGET:-480}
WHEELS=${WHEELS:-.whl}
WORK=${WORK:-${OUT:-/tmp}/gpu_check}
PY=${PYTHON:-python3}

step() { echo; echo "== $* ($SECONDS s in)"; }
run() {  # print a command; run it unless --dry-run
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}
left() { echo $((BUDGET - SECONDS)); }

step "the machine"
if [ "$DEVICE" = cuda ]; then
  run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi
run "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

step "install from carried wheels ($WHEELS) into /tmp/site; gstrim from src/"
if [ "$DRY" = 1 ] || ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl
else
  echo "no wheels in $WHEELS: using what the machine has"
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/bench:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}
export MAX_JOBS=${MAX_JOBS:-16}  # gsplat's first-use CUDA build
# build gsplat's kernels for the GPU at hand only (9.0 on Hopper): a fraction of the all-architectures build time
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo 9.0)}

if [ "$PHASE" = all ] || [ "$PHASE" = tests ]; then
  step "GPU tests: gsplat and the device paths on CUDA against the CPU (the first call compiles gsplat: minutes)"
  run timeout $(( $(left) * 2 / 5 )) "$PY" -m pytest -q -x tests/test_gsplat.py tests/test_device_paths.py -k "cuda or rejects_gpu" \
    -p no:cacheprovider || FAILED="GPU tests"
fi

if [ "$PHASE" = all ] || [ "$PHASE" = bench ]; then
  step "trim, compress and SOG export of $COUNT Gaussians, timed by phase (within $(left) s)"
  run "$PY" bench/gpu_check.py "$WORK" --count "$COUNT" --device "$DEVICE" --budget $(( $(left) - 15 )) \
    "${EXTRA[@]}" || FAILED="${FAILED:+$FAILED, }bench"
fi
if [ -n "$FAILED" ]; then echo "gpu_check.sh: $FAILED failed"; exit 1; fi

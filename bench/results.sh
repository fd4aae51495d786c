#!/usr/bin/env bash
# docs/results.md in one command: 7,000-iteration baselines of chair_400 (200x200) and cup (images_4), then for
# each a sweep (gradient-aware and opacity-only iterative trims and a one-shot trim at 80 % and 90 % removed,
# the no-prune reference, c3dgs compression, the vis-restart variant of the gap study), its report, and for
# chair the two ablations of Sec. 4.3 (joined to its table by sweeping again). Every step skips what is
# finished and resumes what was interrupted: rerun the same command after a stop.
# Usage: bash bench/results.sh [OUT=runs] [SHARED=../shared/data]   (about 3 hours on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs}
DATA=${2:-$(dirname "$0")/../../shared/data}
G="$(dirname "$0")/../.venv/bin/gstrim"
VARIANT=(--variant vis-restart score=gradient-visibility restart_lr=1.6e-4)
SWEEP=(--removals 0.8 0.9 --one-shot --compress --preset cpu "${VARIANT[@]}")

train() {  # name, then the dataset options
  local name=$1; shift
  if [ -f "$OUT/$name/config.json" ]; then
    [ -f "$OUT/$name/point_cloud/iteration_7000/point_cloud.ply" ] || "$G" train "$@" -o "$OUT/$name" --resume
  else
    "$G" train "$@" -o "$OUT/$name" --iterations 7000
  fi
}

train chair7k "$DATA/chair_400" --downscale 2
train cup7k "$DATA/cup" --images images_4
"$G" sweep "$OUT/chair7k" -o "$OUT/sweep_chair" "${SWEEP[@]}"
ablate() {  # name, then the ablate arguments
  local name=$1; shift
  local dir="$OUT/sweep_chair/ablations/$name"
  [ -f "$dir/ablation.json" ] && return
  if [ -f "$dir/config.json" ]; then "$G" ablate "$@" -o "$dir" --resume; else "$G" ablate "$@" -o "$dir"; fi
}
ablate lottery-ticket lottery-ticket "$OUT/sweep_chair/runs/gradient-0.8"
ablate no-prior no-prior "$DATA/chair_400" --downscale 2 --prune-opacity 0.05 --iterations 7000
"$G" sweep "$OUT/chair7k" -o "$OUT/sweep_chair" "${SWEEP[@]}"  # picks up the ablation rows
"$G" sweep "$OUT/cup7k" -o "$OUT/sweep_cup" "${SWEEP[@]}"
"$G" report "$OUT/sweep_chair"
"$G" report "$OUT/sweep_cup"

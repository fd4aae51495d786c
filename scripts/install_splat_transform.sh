#!/usr/bin/env bash
# Installs PlayCanvas splat-transform (npm @playcanvas/splat-transform, MIT), the converter users reach
# for today, into .tools/splat-transform: the benchmarks compare gstrim's files with its .sog and .spz and
# use it as an independent reader. Needs Node >= 18 and npm; never run from inside a test.
set -euo pipefail
VERSION="${SPLAT_TRANSFORM_VERSION:-3.7.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)/.tools/splat-transform"
mkdir -p "$ROOT"
cd "$ROOT"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --no-audit --no-fund --silent "@playcanvas/splat-transform@${VERSION}"
echo "$ROOT/node_modules/.bin/splat-transform"

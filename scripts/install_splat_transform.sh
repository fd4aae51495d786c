#!/usr/bin/env bash
# Installs PlayCanvas splat-transform (npm @playcanvas/splat-transform, MIT), the converter users reach
# for today, into .tools/splat-transform: the benchmarks compare gstrim's files with its .sog and .spz and
# use it as an independent reader. Needs Node >= 18 and npm; never run from inside a test.
set -euo pipefail
source "$(dirname "$0")/npm_tool.sh"
npm_tool splat-transform "@playcanvas/splat-transform@${SPLAT_TRANSFORM_VERSION:-3.7.0}"
echo "$TOOL_ROOT/node_modules/.bin/splat-transform"

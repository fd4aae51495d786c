"""Where the web renderer is: the PlayCanvas engine (npm `playcanvas`, MIT), installed by
`scripts/install_viewer.sh` and served to the page from this machine, so that the page works offline.

Chosen over Spark (npm `@sparkjsdev/spark`) by measurement, docs/viewer.md: it loads and draws a 98k-Gaussian
scene 40 times and 5 times faster in headless Chromium, is the smaller download and is what SuperSplat draws
with; it reads .ply, compressed .ply, .sog and Streamed SOG, and gstrim converts the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

from gstrim.errors import GstrimError

ENGINE_VERSION = "2.23.3"
ENGINE_VARIABLE = "GSTRIM_VIEWER_ENGINE"
_INSTALLED = Path(__file__).resolve().parents[3] / ".tools" / "viewer" / "node_modules" / "playcanvas" / "build" \
    / "playcanvas.min.mjs"
# the file formats (registry names) the engine reads itself; gstrim converts the others to .ply for it. A Streamed
# SOG is drawn with the engine's LOD streaming (its octree loader picks each chunk's level within a Gaussian budget)
ENGINE_READS = ("ply", "compressed-ply", "sog", "streamed-sog")


def engine_path() -> Path:
    """The engine's ES module: $GSTRIM_VIEWER_ENGINE, or the project's install."""
    given = os.environ.get(ENGINE_VARIABLE)
    path = Path(given) if given else _INSTALLED
    if not path.is_file():
        raise GstrimError(f"the web viewer's renderer is not installed: run `bash scripts/install_viewer.sh` "
                          f"(npm playcanvas {ENGINE_VERSION}) or set {ENGINE_VARIABLE}", path)
    return path

"""The viewer page's files: the static page (`static/`), the engine, the manifest and the scene files, each at
the one URL path the server answers for it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from gstrim.io.formats import format_of

STATIC = Path(__file__).with_name("static")


def page_routes(manifest: dict, scene_files: list[Path], engine: Path) -> dict[str, Path | bytes]:
    """URL path -> file (or bytes) for the page showing `scene_files` (one per `manifest["scenes"]` entry, in
    order) with the renderer `engine` (`view.engine.engine_path()`); each scene's URL is added to the manifest
    the page reads."""
    routes: dict[str, Path | bytes] = {"/": STATIC / "index.html", "/index.html": STATIC / "index.html",
                                       "/viewer.js": STATIC / "viewer.js", "/engine.mjs": engine}
    scenes = []
    for i, (scene, file) in enumerate(zip(manifest["scenes"], scene_files, strict=True)):
        routes[f"/scenes/{i}/{file.name}"] = file  # the server matches decoded paths
        fmt = format_of(file)
        for companion in fmt.companions(file) if fmt.companions is not None else []:  # a Streamed SOG's chunks
            routes[f"/scenes/{i}/{companion.relative_to(file.parent).as_posix()}"] = companion
        url = f"scenes/{i}/{quote(file.name)}"  # a name with '#', '%' or '?' is still one path
        scenes.append({**scene, "url": url})
    routes["/manifest.json"] = json.dumps({**manifest, "scenes": scenes}).encode()
    return routes

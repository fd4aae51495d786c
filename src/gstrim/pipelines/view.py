"""`gstrim view A [B ...]`: the scenes side by side in the browser under one shared camera.

What is shown for each argument:
  a scene file (any registered format)   the file;
  a model or run folder                  its latest saved scene, or the `.gsz` beside it (what `compress` ships);
  a sweep folder                         the runs named by `--runs` (default: the input and the smallest file).
The panel of each scene gives its file, format, Gaussians, size and, where the folder recorded them, PSNR /
SSIM / LPIPS on the held-out views. Formats the engine cannot read (`view.engine.ENGINE_READS`) are written
as `.ply` into a temporary folder first. The cameras to jump between are the first scene's `cameras.json`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import tempfile
import threading
import webbrowser
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim import progress
from gstrim.camera import Camera
from gstrim.data.dataset import BACKGROUNDS
from gstrim.data.virtual import intrinsics, look_at
from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.formats import format_of, save_scene, written_size
from gstrim.io.model import load_model, read_cameras_json, read_json, resolve_recorded, shipped_scene
from gstrim.io.streamed_sog import level_counts
from gstrim.options import option
from gstrim.pipelines.export import run_dir_of
from gstrim.report.table import read_table
from gstrim.scene import GaussianScene
from gstrim.view import frame
from gstrim.view.browser import open_page
from gstrim.view.engine import ENGINE_READS, engine_path
from gstrim.view.page import page_routes
from gstrim.view.server import ViewServer


@dataclass
class ViewerConfig:
    runs: list[str] = option([], "sweep folders: the runs to show, by the names in its table (default: the input "
                                 "and the smallest file)", metavar="NAME", nargs="*")
    mode: str = option("side", "side by side, or one over the other with a swipe slider (two scenes)",
                       choices=("side", "swipe"))
    up: str = option("auto", "which axis of the files points up: y-down (COLMAP captures, as PlayCanvas viewers "
                             "assume), z (Blender scenes), y; auto: z for a Blender dataset, else y-down",
                     choices=frame.UP_CHOICES)
    background: str = option("auto", "colour behind the scenes (auto: the recorded dataset's)",
                             choices=("auto", *BACKGROUNDS))
    camera: int | None = option(None, "start at this camera of cameras.json (0-based)", metavar="N")
    budget: int | None = option(None, "Gaussians the engine draws at most from a Streamed SOG (lod-meta.json): its LOD "
                                "streaming picks each chunk's level to fit (default: the engine's 1,000,000); the "
                                "page has a control for it", metavar="N")
    panels: bool = option(True, "leave out the panels (file, size, scores) and the lines between the views: the "
                                "scenes alone, as in a screenshot to compare with renders", flag="--no-panels")


@dataclass
class Shown:
    """One scene on the page."""

    name: str
    source: Path  # the file or folder the user named, or the sweep's run
    file: Path  # the scene file shown (read by gstrim)
    scene: GaussianScene
    metrics: dict  # PSNR / SSIM / LPIPS where recorded
    model_root: Path | None  # the folder with cameras.json and config.json, when there is one

    def file_label(self) -> str:
        """The file as the panel names it: within the folder given, or its name."""
        return str(self.file.relative_to(self.source)) if self.source.is_dir() else self.file.name

    @functools.cached_property
    def levels(self) -> list[int] | None:
        """Gaussians per level of a Streamed SOG (drawn by the engine's LOD streaming); None for one level."""
        return level_counts(self.file) if format_of(self.file).name == "streamed-sog" else None

    def facts(self) -> list[str]:
        size = written_size(self.file)
        lines = [f"{format_of(self.file).name} \u00b7 {len(self.scene):,} Gaussians \u00b7 {size / 1e6:.3f} MB"]
        if self.levels:
            lines.append("levels " + " / ".join(f"{c:,}" for c in self.levels) + " (streamed within the budget)")
        if self.metrics:
            lines.append(" \u00b7 ".join(f"{k} {self.metrics[k]:.{p}f}" for k, p in
                                         (("PSNR", 2), ("SSIM", 4), ("LPIPS", 4)) if k in self.metrics))
        return lines


def _metrics(record: dict | None) -> dict:
    record = record or {}
    return {k: float(record[k]) for k in ("PSNR", "SSIM", "LPIPS") if isinstance(record.get(k), (int, float))}


def _recorded_metrics(results: dict, label: str) -> dict:
    """A run's scores: its verb record's output, or (a trained model) the evaluation under its label."""
    for record in results.values():
        if isinstance(record, dict) and "verb" in record and isinstance(record.get("output"), dict):
            return _metrics(record["output"])
    return _metrics(results.get(label))


def _from_path(path: Path, name: str | None = None) -> Shown:
    target = shipped_scene(path) if path.is_dir() else path  # a compressed run: its .gsz, not a .ply beside it
    if target is None:
        raise GstrimError("not a scene file, model folder or sweep folder", path)
    model = load_model(target)
    root = model.root if model.config is not None or (model.root / "cameras.json").is_file() else None
    if path.is_dir():
        metrics = _recorded_metrics(read_json(path / "results.json"), model.label)
    else:  # an exported file: its fine-tuning run beside it
        run = run_dir_of(path)
        metrics = _recorded_metrics(read_json(run / "results.json"), "") if run.is_dir() else {}
        root = root or (run if (run / "cameras.json").is_file() else None)
    return Shown(name or (path.name if path.is_dir() else path.stem), path, model.source, model.scene, metrics, root)


def _from_sweep(root: Path, runs: list[str]) -> list[Shown]:
    rows, meta = read_table(root)
    by_name = {row.name: row for row in rows}
    if not runs:
        smallest = min(rows, key=lambda r: r.mb)
        runs = list(dict.fromkeys(["input", smallest.name]))
    missing = [name for name in runs if name not in by_name]
    if missing:
        raise GstrimError(f"no run {missing[0]!r} in this sweep; its runs: {', '.join(by_name)}", root)
    shown = []
    for name in runs:
        row = by_name[name]
        path = resolve_recorded(meta["model"], root) if row.kind == "input" else root / row.path
        item = _from_path(path, name)
        item.metrics = {"PSNR": row.psnr, "SSIM": row.ssim, "LPIPS": row.lpips}
        shown.append(item)
    return shown


def existing(paths: list[str | Path]) -> list[Path]:
    """The paths given, each checked to exist (a typo is named before anything else is looked at)."""
    for given in map(Path, paths):
        if not given.exists():
            raise GstrimError("no such scene file or folder", given)
    return list(map(Path, paths))


def collect(paths: list[str | Path], runs: list[str]) -> list[Shown]:
    """Every scene to show, in the order given."""
    shown: list[Shown] = []
    for given in existing(paths):
        if (given / "table.json").is_file() and (given / "sweep.json").is_file():
            shown += _from_sweep(given, runs)
        elif (given / "meta.json").is_file():  # an unbundled SOG folder
            shown.append(_from_path(given / "meta.json", given.name))
        else:
            shown.append(_from_path(given))
    names = [s.name for s in shown]
    for s in shown:  # two scenes called alike: name them by their paths
        if names.count(s.name) > 1:
            s.name = str(s.source)
    return shown


# ---- the page ----------------------------------------------------------------------------------------------

def _recorded_dataset(root: Path | None) -> Path | None:
    config = read_json(root / "config.json") if root else {}
    data = config.get("data") or {}
    return resolve_recorded(data["path"], root) if "path" in data else None


def _up(choice: str, first: Shown) -> frame.Up:
    if choice != "auto":
        return frame.UPS[choice]
    data = _recorded_dataset(first.model_root)
    blender = data is not None and any((data / f"transforms_{s}.json").is_file() for s in ("train", "test"))
    return frame.UPS["z" if blender else "y-down"]


def _background(choice: str, first: Shown) -> tuple[float, float, float]:
    if choice != "auto":
        return BACKGROUNDS[choice]
    cfg = first.model_root / "cfg_args" if first.model_root else None
    white = cfg is not None and cfg.is_file() and "white_background=True" in cfg.read_text()
    return BACKGROUNDS["white" if white else "black"]


def cameras_of(shown: list[Shown]) -> list[Camera]:
    """The cameras of the first `cameras.json` among the scenes."""
    for s in shown:
        path = s.model_root / "cameras.json" if s.model_root else None
        if path is not None and path.is_file():
            return read_cameras_json(path)
    return []


def _engine_camera(up: frame.Up, camera: Camera) -> dict:
    c2w = torch.linalg.inv(camera.viewmat.double()).numpy()
    return {"name": camera.name, "width": camera.width, "height": camera.height,
            **frame.engine_pose(up, c2w[:3, 3], c2w[:3, :3], float(camera.K[1, 1]), camera.height)}


OVERVIEW_FOV_Y = 50.0  # degrees: the page's starting view when the scenes have no cameras.json


def _overview(u: np.ndarray, centre: np.ndarray, radius: float) -> Camera:
    """A camera (800 x 600, 50 degrees high) in the scene's frame, looking at `centre` (engine frame) from in
    front of it and a little above, level with the engine's up."""
    engine_to_scene = u.T
    position = engine_to_scene @ (centre + radius * np.array([0.0, 0.8, 2.5]))
    viewmat = look_at(position, engine_to_scene @ centre, engine_to_scene @ np.array([0.0, 1.0, 0.0]))
    fov_x = math.degrees(2 * math.atan(math.tan(math.radians(OVERVIEW_FOV_Y) / 2) * 800 / 600))
    return Camera("overview", 800, 600, intrinsics(800, 600, fov_x), viewmat)


def manifest(shown: list[Shown], config: ViewerConfig, *, bare: bool = False) -> dict:
    """What the page needs, in the engine's frame: scenes (without their URLs), cameras, the starting view."""
    up = _up(config.up, shown[0])
    u = np.array(up.rotation, dtype=np.float64)
    means = shown[0].scene.means.detach().double().cpu().numpy() @ u.T
    centre = np.median(means, axis=0) if len(means) else np.zeros(3)
    radius = float(np.quantile(np.linalg.norm(means - centre, axis=1), 0.9)) if len(means) else 1.0
    radius = max(radius, 1e-3)
    cameras = cameras_of(shown)
    engine_cameras = [_engine_camera(up, c) for c in cameras]
    if config.camera is not None and not 0 <= config.camera < len(cameras):
        raise GstrimError(f"--camera {config.camera}: the scenes have {len(cameras)} cameras (cameras.json)")
    home = engine_cameras[0] if engine_cameras else _engine_camera(up, _overview(u, centre, radius))
    return {
        "up": {"name": up.name, "quaternion": frame.quaternion(u), "note": up.note},
        "background": list(_background(config.background, shown[0])),
        "centre": [float(v) for v in centre], "radius": radius, "clip": [radius * 1e-3, radius * 1e3],
        "cameras": engine_cameras, "home": home,
        "scenes": [{"name": s.name, "file": s.file_label(), "facts": s.facts(), "levels": s.levels} for s in shown],
        "start": {"mode": config.mode if len(shown) == 2 else "side", "camera": config.camera, "bare": bare,
                  "panels": config.panels, "settle_frames": 8, "budget": config.budget},
    }


def engine_files(shown: list[Shown], folder: Path) -> list[Path]:
    """The file the engine loads for each scene: the file itself where the engine reads its format (a bundled
    .sog, not a folder), else a .ply of it written into `folder`."""
    files = []
    for i, s in enumerate(shown):
        if format_of(s.file).name in ENGINE_READS and s.file.name != "meta.json":
            files.append(s.file)
            continue
        converted = folder / str(i) / "scene.ply"
        progress.log(f"view: {s.file.name} as .ply for the web renderer")
        converted.parent.mkdir(parents=True)
        save_scene(converted, s.scene)
        files.append(converted)
    return files


class Viewing:
    """The page of some scenes with its server, ready to open: `with Viewing(...) as v: v.url`."""

    def __init__(self, paths: list[str | Path], config: ViewerConfig, *, host: str = "127.0.0.1", port: int = 0,
                 bare: bool = False):
        existing(paths)
        engine = engine_path()  # before any work: is the renderer there?
        self.shown = collect(paths, config.runs)
        self.manifest = manifest(self.shown, config, bare=bare)
        self._temp = tempfile.TemporaryDirectory(prefix="gstrim-view-")
        try:
            routes = page_routes(self.manifest, engine_files(self.shown, Path(self._temp.name)), engine)
            self.server = ViewServer(routes, host, port)
        except OSError as exc:
            self._temp.cleanup()
            raise GstrimError(f"cannot serve the page on {host}:{port} ({exc.strerror or exc})") from None
        except BaseException:
            self._temp.cleanup()
            raise

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> Viewing:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
        self._temp.cleanup()


SHOT_MIN_SIDE = 800  # a small training camera (200 px renders) is shot at a whole multiple up to this size


def screenshot_scale(width: int, height: int) -> int:
    """The whole multiple of a camera's resolution a default screenshot takes: 1 for a photo-sized camera, 4
    for the built-in example's 200 x 200 (a whole multiple keeps the pixels aligned with gstrim's renders at the
    camera scaled likewise)."""
    return max(1, SHOT_MIN_SIDE // max(width, height))


def screenshot_size(viewing: Viewing, size: tuple[int, int] | None) -> tuple[int, int]:
    """Every view at its camera's resolution, at least 800 pixels on its longer side (side by side: one such
    width each); without a camera 800 x 600 each."""
    if size is not None:
        return size
    n = len(viewing.shown) if viewing.manifest["start"]["mode"] == "side" else 1
    start = viewing.manifest["start"]["camera"]
    camera = viewing.manifest["cameras"][start] if start is not None else {"width": 800, "height": 600}
    scale = screenshot_scale(camera["width"], camera["height"])
    return camera["width"] * scale * n, camera["height"] * scale


def screenshot(paths: list[str | Path], out: str | Path, config: ViewerConfig, *, size: tuple[int, int] | None = None,
               timeout_s: float = 120.0) -> Path:
    """The page as headless Chromium draws it, without its bar, saved as a PNG."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise GstrimError("screenshots are written as PNG: name the file .png", out)
    with Viewing(paths, config, bare=True) as viewing:
        width, height = screenshot_size(viewing, size)
        progress.log(f"view: drawing {len(viewing.shown)} scene(s) at {width}x{height} in headless Chromium")
        with open_page(viewing.url, width, height, timeout_s) as page:
            page.wait_ready(timeout_s)
            png = page.screenshot(None)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(png)
    return out


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGINT and SIGTERM stop the server, whatever the parent left them as: a process started in the background
    by a shell without job control (a CI script's `&`) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so `gstrim view` ran on after its Ctrl-C (the flaky CI test). The old handlers return after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(paths: list[str | Path], config: ViewerConfig, *, host: str = "127.0.0.1", port: int = 0,
          open_browser: bool = True) -> None:
    """Serve the page until Ctrl-C (SIGINT) or SIGTERM."""
    with Viewing(paths, config, host=host, port=port) as viewing, _stopped_by_signals():
        try:  # from the moment the address is out, Ctrl-C is the way to stop
            for s in viewing.shown:
                progress.log(f"view: {s.name}: {s.file} ({len(s.scene):,} Gaussians)")
            print(f"gstrim view: {viewing.url}  (Ctrl-C stops)", flush=True)
            if open_browser:
                webbrowser.open(viewing.url)
            viewing.server.wait()
        except KeyboardInterrupt:
            print("gstrim view: stopped", flush=True)


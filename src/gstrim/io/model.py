"""Model folders in the INRIA 3DGS layout, which viewers and evaluation scripts expect:

    MODEL/cfg_args                                   the run's data arguments (a Python Namespace repr)
    MODEL/cameras.json                               every camera: centre, rotation (camera-to-world), fx, fy
    MODEL/point_cloud/iteration_N/point_cloud.ply    the scene after N iterations
    MODEL/results.json, MODEL/per_view.json          metrics (`gstrim eval`)
gstrim adds `config.json` (how the run was made, including its dataset options; `run_folder.py`) and
`checkpoints/`. A bare scene file is any format of the registry (`io.formats`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim.camera import Camera
from gstrim.errors import GstrimError
from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import load_scene
from gstrim.io.limits import image_side, read_text_bytes
from gstrim.scene import GaussianScene

CONFIG_NAME = "config.json"
_ITERATION_DIR = re.compile(r"iteration_(\d+)$")
_CHECKPOINT = re.compile(r"chkpnt(\d+)\.pt$")


def point_cloud_path(model_dir: Path, iteration: int) -> Path:
    return Path(model_dir) / "point_cloud" / f"iteration_{iteration}" / "point_cloud.ply"


def saved_iterations(model_dir: Path) -> list[int]:
    folder = Path(model_dir) / "point_cloud"
    if not folder.is_dir():
        return []
    found = (_ITERATION_DIR.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m and (folder / m.group(0) / "point_cloud.ply").is_file())


def shipped_scene(model_dir: Path) -> Path | None:
    """The scene file a run folder ships: its newest iteration's `point_cloud.gsz` (a compressed run, which may
    keep no `.ply`) or else `point_cloud.ply`; None when it has neither."""
    found = [(int(m.group(1)), p.suffix == ".gsz", p) for p in Path(model_dir).glob("point_cloud/*/point_cloud.*")
             if (m := _ITERATION_DIR.match(p.parent.name)) and p.suffix in (".gsz", ".ply") and p.is_file()]
    return max(found)[2] if found else None


def checkpoint_path(model_dir: Path, step: int) -> Path:
    return Path(model_dir) / "checkpoints" / f"chkpnt{step}.pt"


def latest_checkpoint(model_dir: Path) -> Path | None:
    folder = Path(model_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise GstrimError(f"not a readable gstrim checkpoint ({type(exc).__name__})", path) from None


def write_cameras_json(path: Path, cameras: list[Camera]) -> None:
    """`cameras.json` as the INRIA code writes it (camera-to-world rotation rows and centre, focal lengths)."""
    entries = []
    for i, cam in enumerate(cameras):
        c2w = torch.linalg.inv(cam.viewmat.double())
        entries.append({
            "id": i, "img_name": Path(cam.name).stem, "width": cam.width, "height": cam.height,
            "position": c2w[:3, 3].tolist(), "rotation": c2w[:3, :3].tolist(),
            "fy": float(cam.K[1, 1]), "fx": float(cam.K[0, 0]),
        })
    write_text_atomic(path, json.dumps(entries, indent=1))


def read_cameras_json(path: Path) -> list[Camera]:
    """The cameras of an INRIA `cameras.json` (camera-to-world rotation rows, centre, focal lengths; the
    principal point at the image centre, as the INRIA code assumes), without images."""
    try:
        entries = json.loads(read_text_bytes(Path(path)))
        if not isinstance(entries, list):
            raise TypeError("not a list of cameras")
        cameras = []
        for e in entries:
            c2w = np.eye(4)
            c2w[:3, :3] = np.asarray(e["rotation"], np.float64)
            c2w[:3, 3] = np.asarray(e["position"], np.float64)
            w, h = (image_side(e[side], path, f"camera {side}") for side in ("width", "height"))
            K = torch.tensor([[e["fx"], 0, w / 2], [0, e["fy"], h / 2], [0, 0, 1]], dtype=torch.float32)
            name = str(e.get("img_name", e.get("id", len(cameras))))
            cameras.append(Camera(name, w, h, K, torch.tensor(np.linalg.inv(c2w), dtype=torch.float32)))
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise GstrimError(f"not a readable cameras.json ({type(exc).__name__}: {exc})", path) from None
    if not cameras:
        raise GstrimError("cameras.json lists no cameras", path)
    return cameras


def write_cfg_args(path: Path, model_dir: Path, data: dict, sh_degree: int, white_background: bool) -> None:
    """`cfg_args` as the INRIA viewer and scripts parse it (a `Namespace(...)` repr)."""
    fields = {
        "sh_degree": sh_degree, "source_path": str(Path(data["path"]).resolve()),
        "model_path": str(Path(model_dir).resolve()), "images": data.get("images") or "images",
        "resolution": data.get("downscale") or -1, "white_background": white_background,
        "data_device": "cpu", "eval": True,
    }
    write_text_atomic(path, "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")")


def relative_to_folder(path: str | Path, folder: Path) -> str:
    """`path` relative to `folder` when they share more than the file-system root, else absolute."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    if Path(os.path.commonpath([path, folder])) == Path(path.anchor):
        return str(path)
    return os.path.relpath(path, folder)


def resolve_recorded(path: str, folder: Path) -> Path:
    """A path from a `config.json` (relative to its folder, or absolute) as an absolute path."""
    return (Path(folder) / path).resolve()


def names_path(recorded: str, folder: Path, path: str | Path) -> bool:
    """Whether a path recorded in `folder` (`resolve_recorded`) is `path`."""
    return resolve_recorded(recorded, folder) == Path(path).resolve()


def read_json(path: Path) -> dict:
    """A JSON object file, {} when absent; an error naming the file when unreadable."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GstrimError(f"invalid JSON ({exc.msg} at line {exc.lineno})", path) from None
    if not isinstance(data, dict):
        raise GstrimError("expected a JSON object", path)
    return data


def read_config(model_dir: Path) -> dict | None:
    path = Path(model_dir) / CONFIG_NAME
    return read_json(path) if path.is_file() else None


@dataclass
class Model:
    """A scene to work on, wherever it came from."""

    scene: GaussianScene
    root: Path  # the model folder (or the folder holding a bare file)
    iteration: int | None
    source: Path  # the file the scene was read from
    config: dict | None  # config.json of the model folder, if any
    checkpoint: dict | None = None  # the whole checkpoint, when a checkpoint was given

    @property
    def label(self) -> str:
        """The method name INRIA result files use: ours_<iteration>."""
        return f"ours_{self.iteration}" if self.iteration is not None else "ours"

    @property
    def data_options(self) -> dict | None:
        return (self.config or {}).get("data")

    def recorded_dataset(self) -> tuple[str, dict]:
        """(path, loading options) of the dataset this model was trained or trimmed on."""
        recorded = dict(self.data_options or {})
        if "virtual" in recorded:
            raise GstrimError("this model was made photo-free (its scores against the input's renders are in "
                              "results.json); pass --data DATA to use photos", self.source)
        if "path" not in recorded:
            raise GstrimError("no dataset recorded with this scene; pass --data DATA", self.source)
        return str(resolve_recorded(recorded.pop("path"), self.root)), recorded


def recorded_config(path: str | Path) -> dict | None:
    """The config.json `load_model(path)` would find beside the scene, without reading the scene."""
    path = Path(path)
    if path.is_dir():
        return read_config(path)
    if path.suffix == ".pt":
        return read_config(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    if _ITERATION_DIR.match(path.parent.name) and path.parent.parent.name == "point_cloud":
        return read_config(path.parent.parent.parent)
    return None


def load_model(path: str | Path, iteration: int | None = None, nonfinite: str = "error") -> Model:
    """A `.ply`/`.splat` file, a model folder (its latest or the given `iteration`) or a `chkpnt*.pt`."""
    path = Path(path)
    if not path.exists():
        raise GstrimError("no such scene file or model folder", path)
    if path.is_dir():
        iterations = saved_iterations(path)
        if not iterations:
            raise GstrimError("not a model folder: no point_cloud/iteration_N/point_cloud.ply", path)
        if iteration is None:
            iteration = iterations[-1]
        elif iteration not in iterations:
            raise GstrimError(f"no iteration {iteration} saved; saved: {', '.join(map(str, iterations))}", path)
        ply = point_cloud_path(path, iteration)
        return Model(load_scene(ply, nonfinite), path, iteration, ply, read_config(path))
    if path.suffix == ".pt":
        ckpt = load_checkpoint(path)
        try:
            scene = GaussianScene(**ckpt["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GstrimError(f"checkpoint holds no Gaussian parameters ({exc})", path) from None
        root = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return Model(scene.check_finite(str(path), nonfinite), root, int(ckpt.get("step", 0)), path,
                     read_config(root), ckpt)
    match = _ITERATION_DIR.match(path.parent.name)
    if match and path.parent.parent.name == "point_cloud":
        root = path.parent.parent.parent
        return Model(load_scene(path, nonfinite), root, int(match.group(1)), path, read_config(root))
    return Model(load_scene(path, nonfinite), path.parent, None, path, None)

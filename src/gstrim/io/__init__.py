"""Scene files: load and save by extension (`.ply`, `.splat`)."""

from __future__ import annotations

from pathlib import Path

from gstrim.errors import GstrimError
from gstrim.io.ply import read_ply, read_ply_scene, write_ply
from gstrim.io.splat import read_splat, write_splat
from gstrim.scene import GaussianScene

SCENE_SUFFIXES = (".ply", ".splat")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SCENE_SUFFIXES:
        raise GstrimError(f"unknown scene format {suffix or '(none)'!r}; expected .ply or .splat", path)
    return suffix


def load_scene(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    """Load a `.ply` or `.splat` scene; `nonfinite` is 'error', 'drop' or 'keep'."""
    path = Path(path)
    if _suffix(path) == ".ply":
        return read_ply(path, nonfinite)
    return read_splat(path, nonfinite)


def save_scene(path: str | Path, scene: GaussianScene) -> None:
    """Save a scene atomically in the format its extension names."""
    path = Path(path)
    if _suffix(path) == ".ply":
        write_ply(path, scene)
    else:
        write_splat(path, scene)


__all__ = ["SCENE_SUFFIXES", "load_scene", "read_ply", "read_ply_scene", "read_splat", "save_scene",
           "write_ply", "write_splat"]

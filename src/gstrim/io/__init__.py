"""Scene files: every registered format (`io.formats`: `.ply`, `.splat`, `.spz`, `.compressed.ply`, `.gsz`, SOG),
loaded and saved by file name."""

from gstrim.io.formats import FORMATS, SceneFormat, format_of, load_scene, register, save_scene
from gstrim.io.ply import read_ply, read_ply_scene, write_ply
from gstrim.io.splat import read_splat, write_splat

__all__ = ["FORMATS", "SceneFormat", "format_of", "load_scene", "read_ply", "read_ply_scene", "read_splat",
           "register", "save_scene", "write_ply", "write_splat"]

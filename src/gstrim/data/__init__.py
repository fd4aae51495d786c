"""Datasets: cameras, photos and sparse points of COLMAP and Blender captures."""

from gstrim.camera import Camera, Undistortion
from gstrim.data.dataset import Dataset, camera_extent, load_dataset

__all__ = ["Camera", "Dataset", "Undistortion", "camera_extent", "load_dataset"]

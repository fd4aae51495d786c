"""Datasets: cameras, photos and sparse points of COLMAP and Blender captures."""

from gstrim.camera import Camera, Undistortion
from gstrim.data.dataset import DataOptions, Dataset, camera_extent, dataset_kind, load_dataset

__all__ = ["Camera", "DataOptions", "Dataset", "Undistortion", "camera_extent", "dataset_kind", "load_dataset"]

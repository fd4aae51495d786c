"""COLMAP sparse models (`cameras`, `images`, `points3D`), binary and text.

Formats as documented by COLMAP ("Output Format", colmap.github.io/format.html): binary files are
little-endian with a uint64 count followed by fixed records; text files have one record per line
(two lines per image) and '#' comments.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gstrim.errors import GstrimError
from gstrim.io.limits import image_side, no_trailing_bytes

# COLMAP camera model ids, names and parameter counts (colmap `src/colmap/sensor/models.h`).
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_PARAM_COUNT = {name: n for name, n in CAMERA_MODELS.values()}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # w x y z, world-to-camera rotation
    tvec: np.ndarray  # world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray  # [M, 2] keypoints in pixels of the original image
    point3d_ids: np.ndarray  # [M], -1 where the keypoint has no 3D point


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points_xyz: np.ndarray  # [P, 3]
    points_rgb: np.ndarray  # [P, 3] uint8
    point_ids: np.ndarray  # [P]


class _Reader:
    """Bounds-checked reads from a binary COLMAP file, so truncation is a clear error."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise GstrimError("truncated COLMAP binary file", self.path)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise GstrimError("truncated COLMAP binary file", self.path)
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def count(self, min_record_bytes: int) -> int:
        """A record count, refused where the bytes left cannot hold that many records (checked before any
        allocation: the count is a u64 the file may set to anything)."""
        n = self.take("<Q")[0]
        if n * min_record_bytes > len(self.data) - self.pos:
            raise GstrimError(f"COLMAP binary file declares {n:,} records, its {len(self.data) - self.pos:,} "
                              "bytes hold fewer", self.path)
        return n

    def end(self) -> None:
        no_trailing_bytes(self.pos, len(self.data), self.path, "the declared COLMAP records")

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise GstrimError("truncated COLMAP binary file", self.path)
        s = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return s


def _model_name(model_id: int, path: Path) -> str:
    if model_id not in CAMERA_MODELS:
        raise GstrimError(f"unknown COLMAP camera model id {model_id}", path)
    return CAMERA_MODELS[model_id][0]


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    cameras = {}
    for _ in range(r.count(24)):
        cam_id, model_id, width, height = r.take("<iiQQ")
        model = _model_name(model_id, path)
        params = np.array(r.take(f"<{_PARAM_COUNT[model]}d"))
        cameras[cam_id] = ColmapCamera(cam_id, model, image_side(width, path, "camera width"),
                                       image_side(height, path, "camera height"), params)
    r.end()
    return cameras


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    images = {}
    point_dtype = np.dtype([("xy", "<f8", 2), ("id", "<i8")])
    for _ in range(r.count(73)):
        image_id, qw, qx, qy, qz, tx, ty, tz, cam_id = r.take("<I7dI")
        name = r.cstring()
        pts = r.array(point_dtype, r.take("<Q")[0])
        images[image_id] = ColmapImage(
            image_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cam_id, name,
            pts["xy"].copy(), pts["id"].copy(),
        )
    r.end()
    return images


def read_points3d_bin(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = _Reader(path)
    count = r.count(struct.calcsize("<Q3d3BdQ"))
    ids = np.empty(count, np.int64)
    xyz = np.empty((count, 3), np.float64)
    rgb = np.empty((count, 3), np.uint8)
    for i in range(count):
        pid, x, y, z, cr, cg, cb, _err, track_len = r.take("<Q3d3BdQ")
        r.array(np.dtype("<i4"), 2 * track_len)  # track (image id, keypoint index) pairs: unused
        ids[i], xyz[i], rgb[i] = pid, (x, y, z), (cr, cg, cb)
    r.end()
    return xyz, rgb, ids


def _text_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for line in _text_lines(path):
        w = line.split()
        model = w[1]
        if model not in _PARAM_COUNT:
            raise GstrimError(f"unknown COLMAP camera model {model!r}", path)
        params = np.array([float(x) for x in w[4:]])
        if len(params) != _PARAM_COUNT[model]:
            raise GstrimError(f"camera {w[0]}: {model} needs {_PARAM_COUNT[model]} parameters", path)
        cameras[int(w[0])] = ColmapCamera(int(w[0]), model, int(w[2]), int(w[3]), params)
    return cameras


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    # Two lines per image; the keypoint line may be empty, so read raw lines, not filtered ones.
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    images = {}
    for head, points in zip(lines[0::2], lines[1::2] + [""] * (len(lines) % 2), strict=False):
        w = head.split()
        if len(w) < 10:
            raise GstrimError(f"malformed image line {head!r}", path)
        values = np.array([float(x) for x in points.split()]).reshape(-1, 3)
        images[int(w[0])] = ColmapImage(
            int(w[0]), np.array(w[1:5], float), np.array(w[5:8], float), int(w[8]), " ".join(w[9:]),
            values[:, :2], values[:, 2].astype(np.int64),
        )
    return images


def read_points3d_txt(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [ln.split() for ln in _text_lines(path)]
    ids = np.array([int(r[0]) for r in rows], np.int64)
    xyz = np.array([[float(v) for v in r[1:4]] for r in rows], np.float64).reshape(-1, 3)
    rgb = np.array([[int(v) for v in r[4:7]] for r in rows], np.uint8).reshape(-1, 3)
    return xyz, rgb, ids


def find_sparse_dir(root: Path) -> Path | None:
    """The folder holding the COLMAP model under a dataset root (`sparse/0`, `sparse`, or root)."""
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if (candidate / "cameras.bin").is_file() or (candidate / "cameras.txt").is_file():
            return candidate
    return None


def _parse(reader, path: Path):
    try:
        return reader(path)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise GstrimError(f"malformed COLMAP file ({exc})", path) from None


def read_model(sparse: Path) -> ColmapModel:
    """Read a COLMAP model folder, binary files preferred over text."""
    ext = ".bin" if (sparse / "cameras.bin").is_file() else ".txt"
    readers = {
        ".bin": (read_cameras_bin, read_images_bin, read_points3d_bin),
        ".txt": (read_cameras_txt, read_images_txt, read_points3d_txt),
    }[ext]
    files = [sparse / f"{name}{ext}" for name in ("cameras", "images", "points3D")]
    for f in files[:2]:
        if not f.is_file():
            raise GstrimError("COLMAP model file is missing", f)
    cameras = _parse(readers[0], files[0])
    images = _parse(readers[1], files[1])
    if files[2].is_file():
        xyz, rgb, ids = _parse(readers[2], files[2])
    else:
        xyz, rgb, ids = np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64)
    for im in images.values():
        if im.camera_id not in cameras:
            raise GstrimError(f"image {im.name!r} refers to missing camera {im.camera_id}", files[1])
    return ColmapModel(cameras, images, xyz, rgb, ids)


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a w x y z quaternion (normalised first)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])

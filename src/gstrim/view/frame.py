"""From gstrim's frame to the web engine's: which way is up, and the cameras as the engine takes them.

gstrim (like 3DGS and COLMAP) keeps cameras as OpenCV-style camera-to-world poses: x right, y down, looking
down +z. The PlayCanvas engine draws a y-up world with cameras looking down -z (x right, y up). A scene's own
"up" depends on where it came from, so the scene is turned by one rotation U into the engine's world and every
camera with it: position U c, rotation U R diag(1, -1, -1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Up:
    name: str
    rotation: tuple  # 3x3 rows: scene frame -> engine frame
    note: str  # what the page says about it


UPS = {
    # PlayCanvas's own viewers (SuperSplat, splat-transform's viewer) turn a .ply 180 degrees about z: INRIA
    # captures reconstructed by COLMAP usually come out with y pointing down
    "y-down": Up("y-down", ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
                 "y points down in the file (COLMAP captures): turned 180\u00b0 about z, as PlayCanvas viewers do"),
    "z": Up("z", ((1, 0, 0), (0, 0, 1), (0, -1, 0)), "z points up in the file (Blender scenes): z shown as up"),
    "y": Up("y", ((1, 0, 0), (0, 1, 0), (0, 0, 1)), "y points up in the file: shown as it is"),
}
UP_CHOICES = ("auto", *UPS)
OPENCV_TO_ENGINE = np.diag([1.0, -1.0, -1.0])  # camera axes: (right, down, forward) -> (right, up, backward)


def quaternion(matrix: np.ndarray) -> list[float]:
    """The unit quaternion (x, y, z, w) of a rotation matrix (Shepperd's method, stable for every angle)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return [float(v) for v in (q if q[3] >= 0 else -q)]


def engine_pose(up: Up, position, rotation, fy: float, height: int) -> dict:
    """A camera-to-world pose (OpenCV axes) and its vertical focal length as the engine's camera: position,
    quaternion, vertical field of view in degrees."""
    u = np.array(up.rotation, dtype=np.float64)
    return {"position": [float(v) for v in u @ np.asarray(position, dtype=np.float64)],
            "quaternion": quaternion(u @ np.asarray(rotation, dtype=np.float64) @ OPENCV_TO_ENGINE),
            "fov": math.degrees(2 * math.atan(height / (2 * fy)))}

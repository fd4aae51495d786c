"""Summaries of scene files (`gstrim info`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gstrim.io import gsz
from gstrim.io.container import read_container
from gstrim.io.formats import format_of, written_size


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {k: float("nan") for k in ("min", "p50", "mean", "max")}
    return {"min": float(values.min()), "p50": float(np.median(values)),
            "mean": float(values.mean()), "max": float(values.max())}


def scene_info(path: str | Path, nonfinite: str = "error") -> dict:
    """Count, SH degree, bounding box, opacity and scale statistics and size of a scene file."""
    path = Path(path)
    fmt = format_of(path)
    if fmt.load_described is not None:
        scene, details = fmt.load_described(path, nonfinite)
    else:
        scene, details = fmt.load(path, nonfinite), {"format": fmt.name, "extra_properties": []}
    means = scene.means.numpy()
    finite = np.isfinite(means).all(axis=1)
    return {
        "file": str(path),
        "format": details["format"],
        "count": len(scene),
        "sh_degree": scene.sh_degree,
        "size_mb": written_size(path) / 1e6,  # a folder format's files together
        "bbox_min": means[finite].min(axis=0).tolist() if finite.any() else [float("nan")] * 3,
        "bbox_max": means[finite].max(axis=0).tolist() if finite.any() else [float("nan")] * 3,
        "opacity": _stats(scene.activated_opacities().numpy()),
        "scale": _stats(scene.activated_scales().max(dim=1).values.numpy() if len(scene) else np.zeros(0)),
        "extra_properties": details["extra_properties"],
        **({"levels": details["levels"]} if "levels" in details else {}),  # a Streamed SOG's Gaussians per level
    }


def gsz_bits(path: str | Path) -> dict:
    """Where the bits of a .gsz file go: per stored array, its bits per Gaussian before coding (the
    quantised array as stored) and in the file (after its codec), and the container's own overhead."""
    entries, meta = read_container(path, gsz.check_declared)
    n = max(int(meta.get("gaussians", 0)), 1)
    size = Path(path).stat().st_size
    streams = [{"stream": name, "shape": list(e.data.shape), "codec": e.codec, "raw_bits": 8 * e.data.nbytes / n,
                "coded_bits": 8 * e.coded_bytes / n} for name, e in entries.items()]
    coded = sum(e.coded_bytes for e in entries.values())
    return {"file": str(path), "gaussians": n, "bytes": size, "streams": streams,
            "overhead_bits": 8 * (size - coded) / n, "total_bits": 8 * size / n}

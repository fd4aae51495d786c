"""PlayCanvas Streamed SOG (format version 1): levels of detail cut into spatial chunks, for viewers that
stream a large scene (PlayCanvas's LOD streaming, Babylon.js). Specification: the PlayCanvas user manual, "The
Streamed SOG Format"; the chunking follows splat-transform 3.7's writer (MIT) in what it chooses, not in code.

    OUT/lod-meta.json     the index: {version: 1, count, counts[level], lodLevels, filenames[], tree}
    OUT/{level}_{i}/      one chunk: an unbundled SOG (`io.sog`, meta.json + WebP images)

Level 0 is the finest. The tree is a binary space partition of the Gaussians of every level together: a node
splits at the median of its largest axis while it holds more than `chunk_count` K Gaussians, or while it is
wider than `chunk_extent` and holds more than `chunk_min` K (splat-transform's defaults: 512, 16, 8). A leaf's
`bound` holds every Gaussian it references (each one's box of its rotated 1-sigma scales, as splat-transform
computes it; inner nodes: the union of their children), and `lods[level] = {file, offset, count}` points at
the rows of a chunk that hold the leaf's Gaussians of that level. Leaves fill a level's chunks in tree order,
each leaf's rows in Morton order, and a chunk is closed once it holds more than `chunk_count` K Gaussians.

Reading resolves chunks through `filenames` only (as the specification asks), reads each chunk once through the
SOG reader (its bounded-allocation rules), and refuses references that overlap inside a chunk, so the
Gaussians read are at most those the chunks hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from gstrim.errors import ConfigError, GstrimError
from gstrim.io import sog
from gstrim.io.atomic import atomic_path
from gstrim.io.limits import read_text_bytes
from gstrim.io.packing import morton_order
from gstrim.io.sog_codec import SogCodebooks, fit_codebooks
from gstrim.options import option
from gstrim.scene import GaussianScene
from gstrim.version import __version__

VERSION = 1
INDEX_NAME = "lod-meta.json"
MAX_INDEX_BYTES = 64 << 20  # a tree of ~100k leaves; larger indexes are not what any writer makes
MAX_LEVELS = 64


@dataclass
class StreamedSogOptions:
    """The chunking (`gstrim export` / `gstrim lod` flags; splat-transform's defaults)."""
    chunk_count: int = option(512, "Streamed SOG: Gaussians per chunk, in thousands (K)", flag="--lod-chunk-count")
    chunk_extent: float = option(16.0, "Streamed SOG: largest chunk width in world units", flag="--lod-chunk-extent")
    chunk_min: int = option(8, "Streamed SOG: Gaussians (K) below which a chunk is not split for its width",
                            flag="--lod-chunk-min")
    seed: int = 0  # of the chunks' codebook fits

    def validate(self) -> None:
        if self.chunk_count < 1 or self.chunk_min < 1:
            raise ConfigError("{chunk_count} and {chunk_min} must be at least 1 (K Gaussians)", "chunk_count",
                              "chunk_min")
        if not self.chunk_extent > 0:
            raise ConfigError(f"{{chunk_extent}} must be positive, got {self.chunk_extent}", "chunk_extent")


# ---- writing ------------------------------------------------------------------------------------------------
@dataclass
class _Leaf:
    rows: np.ndarray  # indices into the Gaussians of every level, concatenated


@dataclass
class _Split:
    children: tuple


def _partition(means: np.ndarray, rows: np.ndarray, o: StreamedSogOptions):
    lo, hi = means[rows].min(0), means[rows].max(0)
    axis = int(np.argmax(hi - lo))
    count, width = len(rows), float(hi[axis] - lo[axis])
    if count > 1 and (count > o.chunk_count * 1024 or (width > o.chunk_extent and count > o.chunk_min * 1024)):
        mid = count // 2
        order = np.argpartition(means[rows, axis], mid)
        return _Split((_partition(means, rows[order[:mid]], o), _partition(means, rows[order[mid:]], o)))
    return _Leaf(rows)


def gaussian_boxes(scene: GaussianScene) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) [N, 3] of each Gaussian's box of its rotated 1-sigma scales (float64): along axis i the
    half-width is sum_j |R_ij| s_j for the rotation R of the unit quaternion (w, x, y, z)."""
    q = scene.quats.detach().cpu().double().numpy()
    w, x, y, z = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)).T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1).reshape(-1, 3, 3)
    half = (np.abs(rot) * np.exp(scene.scales.detach().cpu().double().numpy())[:, None, :]).sum(-1)
    means = scene.means.detach().cpu().double().numpy()
    return means - half, means + half


@dataclass
class _Layout:
    """Where every level's Gaussians go: per level, its chunks as lists of row arrays (level-local)."""
    chunk: int
    files: dict[int, list[list[np.ndarray]]] = field(default_factory=dict)
    filenames: list[str] = field(default_factory=list)

    def place(self, level: int, rows: np.ndarray) -> dict:
        chunks = self.files.setdefault(level, [[]])
        name = f"{level}_{len(chunks) - 1}/meta.json"
        if name not in self.filenames:
            self.filenames.append(name)
        offset = sum(map(len, chunks[-1]))
        chunks[-1].append(rows)
        if offset + len(rows) > self.chunk:
            chunks.append([])
        return {"file": self.filenames.index(name), "offset": offset, "count": len(rows)}


def _tree(node, starts: np.ndarray, boxes, means: np.ndarray, layout: _Layout) -> dict:
    if isinstance(node, _Split):
        children = [_tree(child, starts, boxes, means, layout) for child in node.children]
        lo = np.minimum(*(np.asarray(c["bound"]["min"]) for c in children))
        hi = np.maximum(*(np.asarray(c["bound"]["max"]) for c in children))
        return {"bound": {"min": lo.tolist(), "max": hi.tolist()}, "children": children}
    level_of = np.searchsorted(starts, node.rows, side="right") - 1
    lods = {}
    for level in np.unique(level_of):
        rows = node.rows[level_of == level]
        rows = rows[morton_order(means[rows])]
        lods[str(int(level))] = layout.place(int(level), rows - starts[level])
    lo, hi = boxes[0][node.rows].min(0), boxes[1][node.rows].max(0)
    # float32 outward so the bound still holds what it bounds after a reader's float32 rounding
    lo = np.nextafter(lo.astype(np.float32), np.float32(-np.inf))
    hi = np.nextafter(hi.astype(np.float32), np.float32(np.inf))
    return {"bound": {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}, "lods": lods}


def streamed_layout(levels: Sequence[GaussianScene], options: StreamedSogOptions | None = None
                    ) -> tuple[dict, dict[str, tuple[int, torch.Tensor]]]:
    """(the lod-meta.json index, {chunk file name: (level, the level's rows it holds, in row order)}) for
    `levels`, the finest first."""
    o = options or StreamedSogOptions()
    o.validate()
    if not levels or any(len(level) == 0 for level in levels):
        raise GstrimError("a Streamed SOG needs at least one level and a Gaussian in every level")
    if len(levels) > MAX_LEVELS:
        raise GstrimError(f"{len(levels)} levels; Streamed SOG writing stops at {MAX_LEVELS}")
    means = np.concatenate([level.means.detach().cpu().double().numpy() for level in levels])
    starts = np.cumsum([0] + [len(level) for level in levels])[:-1]
    level_boxes = [gaussian_boxes(level) for level in levels]
    boxes = tuple(np.concatenate([b[i] for b in level_boxes]) for i in range(2))
    layout = _Layout(o.chunk_count * 1024)
    tree = _tree(_partition(means, np.arange(len(means)), o), starts, boxes, means, layout)
    counts = [len(level) for level in levels]
    index = {"version": VERSION, "asset": {"generator": f"gstrim {__version__}"}, "count": sum(counts),
             "counts": counts, "lodLevels": len(levels), "filenames": layout.filenames, "tree": tree}
    chunks = {}
    for level, files in layout.files.items():
        for i, parts in enumerate(files):
            if parts:
                chunks[f"{level}_{i}/meta.json"] = (level, torch.from_numpy(np.concatenate(parts)))
    return index, chunks


def chunk_books(books: SogCodebooks, rows: torch.Tensor) -> SogCodebooks:
    """A level's tables for the chunk holding its `rows`: the same codebooks, the SH palette cut to the entries
    the chunk's Gaussians use."""
    labels = books.labels[rows]
    if not len(books.palette):
        return SogCodebooks(books.scales, books.sh0, books.sh, books.palette, labels)
    used, relabelled = torch.unique(labels, return_inverse=True)
    return SogCodebooks(books.scales, books.sh0, books.sh, books.palette[used], relabelled)


def write_streamed_sog(path: str | Path, levels: Sequence[GaussianScene], options: StreamedSogOptions | None = None,
                       books: Sequence[SogCodebooks | None] | None = None) -> None:
    """Write `levels` (the finest first) as a Streamed SOG named by `path` (`.../lod-meta.json`): the chunks
    first, the index last, so that a folder without its index was never finished. `books`: per level, the SOG
    tables to write it with (a level fine-tuned through the SOG quantiser: `sog.read_sog_books` of its file),
    else None: codebooks fitted to each chunk, every Gaussian weighted alike."""
    path = Path(path)
    if path.name.lower() != INDEX_NAME:
        raise GstrimError(f"a Streamed SOG is named by its index file, {INDEX_NAME}", path)
    o = options or StreamedSogOptions()
    try:
        index, chunks = streamed_layout(levels, o)
    except GstrimError as exc:
        raise GstrimError(exc.message, path) from None
    written = []
    try:
        for name, (level, rows) in chunks.items():
            target = path.parent / name
            target.parent.mkdir(parents=True, exist_ok=True)
            scene = levels[level].subset(rows).to("cpu")
            given = books[level] if books is not None else None
            tables = chunk_books(given, rows) if given is not None else fit_codebooks(scene, seed=o.seed)
            sog.write_sog(target, scene, tables, keep_order=True)
            written.append(target)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(index, separators=(",", ":")))
    except BaseException:
        for chunk in written:
            for f in sog.companions(chunk) + [chunk]:
                f.unlink(missing_ok=True)
        raise


def write_with(path: str | Path, scene: GaussianScene, options: StreamedSogOptions | None = None) -> None:
    """A one-level Streamed SOG of a scene (`gstrim export` / `convert`)."""
    write_streamed_sog(path, [scene], options)


# ---- reading ------------------------------------------------------------------------------------------------
def _bad(path: Path, what: str) -> GstrimError:
    return GstrimError(f"bad {INDEX_NAME}: {what}", path)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_index(path: str | Path) -> dict:
    """The index of a Streamed SOG, its fields checked (the tree's references: `references`)."""
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    try:
        index = json.loads(read_text_bytes(path, MAX_INDEX_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad(path, f"not JSON ({exc})") from None
    if not isinstance(index, dict):
        raise _bad(path, "not a JSON object")
    if index.get("version", VERSION) != VERSION:
        raise GstrimError(f"unsupported Streamed SOG version {index.get('version')!r} (gstrim reads version "
                          f"{VERSION})", path)
    levels = index.get("lodLevels")
    if not _whole(levels) or not 1 <= levels <= MAX_LEVELS:
        raise _bad(path, f"lodLevels must be a whole number within 1-{MAX_LEVELS}")
    counts = index.get("counts")
    if counts is not None and (not isinstance(counts, list) or len(counts) != levels
                               or not all(_whole(c) and c >= 0 for c in counts)):
        raise _bad(path, "counts must list a non-negative whole number per level")
    names = index.get("filenames")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _bad(path, "filenames must be a list of paths")
    for name in names:
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or ".." in parts or "\\" in name or not name.endswith("meta.json"):
            raise _bad(path, f"chunk path {name!r} is not a SOG meta.json inside the Streamed SOG's folder")
    if not isinstance(index.get("tree"), dict):
        raise _bad(path, "tree must be an object")
    return index


def _references(index: dict, path: Path | None = None):
    """(level, {file, offset, count}, leaf bound) of every leaf's reference, in tree order (depth first)."""
    levels, files = index["lodLevels"], len(index["filenames"])
    stack = [index["tree"]]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            raise _bad(path, "a tree node is not an object")
        children = node.get("children")
        if children is not None:
            if not isinstance(children, list):
                raise _bad(path, "a node's children must be a list")
            stack.extend(reversed(children))
        lods = node.get("lods", {})
        if not isinstance(lods, dict):
            raise _bad(path, "a node's lods must be an object")
        for key, ref in lods.items():
            level = int(key) if isinstance(key, str) and key.isdigit() else -1
            if not 0 <= level < levels:
                raise _bad(path, f"a reference names level {key!r} of {levels}")
            if not isinstance(ref, dict) or not all(_whole(ref.get(k)) and ref[k] >= 0
                                                    for k in ("file", "offset", "count")) or ref["file"] >= files:
                raise _bad(path, "a reference needs a file index within filenames and a non-negative offset and "
                                 "count")
            yield level, ref, node.get("bound")


def level_counts(path: str | Path) -> list[int]:
    """The Gaussians of each level, as the tree references them."""
    return _level_counts(read_index(path), Path(path))


def _level_counts(index: dict, path: Path) -> list[int]:
    counts = [0] * index["lodLevels"]
    for level, ref, _ in _references(index, path):
        counts[level] += ref["count"]
    return counts


def level_sizes(path: str | Path) -> list[int]:
    """Bytes of each level: the chunks it references (a chunk shared by levels split by its rows), the index
    shared out by Gaussians."""
    path = Path(path)
    index = read_index(path)
    rows: dict[int, list[int]] = {}
    for level, ref, _ in _references(index, path):
        rows.setdefault(ref["file"], [0] * index["lodLevels"])[level] += ref["count"]
    sizes = [0.0] * index["lodLevels"]
    for file, per_level in rows.items():
        chunk = path.parent / index["filenames"][file]
        size = sog.written_size(chunk) if chunk.is_file() else 0
        for level, count in enumerate(per_level):
            sizes[level] += size * count / max(sum(per_level), 1)
    counts = [sum(r[level] for r in rows.values()) for level in range(index["lodLevels"])]
    share = path.stat().st_size
    return [round(b + share * c / max(sum(counts), 1)) for b, c in zip(sizes, counts, strict=True)]


def read_streamed_sog(path: str | Path, level: int = 0, nonfinite: str = "error") -> GaussianScene:
    """The Gaussians of one level (0: the finest), in tree order."""
    path = Path(path)
    index = read_index(path)
    if not 0 <= level < index["lodLevels"]:
        raise GstrimError(f"no level {level}: the Streamed SOG has levels 0-{index['lodLevels'] - 1}", path)
    refs = [ref for lv, ref, _ in _references(index, path) if lv == level]
    chunks: dict[int, GaussianScene] = {}
    taken: dict[int, list[tuple[int, int]]] = {}
    for ref in refs:
        file = ref["file"]
        if file not in chunks:
            chunk_path = path.parent / index["filenames"][file]
            if not chunk_path.is_file():
                raise GstrimError(f"chunk {index['filenames'][file]} named in {INDEX_NAME} is missing", path)
            chunks[file] = sog.read_sog(chunk_path, nonfinite="keep")
        if ref["offset"] + ref["count"] > len(chunks[file]):
            raise _bad(path, f"a reference reads rows {ref['offset']:,}-{ref['offset'] + ref['count']:,} of chunk "
                             f"{index['filenames'][file]}, which holds {len(chunks[file]):,}")
        taken.setdefault(file, []).append((ref["offset"], ref["offset"] + ref["count"]))
    for file, spans in taken.items():
        spans.sort()
        if any(a[1] > b[0] for a, b in pairwise(spans)):
            raise _bad(path, f"references overlap inside chunk {index['filenames'][file]}")
    counts = index.get("counts")
    total = sum(ref["count"] for ref in refs)
    if counts is not None and counts[level] != total:
        raise _bad(path, f"level {level} counts {counts[level]:,} Gaussians but its references hold {total:,}")
    if not refs:
        raise GstrimError(f"level {level} holds no Gaussians", path)
    parts = [chunks[r["file"]].subset(torch.arange(r["offset"], r["offset"] + r["count"])) for r in refs]
    scene = GaussianScene(**{k: torch.cat([p.params()[k] for p in parts]) for k in parts[0].params()})
    return scene.check_finite(str(path), nonfinite)


def read_level0(path: Path, nonfinite: str) -> GaussianScene:
    return read_streamed_sog(path, 0, nonfinite)


def describe(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    scene = read_streamed_sog(path, 0, nonfinite)
    index = read_index(path)
    counts = _level_counts(index, path)
    details = (f"streamed sog (version {VERSION}, {len(counts)} level{'s' * (len(counts) > 1)}: "
               + " / ".join(f"{c:,}" for c in counts) + f" Gaussians, {len(index['filenames'])} chunks; "
               "level 0 shown)")
    return scene, {"format": details, "extra_properties": [], "levels": counts}


def companions(path: Path) -> list[Path]:
    """Every chunk's files (meta.json last within each chunk), which a copy takes before the index."""
    files = []
    for name in read_index(path)["filenames"]:
        chunk = path.parent / name
        if chunk.is_file():
            files += sog.companions(chunk) + [chunk]
    return files


def written_size(path: Path) -> int:
    """Bytes of a Streamed SOG: the index and every chunk it names."""
    return path.stat().st_size + sum(sog.written_size(path.parent / name) for name in read_index(path)["filenames"]
                                     if (path.parent / name).is_file())

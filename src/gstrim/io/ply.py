"""INRIA 3DGS `.ply` files, read and written with numpy (no GPL dependency).

Layout written (as the INRIA reference code writes it, `GaussianModel.save_ply`): one `vertex` element,
binary little-endian float32 properties x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2
rot_0..3, with f_rest channel-major (all K coefficients of red, then green, then blue). Reading accepts
any PLY format (binary either endianness, ASCII), property order and numeric type, files without normals
or without f_rest, and ignores extra properties (reported in `PlyScene.extra_properties`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.limits import no_trailing_bytes
from gstrim.scene import GaussianScene, num_sh_rest, row_chunks, sh_degree_from_rest

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_KNOWN_OPTIONAL = ("nx", "ny", "nz")
_F_REST = re.compile(r"f_rest_(\d+)$")


@dataclass
class PlyScene:
    scene: GaussianScene
    format: str
    has_normals: bool
    extra_properties: list[str] = field(default_factory=list)


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy type)
    has_list: bool = False


def _parse_header(f, path: Path) -> tuple[str, list[_Element]]:
    first = f.readline()
    if first.rstrip(b"\r\n") != b"ply":
        raise GstrimError("not a PLY file (missing 'ply' magic line)", path)
    fmt = None
    elements: list[_Element] = []
    while True:
        raw = f.readline()
        if not raw:
            raise GstrimError("truncated PLY header (no 'end_header')", path)
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_header":
            break
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise GstrimError(f"unsupported PLY format line {line!r}", path)
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            if not words[2].isdigit():
                raise GstrimError(f"PLY element count {words[2]!r} is not a non-negative integer", path)
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1].has_list = True
                elements[-1].properties.append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise GstrimError(f"unsupported PLY property line {line!r}", path)
        else:
            raise GstrimError(f"malformed PLY header line {line!r}", path)
    if fmt is None:
        raise GstrimError("PLY header has no 'format' line", path)
    for e in elements:
        names = [n for n, _ in e.properties]
        if len(set(names)) < len(names):
            raise GstrimError(f"PLY element '{e.name}' names a property twice", path)
    return fmt, elements


def _row_dtype(element: _Element, endian: str, path: Path) -> np.dtype:
    try:
        return np.dtype([(n, endian + t) for n, t in element.properties])
    except (ValueError, TypeError) as exc:  # a name numpy refuses (repeated names are refused in the header)
        raise GstrimError(f"PLY element '{element.name}' has unusable properties ({exc})", path) from None


@dataclass
class _Vertices:
    """Where a PLY's vertex rows are and how to read them in chunks (`scene.row_chunks`): a file is streamed,
    so that reading it costs about the scene's own size in memory rather than several copies of the file."""
    path: Path
    format: str
    dtype: np.dtype
    count: int
    offset: int  # byte offset of the first row (binary)
    ascii_rows: np.ndarray | None = None  # the whole table, for ASCII files

    def chunks(self):
        """(rows, structured array of those rows) over the whole element (`_vertices` checked the file's size)."""
        if self.ascii_rows is not None:
            yield slice(0, self.count), self.ascii_rows
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for rows in row_chunks(self.count):
                want = len(range(self.count)[rows])
                yield rows, np.frombuffer(f.read(self.dtype.itemsize * want), dtype=self.dtype, count=want)


def _vertices(path: Path) -> _Vertices:
    with open(path, "rb") as f:
        fmt, elements = _parse_header(f, path)
        names = [e.name for e in elements]
        if "vertex" not in names:
            raise GstrimError("PLY file has no 'vertex' element", path)
        vertex = elements[names.index("vertex")]
        if vertex.has_list:
            raise GstrimError("PLY 'vertex' element has list properties; not a Gaussian splat file", path)
        if _FORMATS[fmt] is None:
            table = _read_ascii_vertices(f, path, elements, vertex)
            return _Vertices(path, fmt, table.dtype, len(table), 0, table)
        endian = _FORMATS[fmt]
        offset = f.tell()
        for e in elements[: names.index("vertex")]:
            if e.has_list:
                raise GstrimError(f"PLY element '{e.name}' before 'vertex' has list properties", path)
            offset += e.count * _row_dtype(e, endian, path).itemsize
        dtype = _row_dtype(vertex, endian, path)
    if not dtype.itemsize:
        raise GstrimError("PLY 'vertex' element has no properties", path)
    size = path.stat().st_size
    if size < offset + dtype.itemsize * vertex.count:
        raise GstrimError(f"truncated PLY: {vertex.count} vertices need {offset + dtype.itemsize * vertex.count} "
                          f"bytes, file has {size}", path)
    after = elements[names.index("vertex") + 1:]
    if not any(e.has_list for e in after):  # elements of list properties have no size known from the header
        end = offset + dtype.itemsize * vertex.count + sum(e.count * _row_dtype(e, endian, path).itemsize
                                                           for e in after)
        no_trailing_bytes(end, size, path, "the PLY's declared elements")
    return _Vertices(path, fmt, dtype, vertex.count, offset)


def element_names(path: Path) -> list[str]:
    """The element names of a PLY file's header, in order."""
    with open(path, "rb") as f:
        return [e.name for e in _parse_header(f, path)[1]]


def read_elements(path: Path) -> dict[str, np.ndarray]:
    """Every element of a binary PLY file without list properties, as structured arrays."""
    with open(path, "rb") as f:
        fmt, elements = _parse_header(f, path)
        endian = _FORMATS[fmt]
        if endian is None:
            raise GstrimError("ASCII PLY is not supported for this layout", path)
        size, out = path.stat().st_size, {}
        for e in elements:
            if e.has_list:
                raise GstrimError(f"PLY element '{e.name}' has list properties", path)
            dtype = _row_dtype(e, endian, path)
            left = size - f.tell()
            if left < dtype.itemsize * e.count:  # checked before reading: a count can claim any size
                raise GstrimError(f"truncated PLY: element '{e.name}' needs {dtype.itemsize * e.count:,} bytes, "
                                  f"file has {left:,}", path)
            out[e.name] = np.frombuffer(f.read(dtype.itemsize * e.count), dtype=dtype, count=e.count)
        no_trailing_bytes(f.tell(), size, path, "the PLY's declared elements")
    return out


def _read_ascii_vertices(f, path: Path, elements: list[_Element], vertex: _Element) -> np.ndarray:
    index = elements.index(vertex)
    skip = 0
    for e in elements[:index]:
        if e.has_list:
            raise GstrimError(f"PLY element '{e.name}' before 'vertex' has list properties", path)
        skip += e.count
    lines = f.read().decode("ascii", errors="replace").splitlines()
    rows = [ln for ln in lines if ln.strip()][skip : skip + vertex.count]
    if len(rows) < vertex.count:
        raise GstrimError(f"truncated ASCII PLY: {vertex.count} vertices declared, {len(rows)} found", path)
    try:
        table = np.array([r.split() for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise GstrimError(f"malformed ASCII PLY vertex data ({exc})", path) from None
    if table.ndim != 2 or table.shape[1] != len(vertex.properties):
        raise GstrimError(f"ASCII PLY rows do not have {len(vertex.properties)} values", path)
    out = np.empty(vertex.count, dtype=[(n, "f8") for n, _ in vertex.properties])
    for i, (n, _) in enumerate(vertex.properties):
        out[n] = table[:, i]
    return out


def read_ply_scene(path: str | Path) -> PlyScene:
    """Read a 3DGS `.ply` with details of its layout, streaming its rows into the scene's arrays."""
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    vertices = _vertices(path)
    props = list(vertices.dtype.names)
    missing = [p for p in REQUIRED if p not in props]
    if missing:
        raise GstrimError(
            f"not a 3D Gaussian Splatting PLY: missing properties {', '.join(missing)} "
            f"(has {', '.join(props[:12])}{', ...' if len(props) > 12 else ''})",
            path,
        )
    rest = sorted(int(m.group(1)) for p in props if (m := _F_REST.match(p)))
    if rest != list(range(len(rest))) or len(rest) % 3:
        raise GstrimError(f"f_rest properties are not f_rest_0..f_rest_3K-1 (found {len(rest)})", path)
    k = len(rest) // 3
    try:
        sh_degree_from_rest(k)
    except ValueError as exc:
        raise GstrimError(str(exc), path) from None
    n = vertices.count
    arrays = {"means": np.empty((n, 3), np.float32), "scales": np.empty((n, 3), np.float32),
              "quats": np.empty((n, 4), np.float32), "opacities": np.empty(n, np.float32),
              "sh0": np.empty((n, 1, 3), np.float32), "shN": np.empty((n, k, 3), np.float32)}
    # (array, index within a row, property); f_rest is channel-major on disk: f_rest_{c * K + j} -> shN[j, c]
    columns = [("means", (i,), name) for i, name in enumerate(("x", "y", "z"))]
    columns += [("scales", (i,), f"scale_{i}") for i in range(3)] + [("quats", (i,), f"rot_{i}") for i in range(4)]
    columns += [("opacities", (), "opacity")] + [("sh0", (0, c), f"f_dc_{c}") for c in range(3)]
    columns += [("shN", (j, c), f"f_rest_{c * k + j}") for c in range(3) for j in range(k)]
    for rows, chunk in vertices.chunks():
        for name, index, prop in columns:
            arrays[name][(rows, *index)] = chunk[prop]
    known = set(REQUIRED) | set(_KNOWN_OPTIONAL) | {f"f_rest_{i}" for i in rest}
    return PlyScene(
        scene=GaussianScene.from_numpy(**arrays),
        format=vertices.format,
        has_normals=all(c in props for c in _KNOWN_OPTIONAL),
        extra_properties=[p for p in props if p not in known],
    )


def read_ply(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    """Read a 3DGS `.ply` into a `GaussianScene` (see module doc for what is accepted)."""
    return read_ply_scene(path).scene.check_finite(str(path), nonfinite)


def _property_names(k: int, normals: bool) -> list[str]:
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals else [])
    names += [f"f_dc_{i}" for i in range(3)] + [f"f_rest_{i}" for i in range(3 * k)]
    return names + ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]


def _header(n: int, names: list[str]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in names] + ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def ply_size(n: int, sh_degree: int, normals: bool = True) -> int:
    """Bytes of the file `write_ply` writes for n Gaussians of an SH degree."""
    names = _property_names(num_sh_rest(sh_degree), normals)
    return len(_header(n, names)) + 4 * len(names) * n


def _rows(p: dict, rows: slice, normals: bool) -> np.ndarray:
    """The INRIA binary rows of the numpy parameters `p` (normals as zeros, as the reference code writes)."""
    n, k = len(p["means"][rows]), p["shN"].shape[1]
    columns = [p["means"][rows]] + ([np.zeros((n, 3), np.float32)] if normals else [])
    columns += [p["sh0"][rows].reshape(n, 3), p["shN"][rows].transpose(0, 2, 1).reshape(n, 3 * k)]
    columns += [p["opacities"][rows].reshape(n, 1), p["scales"][rows], p["quats"][rows]]
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")


def ply_bytes(scene: GaussianScene, normals: bool = True) -> bytes:
    """The INRIA binary layout of a scene, in memory (`write_ply` streams the same bytes to a file)."""
    p = scene.numpy()
    return _header(len(scene), _property_names(p["shN"].shape[1], normals)) + \
        _rows(p, slice(None), normals).tobytes()


def write_ply(path: str | Path, scene: GaussianScene, normals: bool = True) -> None:
    """Write a scene as an INRIA `.ply` atomically, a chunk of rows at a time."""
    p = scene.numpy()
    k = p["shN"].shape[1]
    with atomic_path(path, expected_bytes=ply_size(len(scene), sh_degree_from_rest(k), normals)) as tmp, \
            open(tmp, "wb") as f:
        f.write(_header(len(scene), _property_names(k, normals)))
        for rows in row_chunks(len(scene)):
            f.write(_rows(p, rows, normals).data)

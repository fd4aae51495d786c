"""PlayCanvas compressed `.ply` (legacy, still read by PlayCanvas, SuperSplat and splat-transform; layout
from splat-transform's `write-compressed-ply.ts` / `compressed-chunk.ts` and its reader
`decompress-ply.ts`, MIT).

Gaussians in Morton order, in chunks of 256. A `chunk` element holds 18 float32 per chunk: min and max of
x, y, z, of the three log-scales (clamped to [-20, 20]), and of the DC colour r, g, b (f_dc x SH_C0 + 0.5).
A `vertex` element holds 4 uint32 per Gaussian: position 11/10/11 bits within the chunk's box; rotation
as the index of the largest |component| of the (w, x, y, z) quaternion in the top 2 bits and the other
three as 10-bit unorms of q x sqrt(1/2) + 0.5 (largest made positive); log-scale 11/10/11 bits within the
chunk's range; colour 8 bits per channel within the chunk's range and 8 bits of sigmoid(opacity). An
optional `sh` element holds the f_rest values (INRIA channel-major order) as u8 of trunc((x / 8 + 0.5) x
256). A range narrower than 1e-5 stores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim.errors import GstrimError
from gstrim.io import ply
from gstrim.io.atomic import atomic_path
from gstrim.io.packing import (
    SQRT1_2,
    from_smallest_three,
    largest_first,
    morton_order,
    others,
    sigmoid_logit_clamped,
    to_uint,
    unit_quats,
)
from gstrim.io.quantiser import RoundTrip
from gstrim.scene import SH_C0, GaussianScene, num_sh_rest, row_chunks, sh_degree_from_rest

CHUNK = 256
CHUNK_PROPERTIES = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
                    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_SCALE_LIMIT = 20.0
_NARROW = 1e-5


@dataclass
class CompressedPlyCodes:
    order: torch.Tensor  # [N] scene index of each stored Gaussian (Morton order)
    chunks: torch.Tensor  # [C, 18] float32
    packed: torch.Tensor  # [N, 4] int64 holding uint32 words
    sh: torch.Tensor  # [N, 3K] int64 holding u8, channel-major


def _unorm(v: torch.Tensor, bits: int) -> torch.Tensor:
    top = (1 << bits) - 1
    return to_uint(v * top, top)


def _from_unorm(code: torch.Tensor, bits: int) -> torch.Tensor:
    return (code & ((1 << bits) - 1)).double() / ((1 << bits) - 1)


def _chunk_ranges(values: torch.Tensor, clamp: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk min and max (float32 as stored) of [N, 3] values padded to whole chunks with the last row."""
    n = len(values)
    pad = (-n) % CHUNK
    if pad:
        values = torch.cat([values, values[-1:].expand(pad, -1)])
    v = values.reshape(-1, CHUNK, values.shape[1])
    lo, hi = v.amin(dim=1), v.amax(dim=1)
    if clamp is not None:
        lo, hi = lo.clamp(-clamp, clamp), hi.clamp(-clamp, clamp)
    return lo.float(), hi.float()


def _normalize(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """splat-transform's normalise: 0 below the range, 1 above it, 0 for a range narrower than 1e-5."""
    lo, hi = lo.double(), hi.double()
    t = torch.where(hi - lo < _NARROW, torch.zeros_like(x), (x - lo) / (hi - lo).clamp_min(1e-30))
    return torch.where(x <= lo, 0.0, torch.where(x >= hi, 1.0, t))


def _pack_111011(t: torch.Tensor) -> torch.Tensor:
    return _unorm(t[:, 0], 11) << 21 | _unorm(t[:, 1], 10) << 11 | _unorm(t[:, 2], 11)


def _unpack_111011(word: torch.Tensor) -> torch.Tensor:
    return torch.stack([_from_unorm(word >> 21, 11), _from_unorm(word >> 11, 10), _from_unorm(word, 11)], dim=1)


def file_order(scene: GaussianScene) -> torch.Tensor:
    """The order the file stores the Gaussians in: Morton order of the positions (chunks of neighbours)."""
    return torch.from_numpy(morton_order(scene.means.detach().cpu().numpy())).to(scene.means.device)


def encode(scene: GaussianScene, order: torch.Tensor | None = None) -> CompressedPlyCodes:
    """The file's codes, on the scene's device; `order` (default `file_order(scene)`): the file's Gaussian order
    (any order makes a valid file; fine-tuning keeps the one it started with, so what it trains is what it
    writes)."""
    with torch.no_grad():
        p = {k: v.detach() for k, v in scene.params().items()}
        n = len(scene)
        order = file_order(scene) if order is None else order
        p = {k: v if k == "shN" else v[order] for k, v in p.items()}  # SH reordered chunk by chunk below
        chunk_of = torch.arange(n, device=order.device) // CHUNK
        means, scales = p["means"].double(), p["scales"].double()
        color = p["sh0"][:, 0].double() * SH_C0 + 0.5
        ranges = [_chunk_ranges(means), _chunk_ranges(scales, clamp=_SCALE_LIMIT), _chunk_ranges(color)]

        def fit(values: torch.Tensor, lo_hi: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return _normalize(values, lo_hi[0][chunk_of], lo_hi[1][chunk_of])

        index, q = largest_first(unit_quats(p["quats"].double()))
        three = q.gather(1, others(index)) * SQRT1_2 + 0.5
        rotation = index << 30 | _unorm(three[:, 0], 10) << 20 | _unorm(three[:, 1], 10) << 10 | _unorm(three[:, 2], 10)
        rgb = fit(color, ranges[2])
        alpha = torch.sigmoid(p["opacities"].double())
        colour = (_unorm(rgb[:, 0], 8) << 24 | _unorm(rgb[:, 1], 8) << 16 | _unorm(rgb[:, 2], 8) << 8
                  | _unorm(alpha, 8))
        packed = torch.stack([_pack_111011(fit(means, ranges[0])), rotation,
                              _pack_111011(fit(scales, ranges[1])), colour], dim=1)
        sh = torch.empty(n, 3 * p["shN"].shape[1], dtype=torch.uint8, device=order.device)
        for rows in row_chunks(n):  # float64 temporaries of a chunk, not of the scene
            rest = p["shN"][order[rows]].double().permute(0, 2, 1).reshape(len(sh[rows]), -1)  # channel-major
            sh[rows] = torch.trunc((rest / 8 + 0.5) * 256).clamp_(0, 255)
        chunks = torch.cat([ranges[0][0], ranges[0][1], ranges[1][0], ranges[1][1], ranges[2][0], ranges[2][1]], 1)
        return CompressedPlyCodes(order=order, chunks=chunks, packed=packed, sh=sh)


def decode(codes: CompressedPlyCodes) -> GaussianScene:
    """The stored Gaussians, in file (Morton) order."""
    n = len(codes.packed)
    c = codes.chunks.double()[torch.arange(n, device=codes.packed.device) // CHUNK]

    def lerp(t: torch.Tensor, first: int) -> torch.Tensor:
        lo, hi = c[:, first:first + 3], c[:, first + 3:first + 6]
        return lo * (1 - t) + hi * t

    words = codes.packed
    rot = words[:, 1]
    three = (torch.stack([_from_unorm(rot >> s, 10) for s in (20, 10, 0)], dim=1) - 0.5) / SQRT1_2
    colour = words[:, 3]
    rgb = torch.stack([_from_unorm(colour >> s, 8) for s in (24, 16, 8)], dim=1)
    k = codes.sh.shape[1] // 3
    sh_byte = codes.sh.double()
    unit = torch.where(sh_byte == 0, 0.0, torch.where(sh_byte == 255, 1.0, (sh_byte + 0.5) / 256))
    return GaussianScene(
        means=lerp(_unpack_111011(words[:, 0]), 0).float(),
        scales=lerp(_unpack_111011(words[:, 2]), 6).float(),
        quats=from_smallest_three(rot >> 30, three).float(),
        opacities=sigmoid_logit_clamped(_from_unorm(colour, 8)).float(),
        sh0=((lerp(rgb, 12) - 0.5) / SH_C0).float()[:, None, :],
        shN=((unit - 0.5) * 8).reshape(n, 3, k).permute(0, 2, 1).float(),
    )


def roundtrip(scene: GaussianScene, order: torch.Tensor | None = None) -> GaussianScene:
    """What a compressed `.ply` of the scene (in `order`, see `encode`) decodes to, in the scene's own order, on
    its device."""
    codes = encode(scene, order)
    decoded = decode(codes)
    inverse = torch.empty_like(codes.order)
    inverse[codes.order] = torch.arange(len(codes.order), device=codes.order.device)
    return decoded.subset(inverse)


# ---- bytes ------------------------------------------------------------------------------------------
def _header(n: int, chunks: int, rest: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment written by gstrim (PlayCanvas compressed ply)",
             f"element chunk {chunks}", *[f"property float {p}" for p in CHUNK_PROPERTIES],
             f"element vertex {n}", *[f"property uint {p}" for p in VERTEX_PROPERTIES]]
    if rest:
        lines += [f"element sh {n}", *[f"property uchar f_rest_{i}" for i in range(rest)]]
    return ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")


def compressed_ply_parts(codes: CompressedPlyCodes) -> list:
    """The file's bytes in pieces (header, chunks, vertices, SH), to be written one after the other."""
    n, rest = len(codes.packed), codes.sh.shape[1]
    arrays = [codes.chunks.cpu().numpy().astype("<f4"), codes.packed.cpu().numpy().astype("<u4"),
              np.ascontiguousarray(codes.sh.cpu().numpy(), dtype=np.uint8)]
    return [_header(n, len(codes.chunks), rest)] + [a.reshape(-1).view(np.uint8).data for a in arrays]


def compressed_ply_bytes(codes: CompressedPlyCodes) -> bytes:
    return b"".join(compressed_ply_parts(codes))


def compressed_ply_size(n: int, sh_degree: int) -> int:
    """Bytes of the file `write_compressed_ply` writes for n Gaussians of an SH degree."""
    rest, chunks = 3 * num_sh_rest(sh_degree), math.ceil(n / CHUNK)
    return len(_header(n, chunks, rest)) + 4 * len(CHUNK_PROPERTIES) * chunks + 16 * n + rest * n


def is_compressed_ply(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        return "chunk" in ply.element_names(path)
    except GstrimError:
        return False


def read_codes(path: Path) -> CompressedPlyCodes:
    elements = ply.read_elements(path)
    chunk, vertex = elements.get("chunk"), elements.get("vertex")
    if chunk is None or vertex is None:
        raise GstrimError("not a compressed PLY (needs 'chunk' and 'vertex' elements)", path)
    missing = [p for p in CHUNK_PROPERTIES[:12] if p not in chunk.dtype.names]
    missing += [p for p in VERTEX_PROPERTIES if p not in vertex.dtype.names]
    if missing:
        raise GstrimError(f"compressed PLY lacks properties {', '.join(missing)}", path)
    n = len(vertex)
    if len(chunk) != math.ceil(n / CHUNK):
        raise GstrimError(f"compressed PLY has {len(chunk)} chunks for {n:,} Gaussians "
                          f"(expected {math.ceil(n / CHUNK)})", path)
    columns = [chunk[p].astype(np.float32) for p in CHUNK_PROPERTIES[:12]]
    if "min_r" in chunk.dtype.names:
        columns += [chunk[p].astype(np.float32) for p in CHUNK_PROPERTIES[12:]]
    else:  # the oldest layout: colours stored directly as unorms
        columns += [np.zeros(len(chunk), np.float32)] * 3 + [np.ones(len(chunk), np.float32)] * 3
    sh = elements.get("sh")
    if sh is not None:
        names = [f"f_rest_{i}" for i in range(len(sh.dtype.names))]
        if list(sh.dtype.names) != names or len(sh) != n:
            raise GstrimError("compressed PLY 'sh' element is not f_rest_0..f_rest_3K-1 for every Gaussian", path)
        try:
            sh_degree_from_rest(len(names) // 3)
        except ValueError as exc:
            raise GstrimError(str(exc), path) from None
        sh_codes = np.stack([sh[c] for c in names], axis=1).astype(np.int64)
    else:
        sh_codes = np.zeros((n, 0), np.int64)
    packed = np.stack([vertex[p] for p in VERTEX_PROPERTIES], axis=1).astype(np.int64)
    return CompressedPlyCodes(order=torch.arange(n), chunks=torch.from_numpy(np.stack(columns, axis=1)),
                              packed=torch.from_numpy(packed), sh=torch.from_numpy(sh_codes))


def read_compressed_ply(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    return decode(read_codes(path)).check_finite(str(path), nonfinite)


def write_compressed_ply(path: str | Path, scene: GaussianScene, order: torch.Tensor | None = None) -> None:
    parts = compressed_ply_parts(encode(scene, order))
    with atomic_path(path, expected_bytes=sum(len(part) for part in parts)) as tmp, open(tmp, "wb") as f:
        for part in parts:
            f.write(part)


def quantiser(scene: GaussianScene, options, context) -> RoundTrip:
    """The compressed `.ply` round trip on the scene's device, in the file order of the scene given, kept for the
    fine-tuning and its file (computing the Morton order every step would copy the positions to the host)."""
    order = file_order(scene)
    return RoundTrip(lambda s: roundtrip(s, order), lambda path, s: write_compressed_ply(path, s, order.cpu()),
                     on_device=True)

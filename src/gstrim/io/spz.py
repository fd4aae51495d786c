"""Niantic `.spz` files (spec and reference code: nianticlabs/spz, README and `src/cc/load-spz.cc`, MIT).

Versions 2 and 3 are one gzip stream: a 16-byte header (u32 magic "NGSP", u32 version, u32 count, u8 SH
degree, u8 fractional bits, u8 flags, u8 reserved), then whole-attribute arrays: positions, alphas,
colours, scales, rotations, SH. Version 4 is a 32-byte plain header (..., u8 stream count, u32 offset of a
table of [compressed, uncompressed] u64 sizes) and one zstd stream per attribute. gstrim writes version 3
by default (every viewer reads it) and version 4 on request, and reads 2-4.

Per Gaussian (the reference packer's arithmetic, reproduced here in torch so that format-aware
fine-tuning renders exactly what the file decodes to):
  position   3 x 24-bit signed fixed point, `fractional bits` of fraction (12; fewer when the scene is
             too large for 12, which the header records)
  alpha      u8 of sigmoid(opacity) x 255
  colour     u8 of f_dc x 0.15 x 255 + 127.5
  scale      u8 of (log scale + 10) x 16
  rotation   v3+: 32 bits, the index of the largest |component| of the x y z w quaternion in the top 2
             bits, then the other three in increasing order, each a sign bit and a 9-bit magnitude of
             |q| / sqrt(1/2); v2: three u8 of x y z with w >= 0
  SH         u8 of round(128 x) + 128, rounded to 5 significant bits for degree 1 and 4 for degrees 2-3;
             coefficient-major, colour innermost (gstrim's shN [N, K, 3] order; INRIA's f_rest is
             channel-major)
Coordinates: written in the scene's own frame, as the reference `ply_to_spz` and splat-transform do (the
spec's RUB default applies only when a writer states its source frame, which neither does).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard

from gstrim.errors import ConfigError, GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.limits import Inflating, inflate, no_trailing_bytes, plausible_count
from gstrim.io.packing import (
    SQRT1_2,
    from_smallest_three,
    largest_first,
    others,
    round_half_away,
    sigmoid_logit_clamped,
    to_uint,
    unit_quats,
)
from gstrim.io.quantiser import RoundTrip
from gstrim.options import option
from gstrim.scene import GaussianScene, num_sh_rest, row_chunks, sh_degree_from_rest

MAGIC = 0x5053474E  # "NGSP"
COLOR_SCALE = 0.15
FRACTIONAL_BITS = 12  # ~0.25 mm at metre scale (load-spz.cc)
SH1_BITS, SH_REST_BITS = 5, 4  # the reference packer's defaults
VERSIONS = (2, 3, 4)
WRITE_VERSIONS = (3, 4)
_MAG_BITS = 9
_MAG_MAX = (1 << _MAG_BITS) - 1
_LEGACY_HEADER = struct.Struct("<IIIBBBB")
_HEADER_V4 = struct.Struct("<IIIBBBBI12x")
_ANTIALIASED = 0x1


def budget_options(gaussians: int) -> list[dict]:
    """What `export --max-loss` tries: the SH bits from Niantic's defaults (5 / 4) up to 8."""
    return [{"sh1_bits": sh1, "sh_rest_bits": rest} for sh1 in (5, 6, 8) for rest in (4, 5, 6) if rest <= sh1]


@dataclass
class SpzOptions:
    """The writer's choices (`gstrim export` flags)."""
    version: int = option(3, ".spz version: 3 (gzip, every viewer reads it) or 4 (zstd)", choices=WRITE_VERSIONS,
                          flag="--spz-version")
    sh1_bits: int = option(SH1_BITS, ".spz: significant bits kept of degree-1 SH (1-8; Niantic's default 5)",
                           flag="--spz-sh1-bits")
    sh_rest_bits: int = option(SH_REST_BITS, ".spz: significant bits kept of degree-2 and 3 SH (1-8; Niantic's "
                               "default 4; 6 costs ~35 %% more bytes and keeps ~0.6 dB on chair)",
                               flag="--spz-sh-rest-bits")

    def validate(self) -> None:
        for name in ("sh1_bits", "sh_rest_bits"):
            if not 1 <= getattr(self, name) <= 8:
                raise ConfigError(f"{{{name}}} must be within 1-8, got {getattr(self, name)}", name)
        if self.version not in WRITE_VERSIONS:
            raise ConfigError(f"{{version}} must be one of {WRITE_VERSIONS}, got {self.version}", "version")


@dataclass
class SpzCodes:
    """The integer contents of a `.spz` file (torch int64 tensors), before byte packing."""

    positions: torch.Tensor  # [N, 3] fixed point
    fractional_bits: int
    alphas: torch.Tensor  # [N]
    colors: torch.Tensor  # [N, 3]
    scales: torch.Tensor  # [N, 3]
    rotations: torch.Tensor  # [N] 32-bit smallest-three words (v3+), or [N, 3] u8 (v2)
    sh: torch.Tensor  # [N, K, 3]
    antialiased: bool = False

    def __len__(self) -> int:
        return self.positions.shape[0]


# ---- quantisation (shared by the writer and format-aware fine-tuning) ------------------------------
def fractional_bits_for(means: torch.Tensor) -> int:
    """12, or fewer when a coordinate would overflow 24-bit fixed point with 12."""
    extent = float(means.detach().abs().max()) if len(means) else 0.0
    bits = FRACTIONAL_BITS
    while bits >= 0 and round(extent * 2**bits) > (1 << 23) - 1:
        bits -= 1
    if bits < 0:
        raise GstrimError(f"positions up to {extent:.3g} do not fit .spz's 24-bit fixed point")
    return bits


def _quantize_sh(sh: torch.Tensor, sh1_bits: int, sh_rest_bits: int) -> torch.Tensor:
    for bits in (sh1_bits, sh_rest_bits):
        if not 1 <= bits <= 8:
            raise GstrimError(f".spz SH bits must be within 1-8, got {bits}")
    bucket = torch.full(sh.shape[1:], 1 << (8 - sh_rest_bits), dtype=sh.dtype, device=sh.device)
    bucket[:3] = 1 << (8 - sh1_bits)  # the degree-1 coefficients
    half = torch.div(bucket, 2, rounding_mode="trunc")
    out = torch.empty(sh.shape, dtype=torch.uint8, device=sh.device)
    for rows in row_chunks(len(sh)):  # float temporaries of a chunk, not of the scene
        q = round_half_away(sh[rows] * 128) + 128
        out[rows] = (torch.div(q + half, bucket, rounding_mode="trunc") * bucket).clamp_(0, 255)
    return out


def _pack_rotations(quats_wxyz: torch.Tensor) -> torch.Tensor:
    q = unit_quats(quats_wxyz.double())
    xyzw = torch.cat([q[:, 1:], q[:, :1]], dim=1)
    index, xyzw = largest_first(xyzw)
    rest = xyzw.gather(1, others(index))
    mag = to_uint(_MAG_MAX * rest.abs() / SQRT1_2, _MAG_MAX)
    code = (rest < 0).to(torch.int64) << _MAG_BITS | mag
    return index << 30 | code[:, 0] << 20 | code[:, 1] << 10 | code[:, 2]


def _unpack_rotations(words: torch.Tensor) -> torch.Tensor:
    index = words >> 30
    three = []
    for shift in (20, 10, 0):
        code = (words >> shift) & 0x3FF
        value = SQRT1_2 * (code & _MAG_MAX).double() / _MAG_MAX
        three.append(torch.where((code >> _MAG_BITS) == 1, -value, value))
    xyzw = from_smallest_three(index, torch.stack(three, dim=1))
    return torch.cat([xyzw[:, 3:], xyzw[:, :3]], dim=1).float()


def _unpack_rotations_v2(xyz: torch.Tensor) -> torch.Tensor:
    v = xyz.double() / 127.5 - 1
    w = torch.sqrt((1 - (v * v).sum(dim=1, keepdim=True)).clamp_min(0))
    return torch.cat([w, v], dim=1).float()


def encode(scene: GaussianScene, fractional_bits: int | None = None, sh1_bits: int = SH1_BITS,
           sh_rest_bits: int = SH_REST_BITS) -> SpzCodes:
    """The file's integer codes for a scene (on the scene's device). `sh1_bits` / `sh_rest_bits`: the
    significant bits kept of the degree-1 / degree-2-3 SH bytes (the reference packer's PackOptions;
    readers need not know them)."""
    if fractional_bits is None:
        fractional_bits = fractional_bits_for(scene.means)
    with torch.no_grad():
        f32 = {k: v.detach().float() for k, v in scene.params().items()}
        return SpzCodes(
            positions=round_half_away(f32["means"] * float(1 << fractional_bits)).to(torch.int64),
            fractional_bits=fractional_bits,
            alphas=to_uint(torch.sigmoid(f32["opacities"]) * 255),
            colors=to_uint(f32["sh0"][:, 0] * (COLOR_SCALE * 255) + 127.5),
            scales=to_uint((f32["scales"] + 10) * 16),
            rotations=_pack_rotations(f32["quats"]),
            sh=_quantize_sh(f32["shN"], sh1_bits, sh_rest_bits),
        )


def decode(codes: SpzCodes) -> GaussianScene:
    rotations = codes.rotations
    quats = _unpack_rotations(rotations) if rotations.ndim == 1 else _unpack_rotations_v2(rotations)
    return GaussianScene(
        means=(codes.positions.double() / float(1 << codes.fractional_bits)).float(),
        scales=(codes.scales.float() / 16 - 10),
        quats=quats,
        opacities=sigmoid_logit_clamped(codes.alphas.double() / 255).float(),
        sh0=((codes.colors.double() / 255 - 0.5) / COLOR_SCALE).float()[:, None, :],
        shN=((codes.sh.double() - 128) / 128).float(),
    )


def roundtrip(scene: GaussianScene, sh1_bits: int = SH1_BITS, sh_rest_bits: int = SH_REST_BITS,
              fractional_bits: int | None = None) -> GaussianScene:
    """What a `.spz` of the scene decodes to (no gradient; format-aware fine-tuning adds one)."""
    return decode(encode(scene, fractional_bits, sh1_bits, sh_rest_bits))


# ---- bytes ------------------------------------------------------------------------------------------
def _streams(codes: SpzCodes) -> list[bytes]:
    n = len(codes)
    pos = codes.positions.cpu().numpy().astype("<i4").view(np.uint8).reshape(n, 3, 4)[:, :, :3]
    rot = codes.rotations.cpu().numpy()
    rot_bytes = rot.astype("<u4").tobytes() if rot.ndim == 1 else rot.astype(np.uint8).tobytes()
    out = [np.ascontiguousarray(pos).tobytes()]
    out += [codes.alphas.cpu().numpy().astype(np.uint8).tobytes(),
            codes.colors.cpu().numpy().astype(np.uint8).tobytes(),
            codes.scales.cpu().numpy().astype(np.uint8).tobytes(), rot_bytes]
    if codes.sh.shape[1]:
        out.append(np.ascontiguousarray(codes.sh.cpu().numpy(), dtype=np.uint8).reshape(-1).data)  # not copied
    return out


def spz_bytes(codes: SpzCodes, version: int = 3) -> bytes:
    if version not in WRITE_VERSIONS:
        raise GstrimError(f".spz version {version} cannot be written; choose one of {WRITE_VERSIONS}")
    n, degree = len(codes), sh_degree_from_rest(codes.sh.shape[1])
    flags = _ANTIALIASED if codes.antialiased else 0
    streams = _streams(codes)
    if version == 3:
        header = _LEGACY_HEADER.pack(MAGIC, 3, n, degree, codes.fractional_bits, flags, 0)
        # gzip.compress(header + streams, 9, mtime=0) without joining the streams first: the same bytes
        deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join([deflate.compress(header), *(deflate.compress(s) for s in streams), deflate.flush()])
    compressor = zstandard.ZstdCompressor(level=19)
    packed = [compressor.compress(s) for s in streams]
    toc = b"".join(struct.pack("<QQ", len(c), len(s)) for c, s in zip(packed, streams, strict=True))
    header = _HEADER_V4.pack(MAGIC, 4, n, degree, codes.fractional_bits, flags, len(streams), _HEADER_V4.size)
    return header + toc + b"".join(packed)


def _sizes(n: int, degree: int, version: int) -> list[int]:
    sizes = [9 * n, n, 3 * n, 3 * n, (3 if version == 2 else 4) * n]
    return sizes + ([3 * num_sh_rest(degree) * n] if degree else [])


def _body_from_bytes(data: bytes, path: Path) -> tuple[int, int, int, int, int, list[bytes]]:
    """(version, count, degree, fractional bits, flags, attribute streams) of a .spz file's bytes. Nothing is
    inflated past what the header declares (`io.limits`)."""
    legacy = data[:2] == b"\x1f\x8b"
    if legacy:
        stream = Inflating.of("gzip", data, path, ".spz gzip stream")
        magic, version, n, degree, bits, flags, _ = _LEGACY_HEADER.unpack(stream.take(_LEGACY_HEADER.size))
    else:
        if len(data) < _HEADER_V4.size:
            raise GstrimError("not a .spz file (too short for a header)", path)
        magic, version, n, degree, bits, flags, count, toc = _HEADER_V4.unpack_from(data)
    if magic != MAGIC:
        raise GstrimError("not a .spz file (no NGSP magic)", path)
    if version not in VERSIONS or (legacy and version == 4) or (not legacy and version != 4):
        raise GstrimError(f"unsupported .spz version {version} (gstrim reads {VERSIONS})", path)
    if degree > 3:
        raise GstrimError(f".spz SH degree {degree} is beyond 3, the most gstrim's scenes hold", path)
    plausible_count(n, len(data), path)
    sizes = _sizes(n, degree, version)
    if legacy:
        streams = [stream.take(size) for size in sizes]
        stream.end()
        return version, n, degree, bits, flags, streams
    if count != len(sizes) or toc < _HEADER_V4.size or toc + 16 * count > len(data):
        raise GstrimError(f"corrupt .spz v4 header ({count} streams, table at {toc})", path)
    streams, at = [], toc + 16 * count
    for i, expected in enumerate(sizes):
        packed, raw = struct.unpack_from("<QQ", data, toc + 16 * i)
        if raw != expected or at + packed > len(data):
            raise GstrimError(f"truncated or corrupt .spz v4 stream {i}", path)
        streams.append(inflate("zstd", data[at:at + packed], raw, path, f".spz v4 stream {i}"))
        at += packed
    no_trailing_bytes(at, len(data), path, "the .spz v4 streams")
    return version, n, degree, bits, flags, streams


def codes_from_bytes(data: bytes, path: Path) -> tuple[SpzCodes, int]:
    """(codes, version) of a `.spz` file's bytes."""
    version, n, degree, bits, flags, s = _body_from_bytes(data, path)

    def u8(b: bytes, *shape: int) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(b, np.uint8).astype(np.int64).reshape(n, *shape))

    raw = np.frombuffer(s[0], np.uint8).reshape(n, 3, 3).astype(np.int64)
    fixed = raw[..., 0] | raw[..., 1] << 8 | raw[..., 2] << 16
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    rot = (torch.from_numpy(np.frombuffer(s[4], "<u4").astype(np.int64)) if version >= 3 else u8(s[4], 3))
    k = num_sh_rest(degree)
    codes = SpzCodes(positions=torch.from_numpy(fixed), fractional_bits=bits, alphas=u8(s[1]), colors=u8(s[2], 3),
                     scales=u8(s[3], 3), rotations=rot,
                     sh=u8(s[5], k, 3) if degree else torch.zeros(n, 0, 3, dtype=torch.int64),
                     antialiased=bool(flags & _ANTIALIASED))
    return codes, version


def read_spz(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    codes, _ = codes_from_bytes(path.read_bytes(), path)
    return decode(codes).check_finite(str(path), nonfinite)


def write_spz(path: str | Path, scene: GaussianScene, version: int = 3, sh1_bits: int = SH1_BITS,
              sh_rest_bits: int = SH_REST_BITS) -> None:
    try:
        data = spz_bytes(encode(scene, sh1_bits=sh1_bits, sh_rest_bits=sh_rest_bits), version)
    except GstrimError as exc:
        raise GstrimError(exc.message, path) from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def describe_spz(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    if not path.is_file():
        raise GstrimError("no such file", path)
    codes, version = codes_from_bytes(path.read_bytes(), path)
    details = f"spz (version {version}, {codes.fractional_bits} fractional bits"
    details += ", antialiased)" if codes.antialiased else ")"
    return decode(codes).check_finite(str(path), nonfinite), {"format": details, "extra_properties": []}


def write_with(path: str | Path, scene: GaussianScene, options: SpzOptions | None = None) -> None:
    o = options or SpzOptions()
    write_spz(path, scene, o.version, o.sh1_bits, o.sh_rest_bits)


def quantiser(scene: GaussianScene, options: SpzOptions | None, context) -> RoundTrip:
    """The `.spz` round trip on the scene's device, its fixed-point bits those of the scene given (fine-tuning
    moves positions far too little to change them; reading the extent every step would wait for the GPU)."""
    o = options or SpzOptions()
    bits = fractional_bits_for(scene.means)
    return RoundTrip(lambda s: roundtrip(s, o.sh1_bits, o.sh_rest_bits, bits), lambda path, s: write_with(path, s, o),
                     on_device=True)

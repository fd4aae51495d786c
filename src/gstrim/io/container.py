"""gstrim's compact container (`.gsz`): a table of named arrays, each losslessly coded, with a checksum.

Layout, little-endian:
  magic    8 bytes  b"GSTRIMZ\\0"
  version  u32      FORMAT_VERSION
  header   u32 length, then UTF-8 JSON: {"meta": {...}, "arrays": [{"name", "dtype", "shape", "codec",
           "offset", "length", "attrs"}]}; offsets count from the first byte after the header
  payload  the coded arrays, back to back
  sha256   32 bytes over everything before it

A codec is one `register_codec(Codec(...))`; it codes an array (byte codecs its bytes, `ans` its values
with a model of their own, `io.entropy`). Writing with `AUTO` picks, per array, the smallest of `AUTO_CODECS`.
Version 2 adds the `ans` codec; version 1 files (lzma, zstd, DEFLATE or raw arrays) still read. The file is
written atomically, and a reader verifies the checksum before it decodes anything, so a truncated or
corrupted file is one clear error.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.entropy import ans_decode, ans_encode
from gstrim.io.limits import inflate, no_trailing_bytes

MAGIC = b"GSTRIMZ\0"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_DIGEST = 32
# dtypes an array may have on disk (no object or platform-dependent types)
DTYPES = ("float16", "float32", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")


@dataclass(frozen=True)
class Codec:
    name: str
    encode: Callable[[np.ndarray], bytes]  # a little-endian array -> its blob
    decode: Callable[[bytes, np.dtype, int], np.ndarray]  # (blob, dtype, element count) -> flat array


CODECS: dict[str, Codec] = {}
AUTO = "auto"  # a writer's choice, not a codec: the smallest of AUTO_CODECS per array
AUTO_CODECS = ("lzma", "ans")
V2_CODECS = ("ans",)


def register_codec(codec: Codec) -> Codec:
    CODECS[codec.name] = codec
    return codec


def byte_codec(name: str, compress: Callable[[bytes], bytes], decompress: Callable[[bytes, int], bytes]) -> Codec:
    """A general-purpose codec of an array's bytes; `decompress(blob, size)` gives exactly `size` bytes or fails."""
    return Codec(name, lambda a: compress(a.tobytes()),
                 lambda blob, dtype, count: np.frombuffer(decompress(blob, count * dtype.itemsize), dtype=dtype,
                                                          count=count))


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def _raw(blob: bytes, size: int) -> bytes:
    if len(blob) != size:
        raise ValueError(f"raw array of {len(blob):,} bytes, declared {size:,}")
    return blob


def _inflater(codec: str) -> Callable[[bytes, int], bytes]:
    return lambda blob, size: inflate(codec, blob, size, "", "array")


register_codec(byte_codec("raw", bytes, _raw))
register_codec(byte_codec("deflate", lambda b: zlib.compress(b, 9), _inflater("zlib")))
register_codec(byte_codec("lzma", lambda b: lzma.compress(b, preset=9), _inflater("lzma")))
register_codec(byte_codec("zstd", _zstd_compress, _inflater("zstd")))
register_codec(Codec("ans", ans_encode, ans_decode))


def codec_choices() -> list[str]:
    return sorted([*CODECS, AUTO])


def _coded(data: np.ndarray, codec: str, version: int) -> tuple[str, bytes]:
    if codec != AUTO:
        return codec, CODECS[codec].encode(data)
    # `ans` codes integers, and only version 2 knows it
    usable = [c for c in AUTO_CODECS if c != "ans" or (data.dtype.kind in "iu" and version >= 2)]
    blobs = [(name, CODECS[name].encode(data)) for name in usable]
    return min(blobs, key=lambda b: len(b[1]))


@dataclass
class Entry:
    """One named array with free-form attributes (quantisation parameters, for instance)."""
    data: np.ndarray
    attrs: dict = field(default_factory=dict)
    codec: str | None = None  # this array's codec when not the file's (written); the one it has (read)
    coded_bytes: int | None = None  # its size in the file (read)


def container_bytes(entries: dict[str, Entry], meta: dict, codec: str = "lzma", version: int = FORMAT_VERSION) -> bytes:
    if codec not in CODECS and codec != AUTO:
        raise GstrimError(f"unknown codec {codec!r}; use one of {', '.join(codec_choices())}")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"no .gsz container version {version}")
    table, blobs, offset = [], [], 0
    for name, entry in entries.items():
        data = np.ascontiguousarray(entry.data)
        if data.dtype.name not in DTYPES:
            raise ValueError(f"array {name!r} has dtype {data.dtype}, not one of {DTYPES}")
        used, blob = _coded(data.astype(data.dtype.newbyteorder("<"), copy=False), entry.codec or codec, version)
        if version == 1 and used in V2_CODECS:
            raise ValueError(f"array {name!r}: codec {used!r} needs .gsz container version 2")
        table.append({"name": name, "dtype": data.dtype.name, "shape": list(data.shape), "codec": used,
                      "offset": offset, "length": len(blob), "attrs": entry.attrs})
        blobs.append(blob)
        offset += len(blob)
    header = json.dumps({"meta": meta, "arrays": table}, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<II", version, len(header)) + header + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def write_container(path: str | Path, entries: dict[str, Entry], meta: dict, codec: str = "lzma",
                    version: int = FORMAT_VERSION) -> int:
    """Write atomically; returns the file size in bytes."""
    data = container_bytes(entries, meta, codec, version)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_container(path: str | Path, check_declared: Callable[[dict, list[dict], int], None] | None = None,
                   ) -> tuple[dict[str, Entry], dict]:
    """(arrays, meta) of a .gsz file; one-line errors for anything that is not an intact file we can read.
    `check_declared(meta, table, file_bytes)` refuses (ValueError) declared shapes its kind of file cannot have,
    before anything is decoded; every array is then decoded to exactly its declared size (`io.limits`)."""
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise GstrimError("not a gstrim .gsz file (bad magic)", path)
    if len(data) < len(MAGIC) + 8 + _DIGEST:
        raise GstrimError("truncated .gsz file", path)
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    version, header_len = struct.unpack_from("<II", data, len(MAGIC))
    if version not in READABLE_VERSIONS:
        raise GstrimError(f".gsz format version {version} is not supported (this gstrim reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))})", path)
    if hashlib.sha256(body).digest() != digest:
        raise GstrimError("checksum mismatch: the .gsz file is truncated or corrupted", path)
    start = len(MAGIC) + 8
    try:
        if start + header_len > len(body):
            raise ValueError(f"header of {header_len:,} bytes runs past the file")
        header = json.loads(body[start:start + header_len])
        payload = body[start + header_len:]
        table = _declared_table(header, len(payload))
        if check_declared is not None:
            check_declared(header["meta"], table, len(data))
        entries = {}
        for item in table:
            blob = payload[item["offset"]:item["offset"] + item["length"]]
            dtype, count = np.dtype(item["dtype"]).newbyteorder("<"), math.prod(item["shape"])
            array = CODECS[item["codec"]].decode(blob, dtype, count).reshape(item["shape"])
            entries[item["name"]] = Entry(array.astype(item["dtype"]), item.get("attrs", {}), item["codec"],
                                          len(blob))
        return entries, header["meta"]
    except GstrimError as exc:
        raise GstrimError(exc.message, path) from None
    except Exception as exc:  # past the checksum only a file another program wrote gets here
        raise GstrimError(f"malformed .gsz file: {exc}", path) from exc


def _declared_table(header: dict, payload_bytes: int) -> list[dict]:
    """The array table, checked: known dtypes and codecs, shapes of non-negative integers, and blobs that tile
    the payload exactly (no gaps, no overlap, nothing after the last one)."""
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) \
            or not isinstance(header.get("arrays"), list):
        raise ValueError("header lacks its meta and array table")
    at = 0
    for item in header["arrays"]:
        if item.get("dtype") not in DTYPES or item.get("codec") not in CODECS:
            raise ValueError(f"array {item.get('name')!r}: unsupported dtype or codec")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"array {item['name']!r}: shape {shape!r} is not a list of sizes")
        if item.get("offset") != at or not isinstance(item.get("length"), int) or item["length"] < 0:
            raise ValueError(f"array {item['name']!r}: its bytes do not follow the previous array's")
        at += item["length"]
    no_trailing_bytes(at, payload_bytes, "", "the declared arrays")
    if at > payload_bytes:
        raise ValueError(f"the arrays need {at:,} bytes, the payload holds {payload_bytes:,}")
    return header["arrays"]

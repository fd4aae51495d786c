"""gstrim's compact container (`.gsz`): a table of named arrays, each losslessly coded, with a checksum.

Layout, little-endian:
  magic    8 bytes  b"GSTRIMZ\\0"
  version  u32      FORMAT_VERSION
  header   u32 length, then UTF-8 JSON: {"meta": {...}, "arrays": [{"name", "dtype", "shape", "codec",
           "offset", "length", "attrs"}]}; offsets count from the first byte after the header
  payload  the coded arrays, back to back
  sha256   32 bytes over everything before it

A codec is one `register_codec(Codec(...))`. The file is written atomically, and a reader verifies the
checksum before it decodes anything, so a truncated or corrupted file is one clear error.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path

MAGIC = b"GSTRIMZ\0"
FORMAT_VERSION = 1
_DIGEST = 32
# dtypes an array may have on disk (no object or platform-dependent types)
DTYPES = ("float16", "float32", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")


@dataclass(frozen=True)
class Codec:
    name: str
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]


CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> Codec:
    CODECS[codec.name] = codec
    return codec


def _zstd() -> tuple[Callable, Callable]:
    import zstandard

    return (lambda b: zstandard.ZstdCompressor(level=19).compress(b),
            lambda b: zstandard.ZstdDecompressor().decompress(b))


register_codec(Codec("raw", bytes, bytes))
register_codec(Codec("deflate", lambda b: zlib.compress(b, 9), zlib.decompress))
register_codec(Codec("lzma", lambda b: lzma.compress(b, preset=9), lzma.decompress))
register_codec(Codec("zstd", lambda b: _zstd()[0](b), lambda b: _zstd()[1](b)))


@dataclass
class Entry:
    """One named array with free-form attributes (quantisation parameters, for instance)."""
    data: np.ndarray
    attrs: dict = field(default_factory=dict)


def container_bytes(entries: dict[str, Entry], meta: dict, codec: str = "lzma") -> bytes:
    if codec not in CODECS:
        raise GstrimError(f"unknown codec {codec!r}; use one of {', '.join(sorted(CODECS))}")
    table, blobs, offset = [], [], 0
    for name, entry in entries.items():
        data = np.ascontiguousarray(entry.data)
        if data.dtype.name not in DTYPES:
            raise ValueError(f"array {name!r} has dtype {data.dtype}, not one of {DTYPES}")
        blob = CODECS[codec].encode(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
        table.append({"name": name, "dtype": data.dtype.name, "shape": list(data.shape), "codec": codec,
                      "offset": offset, "length": len(blob), "attrs": entry.attrs})
        blobs.append(blob)
        offset += len(blob)
    header = json.dumps({"meta": meta, "arrays": table}, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<II", FORMAT_VERSION, len(header)) + header + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def write_container(path: str | Path, entries: dict[str, Entry], meta: dict, codec: str = "lzma") -> int:
    """Write atomically; returns the file size in bytes."""
    data = container_bytes(entries, meta, codec)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_container(path: str | Path) -> tuple[dict[str, Entry], dict]:
    """(arrays, meta) of a .gsz file; one-line errors for anything that is not an intact file we can read."""
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
    if version != FORMAT_VERSION:
        raise GstrimError(f".gsz format version {version} is not supported (this gstrim reads {FORMAT_VERSION})",
                          path)
    if hashlib.sha256(body).digest() != digest:
        raise GstrimError("checksum mismatch: the .gsz file is truncated or corrupted", path)
    start = len(MAGIC) + 8
    try:
        header = json.loads(body[start:start + header_len])
        payload = body[start + header_len:]
        entries = {}
        for item in header["arrays"]:
            blob = payload[item["offset"]:item["offset"] + item["length"]]
            if item["dtype"] not in DTYPES or item["codec"] not in CODECS:
                raise ValueError(f"array {item['name']!r}: unsupported dtype or codec")
            raw = CODECS[item["codec"]].decode(blob)
            array = np.frombuffer(raw, dtype=np.dtype(item["dtype"]).newbyteorder("<")).reshape(item["shape"])
            entries[item["name"]] = Entry(array.astype(item["dtype"]), item.get("attrs", {}))
        return entries, header["meta"]
    except Exception as exc:  # past the checksum only a file another program wrote gets here
        raise GstrimError(f"malformed .gsz file: {exc}", path) from exc

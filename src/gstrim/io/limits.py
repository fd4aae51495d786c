"""What a reader may allocate for a file, in one place: every reader checks the counts a file declares against
the bytes it holds before it decodes, and decompresses through `inflate`, which is told the exact size it may
produce and stops there.

A file from the web can lie: a header of 10 Gaussians in front of a gzip stream that inflates to 1 GB, a zip
member that inflates past its directory entry, an entropy-coded array that declares 4e9 symbols in 300 bytes.
The rules, applied by every reader of `io` and `data`:
- a declared Gaussian count must be plausible for the bytes present: at most one Gaussian per
  `MIN_BYTES_PER_GAUSSIAN` bytes of the file (`plausible_count`); the field's best codecs spend about 32 bits
  per Gaussian (CodecGS, as the 3DGS.zip survey tables it, docs/compression.md) and gstrim's `.gsz` v2 about
  80-100, so 16 bits refuses only counts that no data backs, and bounds what a small file can make a reader
  decode (a 2 MB file: at most a million Gaussians);
- every compressed member inflates to exactly the size its header implies: a byte more or less is an error
  (`inflate`), so trailing data inside a stream is refused before it is allocated;
- bytes after a declared payload are an error (`no_trailing_bytes`);
- text a reader parses whole (JSON) is at most `MAX_TEXT_BYTES`, and a width or height a file declares is bounded
  (`image_side`), checked before any pixels are decoded.
"""

from __future__ import annotations

import gzip
import io
import lzma
import zipfile
import zlib
from pathlib import Path

import zstandard

from gstrim.errors import GstrimError

MIN_BYTES_PER_GAUSSIAN = 2
MAX_TEXT_BYTES = 256 << 20  # cameras.json / transforms.json / meta.json: 100k cameras take ~50 MB
MAX_IMAGE_SIDE = 32768  # a camera's or a photo's width or height (WebGL's largest textures are 16384)
_READ_CHUNK = 1 << 24


def plausible_count(n: int, stored_bytes: int, path: Path | str, what: str = "Gaussians") -> int:
    """`n` if `stored_bytes` could hold `n` Gaussians (or other items) at all; a one-line error otherwise."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise GstrimError(f"declared {what} count {n!r} is not a non-negative integer", path)
    if n > stored_bytes // MIN_BYTES_PER_GAUSSIAN:
        raise GstrimError(f"declares {n:,} {what} but holds {stored_bytes:,} bytes (at least "
                          f"{MIN_BYTES_PER_GAUSSIAN} per Gaussian): the count is false", path)
    return n


def no_trailing_bytes(used: int, total: int, path: Path | str, what: str = "the declared data") -> None:
    if total > used:
        raise GstrimError(f"{total - used:,} bytes after {what}", path)


class _ZlibStream:
    """A zlib (DEFLATE with its header) stream read like a file; data after its end is an error."""

    def __init__(self, data: bytes):
        self._d, self._pending = zlib.decompressobj(), data

    def read(self, n: int) -> bytes:
        out = self._d.decompress(self._pending, n)
        self._pending = self._d.unconsumed_tail
        if self._d.eof and self._d.unused_data:
            raise ValueError(f"{len(self._d.unused_data):,} bytes after the compressed stream")
        return out


_OPENERS = {
    "gzip": lambda data: gzip.GzipFile(fileobj=io.BytesIO(data)),
    "lzma": lambda data: lzma.LZMAFile(io.BytesIO(data)),  # noqa: SIM115 (in-memory, nothing to close)
    "zstd": lambda data: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True),
    "zlib": _ZlibStream,
}
# what a damaged stream raises (zip: also an encrypted or unknown-method member)
_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error, ValueError, zipfile.BadZipFile,
           RuntimeError, NotImplementedError)


class Inflating:
    """A decompressing stream read piece by piece, each piece of a size the file declares (a header first, then
    what the header says), never reading more than asked; `end()` refuses anything the stream holds beyond the
    last piece (one byte is read to know)."""

    def __init__(self, stream, path: Path | str, what: str):
        self._stream, self.path, self.what = stream, path, what

    @classmethod
    def of(cls, codec: str, data: bytes, path: Path | str, what: str) -> Inflating:
        """`data` decompressed with `codec`: gzip, zlib, lzma or zstd."""
        return cls(_OPENERS[codec](data), path, what)

    def _read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except _ERRORS as exc:
            raise GstrimError(f"corrupt {self.what} ({exc})", self.path) from None

    def take(self, size: int) -> bytes:
        parts, got = [], 0
        while got < size:
            part = self._read(min(_READ_CHUNK, size - got))
            if not part:
                raise GstrimError(f"truncated {self.what}: it ends after {got:,} of the {size:,} bytes declared",
                                  self.path)
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def end(self) -> None:
        if self._read(1):
            raise GstrimError(f"{self.what} holds data after its declared contents", self.path)


def inflate(codec: str, data: bytes, size: int, path: Path | str, what: str) -> bytes:
    """The `size` bytes `data` decompresses to with `codec`; a one-line error where it would produce more or fewer,
    or is damaged. Never holds more than `size + 1` bytes of output."""
    stream = Inflating.of(codec, data, path, what)
    out = stream.take(size)
    stream.end()
    return out


def zip_member(z: zipfile.ZipFile, name: str, max_size: int, path: Path | str) -> bytes:
    """A zip member of at most `max_size` bytes, by its directory entry and by what it really inflates to."""
    info = z.getinfo(name)
    if info.file_size > max_size:
        raise GstrimError(f"zip member {name} declares {info.file_size:,} bytes, more than the {max_size:,} its "
                          f"contents can need", path)
    try:
        member = z.open(info)
    except _ERRORS as exc:
        raise GstrimError(f"corrupt zip member {name} ({exc})", path) from None
    with member:
        stream = Inflating(member, path, f"zip member {name}")
        out = stream.take(info.file_size)
        stream.end()  # the end of the member: its CRC is checked here
    return out


def read_text_bytes(path: Path, max_size: int = MAX_TEXT_BYTES) -> bytes:
    """A text file read whole (JSON), refused past `max_size` before it is read."""
    size = path.stat().st_size
    if size > max_size:
        raise GstrimError(f"{size:,} bytes is more than the {max_size:,} gstrim reads as text", path)
    return path.read_bytes()


def image_side(value, path: Path | str, what: str) -> int:
    """A width or height a file declares: a positive integer up to MAX_IMAGE_SIDE."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if not whole or isinstance(value, bool) or not 0 < value <= MAX_IMAGE_SIDE:
        raise GstrimError(f"{what} {value!r} is not a size in pixels (1-{MAX_IMAGE_SIDE})", path)
    return int(value)

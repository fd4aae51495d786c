"""Entropy coding of integer streams: rANS with an order-0 model fitted to each stream (`constriction`,
Bamler 2022), and the variable-length bit packing of `io.positions`.

A stream's model is its histogram, stored in front of it (the alphabet as deltas and the counts, both
lzma-coded): a stream of a few symbols (position lengths, opacities) pays a few bytes for it, a codebook
index over thousands of entries pays more, which is why `.gsz` picks per array the smaller of this and lzma
(`container.AUTO`). Measured on chair_400's 80 % trim (docs/compression.md, "Where the bits go").

Blob: u32 model length, the lzma-coded model (u32 alphabet size, int64 alphabet deltas, u32 counts), then the
rANS words (u32).
"""

from __future__ import annotations

import lzma
import struct

import constriction
import numpy as np

from gstrim.io.limits import Inflating


def _as_integers(dtype: np.dtype) -> np.dtype:
    """Floats are coded as their bit patterns."""
    return np.dtype(f"<u{dtype.itemsize}") if dtype.kind == "f" else dtype


def _model(counts: np.ndarray):
    """The order-0 model of a stream: its histogram (the same floats, so the same model, on both sides)."""
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


def ans_encode(values: np.ndarray) -> bytes:
    values = np.ascontiguousarray(values)
    flat = values.view(_as_integers(values.dtype)).reshape(-1).astype(np.int64)
    alphabet, symbols, counts = np.unique(flat, return_inverse=True, return_counts=True)
    model = struct.pack("<I", len(alphabet)) + np.diff(alphabet, prepend=0).astype("<i8").tobytes() \
        + counts.astype("<u4").tobytes()
    model = lzma.compress(model, preset=9)
    words = np.zeros(0, np.uint32)
    if len(alphabet) > 1:  # one symbol: its count says everything
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols.astype(np.int32), _model(counts))
        words = coder.get_compressed()
    return struct.pack("<I", len(model)) + model + words.astype("<u4").tobytes()


def ans_decode(blob: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    """`count` values of `dtype`; the model is inflated only as far as its alphabet size says (at most one
    entry per symbol), so a blob cannot make the decoder allocate more than the `count` it was asked for."""
    (model_len,) = struct.unpack_from("<I", blob)
    model = Inflating.of("lzma", blob[4:4 + model_len], "", "entropy model")
    (size,) = struct.unpack("<I", model.take(4))
    if size > max(count, 1):
        raise ValueError(f"entropy model of {size:,} symbols for a stream of {count:,}")
    alphabet = np.cumsum(np.frombuffer(model.take(8 * size), "<i8"))
    counts = np.frombuffer(model.take(4 * size), "<u4")
    model.end()
    if int(counts.sum(dtype=np.int64)) != count:
        raise ValueError(f"entropy-coded stream holds {int(counts.sum(dtype=np.int64))} symbols, not {count}")
    integers = _as_integers(np.dtype(dtype))
    if size <= 1:
        return np.full(count, alphabet[0] if size else 0, dtype=integers).view(dtype)
    words = np.frombuffer(blob, "<u4", offset=4 + model_len).astype(np.uint32)
    symbols = constriction.stream.stack.AnsCoder(words).decode(_model(counts), count)
    return alphabet.astype(integers)[symbols].view(dtype)


# ---- variable-length bit fields ---------------------------------------------------------------------------


def pack_bits(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The low `lengths[i]` bits of each value, back to back, most significant first, as bytes."""
    total = int(lengths.sum())
    out = np.zeros((total + 7) // 8, np.uint8)
    from gstrim.io.bit_kernels import pack

    pack(values.astype(np.uint64), lengths.astype(np.int64), out)
    return out


def unpack_bits(data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    if int(lengths.sum()) > 8 * len(data):
        raise ValueError("bit stream shorter than its lengths say")
    out = np.zeros(len(lengths), np.uint64)
    from gstrim.io.bit_kernels import unpack

    unpack(data.astype(np.uint8), lengths.astype(np.int64), out)
    return out

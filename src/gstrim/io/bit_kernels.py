"""The Numba kernels of `entropy.pack_bits` / `unpack_bits` (variable-length bit fields), apart so that Numba is
imported, and compiled, only by the commands that code such fields."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def pack(values, lengths, out):
    pos = 0
    for i in range(len(values)):
        v, n = values[i], lengths[i]
        for j in range(n - 1, -1, -1):  # most significant bit first
            if (v >> np.uint64(j)) & np.uint64(1):
                out[pos >> 3] |= np.uint8(128 >> (pos & 7))
            pos += 1


@numba.njit(cache=True)
def unpack(data, lengths, out):
    pos = 0
    for i in range(len(lengths)):
        v = np.uint64(0)
        for _ in range(lengths[i]):
            bit = (data[pos >> 3] >> (7 - (pos & 7))) & 1
            v = (v << np.uint64(1)) | np.uint64(bit)
            pos += 1
        out[i] = v

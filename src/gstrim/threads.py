"""One thread count for torch and Numba together (`--threads N`, or the GSTRIM_THREADS variable), so that
several gstrim jobs can share a machine without each starting a thread per core in both libraries."""

from __future__ import annotations

import os
import sys

from gstrim.errors import ConfigError

ENV = "GSTRIM_THREADS"


def set_threads(count: int | None = None) -> int | None:
    """Use `count` threads (default: $GSTRIM_THREADS; neither: the libraries' own defaults). Returns it."""
    if count is None:
        value = os.environ.get(ENV)
        if not value:
            return None
        try:
            count = int(value)
        except ValueError:
            raise ConfigError(f"{{threads}} must be a whole number, got {ENV}={value!r}", "threads") from None
    if count < 1:
        raise ConfigError(f"{{threads}} must be at least 1, got {count}", "threads")
    import torch

    torch.set_num_threads(count)
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(count)  # Numba's pool is sized when it is first imported
    else:
        import numba

        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    return count

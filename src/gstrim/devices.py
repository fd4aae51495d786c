"""Which compute path a device takes: gstrim's CPU kernels (Numba) or torch / gsplat on the device itself.

One switch for every stage that has both (the renderer, the pruning scores' pixel statistics, k-means
seeding), so that a run on a GPU never falls back to a CPU kernel, and so that the test suite can send a CPU
run down the device paths (`tests/test_device_paths.py` patches this function) to prove it.
"""

from __future__ import annotations

import torch


def uses_cpu_kernels(device: torch.device | str) -> bool:
    """Work on tensors of `device` runs gstrim's Numba kernels (True on the CPU), else torch and gsplat on it."""
    return torch.device(device).type == "cpu"

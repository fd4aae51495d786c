"""Quantisation-aware fine-tuning of a codebook scene (c3dgs, Niedermayr et al. 2024, §3.3, `finetune.py`):
the trainer's plain loop through a `Parameterization` whose tensors are the codebook entries and the
per-Gaussian attributes, decoded through 8-bit fake quantisation (opacity, scale norm, unit scale,
rotation, DC and higher SH codebooks) and float16 positions, with the 3DGS loss and learning rates and the
position rate at its final value. What the last step renders is exactly what the written file decodes to.
"""

from __future__ import annotations

import torch

from gstrim.compress.quantize import FakeQuant8, QuantParams, fake_half
from gstrim.io.gsz import QUANTIZED, CodebookScene, decode_codebooks
from gstrim.scene import GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates
from gstrim.train.parameterization import Parameterization

_INDICES = ("sh_index", "shape_index")


def rates(lrs: LearningRates, extent: float) -> dict[str, float]:
    """Each tensor's rate: the 3DGS rate of the attribute it holds (scale norm and unit scale: the scale
    rate, as c3dgs), positions at the final position rate."""
    return {"means": lrs.means_final * extent, "opacities": lrs.opacities, "scale_norms": lrs.scales,
            "unit_scales": lrs.scales, "rotations": lrs.quats, "sh_dc": lrs.sh0, "sh_rest": lrs.shN}


class QuantizedParameters(Parameterization):
    def __init__(self, codebooks: CodebookScene, lrs: LearningRates | None = None, bits: dict[str, int] | None = None):
        self.codebooks = codebooks
        self.lrs = lrs or LearningRates()
        self.indices = {k: getattr(codebooks, k) for k in _INDICES}
        # 8 bits each (c3dgs) unless `bits` names fewer (`compress --sh-bits`)
        self.quantizers = {name: FakeQuant8((bits or {}).get(name, 8)) for name in QUANTIZED}

    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        """The codebook scene given at construction (`scene` is its decoding, for the trainer's count)."""
        return {k: v for k, v in self.codebooks.tensors().items() if k not in _INDICES}

    def decode(self, params: Params) -> GaussianScene:
        device = params["means"].device
        quantized = {name: self.quantizers[name].to(device)(params[name]) for name in QUANTIZED}
        indices = {k: (v.to(device) if v is not None else None) for k, v in self.indices.items()}
        grid = self.codebooks.grid
        means = grid.fake_quantize(params["means"]) if grid is not None else fake_half(params["means"])
        return decode_codebooks(means=means, **quantized, **indices, shared_dc=self.codebooks.shared_dc)

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        rate = rates(self.lrs, extent)
        return {name: torch.optim.Adam([p], lr=rate[name], eps=ADAM_EPS, fused=True) for name, p in params.items()}

    def state_dict(self) -> dict:
        return {"quantizers": {k: {n: b.cpu().clone() for n, b in q.state_dict().items()}
                               for k, q in self.quantizers.items()},
                "indices": {k: (v.clone() if v is not None else None) for k, v in self.indices.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, q in self.quantizers.items():
            q.load_state_dict(state["quantizers"][k])
        self.indices = dict(state["indices"])

    # ---- what the file stores --------------------------------------------------------------------
    def codebook_scene(self, params: Params) -> CodebookScene:
        """The current (unquantised) tensors with the fixed indices; `write_gsz` with `quant_params()`
        quantises them exactly as the fake quantisers do."""
        tensors = {k: v.detach().cpu().clone() for k, v in params.items()}
        return CodebookScene(**tensors, **self.indices, shared_dc=self.codebooks.shared_dc, grid=self.codebooks.grid)

    def quant_params(self, params: Params) -> dict[str, QuantParams]:
        """The quantisers' parameters (observing `params` first where no step has yet)."""
        for name, q in self.quantizers.items():
            if not torch.isfinite(q.lo):
                q.observe(params[name])
        return {name: q.params() for name, q in self.quantizers.items()}

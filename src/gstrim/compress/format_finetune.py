"""Format-aware fine-tuning: the trainer's plain loop through a viewer format's own quantiser.

`FormatParameters` optimises the scene's raw parameters (and, for SOG, its codebooks and SH palette) and
decodes them to exactly what the file will decode to, with straight-through gradients (Bengio et al.
2013, as c3dgs's fake quantisation): the forward pass is the format's round trip, the backward pass the
identity. The file written from the final parameters therefore renders as the last fine-tuning step did.
"""

from __future__ import annotations

import torch

from gstrim.compress.finetune import rates
from gstrim.io import sog
from gstrim.io.formats import SceneFormat
from gstrim.scene import PARAM_NAMES, GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates
from gstrim.train.parameterization import Parameterization

_BOOKS = {"scales": "book_scales", "sh0": "book_sh0", "sh": "book_sh", "palette": "palette"}


def straight_through(scene: GaussianScene, decoded: GaussianScene) -> GaussianScene:
    """`decoded`'s values with `scene`'s gradients."""
    return GaussianScene(**{k: decoded.params()[k].to(v) + (v - v.detach()) for k, v in scene.params().items()})


class FormatParameters(Parameterization):
    def __init__(self, fmt: SceneFormat, books: sog.SogCodebooks | None = None, lrs: LearningRates | None = None,
                 save=None, roundtrip=None):
        """`books`: SOG's codebooks (formats without a `roundtrip`); `save(path, scene)` and `roundtrip(scene)`:
        the writer and its round trip, when not the format's defaults (`.spz` version 4 or other SH bits)."""
        if fmt.roundtrip is None and books is None:
            raise ValueError(f"format {fmt.name!r} needs codebooks to be fine-tuned through")
        self.fmt, self.books, self.lrs = fmt, books, lrs or LearningRates()
        self.save, self.roundtrip = save or fmt.save, roundtrip or fmt.roundtrip

    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        params = dict(scene.params())
        if self.books is not None:
            del params["shN"]  # the palette and the fixed labels stand for it
            params |= {name: getattr(self.books, field).clone().float() for field, name in _BOOKS.items()}
        return params

    def _books(self, params: Params) -> sog.SogCodebooks:
        return sog.SogCodebooks(**{field: params[name] for field, name in _BOOKS.items()},
                                labels=self.books.labels.to(params["means"].device))

    def raw_scene(self, params: Params) -> GaussianScene:
        """The unquantised scene the file is written from."""
        if self.books is None:
            return GaussianScene(**{k: params[k] for k in PARAM_NAMES})
        shN = params["palette"].new_zeros(len(params["means"]), params["palette"].shape[1], 3)
        return GaussianScene(**{k: params[k] for k in PARAM_NAMES if k != "shN"}, shN=shN)

    def decode(self, params: Params) -> GaussianScene:
        scene = self.raw_scene(params)
        if self.books is not None:
            return sog.fake_quantize(scene, self._books(params))
        return straight_through(scene, self.roundtrip(scene.to("cpu") if scene.means.is_cuda else scene))

    def write(self, path, params: Params) -> None:
        """The file, from the current parameters."""
        with torch.no_grad():
            scene = self.raw_scene({k: v.detach() for k, v in params.items()})
            if self.books is not None:
                sog.write_sog(path, scene.to("cpu"), self._books({k: v.detach().cpu() for k, v in params.items()}))
            else:
                self.save(path, scene.to("cpu"))

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        lrs = self.lrs
        rate = {"means": rates(lrs, extent)["means"], "scales": lrs.scales, "quats": lrs.quats,
                "opacities": lrs.opacities, "sh0": lrs.sh0, "shN": lrs.shN, "book_scales": lrs.scales,
                "book_sh0": lrs.sh0, "book_sh": lrs.shN, "palette": lrs.shN}
        return {name: torch.optim.Adam([p], lr=rate[name], eps=ADAM_EPS, fused=True) for name, p in params.items()}

    def state_dict(self) -> dict:
        return {"labels": self.books.labels.clone()} if self.books is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.books is not None:
            self.books.labels = state["labels"]

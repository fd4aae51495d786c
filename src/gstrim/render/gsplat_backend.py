"""GPU backend: gsplat's CUDA `rasterization` (nerfstudio-project/gsplat >= 1.5) behind gstrim's interface.

Colours are evaluated by gstrim's own SH code (`render/sh.py`) and handed to gsplat as post-activation
colours, so both backends share the colour model; the remaining differences are gsplat's: its alpha cap
is 0.999 (3DGS: 0.99), its opacity-aware tile box (min(3.33, sqrt(2 ln(255 o))) sigma per axis, where 3DGS
takes 3 sigma of the largest axis; a Gaussian of opacity < 1/255 is not drawn at all), and its 2-D means
gradient is read from `meta["means2d"]`, per camera. `tests/test_gsplat.py` checks this glue against the CPU
backend, on a GPU and, through pure-PyTorch stand-ins for gsplat's CUDA calls, on the CPU.
"""

from __future__ import annotations

from importlib.util import find_spec

import torch

from gstrim.render.project import DILATION, NEAR_PLANE


def gsplat_available() -> bool:
    """gsplat is installed and a CUDA device is present."""
    return find_spec("gsplat") is not None and torch.cuda.is_available()


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width, height, background, covars=None):
    """Returns (image [H, W, 3], alpha [H, W], means2d [1, N, 2] (graph node), radii [N], depths [N]).
    `covars` [N, 3, 3]: world covariances in place of quats and log-scales (which are then ignored)."""
    from gsplat import rasterization

    device = means.device
    shape = {"quats": quats, "scales": torch.exp(scales)} if covars is None else {
        "quats": None, "scales": None, "covars": covars}
    image, alpha, meta = rasterization(
        means=means, **shape, opacities=torch.sigmoid(opacities), colors=colors,
        viewmats=viewmat.to(device)[None], Ks=K.to(device)[None], width=width, height=height,
        near_plane=NEAR_PLANE, eps2d=DILATION, sh_degree=None, packed=False,
        backgrounds=background.to(device)[None], rasterize_mode="classic",
    )
    radii = meta["radii"][0]
    if radii.ndim == 2:  # gsplat 1.5 gives per-axis radii
        radii = radii.amax(dim=-1)
    return image[0], alpha[0, ..., 0], meta["means2d"], radii.to(torch.int32), meta["depths"][0]

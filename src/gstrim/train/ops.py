"""Edits of the Gaussian population that keep parameters, Adam state and strategy state in step.

The shape follows gsplat's strategy ops (`gsplat/strategy/ops.py`: remove, duplicate, split, reset
opacity): `params` is a dict of `torch.nn.Parameter` keyed by the `GaussianScene` names, `optimizers` holds
one Adam per key, `state` holds per-Gaussian tensors of the strategy (first axis N) and anything else.
Adam moments follow their Gaussians; new Gaussians start with zero moments (as in 3DGS).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gstrim.render.project import quat_to_rotmat

Params = dict[str, torch.nn.Parameter]
Optimizers = dict[str, torch.optim.Optimizer]


def _edit(params: Params, optimizers: Optimizers, state: dict,
          param_fn: Callable[[str, torch.Tensor], torch.Tensor],
          moment_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace every parameter by `param_fn(name, old)` and every Adam moment by `moment_fn(old)`."""
    n = next(iter(params.values())).shape[0]
    for name, old in list(params.items()):
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        optimizer = optimizers.get(name)
        if optimizer is not None:
            moments = optimizer.state.pop(old, None)
            if moments is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    moments[key] = moment_fn(moments[key])
                optimizer.state[new] = moments
            for group in optimizer.param_groups:
                group["params"] = [new if p is old else p for p in group["params"]]
        params[name] = new
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
            state[key] = moment_fn(value)


def remove(params: Params, optimizers: Optimizers, state: dict, mask: torch.Tensor) -> None:
    """Delete the Gaussians where `mask` is True."""
    keep = ~mask
    _edit(params, optimizers, state, lambda _, p: p[keep], lambda m: m[keep])


def _append_zeros(m: torch.Tensor, count: int) -> torch.Tensor:
    return torch.cat([m, m.new_zeros((count, *m.shape[1:]))])


def duplicate(params: Params, optimizers: Optimizers, state: dict, mask: torch.Tensor) -> None:
    """Append a copy of each selected Gaussian (3DGS "clone")."""
    count = int(mask.sum())
    _edit(params, optimizers, state, lambda _, p: torch.cat([p, p[mask]]), lambda m: _append_zeros(m, count))


def split(params: Params, optimizers: Optimizers, state: dict, mask: torch.Tensor,
          generator: torch.Generator | None = None, samples: int = 2) -> None:
    """Replace each selected Gaussian by `samples` smaller ones (3DGS "split").

    New means are drawn from the Gaussian itself; their scales are the old ones divided by 0.8 x samples
    (the factor of Kerbl et al. 2023, `densify_and_split`); everything else is copied."""
    sel = torch.nonzero(mask).squeeze(1)
    count = sel.numel() * samples
    scales = torch.exp(params["scales"].detach()[sel])  # [M, 3]
    rot = quat_to_rotmat(params["quats"].detach()[sel])  # [M, 3, 3]
    noise = torch.randn((samples, sel.numel(), 3), generator=generator, dtype=scales.dtype).to(scales.device)
    offsets = torch.einsum("mij,smj->smi", rot, noise * scales).reshape(-1, 3)

    def param_fn(name: str, p: torch.Tensor) -> torch.Tensor:
        kept = p[~mask]
        repeated = p[sel].repeat(samples, *([1] * (p.ndim - 1)))
        if name == "means":
            repeated = repeated + offsets
        elif name == "scales":
            repeated = torch.log(scales / (0.8 * samples)).repeat(samples, 1)
        return torch.cat([kept, repeated])

    _edit(params, optimizers, state, param_fn, lambda m: _append_zeros(m[~mask], count))


def reset_opacity(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp every opacity to at most `value` and zero its Adam moments (3DGS opacity reset)."""
    cap = torch.logit(torch.tensor(value, dtype=params["opacities"].dtype, device=params["opacities"].device))
    opacity_only = {"opacities": params["opacities"]}
    _edit(opacity_only, {"opacities": optimizers["opacities"]}, {},
          lambda _, p: torch.clamp_max(p, cap), torch.zeros_like)
    params["opacities"] = opacity_only["opacities"]

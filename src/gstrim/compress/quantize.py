"""8-bit per-tensor affine quantisation, as c3dgs fine-tunes and stores its attributes (Niedermayr et al.
2024, `torch.ao.quantization.FakeQuantize` with a moving-average min/max observer, qint8), and float16
positions.

The quantisation parameters follow torch's `MinMaxObserver` for an affine qint8 tensor: the observed range
is widened to include 0, scale = (max - min) / 255, zero point = -128 - round(min / scale). The observer
keeps a moving average of each batch's min and max (torch's default averaging constant 0.01). The
fake-quantised value round(x / scale) + zp, clamped to [-128, 127], times scale after subtracting zp, is
exactly what the file decodes to; its gradient passes straight through inside the range.
"""

from __future__ import annotations

import torch

from gstrim.io.packing import QuantParams, quant_params_tensors

AVERAGING_CONSTANT = 0.01  # torch.ao MovingAverageMinMaxObserver's default


class FakeQuant8(torch.nn.Module):
    """Straight-through fake quantisation (8 bits unless told) with a moving-average min/max observer. The
    observer moves only while gradients are recorded (training steps), not when a snapshot of the scene is
    decoded."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        # whether the range holds an observation, kept on the host: a fine-tuning step never reads the device
        self.observed = False

    def observe(self, x: torch.Tensor) -> None:
        if x.numel() == 0:  # SH degree 0: no higher bands; any range will do
            x = torch.zeros(1, device=x.device)
        lo, hi = x.detach().min().float(), x.detach().max().float()
        if not self.observed:
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        else:
            self.lo.add_(AVERAGING_CONSTANT * (lo - self.lo))
            self.hi.add_(AVERAGING_CONSTANT * (hi - self.hi))
        self.observed = True

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        self.observed = bool(torch.isfinite(self.lo))
        return result

    def params(self) -> QuantParams:
        return QuantParams.of_range(float(self.lo), float(self.hi), self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not self.observed:
            self.observe(x)
        q_min, q_max = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        # `params()` as tensors on the device: the same values, without reading them
        scale, zero_point = quant_params_tensors(self.lo, self.hi, self.bits)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, q_min, q_max)


class _RoundHalf(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.half().to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def fake_half(x: torch.Tensor) -> torch.Tensor:
    """x rounded to float16, gradient passed straight through (c3dgs's positions)."""
    return _RoundHalf.apply(x)

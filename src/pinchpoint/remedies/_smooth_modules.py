"""The module SmoothQuant puts in place of each Linear (torch at import: loaded by the handler)."""

from __future__ import annotations

import torch

__all__ = ["SmoothedLinear"]


class SmoothedLinear(torch.nn.Module):
    """``linear(x / s)``, where ``linear``'s weight columns were multiplied by ``s``: in float,
    the same function as before; quantized, a smaller range for the activations."""

    inverse_scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inverse_scale", (1.0 / scale).to(linear.weight.dtype))
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x * self.inverse_scale)
        return out

"""The weight-only integer layers the quantize remedy puts in place of ``nn.Linear`` (torch at
import: loaded by the handler): :class:`Int8WeightOnlyLinear` and :class:`Int4WeightOnlyLinear`
keep integer weights and take float activations."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Int4WeightOnlyLinear", "Int8WeightOnlyLinear"]

# torch's int8/int4 weight-only CPU kernels are vectorised for bf16 activations; float32 ones
# take a scalar path about 50x slower. On the CPU the layers therefore multiply in bf16.
_CPU_KERNEL_DTYPE = torch.bfloat16


class Int8WeightOnlyLinear(nn.Module):
    """A linear layer with int8 weights (one scale per output channel) and float activations.

    On the CPU it calls torch's ``_weight_int8pack_mm`` kernel, which reads the int8 weights
    directly and multiplies with bf16 activations (its fast path; the output is cast back to the
    input's dtype); elsewhere it dequantizes the weights on the fly. It saves weight bytes, so
    it pays where matmuls wait on memory (a few rows per call, as in token-by-token decoding);
    with a hundred rows or more per call, a plain bf16 matmul is faster.
    """

    weight_int8: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.on_cpu = linear.weight.device.type == "cpu"
        # Symmetric per-output-channel scales; -128 is left out so the range is symmetric.
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quantized.contiguous())
        dtype = _CPU_KERNEL_DTYPE if self.on_cpu else linear.weight.dtype
        self.register_buffer("scale", scale.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_cpu:
            flat = x.reshape(-1, self.in_features).to(_CPU_KERNEL_DTYPE).contiguous()
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale).to(x.dtype)
            out = out.reshape(*x.shape[:-1], self.out_features)
        else:
            out = nn.functional.linear(x, self.weight.to(x.dtype))
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weights, for code that reads ``layer.weight`` (such as
        ``nn.TransformerEncoderLayer``'s fast path); the CPU path never builds them."""
        return self.weight_int8.to(self.scale.dtype) * self.scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


class Int4WeightOnlyLinear(nn.Module):
    """A linear layer with 4-bit weights in groups along the input and float activations.

    Each group of ``group_size`` input weights of one output channel has its own scale and
    offset (asymmetric: ``w = (q - 8) * scale + zero`` for ``q`` in 0..15). On the CPU the
    weights are packed for torch's ``_weight_int4pack_mm_for_cpu`` kernel (two 4-bit values
    per byte), which multiplies with bf16 activations; the output channels are padded to a
    multiple of 16, which the kernel needs. Elsewhere the layer keeps two values per byte in its
    own order and dequantizes on the fly. Like int8 weight-only, it pays where matmuls wait on
    memory.
    """

    weight_int4: torch.Tensor
    scale_zero: torch.Tensor

    def __init__(self, linear: nn.Linear, group_size: int) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        if in_features % group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of {group_size}")
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        weight = linear.weight.detach().float()
        self.on_cpu = linear.weight.device.type == "cpu"
        padded = -(-out_features // 16) * 16 if self.on_cpu else out_features
        if padded != out_features:
            weight = torch.cat([weight, weight.new_zeros(padded - out_features, in_features)])
        groups = weight.reshape(padded, in_features // group_size, group_size)
        low = groups.amin(dim=-1)
        scale = (groups.amax(dim=-1) - low).clamp(min=1e-12) / 15.0
        zero = low + 8.0 * scale
        quantized = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
        quantized = quantized.to(torch.int32).reshape(padded, in_features)
        if self.on_cpu:
            packed = torch._convert_weight_to_int4pack_for_cpu(quantized, 1)
        else:
            pairs = quantized.to(torch.uint8).reshape(padded, in_features // 2, 2)
            packed = pairs[..., 0] | (pairs[..., 1] << 4)
        self.register_buffer("weight_int4", packed.contiguous())
        # [groups, out, 2]: the layout the CPU kernel reads (scale, zero) from.
        scale_zero = torch.stack([scale.t(), zero.t()], dim=-1).contiguous()
        dtype = _CPU_KERNEL_DTYPE if self.on_cpu else linear.weight.dtype
        self.register_buffer("scale_zero", scale_zero.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.on_cpu:
            out = torch._weight_int4pack_mm_for_cpu(
                flat.to(_CPU_KERNEL_DTYPE).contiguous(),
                self.weight_int4,
                self.group_size,
                self.scale_zero,
            )
            out = out[:, : self.out_features].to(x.dtype)
        else:
            out = nn.functional.linear(flat, self._dequantized(self.scale_zero).to(x.dtype))
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weights, for code that reads ``layer.weight`` (such as
        ``nn.TransformerEncoderLayer``'s fast path); the CPU path never builds them."""
        if not self.on_cpu:
            return self._dequantized(self.scale_zero)
        # The packed CPU layout is the kernel's own: multiplying the identity unpacks it.
        identity = torch.eye(self.in_features, dtype=_CPU_KERNEL_DTYPE)
        columns = torch._weight_int4pack_mm_for_cpu(
            identity, self.weight_int4, self.group_size, self.scale_zero
        )
        return columns[:, : self.out_features].t().float().contiguous()

    def _dequantized(self, scale_zero: torch.Tensor) -> torch.Tensor:
        """The float weights of the non-CPU layout, ``[out_features, in_features]``."""
        low = (self.weight_int4 & 0x0F).to(scale_zero.dtype)
        high = (self.weight_int4 >> 4).to(scale_zero.dtype)
        values = torch.stack([low, high], dim=-1).reshape(self.out_features, -1, self.group_size)
        scale = scale_zero[..., 0].t()[..., None]
        zero = scale_zero[..., 1].t()[..., None]
        return ((values - 8.0) * scale + zero).reshape(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 weights in groups of {self.group_size}"
        )

"""The modules the precision remedy wraps a model in (torch at import: loaded by the handler).

- :class:`CastModule` runs a bf16/fp16 copy of a model on float32 inputs and outputs.
- :class:`AutocastModule` runs a model under ``torch.autocast``.

Each takes the arguments the wrapped model takes and returns the same nested structure
(:func:`map_tensors`): tensors, tuples, lists, dicts and transformers ``ModelOutput`` objects.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["AutocastModule", "CastModule", "map_tensors", "model_device"]


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``obj`` rebuilt with ``fn`` applied to every tensor in it; other leaves stay as they are.

    Tuples (named ones too), lists, dicts and transformers ``ModelOutput`` objects keep their
    type: a ``ModelOutput`` is an ordered dict whose class takes its fields as keywords.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        items = {key: map_tensors(value, fn) for key, value in obj.items()}
        if type(obj) is dict:
            return items
        try:
            return type(obj)(**items)
        except TypeError:
            return items
    if isinstance(obj, tuple):
        mapped = [map_tensors(value, fn) for value in obj]
        # A named tuple takes its fields as positional arguments, a plain tuple one iterable.
        return type(obj)(*mapped) if hasattr(obj, "_fields") else tuple(mapped)
    if isinstance(obj, list):
        return [map_tensors(value, fn) for value in obj]
    return obj


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter or buffer; the CPU for a model without any."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device  # type: ignore[no-any-return]
    return torch.device("cpu")


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.is_floating_point() else tensor


class CastModule(nn.Module):
    """A model converted to a lower float dtype, fed and read in float32.

    Floating inputs are cast to ``dtype`` on the way in (integer ones, such as token ids, are
    left alone) and floating outputs come back as float32, so callers see the model they had.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        def cast(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        output = self.module(*map_tensors(args, cast), **map_tensors(kwargs, cast))
        return map_tensors(output, _to_float32)


class AutocastModule(nn.Module):
    """A model run under ``torch.autocast``: eligible operators compute in ``dtype``.

    Weights stay float32; autocast casts them per operator. Floating outputs come back as
    float32, as the unwrapped model's did.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device_type = model_device(self.module).type
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            output = self.module(*args, **kwargs)
        return map_tensors(output, _to_float32)

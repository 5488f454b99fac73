"""The modules and data wrappers behind the shape remedies (they import torch; configs do not)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["BucketedData", "MarkDynamic", "pad_batch_to"]


class MarkDynamic(nn.Module):
    """Calls ``module`` with the given dimensions of its tensor inputs marked dynamic.

    Each positional or keyword tensor argument with a dimension in ``dims`` of size 2 or more
    is marked with ``torch._dynamo.mark_dynamic`` before the call (dynamo specializes sizes 0
    and 1 whatever the mark), so a model compiled with ``dynamic=False`` keeps those dimensions
    symbolic and every other size static.
    """

    def __init__(self, module: nn.Module, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.module = module
        self.dims = tuple(dims)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        import torch._dynamo

        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor):
                for dim in self.dims:
                    if dim < value.dim() and value.shape[dim] >= 2:
                        torch._dynamo.mark_dynamic(value, dim)
        return self.module(*args, **kwargs)


def pad_batch_to(batch: Any, multiple: int, dim: int, value: float) -> Any:
    """``batch`` with every tensor that has dimension ``dim`` padded at its end along it, with
    ``value``, up to the next multiple of ``multiple``; tuples, lists and dicts are followed and
    other values kept as they are."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() <= dim:
            return batch
        size = batch.shape[dim]
        missing = -size % multiple
        if missing == 0:
            return batch
        shape = list(batch.shape)
        shape[dim] = missing
        fill = torch.full(shape, value, dtype=batch.dtype, device=batch.device)
        return torch.cat([batch, fill], dim=dim)
    if isinstance(batch, Mapping):
        return type(batch)(  # type: ignore[call-arg]
            {k: pad_batch_to(v, multiple, dim, value) for k, v in batch.items()}
        )
    if isinstance(batch, tuple):
        padded = [pad_batch_to(v, multiple, dim, value) for v in batch]
        return type(batch)(*padded) if hasattr(batch, "_fields") else tuple(padded)
    if isinstance(batch, list):
        return [pad_batch_to(v, multiple, dim, value) for v in batch]
    return batch


class BucketedData:
    """An iterable of ``data``'s batches, each padded by :func:`pad_batch_to`.

    Other attributes are ``data``'s own (a DataLoader's ``generator``, ``sampler``,
    ``num_workers``...), so a trial finds the generators it seeds the data order with.
    """

    def __init__(self, data: Any, multiple: int, dim: int, value: float) -> None:
        self.data = data
        self.multiple = multiple
        self.dim = dim
        self.value = value

    def __iter__(self) -> Iterator[Any]:
        for batch in self.data:
            yield pad_batch_to(batch, self.multiple, self.dim, self.value)

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "multiple", "dim", "value"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.data, name)

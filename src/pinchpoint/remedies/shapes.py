"""The ``pad_to_buckets`` remedy: pad each batch's varying dimension up to a multiple.

A compiled model recompiles for every input shape it has not seen (unless compiled for dynamic
shapes). Text batches padded to their longest sequence take a new length nearly every step;
padded further, up to the next multiple of ``multiple`` (64 by default), they take only a
handful of lengths, and each compiles once.

The contract: every tensor in a batch (followed through tuples, lists and dicts) that has
dimension ``dim`` is padded at its end along it with ``value``; tensors with fewer dimensions
(labels) are left alone. The model must treat ``value`` at the end of that dimension as
padding, as a text model does with its padding token id and an attention mask of zeros (both
0 for BERT-style batches; the ``recompiling`` zoo workload pads with 0 and masks it). A model
that does not is judged by the trial: its quality drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Workload

__all__ = ["PadToBuckets"]


@dataclass(frozen=True)
class PadToBuckets(RemedyConfig):
    """Pad dimension ``dim`` of every batch tensor up to the next multiple of ``multiple``.

    Args:
        multiple: the bucket size: lengths are rounded up to a multiple of it (at least 2).
        dim: the dimension that varies (1: the sequence of ``(batch, length)`` tensors).
        value: the padding value (the padding token id; 0 for the zoo's text workloads).
    """

    name: ClassVar[str] = "pad_to_buckets"
    addresses: ClassVar[tuple[str, ...]] = ("pad_to_buckets",)

    multiple: int = 64
    dim: int = 1
    value: float = 0

    def validate(self) -> None:
        if isinstance(self.multiple, bool) or not isinstance(self.multiple, int):
            raise ValueError(f"pad_to_buckets multiple must be an integer, not {self.multiple!r}")
        if self.multiple < 2:
            raise ValueError(f"pad_to_buckets multiple must be at least 2, not {self.multiple}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 0:
            raise ValueError(f"pad_to_buckets dim must be a non-negative integer, not {self.dim!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ValueError(f"pad_to_buckets value must be a number, not {self.value!r}")


@handler(PadToBuckets)
def _pad_to_buckets(workload: Workload, config: PadToBuckets) -> Workload:
    from pinchpoint.remedies._marking import BucketedData, pad_batch_to
    from pinchpoint.workload import is_single_batch

    if is_single_batch(workload.data):
        data = pad_batch_to(workload.data, config.multiple, config.dim, config.value)
    else:
        data = BucketedData(workload.data, config.multiple, config.dim, config.value)
    return clone_workload(workload, data=data)

"""Runtime remedies that leave the model alone: the thread count and the batch size.

``threads`` sets how many intra-op threads torch uses while the workload runs; ``batch_size``
re-batches the workload's data. Neither changes the model, so for inference the new workload
shares the caller's model object (running inference does not change it). A training workload
gets its own copy of the model and optimizer, since training the candidate would otherwise
update the caller's weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Workload, is_single_batch

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = ["BatchSize", "Threads", "rebatch", "threads_for_findings"]


def _positive_int(remedy: str, setting: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{remedy} {setting} must be an integer >= 1, not {value!r}")


def _own_copy(workload: Workload, **changes: Any) -> Workload:
    """``workload`` with ``changes``: a model copy when it trains, the same model when it infers."""
    if workload.mode == "train":
        return clone_workload(workload, **changes)
    return dataclasses.replace(workload, **changes)


@dataclass(frozen=True)
class Threads(RemedyConfig):
    """Run the workload with ``count`` intra-op threads (``torch.set_num_threads``).

    The new workload differs only in :attr:`~pinchpoint.Workload.threads`; an inference workload
    shares the caller's model object, which running it does not change.

    Args:
        count: the intra-op thread count.
    """

    name: ClassVar[str] = "threads"
    addresses: ClassVar[tuple[str, ...]] = ("pin_threads", "fewer_threads")

    count: int

    def validate(self) -> None:
        _positive_int("threads", "count", self.count)

    def gate(self, machine: Machine) -> str | None:
        """Why ``count`` threads will not be fast: more threads than the machine has cores."""
        cores = machine.cores_physical or machine.cores_logical
        if cores is not None and self.count > cores:
            return (
                f"{self.count} threads on {cores} cores oversubscribe them: threads wait for "
                "each other at every parallel operator"
            )
        return None


@handler(Threads)
def _threads(workload: Workload, config: Threads) -> Workload:
    return _own_copy(workload, threads=config.count)


def threads_for_findings(findings: Iterable[Any]) -> list[Threads]:
    """The thread counts the findings measured as right, for the optimizer to try first.

    Each ``thread_oversubscription`` finding gives its ``suggested_threads`` (one per core that
    other processes left free), then its ``usable_cores`` (one per core) where that differs; a
    trial decides between them. The optimizer's pool has no ``Threads`` without them: a count
    is only worth trying where a finding measured it.
    """
    out: list[Threads] = []
    for finding in findings:
        if getattr(finding, "kind", None) != "thread_oversubscription":
            continue
        evidence = getattr(finding, "evidence", {})
        for key in ("suggested_threads", "usable_cores"):
            count = evidence.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
                config = Threads(count)
                if config not in out:
                    out.append(config)
    return out


@dataclass(frozen=True)
class BatchSize(RemedyConfig):
    """Run the workload on batches of ``size`` samples, re-batched from its own data.

    A larger batch gives every operator more work for the same per-call overhead. The batches
    change size, so a trial of this remedy compares time per sample, not time per batch.
    See :func:`rebatch` for how each kind of data is re-batched.

    Args:
        size: samples per batch.
    """

    name: ClassVar[str] = "batch_size"
    addresses: ClassVar[tuple[str, ...]] = ("larger_batch",)

    size: int

    def validate(self) -> None:
        _positive_int("batch_size", "size", self.size)


@handler(BatchSize)
def _batch_size(workload: Workload, config: BatchSize) -> Workload:
    return _own_copy(workload, data=rebatch(workload.data, config.size, workload.name))


def rebatch(data: Any, size: int, name: str = "workload") -> Any:
    """``data`` re-batched into batches of ``size`` samples (dim 0 of every tensor).

    - A DataLoader is rebuilt with ``batch_size=size`` and its other settings.
    - A list or tuple of batches (tensors, tuples or lists of tensors, dicts of tensors) is
      concatenated along dim 0 and split into batches of ``size``; a short last batch is
      dropped unless it is the only one.
    - A single batch (a tensor or a dict of tensors) is repeated or cut to ``size`` samples.

    Raises:
        WorkloadError: the data is of another kind, or its batches hold non-tensor items.
    """
    import torch

    if isinstance(data, torch.utils.data.DataLoader):
        return _rebuild_loader(data, size, name)
    if is_single_batch(data):
        total = _samples(data, name)
        repeats = -(-size // total)
        whole = _concat([data] * repeats, name) if repeats > 1 else data
        return _slice(whole, 0, size)
    if isinstance(data, (list, tuple)):
        if not data:
            raise WorkloadError(f"workload {name!r}: its data is empty")
        whole = _concat(list(data), name)
        total = _samples(whole, name)
        if total <= size:
            return [whole]
        return [_slice(whole, start, start + size) for start in range(0, total - size + 1, size)]
    raise WorkloadError(
        f"workload {name!r}: batch_size re-batches a DataLoader, a list of batches or one "
        f"batch, not {type(data).__name__}"
    )


def _concat(batches: list[Any], name: str) -> Any:
    """The batches joined along dim 0, keeping their structure."""
    import torch

    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(batches)
    if isinstance(first, Mapping):
        return {key: _concat([batch[key] for batch in batches], name) for key in first}
    if isinstance(first, (tuple, list)):
        joined = [_concat([batch[i] for batch in batches], name) for i in range(len(first))]
        return type(first)(joined)
    raise WorkloadError(
        f"workload {name!r}: batch_size re-batches tensors, tuples, lists and dicts of "
        f"tensors, not {type(first).__name__}"
    )


def _slice(batch: Any, start: int, stop: int) -> Any:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch[start:stop]
    if isinstance(batch, Mapping):
        return {key: _slice(value, start, stop) for key, value in batch.items()}
    return type(batch)(_slice(item, start, stop) for item in batch)


def _samples(batch: Any, name: str) -> int:
    from pinchpoint.workload import first_batch_size

    size = first_batch_size(batch)
    if not size:
        raise WorkloadError(f"workload {name!r}: found no samples to re-batch in its data")
    return size


def _rebuild_loader(loader: Any, size: int, name: str) -> Any:
    """A DataLoader over the same dataset with ``batch_size=size`` and the same settings."""
    import torch
    from torch.utils.data import DataLoader

    if loader.batch_size is None:
        raise WorkloadError(
            f"workload {name!r}: its DataLoader uses a batch sampler, so batch_size cannot "
            "re-batch it"
        )
    shuffle = isinstance(loader.sampler, torch.utils.data.RandomSampler)
    sampler = None
    if not shuffle and not isinstance(loader.sampler, torch.utils.data.SequentialSampler):
        sampler = loader.sampler
    settings: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "drop_last": loader.drop_last,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
        "pin_memory_device": loader.pin_memory_device,
    }
    if loader.num_workers > 0:
        settings["prefetch_factor"] = loader.prefetch_factor
        settings["multiprocessing_context"] = loader.multiprocessing_context
    return DataLoader(loader.dataset, batch_size=size, shuffle=shuffle, sampler=sampler, **settings)

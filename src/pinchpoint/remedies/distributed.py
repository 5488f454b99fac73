"""Data-parallel remedies: what a DistributedDataParallel job sends, when, and how much work
each rank does between two all-reduces.

All four address ``communication_bound`` (an all-reduce that computation does not hide):
:class:`DDPBuckets` (the gradient bucket size), :class:`GradCompression` (all-reduce in fp16 or
bf16), :class:`NoSyncAccumulation` (one all-reduce per several micro-batches) and
:class:`PerRankBatch` (more samples per all-reduce); each class says how.

The first two set the workload's ``ddp`` settings (``bucket_cap_mb``, ``comm_hook``,
``gradient_as_bucket_view``), which :func:`pinchpoint.recorders.job.launch` hands to DDP in each
rank; the third sets ``accumulate``; the fourth rebuilds the data with larger batches (and,
if asked, scales the learning rate linearly). In one process without DDP the first two change
nothing that runs: they matter where the workload is launched on several ranks. Every handler
works on a copy (:func:`~pinchpoint.remedies.clone_workload`); torch is imported inside the
handlers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.remedies._base import (
    RemedyConfig,
    bool_setting,
    capability_number,
    clone_workload,
    handler,
    int_setting,
)
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = [
    "COMM_HOOKS",
    "DDPBuckets",
    "GradCompression",
    "NoSyncAccumulation",
    "PerRankBatch",
    "ddp_settings",
]

#: The gradient compression hooks :class:`GradCompression` knows, by dtype.
COMM_HOOKS = ("fp16", "bf16")


def ddp_settings(workload: Workload) -> dict[str, Any]:
    """The workload's DDP settings (an empty dict where it has none)."""
    return dict(getattr(workload, "ddp", None) or {})


def _with_ddp(workload: Workload, **settings: Any) -> Workload:
    """A copy of ``workload`` whose DDP settings are its own updated with ``settings``."""
    return clone_workload(workload, ddp={**ddp_settings(workload), **settings})


# ---------------------------------------------------------------------------------------------
# Bucket size


@dataclass(frozen=True)
class DDPBuckets(RemedyConfig):
    """DistributedDataParallel's gradient bucket size (and whether gradients live in buckets).

    DDP groups gradients into buckets of about ``bucket_cap_mb`` megabytes and all-reduces
    each as soon as backward has filled it. Each all-reduce pays a fixed cost (a round trip
    between the ranks) on top of its bytes: with many small buckets that cost dominates; with
    one huge bucket nothing overlaps backward. torch's default is 25 MB.

    Args:
        bucket_cap_mb: the bucket size in megabytes (positive).
        gradient_as_bucket_view: make each parameter's ``.grad`` a view into its bucket, which
            saves one copy per bucket and the memory of a second gradient (None: keep DDP's
            setting, which is False).
    """

    name: ClassVar[str] = "ddp_buckets"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("communication_bound", "gradient_bucketing")

    bucket_cap_mb: float = 100.0
    gradient_as_bucket_view: bool | None = None

    def validate(self) -> None:
        size = self.bucket_cap_mb
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise ValueError(f"DDPBuckets: bucket_cap_mb must be a number, not {size!r}")
        if not (math.isfinite(size) and size > 0):
            raise ValueError(f"DDPBuckets: bucket_cap_mb must be positive and finite, not {size}")
        bool_setting("DDPBuckets", "gradient_as_bucket_view", self.gradient_as_bucket_view)


@handler(DDPBuckets)
def _ddp_buckets(workload: Workload, config: DDPBuckets) -> Workload:
    settings: dict[str, Any] = {"bucket_cap_mb": float(config.bucket_cap_mb)}
    if config.gradient_as_bucket_view is not None:
        settings["gradient_as_bucket_view"] = config.gradient_as_bucket_view
    return _with_ddp(workload, **settings)


# ---------------------------------------------------------------------------------------------
# Gradient compression


@dataclass(frozen=True)
class GradCompression(RemedyConfig):
    """A DDP communication hook that all-reduces each gradient bucket in fp16 or bf16.

    The bucket is cast to ``dtype`` and divided by the number of ranks before the all-reduce,
    then cast back into the float32 bucket: half the bytes each all-reduce moves, at the price
    of two casts and a gradient rounded to 11 (fp16) or 8 (bf16) significant bits. fp16 keeps
    more precision but overflows above 65504 and flushes tiny gradients to zero; bf16 keeps
    float32's range.

    Where it runs: on CUDA with NCCL both work (bf16 needs NCCL 2.10 or later; a GPU below
    compute capability 8.0 has no native bf16, which the gate says). On a CPU with gloo both
    dtypes all-reduce correctly. (Registered directly, torch's ``bf16_compress_hook`` is refused
    by DDP on any backend but NCCL and XCCL, by its name; pinchpoint's launched ranks call it
    from inside their own timing hook, which DDP accepts.)
    The gain depends on the link: over a slow network it can approach 2x the communication
    speed; within one host, where gloo's all-reduce is a memory copy, the casts may cost as
    much as they save, which is what a trial is for.

    Args:
        dtype: ``"fp16"`` or ``"bf16"``.
    """

    name: ClassVar[str] = "grad_compression"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("communication_bound", "gradient_compression")

    dtype: str = "fp16"

    def validate(self) -> None:
        if self.dtype not in COMM_HOOKS:
            raise ValueError(f"GradCompression: dtype must be 'fp16' or 'bf16', not {self.dtype!r}")

    def gate(self, machine: Machine) -> str | None:
        capability = capability_number(machine)
        if self.dtype == "bf16" and capability is not None and capability < 8.0:
            return f"bf16 runs natively from compute capability 8.0; this GPU has {capability}"
        return None


@handler(GradCompression)
def _grad_compression(workload: Workload, config: GradCompression) -> Workload:
    return _with_ddp(workload, comm_hook=config.dtype)


# ---------------------------------------------------------------------------------------------
# Accumulation without synchronisation


@dataclass(frozen=True)
class NoSyncAccumulation(RemedyConfig):
    """Accumulate gradients over ``steps`` micro-batches and all-reduce them once.

    It sets the workload's ``accumulate``: each micro-batch's loss is divided by ``steps`` and
    the optimizer steps after the last one. Under DDP (a workload launched on several ranks)
    the micro-batches before the last run their backward inside ``model.no_sync()``, so they
    skip the all-reduce: one all-reduce per ``steps`` micro-batches instead of one per batch.
    The optimizer then steps on a batch ``steps`` times larger, so the number of optimizer
    steps per epoch falls by that factor (the learning rate may want raising to match). In a
    single process it is plain gradient accumulation.

    Args:
        steps: micro-batches per optimizer step (at least 2).
    """

    name: ClassVar[str] = "no_sync_accumulation"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("communication_bound", "no_sync_accumulation")

    steps: int = 4

    def validate(self) -> None:
        int_setting("NoSyncAccumulation", "steps", self.steps, 2)


@handler(NoSyncAccumulation)
def _no_sync_accumulation(workload: Workload, config: NoSyncAccumulation) -> Workload:
    return clone_workload(workload, accumulate=config.steps)


# ---------------------------------------------------------------------------------------------
# Larger per-rank batch


@dataclass(frozen=True)
class PerRankBatch(RemedyConfig):
    """A per-rank batch ``factor`` times larger, with the learning rate scaled to match.

    Each rank computes more between two all-reduces, and the all-reduce, whose size depends on
    the model, not the batch, is paid once per more samples. The workload's data is re-batched:
    a DataLoader is rebuilt over the same dataset with ``batch_size`` times ``factor`` (same
    sampler, its random generator copied, same collate function and workers); a list of
    batches is joined and split into larger ones; a single batch is repeated. With
    ``scale_lr``, every parameter group's learning rate is multiplied by ``factor`` (the linear
    scaling rule: the same step size per sample), which at large factors usually wants a
    warm-up too.

    Args:
        factor: how many times larger each rank's batch is (an integer, at least 2).
        scale_lr: multiply the learning rate by ``factor``.
    """

    name: ClassVar[str] = "per_rank_batch"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("communication_bound", "larger_batch")

    factor: int = 2
    scale_lr: bool = True

    def validate(self) -> None:
        int_setting("PerRankBatch", "factor", self.factor, 2)
        if not isinstance(self.scale_lr, bool):
            raise ValueError(f"PerRankBatch: scale_lr must be True or False, not {self.scale_lr!r}")


@handler(PerRankBatch)
def _per_rank_batch(workload: Workload, config: PerRankBatch) -> Workload:
    size = batch_size_of(workload)
    if size is None:
        raise ValueError(
            f"{config.label()}: found no batch size in the data of workload {workload.name!r}"
        )
    result = clone_workload(workload, data=_rebatched(workload, size * config.factor))
    if config.scale_lr:
        for group in result.optimizer.param_groups:
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] = _scaled(group[key], config.factor)
    return result


def batch_size_of(workload: Workload) -> int | None:
    """The samples in one of the workload's batches: a DataLoader's ``batch_size``, else the
    leading dimension of its first batch (None when neither says)."""
    from pinchpoint.workload import first_batch_size

    if _is_loader(workload.data):
        size = workload.data.batch_size
        return int(size) if isinstance(size, int) else None
    source = workload.batches()
    try:
        return first_batch_size(next(source))
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def _is_loader(data: Any) -> bool:
    from torch.utils.data import DataLoader

    return isinstance(data, DataLoader)


def _scaled(value: Any, factor: int) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone() * factor
    return float(value) * factor


def _rebatched(workload: Workload, size: int) -> Any:
    """The workload's data in batches of ``size`` samples, sharing no random state with it."""
    if not _is_loader(workload.data):
        from pinchpoint.remedies.runtime import rebatch

        return rebatch(workload.data, size, workload.name)
    from torch.utils.data import IterableDataset

    from pinchpoint.remedies.training import loader_like

    loader = workload.data
    if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        raise ValueError(
            f"per_rank_batch re-batches a DataLoader with a batch_size over a map-style "
            f"dataset; the DataLoader of workload {workload.name!r} has "
            + ("an iterable dataset" if loader.batch_size is not None else "a batch sampler")
        )
    return loader_like(loader, size)

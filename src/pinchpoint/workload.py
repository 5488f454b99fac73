"""The Workload: a model, its data and, for training, a loss and an optimizer.

A Workload is the unit every pinchpoint stage runs. It holds user objects only; it does not import
torch, so describing one costs nothing until it is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pinchpoint.errors import WorkloadError

__all__ = [
    "AUTOCAST_DTYPES",
    "DDP_KEYS",
    "Mode",
    "Workload",
    "call_model",
    "ddp_settings_problem",
    "first_batch_size",
]

Mode = Literal["train", "infer"]
#: The ``autocast`` settings a workload accepts: the autocast dtypes, by short name.
AUTOCAST_DTYPES = ("bf16", "fp16")


@dataclass
class Workload:
    """A model with its data; it trains when it has a loss and an optimizer, else it infers.

    Args:
        model: the ``torch.nn.Module`` to run.
        data: an iterable of batches (a DataLoader, a list...), iterated again when it runs out;
            or one batch (a tensor or a dict of tensors) used at every step.
        loss: ``loss(model, batch) -> scalar tensor``. Training needs it; an inference
            workload may carry one too, for the remedies that fine-tune a changed model
            (pruning, distillation).
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters: with it the
            workload trains, without it it runs inference.
        evaluate: ``evaluate(model) -> float``, the quality of a model on held-out data.
        name: a short name used in reports.
        metric: what ``evaluate`` returns (``"accuracy"``, ``"val_loss"``, ``"cosine"``...).
        greater_is_better: whether a larger ``evaluate`` result is better.
        description: one line on what the workload is.
        memory_budget_bytes: the memory the workload must fit in (a smaller GPU it will run on,
            a container's limit); diagnosis checks the peak against it. Default: the device's
            memory, or the process's limit on a CPU.
        threads: the intra-op threads torch uses while it runs (None: torch's setting).
        accumulate: training only: micro-batches per optimizer step. Each batch's loss is
            divided by it before backward; gradients are zeroed only after an optimizer step.
            1 (the default) steps the optimizer on every batch.
        autocast: training only: ``"bf16"`` or ``"fp16"`` runs the forward pass and the loss
            under ``torch.autocast`` with that dtype (fp16 on CUDA with a gradient scaler);
            None (the default) runs in the model's own precision.
        max_grad_norm: training only: clip the parameters' gradient norm to this before every
            optimizer step (None, the default: no clipping). A recorded step's ``grad_norm``
            is the norm before clipping.
        grad_norm_type: the p of the p-norm that ``max_grad_norm`` clips (2.0; ``inf`` for
            the largest absolute value).
        lr_schedule: training only: the learning-rate factor of each optimizer step. Step
            ``n`` (counted from 0) runs every param group at its base rate times
            ``lr_schedule(n)``; the base (``initial_lr``, the group's ``lr`` when a run first
            meets it) and the count (``scheduled_steps``) live in the group, so a later run
            carries the schedule on. None (the default) leaves the learning rate alone.
        ddp: training only: the DistributedDataParallel settings used when the workload is
            launched on several ranks (:func:`pinchpoint.recorders.job.launch`,
            ``pinchpoint profile --nproc N``); a single process ignores them. Keys:
            ``bucket_cap_mb`` (float: DDP's gradient bucket size, torch's default 25),
            ``comm_hook`` (None, ``"fp16"`` or ``"bf16"``: all-reduce the buckets compressed
            by torch's ``fp16_compress_hook`` / ``bf16_compress_hook``),
            ``gradient_as_bucket_view`` (bool) and ``static_graph`` (bool). Empty (the
            default): DDP's defaults.
        log: training only: the user's per-step logging, ``log(step, model, loss)``, called
            after each recorded step's backward and optimizer step with the step's index
            (counted from 0 in each run), the model and the step's loss tensor, where a loop
            would ``print(loss.item())`` or record metrics. Its time is the step's ``"log"``
            phase. None (the default): nothing is logged.
        log_every: call ``log`` on the steps whose index is a multiple of it (1, the default:
            every step).
        applied: the labels of the remedies applied to it, in order (set by
            :func:`pinchpoint.apply`).
    """

    model: Any
    data: Any
    loss: Callable[[Any, Any], Any] | None = None
    optimizer: Any = None
    evaluate: Callable[[Any], float] | None = None
    name: str = "workload"
    metric: str = "quality"
    greater_is_better: bool = True
    description: str = ""
    memory_budget_bytes: int | None = None
    threads: int | None = None
    accumulate: int = 1
    autocast: str | None = None
    max_grad_norm: float | None = None
    grad_norm_type: float = 2.0
    lr_schedule: Callable[[int], float] | None = None
    ddp: dict[str, Any] = field(default_factory=dict)
    log: Callable[[int, Any, Any], None] | None = None
    log_every: int = 1
    applied: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise WorkloadError(f"workload {self.name!r}: model must be callable (a torch module)")
        if self.data is None:
            raise WorkloadError(f"workload {self.name!r}: data is missing")
        if self.optimizer is not None and self.loss is None:
            raise WorkloadError(
                f"workload {self.name!r} has an optimizer but no loss: give both to train, "
                "or no optimizer to run inference"
            )
        if self.loss is not None and not callable(self.loss):
            raise WorkloadError(f"workload {self.name!r}: loss must be a function (model, batch)")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise WorkloadError(f"workload {self.name!r}: memory_budget_bytes must be positive")
        if self.threads is not None and self.threads < 1:
            raise WorkloadError(f"workload {self.name!r}: threads must be at least 1")
        if self.evaluate is not None and not callable(self.evaluate):
            raise WorkloadError(f"workload {self.name!r}: evaluate must be a function (model)")
        self._check_training_settings()

    def _check_training_settings(self) -> None:
        if isinstance(self.accumulate, bool) or not isinstance(self.accumulate, int):
            raise WorkloadError(f"workload {self.name!r}: accumulate must be an integer")
        if self.accumulate < 1:
            raise WorkloadError(f"workload {self.name!r}: accumulate must be at least 1")
        if self.autocast not in (None, *AUTOCAST_DTYPES):
            raise WorkloadError(
                f"workload {self.name!r}: autocast must be None, 'bf16' or 'fp16', "
                f"not {self.autocast!r}"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise WorkloadError(f"workload {self.name!r}: max_grad_norm must be positive")
        if not self.grad_norm_type > 0:
            raise WorkloadError(f"workload {self.name!r}: grad_norm_type must be positive")
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise WorkloadError(
                f"workload {self.name!r}: lr_schedule must be a function (optimizer step)"
            )
        if self.log is not None and not callable(self.log):
            raise WorkloadError(
                f"workload {self.name!r}: log must be a function (step, model, loss)"
            )
        if isinstance(self.log_every, bool) or not isinstance(self.log_every, int):
            raise WorkloadError(
                f"workload {self.name!r}: log_every must be an integer, not {self.log_every!r}"
            )
        if self.log_every < 1:
            raise WorkloadError(
                f"workload {self.name!r}: log_every must be at least 1, not {self.log_every}"
            )
        problem = ddp_settings_problem(self.ddp)
        if problem is not None:
            raise WorkloadError(f"workload {self.name!r}: ddp: {problem}")

    @property
    def mode(self) -> Mode:
        """``"train"`` when the workload has an optimizer (and so a loss), else ``"infer"``."""
        return "train" if self.optimizer is not None else "infer"

    def batches(self) -> Iterator[Any]:
        """Yield batches forever, iterating the data again each time it runs out."""
        if is_single_batch(self.data):
            while True:
                yield self.data
        while True:
            produced = False
            for batch in self.data:
                produced = True
                yield batch
            if not produced:
                raise WorkloadError(f"workload {self.name!r}: its data is empty")


#: The DistributedDataParallel settings a Workload's ``ddp`` may hold.
DDP_KEYS = ("bucket_cap_mb", "comm_hook", "gradient_as_bucket_view", "static_graph")


def ddp_settings_problem(ddp: Any) -> str | None:
    """What is wrong with a Workload's ``ddp`` settings, in a few words; None when nothing."""
    if not isinstance(ddp, Mapping):
        return f"must be a dict of settings, not {type(ddp).__name__}"
    unknown = sorted(str(k) for k in ddp if k not in DDP_KEYS)
    if unknown:
        return f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DDP_KEYS)}"
    size = ddp.get("bucket_cap_mb")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < math.inf
    ):
        return f"bucket_cap_mb must be a positive number, not {size!r}"
    if ddp.get("comm_hook") not in (None, "fp16", "bf16"):
        return f"comm_hook must be None, 'fp16' or 'bf16', not {ddp['comm_hook']!r}"
    for key in ("gradient_as_bucket_view", "static_graph"):
        if key in ddp and not isinstance(ddp[key], bool):
            return f"{key} must be True or False, not {ddp[key]!r}"
    return None


def is_single_batch(data: Any) -> bool:
    return isinstance(data, Mapping) or type(data).__name__ in {"Tensor", "Parameter"}


def call_model(model: Any, batch: Any) -> Any:
    """Run ``model`` on ``batch`` the way pinchpoint feeds inference workloads.

    A tensor is passed as is, a tuple or list is unpacked into positional arguments and a dict
    into keyword arguments.
    """
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def first_batch_size(batch: Any) -> int | None:
    """The leading dimension of the first tensor found in ``batch``, or None without one."""
    if hasattr(batch, "shape") and hasattr(batch, "dim"):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    items = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(items, (tuple, list)) or isinstance(batch, Mapping):
        for item in items:
            size = first_batch_size(item)
            if size is not None:
                return size
    return None

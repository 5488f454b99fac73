"""The Workload: a model, its data and, for training, a loss and an optimizer.

A Workload is the unit every pinchpoint stage runs. It holds user objects only; it does not import
torch, so describing one costs nothing until it is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pinchpoint.errors import WorkloadError

__all__ = ["Mode", "Workload", "call_model", "first_batch_size"]

Mode = Literal["train", "infer"]


@dataclass
class Workload:
    """A model with its data; it trains when it has a loss and an optimizer, else it infers.

    Args:
        model: the ``torch.nn.Module`` to run.
        data: an iterable of batches (a DataLoader, a list...), iterated again when it runs out;
            or one batch (a tensor or a dict of tensors) used at every step.
        loss: ``loss(model, batch) -> scalar tensor``; training only.
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters; training only.
        evaluate: ``evaluate(model) -> float``, the quality of a model on held-out data.
        name: a short name used in reports.
        metric: what ``evaluate`` returns (``"accuracy"``, ``"val_loss"``, ``"cosine"``...).
        greater_is_better: whether a larger ``evaluate`` result is better.
        description: one line on what the workload is.
        memory_budget_bytes: the memory the workload must fit in (a smaller GPU it will run on,
            a container's limit); diagnosis checks the peak against it. Default: the device's
            memory, or the process's limit on a CPU.
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

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise WorkloadError(f"workload {self.name!r}: model must be callable (a torch module)")
        if self.data is None:
            raise WorkloadError(f"workload {self.name!r}: data is missing")
        if (self.loss is None) != (self.optimizer is None):
            given, missing = (
                ("loss", "optimizer") if self.optimizer is None else ("optimizer", "loss")
            )
            article = "an" if given == "optimizer" else "a"
            raise WorkloadError(
                f"workload {self.name!r} has {article} {given} but no {missing}: "
                "give both to train, or neither to run inference"
            )
        if self.loss is not None and not callable(self.loss):
            raise WorkloadError(f"workload {self.name!r}: loss must be a function (model, batch)")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise WorkloadError(f"workload {self.name!r}: memory_budget_bytes must be positive")
        if self.evaluate is not None and not callable(self.evaluate):
            raise WorkloadError(f"workload {self.name!r}: evaluate must be a function (model)")

    @property
    def mode(self) -> Mode:
        """``"train"`` when the workload has a loss and an optimizer, else ``"infer"``."""
        return "train" if self.optimizer is not None else "infer"

    def batches(self) -> Iterator[Any]:
        """Yield batches forever, iterating the data again each time it runs out."""
        if _is_single_batch(self.data):
            while True:
                yield self.data
        while True:
            produced = False
            for batch in self.data:
                produced = True
                yield batch
            if not produced:
                raise WorkloadError(f"workload {self.name!r}: its data is empty")


def _is_single_batch(data: Any) -> bool:
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

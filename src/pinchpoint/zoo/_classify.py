"""What the zoo's small classifiers share: seeded building, batches made up front, accuracy.

The planted-bottleneck (``planted``) and planted training-problem (``health``) workloads are all
small classifiers trained with cross-entropy and judged by held-out accuracy; these helpers
build them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.workload import Workload

__all__ = [
    "accuracy",
    "batches",
    "classifier",
    "cross_entropy",
    "eval_forward",
    "seeded",
    "shuffled_loader",
    "stacked_mlp",
]

_M = TypeVar("_M", bound=nn.Module)


def seeded(seed: int, factory: Callable[[], _M]) -> _M:
    """A module built by ``factory`` with torch's global generator seeded, then restored."""
    # fork_rng gives the caller back its random state: building a workload must not shift it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def stacked_mlp(
    features: int, hidden: tuple[int, ...], classes: int, activation: Callable[[], nn.Module]
) -> nn.Sequential:
    """A plain MLP: ``Linear`` then ``activation()`` per hidden width, then a ``Linear`` head."""
    layers: list[nn.Module] = []
    width = features
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
        width = size
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled ``(x, y)`` batches made once, up front, all of ``batch_size`` samples.

    The remainder is dropped so every step sees the same shape; with fewer samples than
    ``batch_size`` there is a single batch of all of them.
    """
    order = torch.randperm(len(y), generator=generator)
    full = len(y) // batch_size * batch_size or len(y)
    return [
        (x[idx].contiguous(), y[idx].contiguous())
        for idx in order[:full].split(min(batch_size, full))
    ]


def shuffled_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, **options: Any
) -> Any:
    """A DataLoader shuffling ``(x, y)`` from its own seeded generator, dropping a short last
    batch unless it would be the only one; ``options`` go to the DataLoader."""
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(y) >= batch_size,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output for ``x`` in eval mode, on the CPU; the model's mode is restored.

    ``x`` is moved to the model's device and dtype first, so an optimized (moved, converted)
    model is judged on the same inputs as the original.
    """
    parameter = next(iter(model.parameters()))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out: torch.Tensor = model(x.to(parameter.device, parameter.dtype))
            return out.cpu()
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    """The share of ``x`` that ``model`` classifies as ``y``, in eval mode, in chunks."""
    correct = 0
    for start in range(0, len(y), chunk):
        predicted = eval_forward(model, x[start : start + chunk]).argmax(dim=1)
        correct += int((predicted == y[start : start + chunk]).sum())
    return correct / len(y)


def cross_entropy(model: Any, batch: Any) -> Any:
    """Cross-entropy of the model's logits on an ``(inputs, labels)`` batch."""
    x, y = batch
    return functional.cross_entropy(model(x), y)


def classifier(
    name: str,
    model: nn.Module,
    data: Any,
    optimizer: torch.optim.Optimizer,
    heldout: tuple[torch.Tensor, torch.Tensor],
    description: str,
    memory_budget_bytes: int | None = None,
) -> Workload:
    """A training Workload on cross-entropy whose quality is held-out accuracy."""
    test_x, test_y = heldout

    def evaluate(model: Any) -> float:
        """Accuracy, in [0, 1], on the held-out samples."""
        return accuracy(model, test_x, test_y)

    return Workload(
        model=model,
        data=data,
        loss=cross_entropy,
        optimizer=optimizer,
        evaluate=evaluate,
        name=name,
        metric="accuracy",
        greater_is_better=True,
        description=description,
        memory_budget_bytes=memory_budget_bytes,
    )

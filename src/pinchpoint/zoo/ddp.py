"""Data-parallel zoo workloads: one healthy job and two that plant a multi-rank bottleneck.

Run them on several ranks (``pinchpoint profile zoo:NAME --nproc 2``); each is a small
classifier (a CNN, or an MLP for ``ddp-comm-heavy``) on seeded synthetic data (labels from a
fixed random teacher, as in :mod:`pinchpoint.zoo.planted`) behind a DataLoader, which the
launcher shards with a DistributedSampler. In one process they train like any other workload.

=====================  =======================  ================================================
zoo name               planted kind             the mistake
=====================  =======================  ================================================
``ddp-balanced``       none (healthy control)   none: enough work per rank, a small all-reduce
``ddp-slow-rank``      ``straggler``            one rank evaluates held-out accuracy inside
                                                every training step; the others wait for it
``ddp-comm-heavy``     ``communication_bound``  36 MB of gradients all-reduced per step for a
                                                batch of 8 samples: no compute to hide it behind
=====================  =======================  ================================================

The slow rank (rank 1 by default) is decided when the step runs, from the process group, so the
same workload is balanced in one process.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import accuracy, classifier, seeded, shuffled_loader, stacked_mlp
from pinchpoint.zoo.planted import teacher_data

__all__ = ["DDP_PLANTED", "balanced", "comm_heavy", "slow_rank"]

#: The planted data-parallel workloads: zoo name to the taxonomy kind each one exhibits.
DDP_PLANTED: dict[str, str] = {
    "ddp-slow-rank": "straggler",
    "ddp-comm-heavy": "communication_bound",
}

_FEATURES = 64
_CLASSES = 10


def _rank() -> int:
    """This process's rank in the default process group (0 outside one)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def _cnn(seed: int, channels: int) -> nn.Module:
    def build() -> nn.Module:
        wide = 2 * channels
        return nn.Sequential(
            nn.Conv2d(3, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, wide, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(wide, wide, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(wide * 4 * 4, _CLASSES),
        )

    return seeded(seed, build)


def balanced(
    *, seed: int = 0, batch_size: int | None = None, channels: int | None = None
) -> Workload:
    """``ddp-balanced``: a small CNN on 3x16x16 images at batch 64 per rank (healthy control).

    Convolutions reuse each weight at every pixel, so each rank computes about 1.2 GFLOP per
    step against 78 kB of gradients: the all-reduce is small and every rank does the same work.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: images per batch and rank (default 64).
        channels: the first convolution's channels (default 16; the others have twice that).
    """
    name = "ddp-balanced"
    batch_size = positive_int(name, "batch_size", batch_size, 64)
    channels = positive_int(name, "channels", channels, 16)
    generator = torch.Generator().manual_seed(seed)
    train, test = 16 * batch_size, 512
    x, y = teacher_data(generator, train + test, 3 * 16 * 16, _CLASSES)
    x = x.view(-1, 3, 16, 16)
    model = _cnn(seed, channels)
    return classifier(
        name,
        model,
        shuffled_loader(x[:train], y[:train], batch_size, seed),
        torch.optim.SGD(model.parameters(), lr=0.05),
        (x[train:], y[train:]),
        f"3-conv CNN ({channels}-{2 * channels}-{2 * channels} channels) on 3x16x16 images at "
        f"batch {batch_size} per rank, sharded by a DistributedSampler: balanced ranks, a "
        "small all-reduce; quality = held-out accuracy",
    )


def slow_rank(
    *,
    seed: int = 0,
    batch_size: int | None = None,
    slow: int = 1,
    eval_samples: int | None = None,
) -> Workload:
    """``ddp-slow-rank``: ``ddp-balanced`` where one rank evaluates inside every step.

    The rank that logs (``slow``) measures held-out accuracy on ``eval_samples`` samples in
    every training step, a forward pass of eight batches under ``no_grad``, instead of every
    few hundred steps. Its step takes about four times as long as another rank's, and in every
    all-reduce the other ranks wait for it.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: images per batch and rank (default 64).
        slow: the rank that evaluates in every step (default 1).
        eval_samples: held-out samples it evaluates per step (default eight times the batch).
    """
    name = "ddp-slow-rank"
    batch_size = positive_int(name, "batch_size", batch_size, 64)
    eval_samples = positive_int(name, "eval_samples", eval_samples, 8 * batch_size)
    if isinstance(slow, bool) or not isinstance(slow, int) or slow < 0:
        from pinchpoint.errors import WorkloadError

        raise WorkloadError(f"zoo workload {name!r}: slow must be a rank (>= 0), not {slow!r}")
    workload = balanced(seed=seed, batch_size=batch_size)
    heldout_x, heldout_y = teacher_data(
        torch.Generator().manual_seed(seed + 1), eval_samples, 3 * 16 * 16, _CLASSES
    )
    heldout_x = heldout_x.view(-1, 3, 16, 16)

    def loss(model: Any, batch: Any) -> Any:
        x, y = batch
        if _rank() == slow:
            # The mistake: a metric meant for every few hundred steps, computed every step.
            accuracy(getattr(model, "module", model), heldout_x, heldout_y, chunk=eval_samples)
        return functional.cross_entropy(model(x), y)

    workload.loss = loss
    workload.name = name
    workload.description = (
        f"ddp-balanced where rank {slow} evaluates held-out accuracy on {eval_samples} samples "
        "inside every training step (planted: straggler)"
    )
    return workload


def comm_heavy(
    *, seed: int = 0, batch_size: int | None = None, width: int | None = None
) -> Workload:
    """``ddp-comm-heavy``: 8.9 million parameters trained at batch 8 per rank.

    An MLP 64-2048-2048-2048-10: every step all-reduces 36 MB of gradients for about 0.4 GFLOP
    of work per rank, so the all-reduce, not the arithmetic, sets the step time, and the last
    bucket (most of the gradients) is ready only when backward ends.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch and rank (default 8).
        width: the hidden width (default 2048).
    """
    name = "ddp-comm-heavy"
    batch_size = positive_int(name, "batch_size", batch_size, 8)
    width = positive_int(name, "width", width, 2048)
    generator = torch.Generator().manual_seed(seed)
    train, test = 64 * batch_size, 512
    x, y = teacher_data(generator, train + test, _FEATURES, _CLASSES)
    model = seeded(seed, lambda: stacked_mlp(_FEATURES, (width,) * 3, _CLASSES, nn.ReLU))
    return classifier(
        name,
        model,
        shuffled_loader(x[:train], y[:train], batch_size, seed),
        torch.optim.SGD(model.parameters(), lr=0.01),
        (x[train:], y[train:]),
        f"MLP {_FEATURES}-{width}-{width}-{width}-{_CLASSES} at batch {batch_size} per rank: "
        "large gradients, little compute per rank (planted: communication_bound)",
    )

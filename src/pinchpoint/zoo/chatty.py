"""The chatty-logging zoo workload: debug logging left on at every training step.

``chatty-logging`` plants ``host_sync_bound``. The model, data and optimizer are sound; the
mistake is the loop's logging, written as users write it while debugging and then forget: at
every step it reads the loss with ``.item()``, per-layer statistics of the weights and the
gradients (norm, mean, std, min, max) one ``.item()`` each, a histogram of each weight and
gradient with ``.tolist()``, the batch's predictions with ``.tolist()`` for a per-class accuracy
counted in Python, and prints a formatted line to a log stream: 141 values read back per step.
Each read makes the host wait for a result and turns it into Python numbers; on a GPU it stalls
the device queue (``sync_bound``), on a CPU it is plain time in the step that trains nothing
(about half of it, ``host_sync_bound``). Logging every 50th step
(``Workload.log_every``, the :class:`~pinchpoint.remedies.LogEvery` remedy) keeps the same
lines at a fiftieth of the cost and changes nothing in training.

The log goes to an in-memory stream (:attr:`ChattyLog.stream`), never to stdout. The data are
the planted zoo's teacher-labelled Gaussian samples, seeded, so nothing is downloaded; the
builder follows the zoo's contract and is deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import batches, classifier, seeded, stacked_mlp
from pinchpoint.zoo.planted import teacher_data

__all__ = ["PLANTED_CHATTY", "ChattyLog", "chatty_logging"]

#: The workloads of this module: zoo name to the taxonomy kind each one plants.
PLANTED_CHATTY: dict[str, str] = {"chatty-logging": "host_sync_bound"}

#: Bins of the per-layer weight histogram each logged step reads.
HISTOGRAM_BINS = 32


class ChattyLog:
    """The per-step logging of ``chatty-logging``: a loss function that keeps the batch's
    logits and labels, and a ``log(step, model, loss)`` hook that reads them and the model's
    per-layer statistics back to Python and writes one line per step to :attr:`stream`.
    """

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.stream = io.StringIO()
        self.lines = 0
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def loss(self, model: Any, batch: Any) -> torch.Tensor:
        """Cross-entropy of the model's logits; the logits and labels are kept for the log."""
        x, y = batch
        logits = model(x)
        self._last = (logits.detach(), y)
        return functional.cross_entropy(logits, y)

    def log(self, step: int, model: Any, loss: Any) -> None:
        """Read the loss, per-layer statistics and the batch's accuracy; print one line."""
        fields = [f"step {step:6d}", f"loss {loss.item():.5f}"]
        for name, parameter in model.named_parameters():
            weight = parameter.detach()
            fields.append(_stats(name, weight))
            fields.append(_histogram(name, weight))
            if parameter.grad is not None:
                fields.append(_stats(f"{name}.grad", parameter.grad))
                fields.append(_histogram(f"{name}.grad", parameter.grad))
        if self._last is not None:
            logits, labels = self._last
            predicted = logits.argmax(dim=1).tolist()
            truth = labels.tolist()
            hits = [0] * self.classes
            seen = [0] * self.classes
            for p, t in zip(predicted, truth, strict=True):
                seen[t] += 1
                hits[t] += int(p == t)
            fields.append(f"acc {sum(hits) / max(1, sum(seen)):.4f}")
            rates = (f"{h / s:.3f}" if s else "-" for h, s in zip(hits, seen, strict=True))
            fields.append("per-class " + " ".join(rates))
        print(" | ".join(fields), file=self.stream)
        self.lines += 1


def _stats(name: str, tensor: torch.Tensor) -> str:
    """Norm, mean, std, min and max of ``tensor``, each read to Python on its own."""
    return (
        f"{name} norm={tensor.norm().item():.4g} mean={tensor.mean().item():.4g} "
        f"std={tensor.std().item():.4g} min={tensor.min().item():.4g} "
        f"max={tensor.max().item():.4g}"
    )


def _histogram(name: str, tensor: torch.Tensor) -> str:
    """A histogram of ``tensor`` over its own range, read to Python with ``.tolist()``."""
    low, high = tensor.min().item(), tensor.max().item()
    counts = torch.histc(tensor.float(), bins=HISTOGRAM_BINS, min=low, max=high).tolist()
    return f"{name}.hist " + ",".join(str(int(c)) for c in counts)


def chatty_logging(
    *, seed: int = 0, batch_size: int | None = None, log_every: int | None = None
) -> Workload:
    """The ``chatty-logging`` workload: an MLP classifier that logs heavily at every step.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 128).
        log_every: call the logging hook every this many steps (default 1, the mistake).
    """
    name = "chatty-logging"
    batch_size = positive_int(name, "batch_size", batch_size, 128)
    log_every = positive_int(name, "log_every", log_every, 1)
    features, width, classes = 64, 256, 10
    generator = torch.Generator().manual_seed(seed)
    train, test = 16 * batch_size, 1024
    x, y = teacher_data(generator, train + test, features, classes)
    model = seeded(seed, lambda: stacked_mlp(features, (width,) * 4, classes, nn.ReLU))
    chatty = ChattyLog(classes)
    workload = classifier(
        name,
        model,
        batches(x[:train], y[:train], batch_size, generator),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        (x[train:], y[train:]),
        f"MLP {features}-{width}x4-{classes} trained with Adam at batch {batch_size}, "
        f"logging per-layer weight and gradient statistics, histograms and per-class "
        f"accuracy through .item() and .tolist() every {log_every} step(s); quality = "
        "held-out accuracy",
    )
    return dataclasses.replace(workload, loss=chatty.loss, log=chatty.log, log_every=log_every)

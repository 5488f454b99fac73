"""The planted ``thread_oversubscription`` case: more intra-op threads than the process has cores.

==========================  ===========================  ======================================
zoo name                    planted kind                 the mistake
==========================  ===========================  ======================================
``oversubscribed``          ``thread_oversubscription``  8 intra-op threads per usable core
==========================  ===========================  ======================================

The model is an ordinary residual MLP of 256-wide Linear+ReLU blocks trained at batch 64 with
SGD; it learns (the loss falls from about 4 to 2.3 in 25 steps). Each matmul is large enough for
torch to split it into a parallel region across threads, small enough that a step runs dozens of
them. The mistake is the thread count, eight per core this process may use: what
``torch.set_num_threads(os.cpu_count())`` gives in a container whose CPU quota is an eighth of
the host's cores (2 CPUs on a 16-core host), or "more threads is faster". With more threads
than cores, every parallel region waits at its barrier for threads the scheduler has taken off
the cores: on a shared 2-core machine a step took 2.8 to 3.8 times as long as with one thread
per free core (trials measured 2.9x to 7.4x speed-ups).
No sleep or busy loop is involved.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.recorders.scheduling import usable_cores
from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import batches, classifier, seeded
from pinchpoint.zoo.planted import teacher_data

__all__ = ["PLANTED_THREADS", "THREADS_PER_CORE", "ResidualReLU", "oversubscribed"]

#: The planted workload of this module: zoo name to the taxonomy kind it exhibits.
PLANTED_THREADS: dict[str, str] = {"oversubscribed": "thread_oversubscription"}

#: Intra-op threads per usable core that ``oversubscribed`` runs with by default.
THREADS_PER_CORE = 8


class ResidualReLU(nn.Module):
    """``x + relu(linear(x))``: a residual MLP block of constant width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + functional.relu(self.linear(x))


def oversubscribed(
    *,
    seed: int = 0,
    batch_size: int | None = None,
    threads: int | None = None,
    depth: int | None = None,
) -> Workload:
    """The ``oversubscribed`` workload: a residual MLP trained with 8 intra-op threads per core.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 64).
        threads: the intra-op threads it runs with (default :data:`THREADS_PER_CORE` times the
            cores this process may use; the healthy setting is one per core).
        depth: the number of :class:`ResidualReLU` blocks (default 8).
    """
    name = "oversubscribed"
    cores = usable_cores() or 1
    batch_size = positive_int(name, "batch_size", batch_size, 64)
    threads = positive_int(name, "threads", threads, THREADS_PER_CORE * cores)
    depth = positive_int(name, "depth", depth, 8)
    width, classes = 256, 10
    generator = torch.Generator().manual_seed(seed)
    train, test = 32 * batch_size, 1024
    x, y = teacher_data(generator, train + test, width, classes)
    model = seeded(
        seed,
        lambda: nn.Sequential(
            *(ResidualReLU(width) for _ in range(depth)), nn.Linear(width, classes)
        ),
    )
    workload = classifier(
        name,
        model,
        batches(x[:train], y[:train], batch_size, generator),
        torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        (x[train:], y[train:]),
        f"residual MLP of {depth} blocks x+ReLU(Linear({width},{width})) trained at batch "
        f"{batch_size} with {threads} intra-op threads on {cores} usable cores; "
        "quality = held-out accuracy",
    )
    workload.threads = threads
    return workload

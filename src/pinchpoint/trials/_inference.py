"""What a trial's inference path runs: the first batches of a workload, one timed pass of a model
over them, and the units (batches or samples) that make the two arms' passes compare."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint._threads import torch_threads
from pinchpoint.workload import Workload, call_model, first_batch_size

if TYPE_CHECKING:
    import torch

__all__ = [
    "close_batches",
    "first_batches",
    "infer_arm",
    "repeat",
    "samples_in",
    "synchronizer",
    "units_of_work",
]


def first_batches(workload: Workload, count: int) -> list[Any]:
    """The workload's first ``count`` batches; a single repeated batch object appears once."""
    source = workload.batches()
    try:
        taken = list(itertools.islice(source, count))
    finally:
        close_batches(source)
    unique: dict[int, Any] = {}
    for batch in taken:
        unique.setdefault(id(batch), batch)
    return list(unique.values())


def close_batches(source: Iterator[Any]) -> None:
    """Close a batch generator now, so a DataLoader's workers stop with it."""
    close = getattr(source, "close", None)
    if callable(close):
        close()


def units_of_work(
    base: Sequence[Any], cand: Sequence[Any]
) -> tuple[tuple[float, float], str, tuple[float, float] | None]:
    """Units of work per pass for each arm, their name, and samples per unit (None unknown).

    Passes that hold the same number of batches and samples are compared per batch; passes
    whose samples differ, per sample.
    """
    samples = [samples_in(base), samples_in(cand)]
    if samples[0] is None or samples[1] is None:
        return (float(len(base)), float(len(cand))), "batch", None
    if samples[0] == samples[1] and len(base) == len(cand):
        per_batch = samples[0] / len(base)
        return (float(len(base)), float(len(cand))), "batch", (per_batch, per_batch)
    return (float(samples[0]), float(samples[1])), "sample", (1.0, 1.0)


def samples_in(batches: Sequence[Any]) -> int | None:
    """The samples in ``batches``; None when a batch's size is unknown."""
    sizes = [first_batch_size(b) for b in batches]
    return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


def infer_arm(workload: Workload, batches: list[Any], device: torch.device) -> Callable[[], None]:
    """One pass of the workload's model over ``batches``, under its threads, then a sync."""
    model, threads = workload.model, workload.threads
    sync = synchronizer(device)

    def run() -> None:
        with torch_threads(threads):
            for batch in batches:
                call_model(model, batch)
            sync()

    return run


def repeat(fn: Callable[[], None], times: int) -> None:
    """Call ``fn`` ``times`` times."""
    for _ in range(times):
        fn()


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (nothing on a CPU)."""
    if device.type != "cuda":
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)

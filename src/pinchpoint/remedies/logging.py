"""The logging remedy: call the workload's per-step logging less often.

``log_every`` sets :attr:`~pinchpoint.Workload.log_every`, so the workload's ``log`` hook runs
on every ``every``-th step instead of at each one. The hook only observes (it reads the loss and
the model's statistics back to the host and prints them), so training is unchanged: the same
weights, the same losses, a fraction of the host reads. It is the remedy of
``host_sync_bound`` (the catalog's ``log_less_often``) and of the logging half of
``sync_bound`` (``remove_syncs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Mode, Workload

__all__ = ["LogEvery"]


@dataclass(frozen=True)
class LogEvery(RemedyConfig):
    """Call the workload's ``log`` hook on every ``every``-th step only.

    The new workload has its own copy of the model and optimizer and differs only in
    ``log_every``; applying it to a workload without a ``log`` hook is a ``ValueError``, since
    there is nothing to log less often.

    Args:
        every: log on the steps whose index is a multiple of it (50: a fiftieth of the reads).
    """

    name: ClassVar[str] = "log_every"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("log_less_often", "remove_syncs")

    every: int = 50

    def validate(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"LogEvery: every must be an integer >= 1, not {self.every!r}")


@handler(LogEvery)
def _log_every(workload: Workload, config: LogEvery) -> Workload:
    if workload.log is None:
        raise ValueError(
            f"{config.label()} needs a workload with a log hook, and {workload.name!r} has none"
        )
    return clone_workload(workload, log_every=config.every)

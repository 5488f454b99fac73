"""Clocks that time step phases: the host's, CUDA events, and a fake one for tests.

A clock makes *marks* at phase boundaries and measures the seconds between two marks later, after
:meth:`Clock.wait`. On the CPU a mark is ``time.perf_counter()``. On a GPU a mark is a CUDA event
recorded on the current stream, so phase times are the device's own, and the host synchronises
only once per step, in ``wait``. ``now`` is always host time: the wall clock of the step.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

__all__ = ["Clock", "CudaClock", "FakeClock", "PerfClock"]


class Clock(Protocol):
    """What the recorder needs of a clock."""

    def now(self) -> float:
        """Host time in seconds."""
        ...

    def mark(self) -> Any:
        """A point on the timeline of the work being timed."""
        ...

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks; valid after :meth:`wait`."""
        ...

    def wait(self) -> None:
        """Block until the work marked so far has finished."""
        ...


class PerfClock:
    """The host's monotonic high-resolution clock; work on the CPU finishes as it is issued."""

    now = staticmethod(time.perf_counter)
    mark = staticmethod(time.perf_counter)

    @staticmethod
    def seconds(start: float, end: float) -> float:
        return end - start

    @staticmethod
    def wait() -> None:
        return None


class CudaClock:
    """CUDA events on the current stream: marks cost a few microseconds and never synchronise."""

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self._device = device

    now = staticmethod(time.perf_counter)

    def mark(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1e3

    def wait(self) -> None:
        self._torch.cuda.synchronize(self._device)


class FakeClock(PerfClock):
    """A clock that moves only when told to: deterministic phase times for tests."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def advance(self, seconds: float) -> None:
        """Move time forward, as if work took ``seconds``."""
        self.t += seconds

    def now(self) -> float:
        return self.t

    def mark(self) -> float:
        return self.t

"""Live recording: a Recorder around any loop, and the Workload runner built on it.

Importing this package imports torch; ``import pinchpoint`` does not import it.
"""

from __future__ import annotations

from pinchpoint.recorders.clock import Clock, CudaClock, FakeClock, PerfClock
from pinchpoint.recorders.recorder import Recorder, move_to_device, sample_plan
from pinchpoint.recorders.run import profile, resolve_device

__all__ = [
    "Clock",
    "CudaClock",
    "FakeClock",
    "PerfClock",
    "Recorder",
    "move_to_device",
    "profile",
    "resolve_device",
    "sample_plan",
]

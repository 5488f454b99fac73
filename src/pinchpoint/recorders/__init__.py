"""Recording: a Recorder around any loop, the Workload runner built on it, the StepFinder that
records a script it did not write (``pinchpoint run``), and data-parallel jobs.

Live recording (:class:`Recorder`, :func:`profile`) needs torch and loads it on first use of
those names; :func:`launch` (torchrun over many ranks) and :func:`merge` (per-rank Profiles into
one multi-rank Profile) do not import it in the calling process, nor does importing this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinchpoint.recorders.autostep import StepFinder
    from pinchpoint.recorders.clock import Clock, CudaClock, FakeClock, PerfClock
    from pinchpoint.recorders.recorder import Recorder, move_to_device
    from pinchpoint.recorders.run import profile, resolve_device
    from pinchpoint.recorders.sampling import sample_plan
    from pinchpoint.recorders.script import ScriptRun, run_script

__all__ = [
    "Clock",
    "CudaClock",
    "FakeClock",
    "PerfClock",
    "Recorder",
    "ScriptRun",
    "StepFinder",
    "launch",
    "merge",
    "move_to_device",
    "profile",
    "resolve_device",
    "run_script",
    "sample_plan",
]

_HOMES: dict[str, str] = {
    **dict.fromkeys(("Clock", "CudaClock", "FakeClock", "PerfClock"), "clock"),
    **dict.fromkeys(("Recorder", "move_to_device"), "recorder"),
    **dict.fromkeys(("launch", "merge"), "job"),
    **dict.fromkeys(("profile", "resolve_device"), "run"),
    "sample_plan": "sampling",
    "StepFinder": "autostep",
    **dict.fromkeys(("ScriptRun", "run_script"), "script"),
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'pinchpoint.recorders' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pinchpoint.recorders.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))

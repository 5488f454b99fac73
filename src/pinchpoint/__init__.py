"""pinchpoint: find and fix the bottlenecks of PyTorch training and inference.

The pipeline: a :class:`Workload` (or your own loop, through :class:`Recorder`) is recorded into
a :class:`Profile`; :func:`diagnose` turns it into ranked findings. :func:`load_trace` reads
profiler traces from any job (one file or a folder of ranks) into a :class:`TraceAnalysis` with
the same findings. Importing pinchpoint does not import torch; :func:`profile` and
:class:`Recorder` load it when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinchpoint._profile import PHASES, Profile, Step
from pinchpoint.diagnosis import Diagnosis, diagnose
from pinchpoint.errors import (
    DeviceError,
    PinchpointError,
    ProfileFormatError,
    TraceFormatError,
    WorkloadError,
)
from pinchpoint.finding import KINDS, Finding, Remedy
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint.recorders import Recorder, profile
    from pinchpoint.traces import TraceAnalysis, load_trace

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "PHASES",
    "DeviceError",
    "Diagnosis",
    "Finding",
    "PinchpointError",
    "Profile",
    "ProfileFormatError",
    "Recorder",
    "Remedy",
    "Step",
    "TraceAnalysis",
    "TraceFormatError",
    "Workload",
    "WorkloadError",
    "__version__",
    "diagnose",
    "load_trace",
    "profile",
]

_LAZY = {"Recorder", "profile"}
_LAZY_TRACES = {"TraceAnalysis", "load_trace"}


def __getattr__(name: str) -> Any:
    # Recording needs torch, trace analysis numpy: load them only when a user reaches for them.
    if name in _LAZY:
        from pinchpoint import recorders

        value = getattr(recorders, name)
        globals()[name] = value
        return value
    if name in _LAZY_TRACES:
        from pinchpoint import traces

        value = getattr(traces, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pinchpoint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY | _LAZY_TRACES)

"""pinchpoint: find and fix the bottlenecks of PyTorch training and inference.

The pipeline: a :class:`Workload` (or your own loop, through :class:`Recorder`) is recorded into
a :class:`Profile`; :func:`diagnose` turns it into ranked findings. :func:`load_trace` reads
profiler traces from any job (one file or a folder of ranks) into a :class:`TraceAnalysis` with
the same findings. :func:`compare` sets two runs side by side and says whether the second
regressed. Importing pinchpoint does not import torch; :func:`profile` and
:class:`Recorder` load it when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinchpoint._profile import PHASES, Profile, Step
from pinchpoint._version import __version__
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
    from pinchpoint import remedies
    from pinchpoint.comparison import Comparison, compare
    from pinchpoint.optimizer import OptimizeResult, optimize
    from pinchpoint.recorders import Recorder, launch, merge, profile
    from pinchpoint.remedies import apply
    from pinchpoint.results import load_result
    from pinchpoint.traces import TraceAnalysis, load_trace

    # From the module: through the package, mypy (in the import cycle the saved types form with
    # pinchpoint.codec) took the name for the submodule pinchpoint.trials.trial.
    from pinchpoint.trials.trial import Trial, trial


__all__ = [
    "KINDS",
    "PHASES",
    "Comparison",
    "DeviceError",
    "Diagnosis",
    "Finding",
    "OptimizeResult",
    "PinchpointError",
    "Profile",
    "ProfileFormatError",
    "Recorder",
    "Remedy",
    "ScaleResult",
    "Step",
    "TraceAnalysis",
    "TraceFormatError",
    "Trial",
    "Workload",
    "WorkloadError",
    "__version__",
    "apply",
    "compare",
    "diagnose",
    "launch",
    "load_result",
    "load_trace",
    "merge",
    "optimize",
    "profile",
    "remedies",
    "scale",
    "trial",
]

# Recording needs torch, trace analysis numpy: names load from their modules on first use.
_LAZY: dict[str, str] = {
    "Recorder": "pinchpoint.recorders",
    "profile": "pinchpoint.recorders",
    "launch": "pinchpoint.recorders",
    "merge": "pinchpoint.recorders",
    "ScaleResult": "pinchpoint.trials.scale",
    "scale": "pinchpoint.trials.scale",
    "TraceAnalysis": "pinchpoint.traces",
    "load_result": "pinchpoint.results",
    "load_trace": "pinchpoint.traces",
    "apply": "pinchpoint.remedies",
    "Trial": "pinchpoint.trials",
    "trial": "pinchpoint.trials",
    "OptimizeResult": "pinchpoint.optimizer",
    "optimize": "pinchpoint.optimizer",
    "Comparison": "pinchpoint.comparison",
    "compare": "pinchpoint.comparison",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "remedies":
        value: Any = importlib.import_module("pinchpoint.remedies")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'pinchpoint' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"remedies"})

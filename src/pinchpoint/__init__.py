"""pinchpoint: find and fix the bottlenecks of PyTorch training and inference.

The pipeline: a :class:`Workload` (or your own loop, through :class:`Recorder`) is recorded into
a :class:`Profile`; :func:`diagnose` turns it into ranked findings. Importing pinchpoint does not
import torch; :func:`profile` and :class:`Recorder` load it when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinchpoint._profile import PHASES, Profile, Step
from pinchpoint.diagnosis import Diagnosis, diagnose
from pinchpoint.errors import DeviceError, PinchpointError, ProfileFormatError, WorkloadError
from pinchpoint.finding import KINDS, Finding, Remedy
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint.recorders import Recorder, profile

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
    "Workload",
    "WorkloadError",
    "__version__",
    "diagnose",
    "profile",
]

_LAZY = {"Recorder", "profile"}


def __getattr__(name: str) -> Any:
    # Recording needs torch; load it only when a user reaches for it.
    if name in _LAZY:
        from pinchpoint import recorders

        value = getattr(recorders, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pinchpoint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)

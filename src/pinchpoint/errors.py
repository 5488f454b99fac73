"""The exceptions pinchpoint raises on purpose.

Every error a user can cause derives from :class:`PinchpointError`; the CLI prints its message as
one line and exits with status 2. Anything else escaping is a bug in pinchpoint.
"""

from __future__ import annotations

__all__ = [
    "DeviceError",
    "PinchpointError",
    "ProfileFormatError",
    "TraceFormatError",
    "WorkloadError",
]


class PinchpointError(Exception):
    """An error whose message, on one line, tells the user what is wrong."""


class WorkloadError(PinchpointError):
    """A workload target cannot be loaded, or the workload fails while it runs."""


class DeviceError(PinchpointError):
    """The requested device does not exist on this machine."""


class ProfileFormatError(PinchpointError):
    """A file is not a Profile pinchpoint can read (wrong schema, broken JSON)."""


class TraceFormatError(PinchpointError):
    """A file or folder holds no profiler trace pinchpoint can read."""

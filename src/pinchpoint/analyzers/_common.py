"""Helpers the analyzers share: step shares and the profiled step's operator time."""

from __future__ import annotations

from collections.abc import Callable

from pinchpoint._profile import Profile
from pinchpoint.finding import Finding

__all__ = ["Analyzer", "busy_share", "operator_seconds", "phase_share"]

#: What every analyzer is: a Profile in, the findings it can prove out.
Analyzer = Callable[[Profile], list[Finding]]


def phase_share(profile: Profile, phase: str) -> float:
    """The share of the measured steps' wall time spent in ``phase`` (0 when absent)."""
    stats = profile.phase_stats().get(phase)
    return stats.share if stats is not None else 0.0


def busy_share(profile: Profile) -> float:
    """The share of the step in which operators run: all but the data wait and the copies."""
    return max(0.0, 1.0 - phase_share(profile, "data") - phase_share(profile, "transfer"))


def operator_seconds(profile: Profile) -> float:
    """Self time of every operator in the profiled step, summed."""
    return sum(op.self_s for op in profile.operators)

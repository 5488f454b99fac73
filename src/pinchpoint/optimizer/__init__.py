"""Optimize: the candidates (``candidates``), the search over them (``search``) and the result
it saves (``result``).

:func:`optimize` measures candidate remedies against the baseline within a time and a quality
budget; :class:`OptimizeResult` holds every trial, the chosen one and the Pareto frontier, and
saves them with the chosen model.
"""

from __future__ import annotations

from pinchpoint.optimizer.candidates import FAMILIES, LOG_EVERY, candidates_for, combinations
from pinchpoint.optimizer.result import (
    SCHEMA,
    Candidate,
    OptimizeResult,
    TrialRecord,
    load_remedies,
)
from pinchpoint.optimizer.search import optimize, pareto_front, parse_duration

__all__ = [
    "FAMILIES",
    "LOG_EVERY",
    "SCHEMA",
    "Candidate",
    "OptimizeResult",
    "TrialRecord",
    "candidates_for",
    "combinations",
    "load_remedies",
    "optimize",
    "pareto_front",
    "parse_duration",
]

"""Profiler traces (PyTorch/Kineto Chrome-trace files) in, the same findings as a live run out.

Pipeline: :mod:`._parse` reads one file into numpy columns; :mod:`._rank` turns them into a small
per-rank summary (the map); :mod:`._analysis` combines summaries across ranks, tests for
stragglers and runs the analyzers on one Profile per rank (the reduce). Nothing here imports
torch.
"""

from __future__ import annotations

from pinchpoint.traces._analysis import (
    SCHEMA,
    TraceAnalysis,
    analyze_file,
    combine,
    find_trace_files,
    load_trace,
    rank_profile,
)

__all__ = [
    "SCHEMA",
    "TraceAnalysis",
    "analyze_file",
    "combine",
    "find_trace_files",
    "load_trace",
    "rank_profile",
]

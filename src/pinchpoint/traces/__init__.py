"""Profiler traces (PyTorch/Kineto Chrome-trace files) in, the same findings as a live run out.

Pipeline: :mod:`._parse` reads one file into numpy columns; :mod:`._rank` turns them into the rank's
Profile (the map); :mod:`._analysis` makes the ranks one multi-rank Profile and analyses it as a
live job's (the reduce); :mod:`._format` is the ``pinchpoint.trace/1`` file. Nothing here imports
torch.
"""

from __future__ import annotations

from pinchpoint.traces._analysis import (
    SCHEMA,
    TraceAnalysis,
    analyze_file,
    combine,
    find_trace_files,
    job_profile,
    load_trace,
)

__all__ = [
    "SCHEMA",
    "TraceAnalysis",
    "analyze_file",
    "combine",
    "find_trace_files",
    "job_profile",
    "load_trace",
]

"""Trials: a candidate workload measured against its baseline, fairly, and the verdict on it.

:func:`trial` compares two workloads (speed interleaved with repeats, size, peak memory, and
quality against a budget); :func:`compare_speed` compares any two callables; :func:`fidelity`
compares two models' outputs. Importing this package does not import torch.
"""

from __future__ import annotations

from pinchpoint.stats import median_interval
from pinchpoint.trials.memory import peak_memories, size_bytes
from pinchpoint.trials.quality import Budget, Fidelity, fidelity, output_tensor, quality_drop
from pinchpoint.trials.timing import SpeedComparison, compare_speed, speed_from_pairs
from pinchpoint.trials.trial import OBJECTIVES, TrainingComparison, Trial, trial

__all__ = [
    "OBJECTIVES",
    "Budget",
    "Fidelity",
    "SpeedComparison",
    "TrainingComparison",
    "Trial",
    "compare_speed",
    "fidelity",
    "median_interval",
    "output_tensor",
    "peak_memories",
    "quality_drop",
    "size_bytes",
    "speed_from_pairs",
    "trial",
]

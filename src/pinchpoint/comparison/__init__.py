"""The Comparison: two runs side by side, and whether the second is a regression of the first.

:func:`compare` takes two results of any kind pinchpoint makes (a Profile, a Diagnosis, a
TraceAnalysis, a saved ``pinchpoint.profile/1``, ``pinchpoint.diagnosis/1`` or
``pinchpoint.trace/1`` file, or a profiler trace file or folder of ranks) and reports:

- **step time**: the median step of each side, the change, and whether it is beyond noise (a
  distribution-free 95 % interval of the ratio of B's step time to A's, below);
- **phases**: each phase's median per step on each side (for traces, also the device's time
  breakdown: idle, compute, non-compute, overlap, exposed communication, busy time per step);
- **operators and kernels** that changed, by the stable names a trace's JSON keeps (per-operator
  and per-kernel totals; per-operator totals for profiles), each divided by the steps it covers
  so that runs of different lengths compare;
- **findings** added, gone, or of another severity;
- a **verdict**: ``regression`` when B is slower than A by more than ``fail_above`` and beyond
  noise, ``improved`` when it is faster by as much, else ``ok``.

Inputs of different kinds compare where their numbers mean the same thing: a profile and a
diagnosis of a profile compare fully; a trace and a live profile only by step time and phases
(their operator names and findings come from different instruments), and the Comparison's
``notes`` say so. The JSON form is ``pinchpoint.compare/1`` (see the README).

The noise test. The two sides' steps are not paired (they come from different runs), so the
sign-test interval of :mod:`pinchpoint.trials.timing`, which needs pairs, does not apply; the
two-sample counterpart is used instead: Moses' interval for the shift between two samples,
read from the order statistics of all pairwise differences ``log b_j - log a_i`` at ranks given
by the exact Mann-Whitney distribution (its normal approximation beyond 2,500 pairs). On log
times the shift is a ratio, and the interval holds whatever the step times' distribution, for
any two samples whose shapes agree. Too few steps give no 95 % interval (2 or 3 on each side;
4 against 4 is the smallest balanced pair that gives one): the comparison then says so, and the
verdict rests on the medians alone.
Each side's median also gets its own order-statistics interval
(:func:`pinchpoint.trials.timing.median_interval`) where it has 6 steps or more.
"""

from pinchpoint.comparison.result import (
    GPU_METRICS,
    SCHEMA,
    Comparison,
    Delta,
    FindingChange,
    NameChange,
    PhaseChange,
    Side,
    StepTimeChange,
    TotalsChange,
    Verdict,
)
from pinchpoint.comparison.verdict import (
    DEFAULT_FAIL_ABOVE,
    Comparable,
    compare,
    parse_fail_above,
)
from pinchpoint.stats import ratio_interval

__all__ = [
    "DEFAULT_FAIL_ABOVE",
    "GPU_METRICS",
    "SCHEMA",
    "Comparable",
    "Comparison",
    "Delta",
    "FindingChange",
    "NameChange",
    "PhaseChange",
    "Side",
    "StepTimeChange",
    "TotalsChange",
    "Verdict",
    "compare",
    "parse_fail_above",
    "ratio_interval",
]

"""Analyzers: each turns a Profile into Findings; the default list is one editable list.

Every analyzer has the signature ``analyze(profile) -> list[Finding]``, reads only the Profile
(the calibrated peaks included, in ``profile.machine.peaks``) and returns nothing it cannot prove:
an analyzer whose inputs are missing (no operators, no peaks) returns no finding. Each family
lives in its own module, whose docstring states its rules and thresholds; what many ranks share
(merging their findings, stragglers) lives in :mod:`pinchpoint.analyzers.ranks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pinchpoint._profile import Profile
from pinchpoint.analyzers import (
    compilation,
    device,
    host_sync,
    memory,
    overhead,
    phases,
    roofline,
    sync,
    training,
)
from pinchpoint.analyzers import threads as threads_analyzer
from pinchpoint.finding import Finding, rank

__all__ = ["DEFAULT_ANALYZERS", "Analyzer", "run_analyzers"]

Analyzer = Callable[[Profile], list[Finding]]

#: The analyzers ``diagnose`` runs, in no particular order: findings are ranked afterwards.
DEFAULT_ANALYZERS: list[Analyzer] = [
    phases.analyze_input,
    phases.analyze_transfer,
    phases.analyze_optimizer,
    sync.analyze,
    host_sync.analyze,
    overhead.analyze,
    device.analyze_launch,
    device.analyze_communication,
    roofline.analyze,
    memory.analyze,
    training.analyze,
    compilation.analyze,
    threads_analyzer.analyze,
]


def run_analyzers(profile: Profile, analyzers: Iterable[Analyzer] | None = None) -> list[Finding]:
    """Every finding of the given analyzers (the default list if None), ranked by saving.

    A merged multi-rank Profile is analysed as a job (:mod:`pinchpoint.analyzers.ranks`): each
    rank's findings merged by kind, the job-level ones, and the straggler test.
    """
    if profile.ranks:
        from pinchpoint.analyzers.ranks import job_findings

        return job_findings(profile, analyzers)
    findings: list[Finding] = []
    for analyzer in DEFAULT_ANALYZERS if analyzers is None else analyzers:
        findings.extend(analyzer(profile))
    # Stalled threads inflate every operator's time: the findings read off those times are
    # their symptoms (root cause before symptom; analyzers.threads).
    return rank(threads_analyzer.mark_symptoms(findings))

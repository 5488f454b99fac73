"""Analyzers: each turns a Profile into Findings; the default list is one editable list.

Every analyzer has the signature ``analyze(profile) -> list[Finding]``, reads only the Profile
(the calibrated peaks included, in ``profile.machine.peaks``) and returns nothing it cannot prove:
an analyzer whose inputs are missing (no operators, no peaks) returns no finding. Each family
lives in its own module, whose docstring states its rules and thresholds; what many ranks share
(merging their findings, stragglers) lives in :mod:`pinchpoint.analyzers.ranks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

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
from pinchpoint.analyzers._common import Analyzer
from pinchpoint.analyzers.ranks import (
    JOB_ANALYZERS,
    merge_rank_findings,
    rank_of,
    straggler_findings,
    straggler_test,
)
from pinchpoint.finding import Finding, rank

if TYPE_CHECKING:
    from pinchpoint.stragglers import StragglerReport

__all__ = ["DEFAULT_ANALYZERS", "Analyzer", "analyse", "job_findings", "run_analyzers"]

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
        return analyse(profile, analyzers)[0]
    findings: list[Finding] = []
    for analyzer in DEFAULT_ANALYZERS if analyzers is None else analyzers:
        findings.extend(analyzer(profile))
    # Stalled threads inflate every operator's time: the findings read off those times are
    # their symptoms (root cause before symptom; analyzers.threads).
    return rank(threads_analyzer.mark_symptoms(findings))


def analyse(
    profile: Profile, analyzers: Iterable[Analyzer] | None = None
) -> tuple[list[Finding], StragglerReport | None]:
    """The ranked findings of any Profile and, for a multi-rank one, the straggler test they
    include (run once, for callers that show it too); None for one rank."""
    if not profile.ranks:
        return run_analyzers(profile, analyzers), None
    stragglers = straggler_test(profile)
    return job_findings(profile, analyzers, stragglers), stragglers


def job_findings(
    profile: Profile,
    analyzers: Iterable[Analyzer] | None,
    stragglers: StragglerReport | None,
) -> list[Finding]:
    """The ranked findings of a multi-rank Profile: each rank's findings merged by kind
    (:func:`~pinchpoint.analyzers.ranks.merge_rank_findings`), the job-level analyzers', and the
    findings of the straggler test's report ``stragglers`` (run by the caller,
    :func:`~pinchpoint.analyzers.ranks.straggler_test`).

    The job-level analyzers judge the job as a whole where its ranks measured their
    communication as waits (a recording's all-reduce hook); ranks with a kernel timeline (a
    trace's) measured it on their own devices and are judged one by one.
    """
    chosen = list(DEFAULT_ANALYZERS if analyzers is None else analyzers)
    timelines = any(r.device_timeline is not None for r in profile.ranks)
    per_rank = [a for a in chosen if timelines or a not in JOB_ANALYZERS]
    whole = [a for a in chosen if not timelines and a in JOB_ANALYZERS]
    findings = merge_rank_findings(
        [(rank_of(r, i), run_analyzers(r, per_rank)) for i, r in enumerate(profile.ranks)]
    )
    for analyzer in whole:
        findings.extend(analyzer(profile))
    findings.extend(straggler_findings(stragglers))
    return rank(findings)

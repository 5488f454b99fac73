"""Findings of a multi-rank job, shared by recorded data-parallel runs and profiler traces.

A job reaches pinchpoint in two ways: the ranks of a profiler trace (:mod:`pinchpoint.traces`)
and a merged multi-rank Profile (:func:`pinchpoint.recorders.job.merge`). Both end here:

- every rank's Profile goes through the analyzers and findings of one kind on several ranks
  merge into one, the one with the largest saving kept, its evidence naming the ranks
  (:func:`merge_rank_findings`);
- the calibrated straggler test (:mod:`pinchpoint.stragglers`) becomes ``straggler`` findings
  (:func:`straggler_findings`). For a merged Profile its inputs are, over the steps every rank
  measured, each rank's *busy* time (the step's wall time less its ``communication`` phase, the
  wait in the gradient all-reduce) and the wall time as the step time;
- analyzers in :data:`JOB_ANALYZERS` judge a merged Profile as a whole instead of rank by rank:
  ``communication_bound``, whose per-rank numbers would count a fast rank's wait for a slow one
  as communication.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pinchpoint._profile import Profile
from pinchpoint.analyzers import device
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import Analyzer
from pinchpoint.finding import Finding, severity_for

if TYPE_CHECKING:
    from pinchpoint.stragglers import StragglerReport

__all__ = [
    "JOB_ANALYZERS",
    "merge_rank_findings",
    "rank_of",
    "straggler_findings",
    "straggler_test",
]

#: Analyzers that read a merged Profile as one job rather than rank by rank.
JOB_ANALYZERS: tuple[Analyzer, ...] = (device.analyze_communication,)


def rank_of(profile: Profile, default: int = 0) -> int:
    """The rank a Profile was recorded on (``default`` where it does not say)."""
    return profile.rank if profile.rank is not None else default


#: The smallest excess a straggler must show where a node's ranks share its cores: there the
#: cores themselves are unequal. On a 2-core machine, two one-thread copies of one convolution
#: loop ran 15 and 21 ms per step side by side; a healthy 2-rank job measured one rank 14-32 %
#: slower, the same rank in 11 or 12 of 12 steps, in 5 of 6 launches (its MLP twin: 21 % once
#: in 6), while the ranks of zoo:ddp-slow-rank differ by 70-80 %.
SHARED_CORES_MIN_EXCESS = 0.40


def shares_cores(profile: Profile) -> bool:
    """Whether the ranks on one node use at least as many threads as the node has cores."""
    facts, machine = profile.distributed, profile.machine
    if facts is None or not machine.cores_logical or not machine.threads:
        return False
    per_node = facts.world_size / max(1, facts.nodes or 1)
    return per_node * machine.threads >= machine.cores_logical


def straggler_test(profile: Profile) -> StragglerReport | None:
    """The calibrated straggler test over a multi-rank Profile's ranks: each rank's own work
    (:attr:`~pinchpoint._profile.Step.own_s`) and the wall time as the step time, over the
    steps every rank measured.

    None with fewer than two ranks, with ranks that cannot be one job (two claim one rank
    number, or they name different world sizes), or without a step every rank has. Where the
    ranks share their node's cores (:func:`shares_cores`) a straggler must also be
    :data:`SHARED_CORES_MIN_EXCESS` slower, not the test's usual 5 %.
    """
    numbers = [rank_of(r, i) for i, r in enumerate(profile.ranks)]
    sizes = {r.trace.world_size for r in profile.ranks if r.trace is not None} - {None}
    rows = profile.matched_steps()
    if len(numbers) < 2 or len(set(numbers)) < len(numbers) or len(sizes) > 1 or not rows:
        return None
    from pinchpoint.stragglers import find_stragglers

    busy = {n: [row[i].own_s for row in rows.values()] for i, n in enumerate(numbers)}
    wall = {n: [row[i].wall_s for row in rows.values()] for i, n in enumerate(numbers)}
    if shares_cores(profile):
        return find_stragglers(busy, step_s=wall, min_excess_share=SHARED_CORES_MIN_EXCESS)
    return find_stragglers(busy, step_s=wall)


def merge_rank_findings(per_rank: Sequence[tuple[int, Iterable[Finding]]]) -> list[Finding]:
    """Findings of several ranks merged by kind: the largest saving of each kind kept, with the
    ranks that showed it (``evidence.ranks``, ``evidence.ranks_total``) when there are many."""
    best: dict[str, Finding] = {}
    where: dict[str, list[int]] = {}
    for number, findings in per_rank:
        for finding in findings:
            where.setdefault(finding.kind, []).append(number)
            if finding.kind not in best or finding.saving_share > best[finding.kind].saving_share:
                best[finding.kind] = finding
    if len(per_rank) <= 1:
        return list(best.values())
    merged = []
    for kind, finding in best.items():
        evidence = dict(finding.evidence)
        evidence["ranks"] = sorted(set(where[kind]))
        evidence["ranks_total"] = len(per_rank)
        merged.append(dataclasses.replace(finding, evidence=evidence))
    return merged


def straggler_findings(report: StragglerReport | None) -> list[Finding]:
    """A ``straggler`` finding for each rank the test names."""
    if report is None:
        return []
    out = []
    for s in report.stragglers:
        # The others wait for the straggler: its excess is lost on every other rank.
        saving = s.excess_share
        out.append(
            Finding(
                kind="straggler",
                severity=severity_for(saving),
                share=s.excess_share,
                saving_share=saving,
                summary=(
                    f"Rank {s.rank} is a straggler: its own work takes {s.excess_s * 1e3:,.1f} ms "
                    f"more per step than the others', {s.excess_share:.0%} of the step, which "
                    f"they spend waiting for it (slowest in {s.slowest_steps} of {s.steps} "
                    f"steps, confidence {s.confidence:.1%})."
                ),
                evidence={
                    "rank": s.rank,
                    "excess_s": s.excess_s,
                    "excess_share": s.excess_share,
                    "slowest_steps": s.slowest_steps,
                    "steps": s.steps,
                    "p_value": s.p_value,
                    "confidence": s.confidence,
                    "method": report.method,
                    "alpha": report.alpha,
                },
                remedies=[
                    remedy("rebalance_data"),
                    remedy("check_slow_host"),
                    remedy("pin_threads"),
                ],
            )
        )
    return out

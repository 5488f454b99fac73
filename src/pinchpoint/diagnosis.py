"""Diagnosis: the ranked findings for a workload or a saved Profile, with the roofline behind them.

:func:`diagnose` records a Workload (or takes a Profile), puts the machine's calibrated peaks into
the Profile (calibrating on first use; the result is cached per machine), runs the analyzers and
ranks their findings (:func:`pinchpoint.finding.rank`: a run that diverges or does not learn
first, root cause before symptom, then large time savings, slowed learning, small savings):
``findings[0]`` is the principal bottleneck, and each finding's ``rank_reason`` says why. A
workload with no high-severity finding is called healthy, plainly, rather than given an invented
one.

The JSON form (``schema: pinchpoint.diagnosis/1``) is a public contract::

    {"schema": "pinchpoint.diagnosis/1", "target": ..., "machine": {...}, "profile": {...},
     "roofline": {...}, "findings": [{"kind": ..., "severity": ..., "share": ...,
     "saving_share": ..., "summary": ..., "evidence": {...}, "remedies": [...],
     "rank_reason": ...}, ...]}

``rank_reason`` was added within schema 1: a diagnosis saved before it loads with it empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinchpoint import codec
from pinchpoint._profile import Profile, Step
from pinchpoint.analyzers import Analyzer, analyse
from pinchpoint.analyzers.ranks import straggler_test
from pinchpoint.finding import Finding
from pinchpoint.roofline import achieved_fraction, module_points, operator_points
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint.stragglers import StragglerReport
    from pinchpoint.traces import TraceAnalysis

__all__ = ["SCHEMA", "Diagnosis", "diagnose", "roofline_summary"]

SCHEMA = "pinchpoint.diagnosis/1"

#: Roofline points kept in the JSON (the operators and modules that took the most time).
_TOP_POINTS = 40


@dataclass
class Diagnosis(codec.Saved):
    """The findings for one target, ranked, with the Profile and roofline they rest on.

    ``stragglers`` is the straggler test of a multi-rank Profile, run once with the analyzers
    (its findings are among ``findings``); it is not saved: :meth:`straggler_report` runs it
    on a loaded diagnosis's ranks when first asked. None for one rank.
    """

    target: str
    profile: Profile
    findings: list[Finding] = field(default_factory=list)
    roofline: dict[str, Any] = field(default_factory=dict)
    stragglers: StragglerReport | None = field(default=None, metadata=codec.not_saved())

    saved_as = codec.Document(SCHEMA, "diagnosis")

    def straggler_report(self) -> StragglerReport | None:
        """The straggler test of the Profile's ranks: the one run with the analyzers, else (a
        loaded diagnosis) run now, once."""
        if self.stragglers is None and len(self.profile.ranks) >= 2:
            self.stragglers = straggler_test(self.profile)
        return self.stragglers

    @classmethod
    def of(
        cls,
        profile: Profile,
        analyzers: Iterable[Analyzer] | None = None,
        target: str | None = None,
    ) -> Diagnosis:
        """The analysis of a Profile as it is: its findings (the default analyzers if None),
        straggler test and roofline summary; nothing recorded, calibrated or copied."""
        findings, stragglers = analyse(profile, analyzers)
        return cls(target or profile.name, profile, findings, roofline_summary(profile), stragglers)

    @property
    def principal(self) -> Finding | None:
        """The principal finding: the first by :func:`pinchpoint.finding.rank`."""
        return self.findings[0] if self.findings else None

    @property
    def healthy(self) -> bool:
        """True when no finding is of high severity."""
        return not any(f.severity == "high" for f in self.findings)

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        """The contract's key order, with the machine and verdict up front for readers."""
        return codec.arrange(
            data,
            "schema target machine healthy findings roofline profile",
            machine=self.profile.machine.to_dict(),
            healthy=self.healthy,
        )


def roofline_summary(profile: Profile) -> dict[str, Any]:
    """The numbers a roofline chart needs: peaks, ridge, utilisation, the top points."""
    peaks = profile.machine.peaks
    if "flops_float32" not in peaks or "bandwidth_bytes_per_s" not in peaks:
        return {}
    ops = operator_points(profile)
    modules = module_points(profile)
    op_seconds = sum(p.seconds for p in ops)
    compute_s = sum(p.seconds for p in ops if p.bound == "compute")
    mfu = None
    if profile.flops is not None and profile.step_time_s:
        mfu = profile.flops.total / profile.step_time_s / peaks["flops_float32"]
    return {
        "peak_flops_per_s": peaks["flops_float32"],
        "bandwidth_bytes_per_s": peaks["bandwidth_bytes_per_s"],
        "ridge_flops_per_byte": peaks["flops_float32"] / peaks["bandwidth_bytes_per_s"],
        "model_flops_utilization": mfu,
        "compute_bound_time_share": compute_s / op_seconds if op_seconds else None,
        "memory_bound_time_share": (op_seconds - compute_s) / op_seconds if op_seconds else None,
        "achieved_fraction": achieved_fraction(ops),
        "operators": [p.to_dict() for p in sorted(ops, key=lambda p: -p.seconds)[:_TOP_POINTS]],
        "modules": [p.to_dict() for p in sorted(modules, key=lambda p: -p.seconds)[:_TOP_POINTS]],
    }


def _same_machine(profile: Profile) -> bool:
    from pinchpoint.machine.facts import describe_machine

    here = describe_machine()
    there = profile.machine
    return (there.cpu_model, there.cores_logical) == (here.cpu_model, here.cores_logical)


def _with_peaks(profile: Profile, device: str) -> Profile:
    """The profile with this machine's calibrated peaks, when it was recorded on this machine
    (a merged multi-rank Profile: each of its ranks that was); a new Profile where any are
    added, the given one untouched."""
    ranks = [_with_peaks(r, device) for r in profile.ranks]
    if any(new is not old for new, old in zip(ranks, profile.ranks, strict=True)):
        profile = dataclasses.replace(profile, ranks=ranks)
    if profile.machine.peaks or not _same_machine(profile):
        return profile
    from pinchpoint.machine.calibrate import load_or_calibrate

    peaks, _ = load_or_calibrate(device)
    machine = dataclasses.replace(profile.machine, peaks=peaks.as_machine_peaks())
    return dataclasses.replace(profile, machine=machine)


def _reanalysed(analysis: TraceAnalysis, analyzers: Iterable[Analyzer]) -> TraceAnalysis:
    from pinchpoint.traces import combine

    return combine(analysis.ranks, source=analysis.source, analyzers=analyzers)


def _principal_profile(analysis: TraceAnalysis) -> Profile:
    """The Profile of the rank the principal finding came from (the first rank otherwise)."""
    principal = analysis.principal
    wanted = principal.evidence.get("rank") if principal is not None else None
    return next((r for r in analysis.ranks if r.rank == wanted), analysis.ranks[0])


def diagnose(
    target: Workload | Profile | TraceAnalysis,
    *,
    steps: int = 20,
    warmup: int = 3,
    device: str = "auto",
    memory_budget_bytes: int | None = None,
    analyzers: Iterable[Analyzer] | None = None,
    on_step: Callable[[Step], None] | None = None,
    name: str | None = None,
) -> Diagnosis:
    """Diagnose a Workload (recorded first), a saved Profile or an analysed trace.

    Args:
        target: what to diagnose (a :class:`~pinchpoint.traces.TraceAnalysis` from
            :func:`pinchpoint.load_trace` keeps the findings of its ranks).
        steps, warmup, device, on_step: how to record a Workload (see :func:`pinchpoint.profile`).
        memory_budget_bytes: the memory the run must fit in, overriding the workload's own.
        analyzers: the analyzers to run instead of the default list.
        name: the target's name in the output (a file path, ``zoo:NAME``); default: its name.
    """
    from pinchpoint.traces import TraceAnalysis

    if isinstance(target, TraceAnalysis):
        # A trace's findings come from its own ranks: the machine it ran on is not this one.
        chosen = target if analyzers is None else _reanalysed(target, analyzers)
        return Diagnosis(
            target=name or target.source,
            profile=_principal_profile(chosen),
            findings=list(chosen.findings),
        )
    if isinstance(target, Workload):
        from pinchpoint.recorders import profile as record

        profile = record(target, steps=steps, warmup=warmup, device=device, on_step=on_step)
    elif isinstance(target, Profile):
        # Peaks and a budget are added below: work on a copy, never on the caller's Profile.
        profile = dataclasses.replace(target, settings=dict(target.settings))
    else:
        raise TypeError(
            "diagnose() takes a Workload, a Profile or a TraceAnalysis, "
            f"not {type(target).__name__}"
        )
    if memory_budget_bytes is not None:
        if memory_budget_bytes <= 0:
            raise ValueError("memory_budget_bytes must be positive")
        profile.settings["memory_budget_bytes"] = memory_budget_bytes
    profile = _with_peaks(profile, "cuda" if profile.device.startswith("cuda") else "cpu")
    return Diagnosis.of(profile, analyzers, target=name)

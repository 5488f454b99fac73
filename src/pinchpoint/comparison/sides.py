"""What a comparison reads of each input: a :class:`Run`, whatever the input's kind.

A Profile, a Diagnosis, a trace analysis or a path to any of them (or to a profiler trace) is
reduced to the same numbers: its job's step times, phases, operators per profiled step, and
where traced its kernels and device breakdown (:func:`load_side`). Every kind goes through one
model, the Profile (a trace analysis holds its job's), and the kinds differ only in the
:class:`~pinchpoint.comparison.result.Side` that names them.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pinchpoint import results
from pinchpoint._io import read_json
from pinchpoint._profile import Profile
from pinchpoint.comparison.result import GPU_METRICS, Side
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.errors import ProfileFormatError
from pinchpoint.finding import Finding

if TYPE_CHECKING:
    from pinchpoint.traces import TraceAnalysis

__all__ = ["Run", "load_side"]


@dataclass
class Run:
    """One input, reduced to what a comparison reads."""

    side: Side
    times_s: list[float]
    phases: dict[str, tuple[float, float]]  # name -> (median seconds, share)
    operators: dict[str, tuple[float, float]] | None  # name -> (calls, self s) per step
    operator_steps: float = 1.0
    kernels: dict[str, tuple[str, float, float]] | None = None  # name -> (kind, calls, s)
    kernel_steps: float = 1.0
    gpu: dict[str, float | None] | None = None
    findings: list[Finding] | None = None
    notes: list[str] = field(default_factory=list)


def load_side(item: object, label: str) -> Run:
    """The ``Run`` of one input of any kind :func:`~pinchpoint.comparison.compare` takes."""
    from pinchpoint.traces import TraceAnalysis

    if isinstance(item, Diagnosis):
        return _profile_run(item.profile, "diagnosis", item.target, item.target, item.findings)
    if isinstance(item, Profile):
        return _profile_run(item, "profile", item.name, item.name, None)
    if isinstance(item, TraceAnalysis):
        return _trace_run(item)
    if isinstance(item, (str, os.PathLike)):
        return _load_path(os.fspath(item), label)
    raise TypeError(
        "compare() takes Profiles, Diagnoses, TraceAnalyses or paths to them, "
        f"not {type(item).__name__}"
    )


def _load_path(path: str, label: str) -> Run:
    """The ``Run`` of a saved result or a profiler trace at ``path``."""
    from pinchpoint.results import is_trace

    if path.startswith("zoo:") or path.endswith(".py") or ".py:" in path:
        raise ProfileFormatError(
            f"{label}: {path} is a workload; compare takes saved results: record it first "
            "(pinchpoint profile TARGET --json run.json)"
        )
    if not Path(path).exists():
        raise ProfileFormatError(f"{label}: no such file or folder: {path}")
    if is_trace(path):
        from pinchpoint.traces import load_trace

        return _trace_run(load_trace(path), path)
    data = read_json(path)
    kind = results.kind_of(data)
    if kind == "trace":
        return _trace_run(results.decode(data, path), path)
    if kind == "profile":
        profile = results.decode(data, path)
        return _profile_run(profile, "profile", path, profile.name, None)
    if kind == "diagnosis":
        diagnosis = results.decode(data, path)
        return _profile_run(
            diagnosis.profile, "diagnosis", path, diagnosis.target, diagnosis.findings
        )
    schema = str(data.get("schema", "")) if isinstance(data, dict) else ""
    what = f"a {schema} file" if schema else "not a pinchpoint profile, diagnosis or trace"
    raise ProfileFormatError(
        f"{label}: {path} is {what}; compare takes a saved profile, diagnosis or trace analysis "
        "(.json), or a profiler trace (.json, .json.gz, a folder of ranks)"
    )


def _profile_run(
    profile: Profile, kind: str, source: str, name: str, findings: list[Finding] | None
) -> Run:
    """A Profile's (or a diagnosis's) side: the job's numbers, for one rank or several."""
    from_trace = profile.trace is not None or profile.settings.get("source") == "trace"
    run = _job_run(profile, from_trace)
    run.side = Side(
        kind=kind,
        source=source,
        name=name,
        mode=profile.mode,
        device=profile.device,
        ranks=len(profile.ranks) or (1 if from_trace else None),
        from_trace=from_trace,
    )
    run.findings = list(findings) if findings is not None else None
    return run


def _trace_run(analysis: TraceAnalysis, path: str = "") -> Run:
    """A trace analysis's side: its job's numbers, under the trace's name and device."""
    ranks, source = analysis.ranks, analysis.source or path
    kind = ranks[0].trace.device_kind if ranks[0].trace is not None else ranks[0].device
    device = (ranks[0].machine.gpu or {}).get("name") or kind
    run = _job_run(analysis.profile, from_trace=True)
    run.side = Side(
        kind="trace",
        source=source,
        name=Path(source).name,
        device=str(device) if device else None,
        ranks=len(ranks),
        from_trace=True,
    )
    run.findings = list(analysis.findings)
    return run


def _job_run(job: Profile, from_trace: bool) -> Run:
    """The numbers a comparison reads from a Profile, the job's where it has several ranks:
    step times, phases, operators, and the device's kernels and breakdown where traced."""
    ranks = job.ranks or [job]
    notes: list[str] = []
    run = Run(
        side=Side(kind="", source="", name=""),
        times_s=_job_step_times(job, notes),
        phases=_mean_phases(ranks),
        operators=None,
        notes=notes,
    )
    if any(r.operators for r in ranks):
        run.operators, run.operator_steps = _job_operators(ranks, from_trace)
    run.kernels, run.kernel_steps = _trace_kernels(ranks)
    run.gpu = _trace_gpu(ranks)
    return run


def _job_step_times(job: Profile, notes: list[str]) -> list[float]:
    """Each measured step's time for the job: the slowest rank's, over the steps every rank
    has.

    In a synchronous job every rank waits for the slowest, so the job's step is the longest.
    """
    if not job.ranks:
        return [s.wall_s for s in job.measured_steps]
    rows = job.matched_steps()
    if not rows:
        notes.append("the ranks share no profiler step: every rank's steps are pooled")
        return [s.wall_s for r in job.ranks for s in r.measured_steps]
    return [max(s.wall_s for s in row) for row in rows.values()]


def _mean_phases(ranks: Sequence[Profile]) -> dict[str, tuple[float, float]]:
    """Each phase's median seconds and share, averaged over ranks."""
    stats = [r.phase_stats() for r in ranks]
    names: list[str] = []
    for st in stats:
        names += [n for n in st if n not in names]
    return {
        name: (
            statistics.fmean(st[name].median_s if name in st else 0.0 for st in stats),
            statistics.fmean(st[name].share if name in st else 0.0 for st in stats),
        )
        for name in names
    }


def _job_operators(
    ranks: Sequence[Profile], from_trace: bool
) -> tuple[dict[str, tuple[float, float]], float]:
    """Per-operator calls and self seconds per profiled step, averaged over ranks.

    A live recording profiles one step; a trace's operator totals cover all of its profiler
    steps, so each is divided by them.
    """
    out: dict[str, tuple[float, float]] = {}
    steps = [max(1, len(r.steps)) if from_trace else 1 for r in ranks]
    for r, n in zip(ranks, steps, strict=True):
        for op in r.operators:
            calls, seconds = out.get(op.name, (0.0, 0.0))
            out[op.name] = (
                calls + op.count / n / len(ranks),
                seconds + op.self_s / n / len(ranks),
            )
    return out, statistics.fmean(steps)


def _window_steps(rank: Profile) -> int:
    """The profiler steps a rank's device window covers (HTA leaves the last one out)."""
    steps = len(rank.steps)
    window = rank.device_timeline.window if rank.device_timeline is not None else ""
    return max(1, steps - 1 if window.startswith("all profiler steps but") else steps)


def _trace_kernels(
    ranks: Sequence[Profile],
) -> tuple[dict[str, tuple[str, float, float]] | None, float]:
    """Per-kernel calls and seconds per step (of the device window), averaged over the ranks
    that ran on a device; None for a host-only trace."""
    with_gpu = [(r, r.device_timeline) for r in ranks if r.device_timeline is not None]
    if not with_gpu:
        return None, 0.0
    out: dict[str, tuple[str, float, float]] = {}
    for r, tl in with_gpu:
        steps = _window_steps(r)
        for name, row in tl.kernel_totals.items():
            kind, calls, seconds = out.get(name, (row.kind or "computation", 0.0, 0.0))
            out[name] = (
                kind,
                calls + row.count / steps / len(with_gpu),
                seconds + row.time_s / steps / len(with_gpu),
            )
    return out, statistics.fmean(_window_steps(r) for r, _ in with_gpu)


def _trace_gpu(ranks: Sequence[Profile]) -> dict[str, float | None] | None:
    """The device breakdown (:data:`GPU_METRICS`) averaged over the ranks that have one."""
    with_gpu = [r for r in ranks if r.device_timeline is not None]
    if not with_gpu:
        return None
    out: dict[str, float | None] = {}
    for name in GPU_METRICS[:-1]:
        values = [float(v) for r in with_gpu if (v := getattr(r.device_timeline, name)) is not None]
        out[name] = statistics.fmean(values) if values else None
    busy = [statistics.median(s.device_busy_s or 0.0 for s in r.steps) for r in with_gpu if r.steps]
    out["busy_per_step_s"] = statistics.fmean(busy) if busy else None
    return out

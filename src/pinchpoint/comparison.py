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

from __future__ import annotations

import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson

from pinchpoint import results
from pinchpoint._io import atomic_write_bytes, read_json
from pinchpoint._profile import PHASES, Profile
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.errors import ProfileFormatError
from pinchpoint.finding import SEVERITIES, Finding
from pinchpoint.stats import median_ci, ratio_interval

if TYPE_CHECKING:
    from pinchpoint.traces import TraceAnalysis

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

SCHEMA = "pinchpoint.compare/1"

#: The slowdown a comparison tolerates when none is given: 5 % of A's step time.
DEFAULT_FAIL_ABOVE = 0.05
#: The confidence of the noise interval.
CONFIDENCE = 0.95
#: The device-timeline numbers two traces compare by (the trace JSON's names, per rank,
#: averaged over ranks); ``busy_per_step_s`` is the median over steps of the device's busy time.
GPU_METRICS: tuple[str, ...] = (
    "idle_share",
    "compute_share",
    "non_compute_share",
    "comm_comp_overlap",
    "exposed_communication_share",
    "busy_per_step_s",
)

Verdict = Literal["regression", "ok", "improved"]
#: What :func:`compare` takes on each side.
Comparable: TypeAlias = "Profile | Diagnosis | TraceAnalysis | str | os.PathLike[str]"


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Side:
    """One side of a comparison: what it is and where it came from.

    Attributes:
        kind: ``"profile"``, ``"diagnosis"`` or ``"trace"``.
        source: the file or folder it was read from, else its name.
        name: the workload's name, the diagnosis's target or the trace's file name.
        mode: ``"train"`` or ``"infer"`` for profiles and diagnoses; None for traces.
        device: where it ran (``cpu``, ``cuda:0``, a GPU's name).
        ranks: how many ranks a trace holds (None for profiles).
        from_trace: whether its numbers come from a profiler trace (a trace, or a profile or
            diagnosis made from one) rather than a live recording.
    """

    kind: str
    source: str
    name: str
    mode: str | None = None
    device: str | None = None
    ranks: int | None = None
    from_trace: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "name": self.name,
            "mode": self.mode,
            "device": self.device,
            "ranks": self.ranks,
            "from_trace": self.from_trace,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Side:
        return cls(
            kind=str(data["kind"]),
            source=str(data["source"]),
            name=str(data["name"]),
            mode=data.get("mode"),
            device=data.get("device"),
            ranks=data.get("ranks"),
            from_trace=bool(data.get("from_trace", False)),
        )


@dataclass(frozen=True)
class StepTimeChange:
    """The step time of both sides, their ratio, and whether the change is beyond noise.

    Attributes:
        a_times_s: A's step times (for a multi-rank job: each step's slowest rank, over the
            steps all ranks have), in step order.
        b_times_s: B's.
        ratio_ci: the 95 % interval of the ratio B / A (see the module docstring), or None
            when there are too few steps for one.
        a_median_ci: the 95 % interval of A's median step time, or None under 6 steps.
        b_median_ci: B's.
        method: how ``ratio_ci`` was found.
    """

    a_times_s: tuple[float, ...]
    b_times_s: tuple[float, ...]
    ratio_ci: tuple[float, float] | None
    a_median_ci: tuple[float, float] | None = None
    b_median_ci: tuple[float, float] | None = None
    method: str = "mann-whitney-moses"

    @property
    def a_s(self) -> float:
        """A's median step time."""
        return statistics.median(self.a_times_s)

    @property
    def b_s(self) -> float:
        """B's median step time."""
        return statistics.median(self.b_times_s)

    @property
    def ratio(self) -> float:
        """B's median step time over A's: above 1, B is slower."""
        return self.b_s / self.a_s if self.a_s > 0 else math.inf

    @property
    def change(self) -> float:
        """The relative change of the median, ``ratio - 1`` (0.05: B takes 5 % longer)."""
        return self.ratio - 1.0

    @property
    def beyond_noise(self) -> bool | None:
        """Whether the ratio's interval excludes 1 (None: too few steps to tell)."""
        if self.ratio_ci is None:
            return None
        return self.ratio_ci[0] > 1.0 or self.ratio_ci[1] < 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_s": self.a_s,
            "b_s": self.b_s,
            "ratio": self.ratio,
            "change": self.change,
            "ratio_ci": _pair_out(self.ratio_ci),
            "beyond_noise": self.beyond_noise,
            "confidence": CONFIDENCE,
            "method": self.method,
            "a_steps": len(self.a_times_s),
            "b_steps": len(self.b_times_s),
            "a_median_ci": _pair_out(self.a_median_ci),
            "b_median_ci": _pair_out(self.b_median_ci),
            "a_times_s": list(self.a_times_s),
            "b_times_s": list(self.b_times_s),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepTimeChange:
        return cls(
            a_times_s=tuple(float(t) for t in data["a_times_s"]),
            b_times_s=tuple(float(t) for t in data["b_times_s"]),
            ratio_ci=_pair_in(data.get("ratio_ci")),
            a_median_ci=_pair_in(data.get("a_median_ci")),
            b_median_ci=_pair_in(data.get("b_median_ci")),
            method=str(data.get("method", "mann-whitney-moses")),
        )


@dataclass(frozen=True)
class PhaseChange:
    """One phase's median seconds per step and its share of step time, on both sides."""

    name: str
    a_s: float
    b_s: float
    a_share: float
    b_share: float

    @property
    def delta_s(self) -> float:
        """B's median minus A's."""
        return self.b_s - self.a_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a_s": self.a_s,
            "b_s": self.b_s,
            "delta_s": self.delta_s,
            "a_share": self.a_share,
            "b_share": self.b_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseChange:
        return cls(
            name=str(data["name"]),
            a_s=float(data["a_s"]),
            b_s=float(data["b_s"]),
            a_share=float(data["a_share"]),
            b_share=float(data["b_share"]),
        )


@dataclass(frozen=True)
class Delta:
    """One number on both sides; its name carries its unit (``_share``, ``_s``), as in the
    trace JSON it comes from. None where a side lacks it (no communication: no overlap)."""

    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """B minus A (percentage points for shares), None where a side lacks the number."""
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a, "b": self.b, "delta": self.delta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delta:
        return cls(name=str(data["name"]), a=_opt_float(data.get("a")), b=_opt_float(data.get("b")))


@dataclass(frozen=True)
class NameChange:
    """One operator or kernel whose time or calls per step differ between the sides.

    ``a_s``/``b_s`` are seconds per step (self time for operators), ``a_calls``/``b_calls``
    calls per step; both None on the side where the name does not occur. ``kind`` is the
    kernel's kind (computation, communication, memory, sync) or ``"operator"``.
    """

    name: str
    kind: str
    a_s: float | None
    b_s: float | None
    a_calls: float | None
    b_calls: float | None

    @property
    def status(self) -> str:
        """``"added"`` (only in B), ``"gone"`` (only in A) or ``"changed"``."""
        if self.a_s is None:
            return "added"
        if self.b_s is None:
            return "gone"
        return "changed"

    @property
    def delta_s(self) -> float:
        """Seconds per step B spends in it more than A (negative: less)."""
        return (self.b_s or 0.0) - (self.a_s or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "a_s": self.a_s,
            "b_s": self.b_s,
            "delta_s": self.delta_s,
            "a_calls": self.a_calls,
            "b_calls": self.b_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NameChange:
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            a_s=_opt_float(data.get("a_s")),
            b_s=_opt_float(data.get("b_s")),
            a_calls=_opt_float(data.get("a_calls")),
            b_calls=_opt_float(data.get("b_calls")),
        )


@dataclass(frozen=True)
class TotalsChange:
    """Per-name totals (operators or kernels) per step, compared: the names that changed.

    Attributes:
        what: ``"operators"`` or ``"kernels"``.
        a_steps: how many steps A's totals were divided by (the steps they cover, per rank).
        b_steps: B's.
        rows: every name whose time or calls per step differ, largest change first.
        unchanged: how many names are the same on both sides.
        a_total_s: seconds per step of all A's names together; ``b_total_s`` B's.
    """

    what: str
    a_steps: float
    b_steps: float
    rows: list[NameChange] = field(default_factory=list)
    unchanged: int = 0
    a_total_s: float = 0.0
    b_total_s: float = 0.0

    def with_status(self, status: str) -> list[NameChange]:
        """The rows of one status: ``added``, ``gone`` or ``changed``."""
        return [r for r in self.rows if r.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "unit": "per step",
            "a_steps": self.a_steps,
            "b_steps": self.b_steps,
            "a_total_s": self.a_total_s,
            "b_total_s": self.b_total_s,
            "added": len(self.with_status("added")),
            "gone": len(self.with_status("gone")),
            "changed": len(self.with_status("changed")),
            "unchanged": self.unchanged,
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TotalsChange:
        return cls(
            what=str(data["what"]),
            a_steps=float(data["a_steps"]),
            b_steps=float(data["b_steps"]),
            rows=[NameChange.from_dict(r) for r in data.get("rows", [])],
            unchanged=int(data.get("unchanged", 0)),
            a_total_s=float(data.get("a_total_s", 0.0)),
            b_total_s=float(data.get("b_total_s", 0.0)),
        )


_SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # low 0, medium 1, high 2
_FINDING_ORDER = ("added", "worse", "better", "gone", "same")


@dataclass(frozen=True)
class FindingChange:
    """One finding kind on both sides (None on a side that does not have it)."""

    kind: str
    a: Finding | None
    b: Finding | None

    @property
    def status(self) -> str:
        """``added``, ``gone``, ``worse`` or ``better`` (severity), or ``same``."""
        if self.a is None:
            return "added"
        if self.b is None:
            return "gone"
        step = _SEVERITY_RANK[self.b.severity] - _SEVERITY_RANK[self.a.severity]
        return "worse" if step > 0 else "better" if step < 0 else "same"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "a": self.a.to_dict() if self.a is not None else None,
            "b": self.b.to_dict() if self.b is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FindingChange:
        a, b = data.get("a"), data.get("b")
        return cls(
            kind=str(data["kind"]),
            a=Finding.from_dict(a) if a is not None else None,
            b=Finding.from_dict(b) if b is not None else None,
        )


@dataclass
class Comparison:
    """Two runs compared: step time, phases, operators and kernels, findings, and a verdict.

    ``a`` is the baseline and ``b`` the run checked against it. A section is None when the two
    sides cannot be compared by it (``notes`` says why). ``verdict`` is ``"regression"``,
    ``"improved"`` or ``"ok"`` (see :func:`compare`); ``why`` says it in one sentence.
    """

    a: Side
    b: Side
    fail_above: float
    step_time: StepTimeChange
    verdict: Verdict
    why: str
    phases: list[PhaseChange] = field(default_factory=list)
    gpu: list[Delta] | None = None
    operators: TotalsChange | None = None
    kernels: TotalsChange | None = None
    findings: list[FindingChange] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        """Whether B is a regression of A (the CI gate fails)."""
        return self.verdict == "regression"

    @property
    def compared(self) -> list[str]:
        """The sections this comparison holds, in output order."""
        sections = ["step_time", "phases"]
        for name in ("gpu", "operators", "kernels", "findings"):
            if getattr(self, name) is not None:
                sections.append(name)
        return sections

    def findings_with(self, status: str) -> list[FindingChange]:
        """The finding changes of one status (``added``, ``gone``, ``worse``...)."""
        return [f for f in self.findings or [] if f.status == status]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract ``pinchpoint.compare/1`` (see the README)."""
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "why": self.why,
            "fail_above": self.fail_above,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "compared": self.compared,
            "notes": list(self.notes),
            "step_time": self.step_time.to_dict(),
            "phases": [p.to_dict() for p in self.phases],
            "gpu": [d.to_dict() for d in self.gpu] if self.gpu is not None else None,
            "operators": self.operators.to_dict() if self.operators is not None else None,
            "kernels": self.kernels.to_dict() if self.kernels is not None else None,
            "findings": (
                [f.to_dict() for f in self.findings] if self.findings is not None else None
            ),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Comparison:
        """Read :meth:`to_dict` output back; ProfileFormatError if it is not a comparison."""
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            raise ProfileFormatError(f"not a pinchpoint comparison (expected schema {SCHEMA!r})")
        try:
            verdict = data["verdict"]
            if verdict not in ("regression", "ok", "improved"):
                raise ValueError(f"unknown verdict {verdict!r}")
            gpu, ops, kernels, findings = (
                data.get("gpu"),
                data.get("operators"),
                data.get("kernels"),
                data.get("findings"),
            )
            return cls(
                a=Side.from_dict(data["a"]),
                b=Side.from_dict(data["b"]),
                fail_above=float(data["fail_above"]),
                step_time=StepTimeChange.from_dict(data["step_time"]),
                verdict=verdict,
                why=str(data["why"]),
                phases=[PhaseChange.from_dict(p) for p in data.get("phases", [])],
                gpu=[Delta.from_dict(d) for d in gpu] if gpu is not None else None,
                operators=TotalsChange.from_dict(ops) if ops is not None else None,
                kernels=TotalsChange.from_dict(kernels) if kernels is not None else None,
                findings=(
                    [FindingChange.from_dict(f) for f in findings] if findings is not None else None
                ),
                notes=[str(n) for n in data.get("notes", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileFormatError(f"broken pinchpoint comparison: {exc}") from exc

    def to_json(self) -> bytes:
        """The comparison as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def save(self, path: str | Path) -> Path:
        """Write the comparison as JSON to ``path`` atomically."""
        return atomic_write_bytes(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        """Read a comparison saved by :meth:`save`."""
        return cls.from_dict(read_json(path))


def _pair_out(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [pair[0], pair[1]]


def _pair_in(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return float(low), float(high)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- the threshold

_THRESHOLD = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(%)?\s*$", re.IGNORECASE)


def parse_fail_above(value: str | float | None) -> float:
    """The slowdown threshold as a fraction of A's step time: ``"5%"`` or ``0.05`` give 0.05.

    None gives :data:`DEFAULT_FAIL_ABOVE`. A bare number is a fraction; one above 1 is refused,
    since ``5`` is far more likely a forgotten ``%`` than a 500 % allowance (write ``500%``).

    Raises:
        ValueError: the value is none of these, negative, or not finite.
    """
    if value is None:
        return DEFAULT_FAIL_ABOVE
    if isinstance(value, bool):
        raise ValueError(f"fail_above must be a fraction or a percentage, not {value!r}")
    percent = False
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _THRESHOLD.match(value)
        if match is None:
            raise ValueError(f"cannot read the threshold {value!r}: write 5% or 0.05")
        number, percent = float(match.group(1)), match.group(2) is not None
    else:
        raise ValueError(f"fail_above must be a fraction or a percentage, not {value!r}")
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"the threshold must be a finite number >= 0, got {value!r}")
    if percent:
        return number / 100
    if number > 1:
        raise ValueError(
            f"the threshold {value!r} reads as {number:.0%}: write {number:g}% for "
            f"{number:g} percent, or {number:.0%} to allow that much"
        )
    return number


# --------------------------------------------------------------------------- the inputs


@dataclass
class _Run:
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


def _load(item: object, label: str) -> _Run:
    """The ``_Run`` of one input of any accepted kind (see :func:`compare`)."""
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


def _load_path(path: str, label: str) -> _Run:
    """The ``_Run`` of a saved result or a profiler trace at ``path``."""
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
) -> _Run:
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


def _trace_run(analysis: TraceAnalysis, path: str = "") -> _Run:
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


def _job_run(job: Profile, from_trace: bool) -> _Run:
    """The numbers a comparison reads from a Profile, the job's where it has several ranks:
    step times, phases, operators, and the device's kernels and breakdown where traced."""
    ranks = job.ranks or [job]
    notes: list[str] = []
    run = _Run(
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


# --------------------------------------------------------------------------- the comparison


def compare(a: Comparable, b: Comparable, *, fail_above: str | float | None = None) -> Comparison:
    """Compare run ``b`` against the baseline ``a``; the verdict says whether B regressed.

    Args:
        a: the baseline: a :class:`~pinchpoint.Profile`, a :class:`~pinchpoint.Diagnosis`, a
            :class:`~pinchpoint.TraceAnalysis`, or a path to a saved profile, diagnosis or trace
            analysis (``.json``) or to a profiler trace (``.json``, ``.json.gz``, a folder of
            per-rank files).
        b: the run to check, of any of the same kinds.
        fail_above: the slowdown B may show before it is a regression, a fraction (0.05) or a
            percentage (``"5%"``); default :data:`DEFAULT_FAIL_ABOVE`.

    The verdict is ``"regression"`` when B's median step time exceeds A's by more than
    ``fail_above`` and the ratio's 95 % interval lies above 1 (beyond noise), ``"improved"``
    when it is below A's by more than ``fail_above`` and the interval lies below 1, else
    ``"ok"``. With too few steps for an interval, the medians alone decide (and ``why`` says so).

    Raises:
        ProfileFormatError: a path holds nothing comparable, or a side has no step times.
        ValueError: ``fail_above`` cannot be read.
    """
    threshold = parse_fail_above(fail_above)
    run_a, run_b = _load(a, "A"), _load(b, "B")
    for label, run in (("A", run_a), ("B", run_b)):
        if not run.times_s:
            raise ProfileFormatError(
                f"{label} ({run.side.source}) has no measured steps: nothing to compare"
            )
    notes = [f"A: {n}" for n in run_a.notes] + [f"B: {n}" for n in run_b.notes]
    step = _step_change(run_a.times_s, run_b.times_s)
    same_instrument = run_a.side.from_trace == run_b.side.from_trace
    if not same_instrument:
        notes.append(
            "one side is a profiler trace and the other a live recording: only step time and "
            "phases compare (operator names and findings come from different instruments)"
        )
    if run_a.side.mode and run_b.side.mode and run_a.side.mode != run_b.side.mode:
        notes.append(
            f"A runs {_mode_word(run_a.side.mode)} and B {_mode_word(run_b.side.mode)}: their "
            "steps do different work"
        )
    verdict, why = _verdict(step, threshold)
    return Comparison(
        a=run_a.side,
        b=run_b.side,
        fail_above=threshold,
        step_time=step,
        verdict=verdict,
        why=why,
        phases=_phase_changes(run_a.phases, run_b.phases),
        gpu=_gpu_changes(run_a, run_b, notes),
        operators=_operator_changes(run_a, run_b, notes) if same_instrument else None,
        kernels=_kernel_changes(run_a, run_b) if same_instrument else None,
        findings=_finding_changes(run_a, run_b, notes) if same_instrument else None,
        notes=notes,
    )


def _mode_word(mode: str) -> str:
    return "training" if mode == "train" else "inference"


def _step_change(a: list[float], b: list[float]) -> StepTimeChange:
    return StepTimeChange(
        a_times_s=tuple(a),
        b_times_s=tuple(b),
        ratio_ci=ratio_interval(a, b),
        a_median_ci=median_ci(a),
        b_median_ci=median_ci(b),
    )


def _verdict(step: StepTimeChange, threshold: float) -> tuple[Verdict, str]:
    """The verdict and its reason, in words."""
    change, ci = step.change, step.ratio_ci
    if change == 0:
        head = "B's median step time equals A's"
    else:
        direction = "slower" if change > 0 else "faster"
        head = f"B's median step is {abs(change):.1%} {direction} than A's"
    limit = f"the {threshold * 100:g}% threshold"
    if ci is None:
        noise = (
            f". With {len(step.a_times_s)} and {len(step.b_times_s)} steps no interval can "
            "tell a change from noise: the medians alone decide."
        )
    else:
        noise = f" (95% interval of the ratio B/A: {ci[0]:.3f}–{ci[1]:.3f})."
    slower, faster = change > threshold, -change > threshold
    if (slower and (ci is None or ci[0] > 1)) or (faster and (ci is None or ci[1] < 1)):
        verdict: Verdict = "regression" if slower else "improved"
        also = " and beyond noise" if ci is not None else ""
        return verdict, f"{head}, beyond {limit}{also}{noise}"
    if slower or faster:
        return "ok", f"{head}, beyond {limit} but within noise{noise}"
    return "ok", f"{head}, within {limit}{noise}"


def _phase_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [p for p in PHASES if p in names] + sorted(names - set(PHASES))


def _phase_changes(
    a: Mapping[str, tuple[float, float]], b: Mapping[str, tuple[float, float]]
) -> list[PhaseChange]:
    """Every phase either side spends time in, in the order phases happen."""
    out = []
    for name in _phase_order(set(a) | set(b)):
        a_s, a_share = a.get(name, (0.0, 0.0))
        b_s, b_share = b.get(name, (0.0, 0.0))
        if a_s == b_s == a_share == b_share == 0.0:
            continue
        out.append(PhaseChange(name, a_s, b_s, a_share, b_share))
    return out


def _gpu_changes(a: _Run, b: _Run, notes: list[str]) -> list[Delta] | None:
    if a.gpu is None and b.gpu is None:
        return None
    if a.gpu is None or b.gpu is None:
        which = "A" if a.gpu is None else "B"
        if a.side.kind == b.side.kind == "trace":
            notes.append(f"{which} has no device activity: device breakdowns not compared")
        return None
    return [Delta(name, a.gpu.get(name), b.gpu.get(name)) for name in GPU_METRICS]


def _same(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _totals(
    what: str,
    a: Mapping[str, tuple[str, float, float]],
    b: Mapping[str, tuple[str, float, float]],
    a_steps: float,
    b_steps: float,
) -> TotalsChange:
    """Name-by-name changes of per-step totals (``name -> (kind, calls, seconds)``)."""
    rows = []
    unchanged = 0
    for name in sorted(set(a) | set(b)):
        ka, calls_a, s_a = a.get(name, ("", math.nan, math.nan))
        kb, calls_b, s_b = b.get(name, ("", math.nan, math.nan))
        if name in a and name in b and _same(calls_a, calls_b) and _same(s_a, s_b):
            unchanged += 1
            continue
        rows.append(
            NameChange(
                name=name,
                kind=ka or kb,
                a_s=s_a if name in a else None,
                b_s=s_b if name in b else None,
                a_calls=calls_a if name in a else None,
                b_calls=calls_b if name in b else None,
            )
        )
    rows.sort(key=lambda r: (-abs(r.delta_s), r.name))
    return TotalsChange(
        what=what,
        a_steps=a_steps,
        b_steps=b_steps,
        rows=rows,
        unchanged=unchanged,
        a_total_s=sum(v[2] for v in a.values()),
        b_total_s=sum(v[2] for v in b.values()),
    )


def _operator_changes(a: _Run, b: _Run, notes: list[str]) -> TotalsChange | None:
    if a.operators is None or b.operators is None:
        if a.operators is not None or b.operators is not None:
            which = "A" if a.operators is None else "B"
            notes.append(f"{which} holds no operator table: operators not compared")
        return None

    def table(ops: Mapping[str, tuple[float, float]]) -> dict[str, tuple[str, float, float]]:
        return {name: ("operator", calls, s) for name, (calls, s) in ops.items()}

    return _totals(
        "operators", table(a.operators), table(b.operators), a.operator_steps, b.operator_steps
    )


def _kernel_changes(a: _Run, b: _Run) -> TotalsChange | None:
    if a.kernels is None or b.kernels is None:
        return None
    return _totals("kernels", a.kernels, b.kernels, a.kernel_steps, b.kernel_steps)


def _finding_changes(a: _Run, b: _Run, notes: list[str]) -> list[FindingChange] | None:
    if a.findings is None or b.findings is None:
        which = " and ".join(label for label, r in (("A", a), ("B", b)) if r.findings is None)
        notes.append(
            f"{which}: a profile without a diagnosis, so findings are not compared "
            "(pinchpoint diagnose it, then compare the diagnoses)"
        )
        return None
    by_a = {f.kind: f for f in a.findings}
    by_b = {f.kind: f for f in b.findings}
    changes = [FindingChange(k, by_a.get(k), by_b.get(k)) for k in set(by_a) | set(by_b)]

    def order(change: FindingChange) -> tuple[int, float, str]:
        latest = change.b if change.b is not None else change.a
        saving = latest.saving_share if latest is not None else 0.0
        return (_FINDING_ORDER.index(change.status), -saving, change.kind)

    return sorted(changes, key=order)

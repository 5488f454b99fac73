"""The saved Comparison (``pinchpoint.compare/1``) and the changes it holds, section by section.

Each is saved by :mod:`pinchpoint.codec`; the derived numbers a reader of the file wants (a
median, a ratio, a change's status and size) are written beside the fields and never read back,
so the file's numbers have one source: the step times and totals it holds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from pinchpoint import codec
from pinchpoint.finding import SEVERITIES, Finding
from pinchpoint.stats import CONFIDENCE

__all__ = [
    "GPU_METRICS",
    "SCHEMA",
    "Comparison",
    "Delta",
    "FindingChange",
    "NameChange",
    "PhaseChange",
    "Side",
    "StepTimeChange",
    "TotalsChange",
    "Verdict",
]

SCHEMA = "pinchpoint.compare/1"

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


@dataclass(frozen=True)
class Side(codec.Saved):
    """One side of a comparison: what it is and where it came from.

    Attributes:
        kind: ``"profile"``, ``"diagnosis"`` or ``"trace"``.
        source: the file or folder it was read from, else its name.
        name: the workload's name, the diagnosis's target or the trace's file name.
        mode: ``"train"`` or ``"infer"`` for profiles and diagnoses; None for traces.
        device: where it ran (``cpu``, ``cuda:0``, a GPU's name).
        ranks: how many ranks a job holds (None for a live single process).
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


@dataclass(frozen=True)
class StepTimeChange(codec.Saved):
    """The step time of both sides, their ratio, and whether the change is beyond noise.

    Attributes:
        a_times_s: A's step times (for a multi-rank job: each step's slowest rank, over the
            steps all ranks have), in step order.
        b_times_s: B's.
        ratio_ci: the 95 % interval of the ratio B / A (see :mod:`pinchpoint.comparison`), or
            None when there are too few steps for one.
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(
            data,
            "a_s b_s ratio change ratio_ci beyond_noise confidence method a_steps b_steps "
            "a_median_ci b_median_ci",
            a_s=self.a_s,
            b_s=self.b_s,
            ratio=self.ratio,
            change=self.change,
            beyond_noise=self.beyond_noise,
            confidence=CONFIDENCE,
            a_steps=len(self.a_times_s),
            b_steps=len(self.b_times_s),
        )


@dataclass(frozen=True)
class PhaseChange(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, "name a_s b_s delta_s", delta_s=self.delta_s)


@dataclass(frozen=True)
class Delta(codec.Saved):
    """One number on both sides; its name carries its unit (``_share``, ``_s``), as in the
    trace JSON it comes from. None where a side lacks it (no communication: no overlap)."""

    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """B minus A (percentage points for shares), None where a side lacks the number."""
        return None if self.a is None or self.b is None else self.b - self.a

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, "", delta=self.delta)


@dataclass(frozen=True)
class NameChange(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(
            data, "name kind status a_s b_s delta_s", status=self.status, delta_s=self.delta_s
        )


@dataclass(frozen=True)
class TotalsChange(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        counts = {s: len(self.with_status(s)) for s in ("added", "gone", "changed")}
        return codec.arrange(
            data,
            "what unit a_steps b_steps a_total_s b_total_s added gone changed unchanged rows",
            unit="per step",
            **counts,
        )


_SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # low 0, medium 1, high 2


@dataclass(frozen=True)
class FindingChange(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, "kind status", status=self.status)


@dataclass
class Comparison(codec.Saved):
    """Two runs compared: step time, phases, operators and kernels, findings, and a verdict.

    ``a`` is the baseline and ``b`` the run checked against it. A section is None when the two
    sides cannot be compared by it (``notes`` says why). ``verdict`` is ``"regression"``,
    ``"improved"`` or ``"ok"`` (see :func:`~pinchpoint.comparison.compare`); ``why`` says it in
    one sentence. Saved as the JSON contract ``pinchpoint.compare/1`` (see the README).
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

    saved_as = codec.Document(SCHEMA, "comparison")

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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(
            data, "schema verdict why fail_above a b compared notes", compared=self.compared
        )

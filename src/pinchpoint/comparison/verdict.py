"""The comparison itself: the threshold, each section's changes, and the verdict."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

from pinchpoint._profile import PHASES, Profile
from pinchpoint.comparison.result import (
    GPU_METRICS,
    Comparison,
    Delta,
    FindingChange,
    NameChange,
    PhaseChange,
    StepTimeChange,
    TotalsChange,
    Verdict,
)
from pinchpoint.comparison.sides import Run, load_side
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.errors import ProfileFormatError
from pinchpoint.stats import median_ci, ratio_interval

if TYPE_CHECKING:
    from pinchpoint.traces import TraceAnalysis

__all__ = ["DEFAULT_FAIL_ABOVE", "Comparable", "compare", "parse_fail_above"]

#: The slowdown a comparison tolerates when none is given: 5 % of A's step time.
DEFAULT_FAIL_ABOVE = 0.05
#: What :func:`compare` takes on each side.
Comparable: TypeAlias = "Profile | Diagnosis | TraceAnalysis | str | os.PathLike[str]"
_FINDING_ORDER = ("added", "worse", "better", "gone", "same")

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
    run_a, run_b = load_side(a, "A"), load_side(b, "B")
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


def _gpu_changes(a: Run, b: Run, notes: list[str]) -> list[Delta] | None:
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


def _operator_changes(a: Run, b: Run, notes: list[str]) -> TotalsChange | None:
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


def _kernel_changes(a: Run, b: Run) -> TotalsChange | None:
    if a.kernels is None or b.kernels is None:
        return None
    return _totals("kernels", a.kernels, b.kernels, a.kernel_steps, b.kernel_steps)


def _finding_changes(a: Run, b: Run, notes: list[str]) -> list[FindingChange] | None:
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

"""What every report builder shares: the finding kinds' meanings, table limits, small builders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint.finding import Finding

if TYPE_CHECKING:
    pass
from pinchpoint.report.model import Chart, Column, Fact, Section, Table, Verdict, VerdictFinding

#: Rows kept in the operator, kernel and module tables: enough to find the culprits, few
#: enough that the report of a large job stays small.
TOP_ROWS = 100
#: Per-layer series drawn in one health chart; deeper models show layers spread over depth.
MAX_LAYER_SERIES = 24

#: What each finding kind means, in a reader's words (TAXONOMY.md has the full definitions).
MEANINGS: dict[str, str] = {
    "input_bound": "The step waits for its next batch: loading, decoding or collating the data "
    "holds the model up.",
    "host_transfer_bound": "Copies between host memory and the device take a large part of "
    "each step.",
    "sync_bound": "The host stops inside the step to wait for the device (.item(), .cpu(), "
    "synchronize).",
    "host_sync_bound": "Per-step logging reads values back to the host (.item(), .tolist(), "
    "print) and takes a large part of each step.",
    "thread_oversubscription": "More threads want to run than there are cores: parallel "
    "regions stall while their threads wait to be scheduled.",
    "recompilation": "A torch.compile'd model compiles again or breaks its graph during the run: "
    "compile time replaces the speed-up.",
    "overhead_bound": "Framework, Python and launch overhead dominate: many small operators, "
    "each doing little work.",
    "compute_bound": "Dense arithmetic (matmuls, convolutions) dominates and already runs near "
    "this machine's measured peak.",
    "memory_bound": "Operators that do little arithmetic per byte dominate: memory bandwidth, "
    "not arithmetic, sets their speed.",
    "memory_capacity": "Peak memory is close to, or over, what the run may use.",
    "optimizer_bound": "The optimizer's update takes a large part of each step.",
    "communication_bound": "Collective communication is exposed: no computation runs while it "
    "does.",
    "straggler": "One rank is consistently slower than the others, and they wait for it.",
    "vanishing_gradients": "Gradients shrink towards the input, so the early layers barely learn.",
    "exploding_gradients": "Gradients grow too large, so updates are unstable.",
    "lr_too_high": "The learning rate overshoots: the loss rises, oscillates or diverges.",
    "lr_too_low": "The learning rate is so small that the weights barely move.",
    "dead_units": "Many ReLU units output zero for every input, so they never learn.",
    "saturated_activations": "Sigmoid/tanh units sit at their limits, where their gradient is "
    "almost zero.",
    "nan_inf": "Non-finite values (NaN or infinity) appeared in the loss, gradients or weights.",
    "loss_plateau": "The loss stopped improving although the updates are of healthy size.",
}


# --------------------------------------------------------------------------- small helpers


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when missing or not finite (a gap in a chart)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def make_facts(*facts: Fact) -> tuple[Fact, ...]:
    """The facts that have a value: a missing measurement is left out, not shown empty."""
    return tuple(f for f in facts if f.value is not None and f.value != "" and f.value != [])


def make_table(
    id: str,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[tuple[Any, ...]],
    note: str = "",
    limit: int = TOP_ROWS,
) -> Table | None:
    if not rows:
        return None
    return Table(
        id=id,
        title=title,
        columns=tuple(columns),
        rows=tuple(rows[:limit]),
        note=note,
        total_rows=len(rows) if len(rows) > limit else None,
    )


def make_section(
    id: str,
    title: str,
    text: Iterable[str] = (),
    facts: Iterable[Fact] = (),
    tables: Iterable[Table | None] = (),
    charts: Iterable[Chart | None] = (),
) -> Section | None:
    """A section of what has data; None when nothing does."""
    kept_tables = tuple(t for t in tables if t is not None)
    kept_charts = tuple(c for c in charts if c is not None)
    kept_facts = tuple(facts)
    if not (kept_tables or kept_charts or kept_facts):
        return None
    return Section(id, title, tuple(text), kept_facts, kept_tables, kept_charts)


def kept_sections(sections: Iterable[Section | None]) -> tuple[Section, ...]:
    return tuple(s for s in sections if s is not None)


def spread_names(names: Sequence[str], limit: int = MAX_LAYER_SERIES) -> list[int]:
    """Indices of at most ``limit`` names spread evenly over the list, first and last kept."""
    n = len(names)
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


# --------------------------------------------------------------------------- verdicts


def finding_view(finding: Finding) -> VerdictFinding:
    return VerdictFinding(
        finding=finding,
        title=finding.kind.replace("_", " "),
        meaning=MEANINGS.get(finding.kind, ""),
    )


def findings_verdict(findings: Sequence[Finding], note: str = "") -> Verdict:
    """The verdict over ranked findings: the principal bottleneck, or that none is severe."""
    views = tuple(finding_view(f) for f in findings)
    detail = (note,) if note else ()
    if any(f.severity == "high" for f in findings):
        principal = views[0]
        return Verdict(
            "bottleneck",
            f"Principal bottleneck: {principal.title}. {principal.meaning}",
            detail,
            views,
        )
    if views:
        headline = (
            "Healthy: no high-severity bottleneck was found. The largest remaining "
            f"opportunity is {views[0].title}."
        )
    else:
        headline = "Healthy: no bottleneck was found."
    return Verdict("healthy", headline, detail, views)

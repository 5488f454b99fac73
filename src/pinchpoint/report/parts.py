"""What every report builder shares: the finding kinds' meanings, table limits, small builders,
and the pieces of a brief every summary of findings has (the verdict line, the finding blocks)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from pinchpoint.finding import Finding
from pinchpoint.report.model import (
    Chart,
    Column,
    Fact,
    FactLine,
    Grid,
    Indent,
    Line,
    Piece,
    Section,
    Span,
    Table,
    Verdict,
    VerdictFinding,
)

#: Rows kept in the operator, kernel and module tables: enough to find the culprits, few
#: enough that the report of a large job stays small.
TOP_ROWS = 100
#: Per-layer series drawn in one health chart; deeper models show layers spread over depth.
MAX_LAYER_SERIES = 24
#: Ranks listed in a brief's table of ranks (one screen); the JSON holds every one.
BRIEF_RANKS = 8
#: Remedies a brief gives with their reasons for the principal finding; the rest by name.
FULL_REMEDIES = 3

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


# --------------------------------------------------------------------------- briefs

#: A blank line between the parts of a brief.
BLANK = Line()
_SEVERITY_TONE = {"high": "bad", "medium": "warn", "low": "muted"}


def runs(*parts: str | Span, tone: str = "") -> tuple[Span, ...]:
    """Runs of a line in one ``tone``: a string as written, a value in its unit (a Span that
    has a tone of its own keeps it)."""
    return tuple(
        Span(p, tone=tone) if isinstance(p, str) else p if p.tone else replace(p, tone=tone)
        for p in parts
    )


def fill(template: str, *values: Span, tone: str = "") -> tuple[Span, ...]:
    """The runs of ``template`` in one ``tone``, each ``{}`` in it a value's run, in order."""
    texts = template.split("{}")
    parts = [texts[0]] + [p for pair in zip(values, texts[1:], strict=True) for p in pair]
    return runs(*(p for p in parts if p != ""), tone=tone)


def line(*parts: str | Span, tone: str = "") -> Line:
    """One line of runs in one ``tone`` (see :func:`runs`)."""
    return Line(runs(*parts, tone=tone))


def joined(items: Iterable[Sequence[str | Span]], sep: str = ", ") -> tuple[str | Span, ...]:
    """The parts of each item, ``sep`` between items."""
    out: list[str | Span] = []
    for i, item in enumerate(items):
        out += [sep] if i else []
        out += item
    return tuple(out)


def gapped(*parts: Sequence[Piece]) -> list[Piece]:
    """The parts that have pieces, each after a blank line."""
    return [piece for part in parts if part for piece in (BLANK, *part)]


def verdict_line(findings: Sequence[Finding]) -> Line:
    """The principal bottleneck in one line, or that the workload is healthy (no high finding)."""
    principal = findings[0] if findings else None
    if any(f.severity == "high" for f in findings) and principal is not None:
        return Line(
            (
                Span("Principal bottleneck: ", tone="strong"),
                Span(principal.kind, tone="bad"),
                Span(f" — {principal.summary}"),
            )
        )
    largest = f" The largest remaining opportunity is {principal.kind}." if principal else ""
    return line(
        Span("Healthy: ", tone="good_strong"), f"no high-severity bottleneck was found.{largest}"
    )


def finding_pieces(findings: Sequence[Finding]) -> list[Piece]:
    """Every finding, the first (the principal) in full, each after a blank line."""
    return gapped(*(_finding_block(i, f, i == 1) for i, f in enumerate(findings, start=1)))


def _finding_block(index: int, finding: Finding, full: bool) -> list[Piece]:
    """One finding: its head and summary; when ``full``, its evidence and why each remedy helps,
    else only the remedies' names (the principal gets the room, the rest fit the screen)."""
    head = runs(f"{index}. ", finding.kind, tone="strong")
    head += (Span(f"  {finding.severity}", tone=_SEVERITY_TONE[finding.severity]),)
    if finding.kind == "memory_capacity":
        head += runs("  ", Span(finding.share, "pct"), " of the memory budget", tone="muted")
    else:
        head += runs(
            "  ",
            Span(finding.share, "pct"),
            " of the step, saving ~",
            Span(finding.saving_share, "pct"),
            " if removed",
            tone="muted",
        )
    body: list[Piece] = [line(finding.summary)]
    remedies = finding.remedies
    if full:
        if finding.rank_reason:
            # Why it comes first: a diagnosis saved before rank reasons existed has none.
            body.append(line(finding.rank_reason, tone="aside"))
        if finding.evidence:
            body.append(FactLine(tuple(Fact(k, v, "field") for k, v in finding.evidence.items())))
        rows = tuple((f"→ {r.name}", r.why) for r in remedies[:FULL_REMEDIES])
        body.append(Grid((Column("", tone="accent", wrap=False), Column("")), rows, header=None))
    if remedies and (not full or len(remedies) > FULL_REMEDIES):
        names = ", ".join(r.name for r in remedies[FULL_REMEDIES if full else 0 :])
        body.append(line(("also → " if full else "→ ") + names, tone="accent"))
    return [Line(head, "strong"), Indent(tuple(body))]


def right_column(name: str, unit: str = "text", tone: str = "") -> Column:
    """A brief's column of numbers: set right, never wrapped."""
    return Column(name, unit, align="right", tone=tone, wrap=False)


def more_line(shown: int, total: int, what: str) -> list[Piece]:
    """``… and N more WHAT`` when a list was cut to its first ``shown`` of ``total``."""
    return [line(f"… and {total - shown} more {what}", tone="muted")] if total > shown else []


def shapes_text(shapes: Sequence[Any]) -> str:
    """An operator's input shapes as ``8×64, 64×10`` (non-tensor inputs left out)."""
    return ", ".join("×".join(map(str, s)) for s in shapes if s)

"""The Report of a comparison: the verdict, step time, phases, names, findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinchpoint.comparison import Comparison, Delta, Side, TotalsChange
from pinchpoint.report.model import (
    Brief,
    Chart,
    Column,
    Fact,
    Grid,
    Line,
    Mark,
    Piece,
    Report,
    Section,
    Series,
    Span,
    Table,
    Verdict,
)
from pinchpoint.report.parts import (
    BLANK,
    fill,
    finding_view,
    finite_or_none,
    gapped,
    kept_sections,
    line,
    make_facts,
    make_section,
    make_table,
    right_column,
    runs,
)

#: The device-breakdown numbers of a comparison, in a reader's words.
_GPU_LABELS: dict[str, str] = {
    "idle_share": "device idle",
    "compute_share": "device compute",
    "non_compute_share": "device non-compute (communication, copies, syncs)",
    "comm_comp_overlap": "communication/computation overlap",
    "exposed_communication_share": "exposed communication",
    "busy_per_step_s": "device busy per step",
}
_COMPARE_HEADLINES: dict[str, str] = {
    "regression": "Regression: B is slower than A by more than the threshold.",
    "improved": "Improved: B is faster than A by more than the threshold.",
    "ok": "No regression: B's step time is within the threshold of A's, or within noise.",
}


def from_comparison(comparison: Comparison | Mapping[str, Any]) -> Report:
    """The Report of a comparison (the object, or its ``pinchpoint.compare/1`` JSON).

    The verdict first (its reason, and the findings B gained or lost as its evidence), then
    the step times of both runs, their phases and device breakdown, the operators and kernels
    that changed, every finding's change, the notes on what could not be compared, and the two
    runs. Every number is one the Comparison holds.
    """
    from pinchpoint.comparison import Comparison

    c = comparison if isinstance(comparison, Comparison) else Comparison.from_dict(comparison)
    return Report(
        kind="compare",
        title=f"{c.a.name} → {c.b.name}",
        subtitle=f"A: {c.a.kind} {c.a.source} · B: {c.b.kind} {c.b.source}",
        verdict=_compare_verdict(c),
        sections=kept_sections(
            [
                _step_time_section(c),
                _phase_changes_section(c),
                _name_changes_section(c),
                _finding_changes_section(c),
                _notes_section(c.notes),
                _runs_section(c),
            ]
        ),
        brief=_compare_brief(c),
    )


# --------------------------------------------------------------------------- the brief

#: Rows of operators and of kernels a brief shows; the JSON holds every one.
_BRIEF_NAMES = 6
_VERDICT_TONE = {"regression": "bad", "improved": "good_strong", "ok": "good_strong"}
_STATUS_MARK = {"added": "+", "gone": "−", "changed": "~"}
_FINDING_MARK = {"added": "+", "gone": "−", "worse": "▲", "better": "▼", "same": "="}
#: The device-breakdown numbers in a narrow screen's words.
_GPU_SHORT = {
    **_GPU_LABELS,
    "non_compute_share": "device non-compute",
    "comm_comp_overlap": "comm/compute overlap",
}


def _compare_brief(c: Comparison) -> Brief:
    """One screen of a comparison: the verdict, the numbers side by side, what changed."""
    verdict = Line(runs(f"{c.verdict.upper()}  ", c.why), _VERDICT_TONE[c.verdict])
    step = c.step_time
    pieces: list[Piece] = [
        verdict,
        _side_line("A", c.a, len(step.a_times_s)),
        _side_line("B", c.b, len(step.b_times_s)),
        BLANK,
        _numbers_grid(c),
    ]
    pieces += gapped(*(_totals_pieces(t) for t in (c.operators, c.kernels) if t is not None))
    pieces += gapped(_finding_lines(c))
    if c.notes:
        pieces += [BLANK, *(line(f"note: {note}", tone="muted") for note in c.notes)]
    title = line(Span("compare", tone="strong"), f" · {c.a.name} → {c.b.name}")
    return Brief(tuple(pieces), title)


def _side_line(label: str, side: Side, steps: int) -> Line:
    facts = []
    if side.ranks is not None and side.kind == "trace":
        facts.append(f"{side.ranks} rank{'s' * (side.ranks != 1)}")
    facts += [fact for fact in (side.mode, side.device) if fact]
    facts.append(f"{steps} step{'s' * (steps != 1)}")
    facts_run = Span(" · " + " · ".join(facts), tone="muted")
    return Line(runs(f"{label}  ", f"{side.kind} {side.source}", facts_run), "strong")


def _change(a: float | None, b: float | None, delta: float | None) -> Any:
    """B less A in seconds with the change relative to A; ``0`` when they are equal."""
    if a is None or b is None or delta is None:
        return "–"
    if a == b:
        return "0"
    return Line(fill("{} ({})", Span(delta, "signed_s"), Span((a, b), "relative")))


def _gpu_row(delta: Delta) -> tuple[Any, ...]:
    label = _GPU_SHORT.get(delta.name, delta.name)
    if delta.name.endswith("_s"):
        return label, Span(delta.a, "s"), Span(delta.b, "s"), _change(delta.a, delta.b, delta.delta)
    return label, Span(delta.a, "share"), Span(delta.b, "share"), Span(delta.delta, "points")


def _numbers_grid(c: Comparison) -> Grid:
    """Step time, phases and the device breakdown: A, B and the change."""
    step = c.step_time
    rows: list[tuple[Any, ...]] = [
        (
            Span("step (median)", tone="strong"),
            step.a_s,
            step.b_s,
            Span(step.change, "signed_share", _VERDICT_TONE[c.verdict]),
        )
    ]
    for p in c.phases:
        change = _change(p.a_s, p.b_s, p.delta_s) if p.delta_s else "0"
        rows.append((f"  {p.name}", p.a_s, p.b_s, change))
    rows += [_gpu_row(d) for d in c.gpu or [] if not (d.a is None and d.b is None)]
    columns = (
        Column("", wrap=False),
        right_column("A", "s"),
        right_column("B", "s"),
        right_column("change"),
    )
    return Grid(columns, tuple(rows), header="strong")


def _calls(a: float | None, b: float | None) -> Any:
    return Span(a, "g3") if a == b else Line(fill("{} → {}", Span(a, "g3"), Span(b, "g3")))


def _totals_pieces(totals: TotalsChange) -> list[Piece]:
    """The names that changed most, per step, with a one-line count of the rest."""
    singular = totals.what.rstrip("s")
    head = f"{totals.what.capitalize()} per step: "
    if not totals.rows:
        n = totals.unchanged
        return [line(head, f"no change ({n} {singular}{'s' * (n != 1)})", tone="strong")]
    counts = [
        f"{len(totals.with_status(status))} {status}"
        for status in ("added", "gone", "changed")
        if totals.with_status(status)
    ]
    counts.append(f"{totals.unchanged} unchanged")
    columns = (
        Column("", wrap=False, width=1),
        Column(singular, wrap=False, grow=1),
        right_column("A", "s"),
        right_column("B", "s"),
        right_column("change", "signed_s"),
        right_column("calls"),
    )
    rows = tuple(
        (_STATUS_MARK[r.status], r.name, r.a_s, r.b_s, r.delta_s, _calls(r.a_calls, r.b_calls))
        for r in totals.rows[:_BRIEF_NAMES]
    )
    pieces: list[Piece] = [
        line(head, ", ".join(counts), tone="strong"),
        Grid(columns, rows, header="strong", expand=True),
    ]
    if len(totals.rows) > _BRIEF_NAMES:
        more = len(totals.rows) - _BRIEF_NAMES
        pieces.append(line(f"  … and {more} more in the JSON", tone="muted"))
    return pieces


def _finding_lines(c: Comparison) -> list[Piece]:
    changes = c.findings
    if changes is None:
        return []
    head = "Findings: "
    if not changes:
        return [line(head, "none on either side.", tone="strong")]
    moved = [change for change in changes if change.status != "same"]
    same = [change.kind for change in changes if change.status == "same"]
    if not moved:
        return [line(head, f"the same on both sides ({', '.join(same)}).", tone="strong")]
    lines: list[Piece] = [line(head, tone="strong")]
    for change in moved:
        spans = runs(f"  {_FINDING_MARK[change.status]} ", Span(change.kind, tone="strong"))
        a, b = change.a, change.b
        if a is None and b is not None:
            spans += fill(f" added ({b.severity}, saving ~{{}})", Span(b.saving_share, "pct"))
        elif b is None and a is not None:
            spans += fill(f" gone (was {a.severity}, saving ~{{}})", Span(a.saving_share, "pct"))
        elif a is not None and b is not None:
            savings = (Span(a.saving_share, "pct"), Span(b.saving_share, "pct"))
            spans += fill(f" {a.severity} → {b.severity} (saving ~{{}} → ~{{}})", *savings)
        lines.append(Line(spans))
    if same:
        lines.append(line(f"  = unchanged: {', '.join(same)}", tone="muted"))
    return lines


def _compare_verdict(c: Comparison) -> Verdict:
    """The comparison's verdict and why; the findings B gained and lost are its evidence."""
    views = []
    for change in c.findings or []:
        if change.status == "added" and change.b is not None:
            view, where = finding_view(change.b), "added in B"
        elif change.status == "gone" and change.a is not None:
            view, where = finding_view(change.a), "gone: only in A"
        else:
            continue
        views.append(replace(view, title=f"{view.title} ({where})"))
    return Verdict(c.verdict, _COMPARE_HEADLINES[c.verdict], (c.why,), tuple(views))


def _step_time_section(c: Comparison) -> Section | None:
    step = c.step_time
    series = tuple(
        Series(
            f"{label} · {side.name}",
            tuple(range(1, len(times) + 1)),
            tuple(finite_or_none(t) for t in times),
            style="lines+markers",
        )
        for label, side, times in (("A", c.a, step.a_times_s), ("B", c.b, step.b_times_s))
        if times
    )
    marks = (
        (Mark("y", step.a_s, "A and B median"),)
        if step.a_s == step.b_s
        else (Mark("y", step.a_s, "A median"), Mark("y", step.b_s, "B median"))
    )
    chart = Chart(
        id="step-times",
        title="Step times of both runs, in the order they ran",
        series=series,
        x_title="step",
        y_title="step time",
        x_unit="int",
        y_unit="s",
        marks=marks,
    )
    ci = step.ratio_ci
    a_ci, b_ci = step.a_median_ci, step.b_median_ci
    facts = make_facts(
        Fact("A median step", step.a_s, "s"),
        Fact("B median step", step.b_s, "s"),
        Fact("change of the median (B / A − 1)", step.change, "share"),
        Fact("ratio B / A", step.ratio, "x"),
        Fact("95 % interval of B / A: low", ci[0] if ci else None, "x"),
        Fact("95 % interval of B / A: high", ci[1] if ci else None, "x"),
        Fact(
            "95 % interval of B / A",
            None if ci else "none: too few steps to tell a change from noise",
        ),
        Fact("beyond noise", step.beyond_noise, "bool"),
        Fact("regression threshold", c.fail_above, "share"),
        Fact("A steps", len(step.a_times_s), "int"),
        Fact("B steps", len(step.b_times_s), "int"),
        Fact("A median: 95 % low", a_ci[0] if a_ci else None, "s"),
        Fact("A median: 95 % high", a_ci[1] if a_ci else None, "s"),
        Fact("B median: 95 % low", b_ci[0] if b_ci else None, "s"),
        Fact("B median: 95 % high", b_ci[1] if b_ci else None, "s"),
    )
    return make_section(
        "step-time",
        "Step time",
        [
            "Each run's step times in the order they ran (a multi-rank trace's step is its "
            "slowest rank's, over the steps all its ranks have). Whether the change is beyond "
            "noise comes from a distribution-free 95 % interval of the ratio B / A (Moses' "
            "interval, from the Mann-Whitney distribution); with too few steps there is none, "
            "and the medians alone decide."
        ],
        facts,
        charts=[chart] if series else [],
    )


def _phase_changes_section(c: Comparison) -> Section | None:
    chart = None
    if c.phases:
        names = tuple(p.name for p in c.phases)
        chart = Chart(
            id="phase-times",
            title="Median time per step by phase, A against B",
            series=(
                Series(f"A · {c.a.name}", names, tuple(p.a_s for p in c.phases), style="bar"),
                Series(f"B · {c.b.name}", names, tuple(p.b_s for p in c.phases), style="bar"),
            ),
            x_title="phase",
            y_title="median per step",
            x_unit="text",
            y_unit="s",
        )
    phases = make_table(
        "phase-changes",
        "Phases: median per step and share of the step",
        [
            Column("phase"),
            Column("A", "s"),
            Column("B", "s"),
            Column("B − A", "s"),
            Column("A share", "share"),
            Column("B share", "share"),
        ],
        [(p.name, p.a_s, p.b_s, p.delta_s, p.a_share, p.b_share) for p in c.phases],
    )
    shares = [d for d in c.gpu or [] if not d.name.endswith("_s") and (d.a, d.b) != (None, None)]
    device = make_table(
        "device-changes",
        "The device's time, as shares of its span (averaged over ranks)",
        [Column("measure"), Column("A", "share"), Column("B", "share"), Column("B − A", "share")],
        [(_GPU_LABELS.get(d.name, d.name), d.a, d.b, d.delta) for d in shares],
        note="B − A is in percentage points.",
    )
    seconds = [d for d in c.gpu or [] if d.name.endswith("_s")]
    facts = make_facts(
        *(
            Fact(f"{_GPU_LABELS.get(d.name, d.name)}, {label}", value, "s")
            for d in seconds
            for label, value in (("A", d.a), ("B", d.b), ("B − A", d.delta))
        )
    )
    return make_section(
        "phases",
        "Phases and the device",
        [
            "Each phase's median time per step on both sides; for two traces also the device's "
            "breakdown, averaged over each trace's ranks."
        ],
        facts,
        [phases, device],
        [chart],
    )


def _name_rows(totals: TotalsChange, kind: bool) -> list[tuple[Any, ...]]:
    return [
        (
            r.name,
            *((r.kind,) if kind else ()),
            r.status,
            r.a_s,
            r.b_s,
            r.delta_s,
            r.a_calls,
            r.b_calls,
        )
        for r in totals.rows
    ]


def _name_table(totals: TotalsChange | None) -> Table | None:
    if totals is None:
        return None
    kernels = totals.what == "kernels"
    singular = totals.what.rstrip("s")
    return make_table(
        f"{singular}-changes",
        f"{totals.what.capitalize()} that changed, per step, largest change first",
        [
            Column(singular),
            *((Column("kind"),) if kernels else ()),
            Column("status"),
            Column("A per step", "s"),
            Column("B per step", "s"),
            Column("B − A", "s"),
            Column("A calls per step", "number"),
            Column("B calls per step", "number"),
        ],
        _name_rows(totals, kernels),
        note="Self time for operators; a kernel's time on the device. Each total is divided by "
        "the steps it covers. – : the name does not occur on that side.",
    )


def _name_facts(totals: TotalsChange | None) -> list[Fact]:
    if totals is None:
        return []
    what = totals.what
    singular = what.rstrip("s")
    return [
        Fact(f"{what} added", len(totals.with_status("added")), "int"),
        Fact(f"{what} gone", len(totals.with_status("gone")), "int"),
        Fact(f"{what} changed", len(totals.with_status("changed")), "int"),
        Fact(f"{what} unchanged", totals.unchanged, "int"),
        Fact(f"all {what} per step, A", totals.a_total_s, "s"),
        Fact(f"all {what} per step, B", totals.b_total_s, "s"),
        Fact(f"steps the {singular} totals cover, A", totals.a_steps, "number"),
        Fact(f"steps the {singular} totals cover, B", totals.b_steps, "number"),
    ]


def _name_changes_section(c: Comparison) -> Section | None:
    return make_section(
        "changes",
        "Operators and kernels that changed",
        [
            "Per-name totals divided by the steps they cover, so that runs of different lengths "
            "compare: added (only in B), gone (only in A) or changed."
        ],
        make_facts(*_name_facts(c.operators), *_name_facts(c.kernels)),
        [_name_table(c.operators), _name_table(c.kernels)],
    )


def _finding_changes_section(c: Comparison) -> Section | None:
    rows = []
    for change in c.findings or []:
        latest = change.b if change.b is not None else change.a
        rows.append(
            (
                change.kind.replace("_", " "),
                change.status,
                change.a.severity if change.a is not None else None,
                change.b.severity if change.b is not None else None,
                change.a.share if change.a is not None else None,
                change.b.share if change.b is not None else None,
                change.a.saving_share if change.a is not None else None,
                change.b.saving_share if change.b is not None else None,
                latest.summary if latest is not None else "",
            )
        )
    table = make_table(
        "finding-changes",
        "Every finding on either side",
        [
            Column("finding"),
            Column("status"),
            Column("A severity"),
            Column("B severity"),
            Column("A share", "share"),
            Column("B share", "share"),
            Column("A saving", "share"),
            Column("B saving", "share"),
            Column("summary (B's, else A's)"),
        ],
        rows,
        limit=len(rows) or 1,
    )
    return make_section(
        "findings",
        "Findings added, gone and changed",
        [
            "Added: only B has it; gone: only A has it; worse or better: its severity rose or "
            "fell; same: unchanged."
        ],
        tables=[table],
    )


def _notes_section(notes: Sequence[str]) -> Section | None:
    table = make_table(
        "notes", "What was not compared, and why", [Column("note")], [(n,) for n in notes]
    )
    return make_section("notes", "Notes", tables=[table])


def _runs_section(c: Comparison) -> Section | None:
    step = c.step_time
    rows = [
        (
            label,
            side.kind,
            side.name,
            side.source,
            side.mode,
            side.device,
            side.ranks,
            len(times),
            side.from_trace,
        )
        for label, side, times in (("A", c.a, step.a_times_s), ("B", c.b, step.b_times_s))
    ]
    table = make_table(
        "runs",
        "A is the baseline, B the run checked against it",
        [
            Column("side"),
            Column("kind"),
            Column("name"),
            Column("source"),
            Column("mode"),
            Column("device"),
            Column("ranks", "int"),
            Column("steps", "int"),
            Column("from a trace", "bool"),
        ],
        rows,
    )
    return make_section("runs", "The two runs", tables=[table])

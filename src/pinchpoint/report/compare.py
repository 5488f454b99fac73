"""The Report of a comparison: the verdict, step time, phases, names, findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinchpoint.comparison import Comparison, TotalsChange
from pinchpoint.report.model import (
    Chart,
    Column,
    Fact,
    Mark,
    Report,
    Section,
    Series,
    Table,
    Verdict,
)
from pinchpoint.report.parts import (
    finding_view,
    finite_or_none,
    kept_sections,
    make_facts,
    make_section,
    make_table,
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
    )


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

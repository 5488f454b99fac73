"""The Report of a trace analysis: ranks, steps, stragglers, kernels, operators, issues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinchpoint._profile import Profile
    from pinchpoint.traces import TraceAnalysis
from pinchpoint.report.model import (
    Brief,
    Chart,
    Column,
    Fact,
    Grid,
    Line,
    Piece,
    Report,
    Section,
    Series,
    Span,
)
from pinchpoint.report.parts import (
    BLANK,
    BRIEF_RANKS,
    fill,
    finding_pieces,
    findings_verdict,
    finite_or_none,
    joined,
    kept_sections,
    line,
    make_facts,
    make_section,
    make_table,
    more_line,
    right_column,
    runs,
    verdict_line,
)


def from_trace(analysis: TraceAnalysis) -> Report:
    """The Report of a trace analysis."""
    ranks = analysis.ranks
    note = ""
    if analysis.confidence == "reduced":
        note = "Confidence is reduced: the input had problems (see “Input problems”)."
    count = len(ranks)
    test = analysis.stragglers
    return Report(
        kind="trace",
        title=analysis.source or "trace",
        subtitle=f"profiler trace · {count} rank{'s' * (count != 1)}",
        verdict=findings_verdict(analysis.findings, note),
        sections=kept_sections(
            [
                _ranks_section(ranks),
                _trace_steps_section(ranks),
                stragglers_section(test.to_dict() if test is not None else None),
                _kernels_section(ranks),
                _trace_operators_section(ranks),
                _issues_section(analysis.all_issues()),
            ]
        ),
        brief=_trace_brief(analysis),
    )


#: Input problems a brief lists; the report's section has every one.
_BRIEF_ISSUES = 12


def _trace_brief(analysis: TraceAnalysis) -> Brief:
    """One screen of a trace: the verdict, the ranks side by side, stragglers, findings."""
    pieces = [verdict_line(analysis.findings), BLANK, *_rank_pieces(analysis.ranks)]
    test = analysis.stragglers
    if test is not None:
        found = [
            fill(f"rank {s.rank} (+{{}}, confidence {{}})", *_shares(s.excess_share, s.confidence))
            for s in test.stragglers
        ]
        said = joined(found) if found else ("none. ",)
        pieces += [BLANK, Line(runs("Stragglers: ", *said, f" {test.note}"), "strong")]
    pieces += finding_pieces(analysis.findings)
    issues = analysis.all_issues()
    if issues:
        pieces += [BLANK, line("Reduced confidence: the input had problems", tone="warn_strong")]
        pieces += [line(f"  • {issue}") for issue in issues[:_BRIEF_ISSUES]]
        if len(issues) > _BRIEF_ISSUES:
            pieces.append(line(f"  … and {len(issues) - _BRIEF_ISSUES} more (see the JSON)"))
    count = len(analysis.ranks)
    title = line(
        Span("trace", tone="strong"), f" · {analysis.source} · {count} rank{'s' * (count != 1)}"
    )
    return Brief(tuple(pieces), title)


def _shares(excess: float, confidence: float) -> tuple[Span, Span]:
    return Span(excess, "pct"), Span(confidence, "share")


def _device_label(rank: Profile) -> str:
    kind = rank.trace.device_kind if rank.trace is not None else rank.device
    return str((rank.machine.gpu or {}).get("name") or kind)


def _rank_pieces(ranks: Sequence[Profile]) -> list[Piece]:
    """The ranks side by side; the device named once above them when all ranks share it."""
    labels = {_device_label(r) for r in ranks}
    shared = len(labels) == 1
    columns = [right_column("rank")] + ([] if shared else [Column("device", wrap=False)])
    columns += [right_column("steps"), right_column("step", "s")]
    names = ("idle", "compute", "non-compute", "overlap", "exposed comm")
    columns += [right_column(name, "share") for name in names]
    rows = []
    for r in ranks[:BRIEF_RANKS]:
        tl = r.device_timeline
        row: list[Any] = [str(r.rank)] + ([] if shared else [_device_label(r)])
        row += [str(len(r.steps)), r.step_time_s]
        row += [getattr(tl, key) if tl is not None else None for key in _SHARES]
        rows.append(tuple(row))
    pieces: list[Piece] = [line(f"device: {labels.pop()}", tone="muted")] if shared else []
    pieces.append(Grid(tuple(columns), tuple(rows), header="strong"))
    return pieces + more_line(BRIEF_RANKS, len(ranks), "ranks in the JSON")


def _rank_label(rank: Profile) -> str:
    return f"rank {rank.rank}"


_SHARES = (
    "idle_share",
    "compute_share",
    "non_compute_share",
    "comm_comp_overlap",
    "exposed_communication_share",
)


def _ranks_section(ranks: Sequence[Profile]) -> Section | None:
    rows = []
    for r in ranks:
        tl = r.device_timeline
        rows.append(
            (
                r.rank,
                _device_label(r),
                len(r.steps),
                finite_or_none(r.step_time_s),
                *(getattr(tl, key) if tl is not None else None for key in _SHARES),
                r.trace.file if r.trace is not None else "",
            )
        )
    table = make_table(
        "ranks",
        "Ranks side by side",
        [
            Column("rank", "int"),
            Column("device"),
            Column("steps", "int"),
            Column("median step", "s"),
            Column("idle", "share"),
            Column("compute", "share"),
            Column("non-compute", "share"),
            Column("overlap", "share"),
            Column("exposed communication", "share"),
            Column("file"),
        ],
        rows,
        limit=len(rows) or 1,
    )
    timelines = [r.device_timeline for r in ranks if r.device_timeline is not None]
    labels = tuple(_rank_label(r) for r in ranks if r.device_timeline is not None)
    breakdown = None
    causes = None
    if timelines:
        breakdown = Chart(
            id="rank-breakdown",
            title="GPU time per rank: computation, other device work, idle",
            series=tuple(
                Series(name, labels, tuple(getattr(tl, key) for tl in timelines), style="bar")
                for name, key in (
                    ("compute", "compute_share"),
                    ("non-compute (communication, copies, syncs)", "non_compute_share"),
                    ("idle", "idle_share"),
                )
            ),
            x_title="rank",
            y_title="share of the device span",
            x_unit="text",
            y_unit="share",
            stacked=True,
        )
        cause_names = ("data", "sync", "optimizer", "host")
        causes = Chart(
            id="idle-causes",
            title="Device idle time per rank, by what the host was doing",
            series=tuple(
                Series(
                    name,
                    labels,
                    tuple(finite_or_none(tl.idle_causes.get(name)) for tl in timelines),
                    style="bar",
                )
                for name in cause_names
            ),
            x_title="rank",
            y_title="idle time",
            x_unit="text",
            y_unit="s",
            stacked=True,
        )
    text = []
    if timelines:
        window = timelines[0].window
        text.append(
            "Shares are fractions of each rank's device span, from its first device event to "
            f"its last ({window})."
            if window
            else "Shares are fractions of each rank's device span."
        )
    sources = [r.trace for r in ranks if r.trace is not None]
    world = {str(s.world_size) for s in sources if s.world_size is not None}
    backends = {str(s.backend) for s in sources if s.backend}
    facts = make_facts(
        Fact("ranks analysed", len(ranks), "int"),
        Fact("world size", ", ".join(sorted(world, key=len)) or None),
        Fact("backend", ", ".join(sorted(backends)) or None),
    )
    return make_section("ranks", "Ranks", text, facts, [table], [breakdown, causes])


def _trace_steps_section(ranks: Sequence[Profile]) -> Section | None:
    stats = [(r, r.phase_stats()) for r in ranks]
    with_phases = [(r, st) for r, st in stats if st]
    if not with_phases:
        return None
    names: list[str] = []
    for _, st in with_phases:
        names += [p for p, s in st.items() if p not in names and s.mean_s > 0]
    labels = tuple(_rank_label(r) for r, _ in with_phases)
    series = tuple(
        Series(
            phase,
            labels,
            tuple(
                finite_or_none(st[phase].median_s if phase in st else None) or 0.0
                for _, st in with_phases
            ),
            style="bar",
        )
        for phase in names
    )
    if not series:
        return None
    chart = Chart(
        id="rank-steps",
        title="Median step per rank, by phase",
        series=series,
        x_title="rank",
        y_title="median time",
        x_unit="text",
        y_unit="s",
        stacked=True,
    )
    return make_section(
        "steps",
        "Where a step's time goes",
        [
            "Phases come from the host thread that holds the ProfilerStep spans; each bar sums "
            "the phases' medians over that rank's steps."
        ],
        charts=[chart],
    )


def stragglers_section(test: Mapping[str, Any] | None) -> Section | None:
    if not test or not test.get("per_rank"):
        return None
    flagged = {s["rank"] for s in test.get("stragglers", [])}
    per_rank = list(test["per_rank"])
    series = []
    for name, keep in (("rank", False), ("straggler", True)):
        chosen = [p for p in per_rank if (p["rank"] in flagged) == keep]
        if chosen:
            series.append(
                Series(
                    name,
                    tuple(f"rank {p['rank']}" for p in chosen),
                    tuple(finite_or_none(p.get("median_busy_s")) for p in chosen),
                    style="bar",
                )
            )
    chart = Chart(
        id="stragglers",
        title="Median busy time per step, per rank",
        series=tuple(series),
        x_title="rank",
        y_title="busy time",
        x_unit="text",
        y_unit="s",
        note="A straggler is a rank whose busy time is consistently and materially above the "
        "others'; the others then wait for it in every collective.",
    )
    table = make_table(
        "straggler-test",
        "The straggler test per rank",
        [
            Column("rank", "int"),
            Column("median busy", "s"),
            Column("excess", "s"),
            Column("excess share", "share"),
            Column("p-value (Holm)", "number"),
            Column("straggler", "bool"),
        ],
        [
            (
                p["rank"],
                p.get("median_busy_s"),
                p.get("excess_s"),
                p.get("excess_share"),
                p.get("p_value"),
                p["rank"] in flagged,
            )
            for p in per_rank
        ],
        limit=len(per_rank),
    )
    facts = make_facts(
        Fact("stragglers", ", ".join(f"rank {r}" for r in sorted(flagged)) or "none"),
        Fact("matched steps", test.get("steps"), "int"),
        Fact("test", test.get("method")),
        Fact("family-wise α", test.get("alpha"), "number"),
        Fact("minimum excess", test.get("min_excess_share"), "share"),
        Fact("power", test.get("power")),
    )
    text = [str(test["note"])] if test.get("note") else []
    return make_section("stragglers", "Stragglers", text, facts, [table], [chart])


def _kernels_section(ranks: Sequence[Profile]) -> Section | None:
    totals: dict[str, list[Any]] = {}
    for r in ranks:
        for name, k in (r.device_timeline.kernel_totals if r.device_timeline else {}).items():
            entry = totals.setdefault(name, [k.kind or "", 0, 0.0, 0])
            entry[1] += k.count
            entry[2] += k.time_s
            entry[3] += 1
    if not totals:
        return None
    all_time = sum(e[2] for e in totals.values())
    rows = sorted(
        (
            (
                name,
                kind,
                count,
                time_s,
                time_s / all_time if all_time else None,
                time_s / count if count else None,
                n,
            )
            for name, (kind, count, time_s, n) in totals.items()
        ),
        key=lambda row: -row[3],
    )
    table = make_table(
        "kernels",
        "Kernels over all ranks, by device time",
        [
            Column("kernel"),
            Column("kind"),
            Column("calls", "int"),
            Column("time", "s"),
            Column("share", "share"),
            Column("mean", "s"),
            Column("ranks", "int"),
        ],
        rows,
    )
    by_kind: dict[str, float] = {}
    for _, (kind, _, time_s, _) in totals.items():
        by_kind[kind] = by_kind.get(kind, 0.0) + time_s
    facts = tuple(
        Fact(f"{kind} kernels", t / all_time if all_time else None, "share")
        for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1])
    )
    return make_section("kernels", "Top kernels", facts=make_facts(*facts), tables=[table])


def _trace_operators_section(ranks: Sequence[Profile]) -> Section | None:
    totals: dict[str, list[float]] = {}
    for r in ranks:
        for op in r.operators:
            entry = totals.setdefault(op.name, [0, 0.0, 0.0])
            entry[0] += op.count
            entry[1] += op.self_s
            entry[2] += op.total_s
    all_self = sum(e[1] for e in totals.values())
    rows = sorted(
        (
            (name, int(count), self_s, total_s, self_s / all_self if all_self else None)
            for name, (count, self_s, total_s) in totals.items()
        ),
        key=lambda row: -row[2],
    )
    table = make_table(
        "operators",
        "Host operators over all ranks, by self time",
        [
            Column("operator"),
            Column("calls", "int"),
            Column("self", "s"),
            Column("total", "s"),
            Column("share", "share"),
        ],
        rows,
    )
    return make_section("operators", "Top operators", tables=[table])


def _issues_section(issues: Sequence[str]) -> Section | None:
    table = make_table(
        "issues",
        "What was wrong with the input, and what was done",
        [Column("issue")],
        [(issue,) for issue in issues],
    )
    return make_section("issues", "Input problems", tables=[table])

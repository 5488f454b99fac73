"""The Report of a trace analysis: ranks, steps, stragglers, kernels, operators, issues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint.finding import Finding

if TYPE_CHECKING:
    from pinchpoint.traces import TraceAnalysis
from pinchpoint.report.model import Chart, Column, Fact, Report, Section, Series
from pinchpoint.report.parts import (
    findings_verdict,
    finite_or_none,
    kept_sections,
    make_facts,
    make_section,
    make_table,
)


def from_trace(analysis: TraceAnalysis | Mapping[str, Any]) -> Report:
    """The Report of a trace analysis (the object, or its ``pinchpoint.trace/1`` JSON)."""
    data = analysis if isinstance(analysis, Mapping) else analysis.to_dict()
    ranks: list[Mapping[str, Any]] = list(data["ranks"])
    findings = [Finding.from_dict(f) for f in data.get("findings", [])]
    note = ""
    if data.get("confidence") == "reduced":
        note = "Confidence is reduced: the input had problems (see “Input problems”)."
    count = len(ranks)
    return Report(
        kind="trace",
        title=str(data.get("source", "trace")),
        subtitle=f"profiler trace · {count} rank{'s' * (count != 1)}",
        verdict=findings_verdict(findings, note),
        sections=kept_sections(
            [
                _ranks_section(ranks),
                _trace_steps_section(ranks),
                stragglers_section(data.get("straggler_test")),
                _kernels_section(ranks),
                _trace_operators_section(ranks),
                _issues_section(data, ranks),
            ]
        ),
    )


def _rank_label(rank: Mapping[str, Any]) -> str:
    return f"rank {rank['rank']}"


def _ranks_section(ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    rows = []
    for r in ranks:
        gpu = r.get("gpu") or {}
        device = r.get("device") or {}
        rows.append(
            (
                r["rank"],
                str(device.get("name") or device.get("kind") or "cpu"),
                len(r.get("steps", [])),
                finite_or_none(r.get("step_time_s")),
                gpu.get("idle_share"),
                gpu.get("compute_share"),
                gpu.get("non_compute_share"),
                gpu.get("comm_comp_overlap"),
                gpu.get("exposed_communication_share"),
                str(r.get("file", "")),
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
    with_gpu = [r for r in ranks if r.get("gpu")]
    labels = tuple(_rank_label(r) for r in with_gpu)
    breakdown = None
    causes = None
    if with_gpu:
        breakdown = Chart(
            id="rank-breakdown",
            title="GPU time per rank: computation, other device work, idle",
            series=tuple(
                Series(name, labels, tuple(r["gpu"].get(key) for r in with_gpu), style="bar")
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
                    tuple(
                        finite_or_none((r["gpu"].get("idle_causes") or {}).get(name))
                        for r in with_gpu
                    ),
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
    if with_gpu:
        window = with_gpu[0]["gpu"].get("window")
        text.append(
            "Shares are fractions of each rank's device span, from its first device event to "
            f"its last ({window})."
            if window
            else "Shares are fractions of each rank's device span."
        )
    world = {str(r["world_size"]) for r in ranks if r.get("world_size") is not None}
    backends = {str(r.get("backend")) for r in ranks if r.get("backend")}
    facts = make_facts(
        Fact("ranks analysed", len(ranks), "int"),
        Fact("world size", ", ".join(sorted(world, key=len)) or None),
        Fact("backend", ", ".join(sorted(backends)) or None),
    )
    return make_section("ranks", "Ranks", text, facts, [table], [breakdown, causes])


def _trace_steps_section(ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    with_phases = [r for r in ranks if r.get("phases")]
    if not with_phases:
        return None
    names: list[str] = []
    for r in with_phases:
        names += [p for p, st in r["phases"].items() if p not in names and st.get("mean_s", 0) > 0]
    labels = tuple(_rank_label(r) for r in with_phases)
    series = tuple(
        Series(
            phase,
            labels,
            tuple(
                finite_or_none((r["phases"].get(phase) or {}).get("median_s")) or 0.0
                for r in with_phases
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


def _kernels_section(ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    totals: dict[str, list[Any]] = {}
    for r in ranks:
        kernels = (r.get("gpu") or {}).get("kernels") or {}
        for name, k in (kernels.get("totals") or {}).items():
            entry = totals.setdefault(name, [str(k.get("kind", "")), 0, 0.0, 0])
            entry[1] += int(k.get("count", 0))
            entry[2] += float(k.get("time_s", 0.0))
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


def _trace_operators_section(ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    totals: dict[str, list[float]] = {}
    for r in ranks:
        for op in r.get("operators", []):
            entry = totals.setdefault(str(op["name"]), [0, 0.0, 0.0])
            entry[0] += int(op.get("count", 0))
            entry[1] += float(op.get("self_s", 0.0))
            entry[2] += float(op.get("total_s", 0.0))
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


def _issues_section(data: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    issues = [str(i) for i in data.get("issues", [])] + [
        f"rank {r['rank']}: {issue}" for r in ranks for issue in r.get("issues", [])
    ]
    table = make_table(
        "issues",
        "What was wrong with the input, and what was done",
        [Column("issue")],
        [(issue,) for issue in issues],
    )
    return make_section("issues", "Input problems", tables=[table])

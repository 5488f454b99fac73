"""The Report of an optimize result: the verdict, the trials, the Pareto front."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint._profile import Machine

if TYPE_CHECKING:
    from pinchpoint.optimizer import OptimizeResult
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
    Verdict,
)
from pinchpoint.report.parts import (
    BLANK,
    fill,
    finite_or_none,
    kept_sections,
    line,
    make_facts,
    make_section,
    make_table,
    right_column,
    runs,
)
from pinchpoint.report.profile import machine_section


def from_optimize(result: OptimizeResult) -> Report:
    """The Report of an optimize run (one loaded from its ``pinchpoint.optimize/1`` file too)."""
    data = result.to_dict()
    trials: list[Mapping[str, Any]] = list(data["trials"])
    best = data.get("best")
    pareto = {int(i) for i in data.get("pareto") or []}
    return Report(
        kind="optimize",
        title=str(data.get("target", "optimize")),
        subtitle=f"optimize · objective {data.get('objective')} · {len(trials)} trials",
        verdict=_optimize_verdict(data, trials),
        sections=kept_sections(
            [
                _trials_section(data, trials, best, pareto),
                _baseline_section(data, trials),
                machine_section(Machine.from_dict(data.get("machine") or {}), None),
            ]
        ),
        brief=_optimize_brief(result),
    )


#: Trials of an optimize run whose verdict a brief spells out, besides the chosen one.
_BRIEF_VERDICTS = 6


def _spelled_verdicts(result: OptimizeResult) -> set[int]:
    """The trials whose verdict is written out: the chosen one, the Pareto frontier, the
    accepted ones, then the rest in order, :data:`_BRIEF_VERDICTS` in all (one screen)."""
    chosen = result.best if result.best is not None else result.best_effort
    first = [chosen] if chosen is not None else []
    first += list(result.pareto)
    first += [i for i, r in enumerate(result.records) if r.accepted]
    order = first + list(range(len(result.records)))
    picked: list[int] = []
    for i in order:
        if i not in picked and len(picked) < _BRIEF_VERDICTS:
            picked.append(i)
    return set(picked)


def _optimize_headline(result: OptimizeResult) -> Line:
    chosen = result.chosen
    if result.best is not None and chosen is not None and chosen.trial is not None:
        t = chosen.trial
        said = f" — {{}}× faster ({{}}–{{}}), {t.quality_metric} {{}} (drop {{}}, "
        said += f"budget {t.budget}), {{}}"
        return Line(
            runs(Span("Best: ", tone="good_strong"), chosen.candidate.short)
            + fill(
                said,
                *_ratios(t.speedup, *t.speedup_ci),
                *_qualities(t),
                Span(t.size_bytes, "bytes"),
            )
        )
    if chosen is not None:
        return line(
            Span("No candidate met the budget. ", tone="warn_strong"),
            f"Best effort kept: {chosen.candidate.short} ({chosen.why})",
        )
    return line("Nothing could be measured.", tone="warn_strong")


def _ratios(*values: float) -> tuple[Span, ...]:
    return tuple(Span(v, "ratio") for v in values)


def _qualities(t: Any) -> tuple[Span, Span]:
    """A trial's quality and its drop from the baseline's."""
    return Span(t.quality, "quality"), Span(t.quality_drop, "quality")


def _optimize_brief(result: OptimizeResult) -> Brief:
    """One screen of an optimize run: the answer first, then every trial with its verdict."""
    columns = (
        Column("#", align="right"),
        Column("remedies", grow=1, min_width=20),
        right_column("speed-up (95% CI)"),
        right_column("quality (drop)"),
        right_column("size", "bytes"),
        Column("", wrap=False),
    )
    rows: list[tuple[Any, ...]] = []
    verdicts: list[Piece] = []
    spelled = _spelled_verdicts(result)
    for i, record in enumerate(result.records):
        t, tone = record.trial, "good" if record.accepted else ""
        if i in spelled:
            accepted = "accepted: " if record.accepted else ""
            verdicts.append(line(f"{i:>2}. {accepted}{record.why}", tone=tone))
        if t is None:
            rows.append((str(i), record.candidate.short, "—", "—", Span("—"), ""))
            continue
        mark = "★" if i == result.best else ("◆" if i in result.pareto else "")
        rows.append(
            (
                str(i),
                record.candidate.short,
                Line(fill("{} ({}–{})", Span(t.speedup, "x"), *_ratios(*t.speedup_ci))),
                Line(fill("{} ({})", *_qualities(t))),
                t.size_bytes,
                Span(mark, tone=tone),
            )
        )
    if len(result.records) > len(spelled):
        more = len(result.records) - len(spelled)
        verdicts.append(
            line(f"    the verdicts of {more} more trials: optimize.json", tone="muted")
        )
    base = result.baseline
    stopped = " (time budget reached)" if result.stopped_early else ""
    facts = fill(
        f"baseline: {base.get('quality_metric', 'quality')} {{}}, {{}} per "
        f"{base.get('time_unit', 'batch')}, {{}} · objective {result.objective} · budget "
        f"{result.budget} · {len(result.records)} trials in {{}} s{stopped} · ★ best, ◆ Pareto "
        "frontier",
        *(Span(base.get("quality"), "quality"), Span(base.get("time_s"), "s")),
        *(Span(base.get("size_bytes"), "bytes"), Span(result.seconds, "f0")),
        tone="muted",
    )
    pieces: list[Piece] = [
        _optimize_headline(result),
        BLANK,
        Grid(columns, tuple(rows), header="strong"),
    ]
    pieces += [BLANK, *verdicts, BLANK, Line(facts)]
    title = line(Span("optimize", tone="strong"), f" · {result.target}")
    return Brief(tuple(pieces), title)


def _labels(trial: Mapping[str, Any]) -> str:
    return " + ".join(str(label) for label in trial.get("labels", [])) or "(none)"


def _optimize_verdict(data: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> Verdict:
    best, effort = data.get("best"), data.get("best_effort")
    if best is not None:
        t = trials[int(best)]
        return Verdict("best", f"Best verified candidate: {_labels(t)}.", (str(t["why"]),))
    if effort is not None:
        t = trials[int(effort)]
        return Verdict(
            "no_best",
            "No candidate met the quality budget and beat the baseline.",
            (f"Best effort kept: {_labels(t)}: {t['why']}",),
        )
    return Verdict("no_best", "Nothing could be measured.", ())


def _trial_status(i: int, best: Any, pareto: set[int]) -> str:
    if i == best:
        return "best"
    return "Pareto" if i in pareto else ""


def _trials_section(
    data: Mapping[str, Any], trials: Sequence[Mapping[str, Any]], best: Any, pareto: set[int]
) -> Section | None:
    rows = []
    for i, t in enumerate(trials):
        lo, hi = t.get("speedup_ci") or (None, None)
        rows.append(
            (
                i,
                _labels(t),
                finite_or_none(t.get("speedup")),
                finite_or_none(lo),
                finite_or_none(hi),
                finite_or_none(t.get("quality")),
                finite_or_none(t.get("quality_drop")),
                t.get("size_bytes"),
                bool(t.get("accepted")),
                _trial_status(i, best, pareto),
                str(t.get("why", "")),
            )
        )
    table = make_table(
        "trials",
        "Every trial against the baseline",
        [
            Column("#", "int"),
            Column("remedies"),
            Column("speed-up", "x"),
            Column("95 % low", "x"),
            Column("95 % high", "x"),
            Column("quality", "number"),
            Column("quality drop", "number"),
            Column("size", "bytes"),
            Column("accepted", "bool"),
            Column("status"),
            Column("why"),
        ],
        rows,
        limit=len(rows) or 1,
    )
    baseline = data.get("baseline") or {}
    metric = str(baseline.get("quality_metric", "quality"))
    charts = [
        _pareto_chart(trials, best, pareto, baseline, "speedup", "speed-up", "x", 1.0),
    ]
    if data.get("objective") == "size":
        charts.append(
            _pareto_chart(
                trials,
                best,
                pareto,
                baseline,
                "size_bytes",
                "size",
                "bytes",
                finite_or_none(baseline.get("size_bytes")),
            )
        )
    return make_section(
        "trials",
        "Trials and the Pareto frontier",
        [
            f"Each candidate was measured against the baseline in a fair, interleaved trial. "
            f"The Pareto frontier holds the candidates no other beats on speed, {metric} and "
            "size at once."
        ],
        tables=[table],
        charts=charts,
    )


def _pareto_chart(
    trials: Sequence[Mapping[str, Any]],
    best: Any,
    pareto: set[int],
    baseline: Mapping[str, Any],
    key: str,
    title: str,
    unit: str,
    baseline_x: float | None,
) -> Chart | None:
    measured = [
        (i, t)
        for i, t in enumerate(trials)
        if finite_or_none(t.get(key)) is not None and finite_or_none(t.get("quality")) is not None
    ]
    if not measured:
        return None
    groups = (
        ("trials", "markers", [(i, t) for i, t in measured if i not in pareto and i != best]),
        (
            "Pareto frontier",
            "lines+markers",
            sorted(
                [(i, t) for i, t in measured if i in pareto and i != best]
                + [(i, t) for i, t in measured if i == best],
                key=lambda it: finite_or_none(it[1].get(key)) or 0.0,
            ),
        ),
        ("best", "markers", [(i, t) for i, t in measured if i == best]),
    )
    emphasised = {"best"}
    series = [
        Series(
            name,
            tuple(finite_or_none(t.get(key)) for _, t in group),
            tuple(finite_or_none(t.get("quality")) for _, t in group),
            style=style,
            labels=tuple(f"#{i} {_labels(t)}" for i, t in group),
            emphasis=name in emphasised,
        )
        for name, style, group in groups
        if group
    ]
    base_quality = finite_or_none(baseline.get("quality"))
    if baseline_x is not None and base_quality is not None:
        series.append(Series("baseline", (baseline_x,), (base_quality,), "markers", ("baseline",)))
    metric = str(baseline.get("quality_metric", "quality"))
    return Chart(
        id=f"pareto-{key.replace('_', '-')}",
        title=f"{title.capitalize()} against {metric}",
        series=tuple(series),
        x_title=title,
        y_title=metric,
        x_unit=unit,
        y_unit="number",
    )


def _baseline_section(data: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> Section:
    baseline = data.get("baseline") or {}
    budget = data.get("budget") or {}
    diagnosis = data.get("diagnosis") or {}
    unit = str(baseline.get("time_unit", "batch"))
    max_drop = budget.get("max_drop")
    relative = " (relative)" if budget.get("relative") else ""
    facts = make_facts(
        Fact("workload", baseline.get("name")),
        Fact("mode", baseline.get("mode")),
        Fact("objective", data.get("objective")),
        Fact(
            "quality budget: largest drop",
            f"{max_drop}{relative}" if max_drop is not None else None,
        ),
        Fact(
            f"baseline {baseline.get('quality_metric', 'quality')}",
            finite_or_none(baseline.get("quality")),
            "number",
        ),
        Fact(f"baseline time per {unit}", finite_or_none(baseline.get("time_s")), "s"),
        Fact("baseline size", baseline.get("size_bytes"), "bytes"),
        Fact("threads", baseline.get("threads"), "int"),
        Fact("diagnosis: principal finding", diagnosis.get("principal")),
        Fact("diagnosis: findings", ", ".join(map(str, diagnosis.get("findings", []))) or None),
        Fact("trials", len(trials), "int"),
        Fact("search time", finite_or_none(data.get("seconds")), "s"),
        Fact("stopped by the time budget", bool(data.get("stopped_early")), "bool"),
    )
    return Section("baseline", "Baseline and search", facts=facts)

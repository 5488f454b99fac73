"""The Report: the one input every renderer takes.

A Report gathers what pinchpoint produced (a :class:`~pinchpoint.Profile`, a
:class:`~pinchpoint.Diagnosis`, a :class:`~pinchpoint.TraceAnalysis`, an
:class:`~pinchpoint.OptimizeResult`, an LR range test, a :class:`~pinchpoint.Comparison`, or
any of them saved as JSON) into
renderer-neutral pieces, in the order a reader needs them:

- a :class:`Verdict` first: the principal bottleneck with its evidence and remedies (or that
  the run is healthy, the best verified candidate, the suggested learning rate, whether the
  second of two runs regressed);
- then :class:`Section`\\ s, each holding :class:`Fact`\\ s, :class:`Table`\\ s and
  :class:`Chart`\\ s.

Every number stays raw, with a unit key (``"s"``, ``"share"``, ``"bytes"``…) that tells a
renderer how to format it; a chart holds its series, axes and reference marks, never drawing
instructions. The numbers are quoted from the object the Report was built from (the Profile is
the one source of truth), never measured again. A section, table or chart without data is not
created, so no renderer ever shows an empty one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinchpoint import results
from pinchpoint._io import read_json
from pinchpoint._profile import Environment, Health, Machine, Profile
from pinchpoint.diagnosis import Diagnosis, roofline_summary
from pinchpoint.errors import ProfileFormatError
from pinchpoint.finding import Finding

if TYPE_CHECKING:
    from pinchpoint.comparison import Comparison, TotalsChange
    from pinchpoint.lr_find import LRFindResult
    from pinchpoint.optimizer import OptimizeResult
    from pinchpoint.traces import TraceAnalysis

__all__ = [
    "Chart",
    "Column",
    "Fact",
    "Mark",
    "Report",
    "Section",
    "Series",
    "Table",
    "Verdict",
    "VerdictFinding",
]

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


# --------------------------------------------------------------------------- the pieces


@dataclass(frozen=True)
class Fact:
    """One labelled number or word; ``unit`` tells a renderer how to format ``value``."""

    label: str
    value: Any
    unit: str = "text"


@dataclass(frozen=True)
class Column:
    """A table column: its heading and the unit of its cells."""

    name: str
    unit: str = "text"


@dataclass(frozen=True)
class Table:
    """Rows of raw values under typed columns; renderers may let a reader sort them.

    ``total_rows`` is how many rows there were before the table was cut to its top rows.
    """

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    total_rows: int | None = None


@dataclass(frozen=True)
class Series:
    """One named series of a chart: ``x`` and ``y`` values and how they are shown.

    ``style`` is ``"bar"``, ``"line"``, ``"markers"`` or ``"lines+markers"``; ``labels``, when
    given, names each point (an operator, a trial) for a reader who points at it; ``emphasis``
    singles a series out (the chosen candidate, the roof).
    """

    name: str
    x: tuple[Any, ...]
    y: tuple[Any, ...]
    style: str = "line"
    labels: tuple[str, ...] | None = None
    emphasis: bool = False


@dataclass(frozen=True)
class Mark:
    """A reference line across a chart at ``value`` on its ``axis`` (``"x"`` or ``"y"``)."""

    axis: str
    value: float
    label: str


@dataclass(frozen=True)
class Chart:
    """A chart's data: its series, axes (title, unit, log scale) and reference marks.

    ``stacked`` stacks bar series; ``horizontal`` lays bars along the x axis (the categories
    are then the ``y`` values of each series). ``y_range``, when set, is the part of the y axis
    worth showing (points beyond it are cut off, as a diverged loss would flatten the rest).
    """

    id: str
    title: str
    series: tuple[Series, ...]
    x_title: str = ""
    y_title: str = ""
    x_unit: str = "number"
    y_unit: str = "number"
    x_log: bool = False
    y_log: bool = False
    stacked: bool = False
    horizontal: bool = False
    marks: tuple[Mark, ...] = ()
    note: str = ""
    y_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Section:
    """One part of a report: paragraphs, facts, tables and charts about one subject."""

    id: str
    title: str
    text: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()


@dataclass(frozen=True)
class VerdictFinding:
    """A finding as the verdict shows it: with a title and what its kind means."""

    finding: Finding
    title: str
    meaning: str


@dataclass(frozen=True)
class Verdict:
    """What a reader should know first.

    ``status`` is ``"bottleneck"`` (a high-severity finding), ``"healthy"``, ``"best"`` (an
    optimize run found a verified candidate), ``"no_best"``, ``"suggestion"`` (an LR range
    test suggests a rate), ``"no_suggestion"``, or a comparison's ``"regression"``,
    ``"improved"`` or ``"ok"``. ``findings`` are ranked: the first is the principal bottleneck
    (for a comparison: the findings B gained, then those it lost).
    """

    status: str
    headline: str
    detail: tuple[str, ...] = ()
    findings: tuple[VerdictFinding, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one report shows, gathered from one pinchpoint result.

    ``kind`` says what it was built from: ``"profile"``, ``"diagnosis"``, ``"trace"``,
    ``"optimize"``, ``"lr_find"`` or ``"compare"``. Build one with :meth:`build` (any result
    object), :meth:`from_dict` (a saved result's JSON) or :meth:`load` (a saved file, a folder
    written by ``optimize``, or a profiler trace).
    """

    kind: str
    title: str
    subtitle: str = ""
    verdict: Verdict | None = None
    sections: tuple[Section, ...] = ()
    created: str = ""

    @property
    def charts(self) -> list[Chart]:
        """Every chart of the report, in the order it shows them."""
        return [chart for section in self.sections for chart in section.charts]

    @property
    def tables(self) -> list[Table]:
        """Every table of the report, in the order it shows them."""
        return [table for section in self.sections for table in section.tables]

    def section(self, id: str) -> Section | None:
        """The section with this id, or None when the report has no such section."""
        return next((s for s in self.sections if s.id == id), None)

    @classmethod
    def build(cls, result: Any) -> Report:
        """The Report of any pinchpoint result object (or its ``to_dict`` data), by the builder
        registered for its kind (:func:`register_builder`)."""
        if isinstance(result, Mapping):
            return cls.from_dict(result)
        kind = results.kind_of(result)
        builder = BUILDERS.get(kind) if kind else None
        if builder is None:
            raise TypeError(f"a Report is built from {_buildable()}, not {type(result).__name__}")
        return builder(result)

    @classmethod
    def from_dict(cls, data: Any, source: str = "the data") -> Report:
        """The Report of a saved result's JSON, recognised by its ``schema`` field."""
        schema = data.get("schema") if isinstance(data, Mapping) else None
        found = results.result_type(schema)
        if found is None:
            shown = f"schema {schema!r}" if schema else "no pinchpoint schema field"
            raise ProfileFormatError(
                f"{source} is not a saved pinchpoint result ({shown}; expected {_buildable()})"
            )
        builder = BUILDERS.get(found.kind)
        if builder is None:
            raise ProfileFormatError(
                f"{source} is {found.what}, which has no report (one is made of {_buildable()})"
            )
        result = found.decode(data, source)
        try:
            return builder(result)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if found.decoder is not None:
                raise
            raise ProfileFormatError(
                f"{source}: broken pinchpoint {found.kind} result: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """The Report of a saved result file (a comparison's too), an ``optimize`` output
        folder, or a trace (see :func:`pinchpoint.results.load_result`)."""
        path = Path(path)
        if path.is_dir() and (path / "optimize.json").is_file():
            path = path / "optimize.json"
        from pinchpoint.results import is_trace

        if is_trace(str(path)):
            return cls.build(results.load_result(path))
        return cls.from_dict(read_json(path), source=str(path))


#: The report builder of each result kind (:mod:`pinchpoint.results`); filled at the end of
#: this module, and by :func:`register_builder` for a new result type.
BUILDERS: dict[str, Callable[[Any], Report]] = {}


def register_builder(kind: str, builder: Callable[[Any], Report]) -> None:
    """Make ``builder`` the report of results of ``kind`` (the object or its saved mapping)."""
    if kind not in {t.kind for t in results.types()}:
        raise ValueError(f"no result type {kind!r} is registered in pinchpoint.results")
    BUILDERS[kind] = builder


def _buildable() -> str:
    names = [
        t.what.removeprefix("an ").removeprefix("a ") for t in results.types() if t.kind in BUILDERS
    ]
    return "a " + ", ".join(names[:-1]) + " or " + names[-1]


# --------------------------------------------------------------------------- small helpers


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when missing or not finite (a gap in a chart)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _facts(*facts: Fact) -> tuple[Fact, ...]:
    """The facts that have a value: a missing measurement is left out, not shown empty."""
    return tuple(f for f in facts if f.value is not None and f.value != "" and f.value != [])


def _table(
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


def _section(
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


def _kept(sections: Iterable[Section | None]) -> tuple[Section, ...]:
    return tuple(s for s in sections if s is not None)


def _spread(names: Sequence[str], limit: int = MAX_LAYER_SERIES) -> list[int]:
    """Indices of at most ``limit`` names spread evenly over the list, first and last kept."""
    n = len(names)
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


# --------------------------------------------------------------------------- verdicts


def _finding_view(finding: Finding) -> VerdictFinding:
    return VerdictFinding(
        finding=finding,
        title=finding.kind.replace("_", " "),
        meaning=MEANINGS.get(finding.kind, ""),
    )


def findings_verdict(findings: Sequence[Finding], note: str = "") -> Verdict:
    """The verdict over ranked findings: the principal bottleneck, or that none is severe."""
    views = tuple(_finding_view(f) for f in findings)
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


# --------------------------------------------------------------------------- profile / diagnosis


def from_profile(
    profile: Profile,
    findings: Sequence[Finding] | None = None,
    roofline: Mapping[str, Any] | None = None,
    target: str | None = None,
) -> Report:
    """The Report of a recorded run.

    Without ``findings`` the default analyzers run on the Profile as it is (nothing is
    re-measured; without calibrated peaks the roofline rules have nothing to go on and say
    nothing). ``roofline`` defaults to the Profile's own roofline summary.
    """
    note = ""
    if findings is None:
        from pinchpoint.analyzers import run_analyzers

        findings = run_analyzers(profile)
        if not profile.machine.peaks:
            note = (
                "The analyzers ran on this Profile alone, without the machine's calibrated "
                "peaks, so the roofline rules (compute- and memory-bound) did not apply: "
                "`pinchpoint diagnose` on the saved profile adds them."
            )
    if roofline is None:
        roofline = roofline_summary(profile)
    return Report(
        kind="profile",
        title=target or profile.name,
        subtitle=_run_subtitle(profile),
        verdict=findings_verdict(findings, note),
        sections=_profile_sections(profile, roofline),
        created=profile.created,
    )


def from_diagnosis(diagnosis: Diagnosis) -> Report:
    """The Report of a diagnosis: its findings first, then the Profile they rest on."""
    profile = diagnosis.profile
    return Report(
        kind="diagnosis",
        title=diagnosis.target,
        subtitle=_run_subtitle(profile),
        verdict=findings_verdict(diagnosis.findings),
        sections=_profile_sections(profile, diagnosis.roofline),
        created=profile.created,
    )


def _run_subtitle(profile: Profile) -> str:
    source = profile.settings.get("source")
    where = f" · from a trace ({profile.settings.get('file', '')})" if source == "trace" else ""
    return f"{profile.name} · {profile.mode} on {profile.device}{where}"


def _profile_sections(profile: Profile, roofline: Mapping[str, Any]) -> tuple[Section, ...]:
    return _kept(
        [
            _steps_section(profile),
            _data_parallel_section(profile),
            _profile_stragglers_section(profile),
            _roofline_section(roofline),
            _operators_section(profile),
            _modules_section(profile),
            _memory_section(profile),
            _health_section(profile),
            _machine_section(profile.machine, profile.environment),
        ]
    )


def _steps_section(profile: Profile) -> Section | None:
    stats = profile.phase_stats()
    measured = profile.measured_steps
    if not stats:
        return None
    walls = [s.wall_s for s in measured]
    shown = [name for name, st in stats.items() if st.mean_s > 0]
    chart = Chart(
        id="step-breakdown",
        title="Time per measured step, by phase",
        series=tuple(
            Series(
                name=phase,
                x=tuple(s.index for s in measured),
                y=tuple(s.phases.get(phase, 0.0) for s in measured),
                style="bar",
            )
            for phase in shown
        ),
        x_title="step",
        y_title="time",
        x_unit="int",
        y_unit="s",
        stacked=True,
    )
    table = _table(
        "phase-table",
        "Phases over the measured steps",
        [
            Column("phase"),
            Column("median", "s"),
            Column("p10", "s"),
            Column("p90", "s"),
            Column("mean", "s"),
            Column("share", "share"),
        ],
        [
            (name, st.median_s, st.p10_s, st.p90_s, st.mean_s, st.share)
            for name, st in stats.items()
            if name in shown
        ],
    )
    flops = profile.flops
    facts = [
        Fact("measured steps", len(measured), "int"),
        Fact("median step", profile.step_time_s, "s"),
        Fact("fastest step", min(walls), "s"),
        Fact("slowest step", max(walls), "s"),
        Fact("throughput", profile.throughput, "per_s"),
        Fact("FLOPs per step", flops.total if flops is not None else None, "flops"),
        Fact("achieved rate", profile.achieved_flops_per_s, "flops_per_s"),
    ]
    timeline = profile.device_timeline
    if timeline is not None:
        facts += [
            Fact("device span", timeline.span_s, "s"),
            Fact("device busy", timeline.busy_s, "s"),
            Fact("device idle", timeline.idle_s, "s"),
            Fact("communication/computation overlap", timeline.comm_comp_overlap, "share"),
        ]
    skipped = len(profile.steps) - len(measured)
    text = [
        f"Each bar is one measured step split into its phases; {skipped} warm-up and "
        "instrumented steps are left out of the statistics."
        if skipped
        else "Each bar is one measured step split into its phases."
    ]
    if profile.ranks:
        text.append("These are rank 0's steps; “Data-parallel ranks” sets every rank's beside it.")
    return _section("steps", "Where a step's time goes", text, _facts(*facts), [table], [chart])


def _data_parallel_section(profile: Profile) -> Section | None:
    """A data-parallel run: the job's all-reduce, and a merged Profile's ranks side by side."""
    dist = profile.distributed
    if dist is None:
        return None
    from pinchpoint.analyzers.device import job_communication

    stats = job_communication(profile) if profile.ranks else profile.communication_stats()
    facts = _facts(
        Fact("world size", dist.world_size, "int"),
        Fact("nodes", dist.nodes, "int"),
        Fact("backend", dist.backend),
        Fact("this rank", None if profile.ranks else dist.rank, "int"),
        Fact("gradient buckets", len(dist.buckets_bytes) or None, "int"),
        Fact("gradient bytes all-reduced", sum(dist.buckets_bytes) or None, "bytes"),
        Fact("bucket cap (MB)", dist.ddp.get("bucket_cap_mb"), "number"),
        Fact("compression hook", dist.ddp.get("comm_hook")),
        Fact("data sharding", profile.settings.get("data_sharding")),
        Fact("all-reduce per step", stats.allreduce_median_s if stats else None, "s"),
        Fact("exposed all-reduce per step", stats.exposed_median_s if stats else None, "s"),
        Fact("exposed share of the step", stats.exposed_share if stats else None, "share"),
        Fact("all-reduce overlapped with backward", stats.overlap if stats else None, "share"),
    )
    text = [
        "The all-reduce is timed by a DDP communication hook: each bucket from the moment "
        "backward filled it to the completion of its all-reduce. Its exposed part is the "
        "communication phase, the wait from the last local gradient until the last bucket "
        "completed."
    ]
    if profile.ranks:
        text.append(
            "Job figures count, in each step, the rank that waited least: it arrived last, so "
            "its wait is the all-reduce itself; the others also wait for it."
        )
    ranks = profile.ranks
    table = None
    charts: list[Chart | None] = []
    if ranks:
        rows = []
        for i, r in enumerate(ranks):
            own = r.communication_stats()
            rows.append(
                (
                    r.distributed.rank if r.distributed is not None else i,
                    r.distributed.hostname if r.distributed is not None else "",
                    len(r.measured_steps),
                    r.step_time_s,
                    r.busy_time_s,
                    own.allreduce_median_s if own else None,
                    own.exposed_median_s if own else None,
                    own.exposed_share if own else None,
                    own.overlap if own else None,
                )
            )
        table = _table(
            "dp-ranks",
            "Ranks side by side",
            [
                Column("rank", "int"),
                Column("host"),
                Column("steps", "int"),
                Column("median step", "s"),
                Column("median busy", "s"),
                Column("all-reduce", "s"),
                Column("exposed", "s"),
                Column("exposed share", "share"),
                Column("overlap", "share"),
            ],
            rows,
            limit=len(rows),
        )
        labels = tuple(f"rank {row[0]}" for row in rows)
        charts.append(
            Chart(
                id="rank-step-time",
                title="Step time per rank",
                series=tuple(
                    Series(
                        label,
                        tuple(s.index for s in r.measured_steps),
                        tuple(s.wall_s for s in r.measured_steps),
                        style="lines+markers",
                    )
                    for label, r in zip(labels, ranks, strict=True)
                ),
                x_title="step",
                y_title="wall time",
                x_unit="int",
                y_unit="s",
            )
        )
        shares = [row[7] for row in rows]
        charts.append(
            Chart(
                id="rank-communication",
                title="Each rank's step: own work and the wait in the all-reduce",
                series=(
                    Series(
                        "busy",
                        labels,
                        tuple(None if v is None else 1.0 - v for v in shares),
                        style="bar",
                    ),
                    Series("exposed all-reduce", labels, tuple(shares), style="bar"),
                ),
                x_title="rank",
                y_title="share of the step",
                x_unit="text",
                y_unit="share",
                stacked=True,
                note="A rank that finishes its work early waits in the all-reduce for the "
                "others: a long wait on every rank but one points at that one.",
            )
        )
    return _section("ranks", "Data-parallel ranks", text, facts, [table], charts)


def _profile_stragglers_section(profile: Profile) -> Section | None:
    """The straggler test over a merged Profile's ranks (busy time: the step less its wait)."""
    if len(profile.ranks) < 2:
        return None
    from pinchpoint.analyzers.ranks import straggler_test

    report = straggler_test(profile)
    return _stragglers_section(report.to_dict() if report is not None else None)


def _roof_point(point: Mapping[str, Any]) -> tuple[float, float] | None:
    """A roofline point's (intensity, achieved rate) when both can sit on log axes."""
    x = _finite(point.get("intensity_flops_per_byte"))
    y = _finite(point.get("achieved_flops_per_s"))
    if x is None or y is None or x <= 0 or y <= 0:
        return None
    return x, y


def _roofline_series(name: str, points: Sequence[Mapping[str, Any]]) -> Series | None:
    placed = [(p, xy) for p in points if (xy := _roof_point(p)) is not None]
    if not placed:
        return None
    return Series(
        name=name,
        x=tuple(xy[0] for _, xy in placed),
        y=tuple(xy[1] for _, xy in placed),
        style="markers",
        labels=tuple(str(p.get("name", "")) for p, _ in placed),
    )


def _roofline_section(roofline: Mapping[str, Any]) -> Section | None:
    peak = _finite(roofline.get("peak_flops_per_s"))
    bandwidth = _finite(roofline.get("bandwidth_bytes_per_s"))
    if peak is None or bandwidth is None or peak <= 0 or bandwidth <= 0:
        return None
    ridge = peak / bandwidth
    placed = [
        s
        for s in (
            _roofline_series("operators", roofline.get("operators", [])),
            _roofline_series("modules (forward)", roofline.get("modules", [])),
        )
        if s is not None
    ]
    chart = None
    if placed:
        xs = [x for s in placed for x in s.x] + [ridge]
        lo, hi = min(xs) / 2, max(xs) * 2
        roof = Series(
            "roof", (lo, ridge, hi), (lo * bandwidth, peak, peak), style="line", emphasis=True
        )
        roofs = [roof]
        # Points whose bytes fit in a cache sit under that cache's higher memory roof (the
        # hierarchical roofline, see pinchpoint.roofline): draw the highest one they use.
        cached = max(
            (
                rate
                for p in [*roofline.get("operators", []), *roofline.get("modules", [])]
                if (rate := _finite(p.get("bandwidth_bytes_per_s"))) is not None
            ),
            default=bandwidth,
        )
        if cached > bandwidth:
            knee = peak / cached
            roofs.append(
                Series(
                    "roof (data in cache)",
                    (lo, knee, hi) if knee > lo else (lo, hi),
                    (lo * cached, peak, peak) if knee > lo else (peak, peak),
                    style="line",
                )
            )
        chart = Chart(
            id="roofline",
            title="Roofline: each operator and module against this machine's peaks",
            series=(*roofs, *placed),
            x_title="arithmetic intensity",
            y_title="achieved rate",
            x_unit="flops_per_byte",
            y_unit="flops_per_s",
            x_log=True,
            y_log=True,
            marks=(Mark("x", ridge, "ridge point"),),
            note="Left of the ridge point memory bandwidth caps the rate; right of it the "
            "arithmetic units do. Work whose bytes fit in a cache is capped by that cache's "
            "higher bandwidth instead. The further a point sits below its roof, the more of the "
            "machine it leaves unused.",
        )
    facts = _facts(
        Fact("fp32 peak", peak, "flops_per_s"),
        Fact("memory bandwidth", bandwidth, "bytes_per_s"),
        Fact("ridge point", ridge, "flops_per_byte"),
        Fact("model FLOPs utilisation", _finite(roofline.get("model_flops_utilization")), "share"),
        Fact(
            "operator time above the ridge",
            _finite(roofline.get("compute_bound_time_share")),
            "share",
        ),
        Fact(
            "operator time below the ridge",
            _finite(roofline.get("memory_bound_time_share")),
            "share",
        ),
        Fact("achieved fraction of the roof", _finite(roofline.get("achieved_fraction")), "share"),
    )
    return _section("roofline", "Roofline", facts=facts, charts=[chart])


def _shapes(shapes: Sequence[Any]) -> str:
    return ", ".join("×".join(map(str, s)) for s in shapes if s)


def _operators_section(profile: Profile) -> Section | None:
    ranked = profile.operator_shares()
    rows = [
        (
            op.name,
            op.count,
            op.self_s,
            op.total_s,
            share,
            op.flops,
            op.bytes,
            _shapes(op.input_shapes),
        )
        for op, share in ranked
    ]
    table = _table(
        "operators",
        "Operators in the profiled step, by self time",
        [
            Column("operator"),
            Column("calls", "int"),
            Column("self", "s"),
            Column("total", "s"),
            Column("share", "share"),
            Column("FLOPs", "flops"),
            Column("bytes", "bytes"),
            Column("input shapes"),
        ],
        rows,
    )
    text = []
    if profile.flops is not None and profile.flops.uncounted:
        names = ", ".join(f"{name} ×{n}" for name, n in profile.flops.uncounted.items())
        text.append(f"Operators no FLOP formula covers (missing from the FLOP totals): {names}.")
    return _section("operators", "Top operators", text, tables=[table])


def _modules_section(profile: Profile) -> Section | None:
    rows = [
        (
            m.name or "(model)",
            m.type,
            m.params,
            m.flops_forward,
            m.flops_backward,
            m.bytes_forward,
            m.forward_s,
        )
        for m in profile.modules
    ]
    table = _table(
        "modules",
        "Modules: parameters and work per step",
        [
            Column("module"),
            Column("type"),
            Column("parameters", "count"),
            Column("forward FLOPs", "flops"),
            Column("backward FLOPs", "flops"),
            Column("forward bytes", "bytes"),
            Column("forward time", "s"),
        ],
        rows,
    )
    return _section("modules", "Modules", tables=[table])


def _memory_section(profile: Profile) -> Section | None:
    m = profile.memory
    parts = [
        (label, value)
        for label, value in (
            ("parameters", m.parameters_bytes),
            ("gradients", m.gradients_bytes),
            ("optimizer state", m.optimizer_state_bytes),
            ("activation peak", m.activations_peak_bytes),
        )
        if value
    ]
    chart = None
    if parts:
        chart = Chart(
            id="memory",
            title="Memory by what holds it",
            series=(
                Series(
                    "bytes",
                    tuple(v for _, v in parts),
                    tuple(label for label, _ in parts),
                    style="bar",
                ),
            ),
            x_title="memory",
            x_unit="bytes",
            y_unit="text",
            horizontal=True,
        )
    budget = profile.settings.get("memory_budget_bytes")
    facts = _facts(
        Fact(
            "parameters + gradients + optimizer state + activations",
            sum(v for _, v in parts) or None,
            "bytes",
        ),
        Fact("process resident memory", m.process_rss_bytes, "bytes"),
        Fact("process peak resident memory", m.process_peak_rss_bytes, "bytes"),
        Fact("device peak", m.device_peak_bytes, "bytes"),
        Fact("device capacity", m.device_capacity_bytes, "bytes"),
        Fact("process limit", m.process_limit_bytes, "bytes"),
        Fact("memory budget", budget, "bytes"),
        Fact("activation peak measured by", m.source, "text"),
    )
    return _section("memory", "Memory", facts=facts, charts=[chart])


def _layer_series(
    names: Sequence[str], steps: Sequence[int], matrix: Sequence[Sequence[float | None]]
) -> tuple[Series, ...]:
    """One series per layer (column) over the recorded steps (rows), spread over depth."""
    if not matrix or not steps:
        return ()
    out = []
    for j in _spread(names):
        ys = tuple(_finite(row[j]) if j < len(row) else None for row in matrix)
        if any(y is not None for y in ys):
            out.append(Series(names[j], tuple(steps), ys, style="lines+markers"))
    return tuple(out)


def _layers_note(names: Sequence[str]) -> str:
    shown = len(_spread(names))
    return f"{shown} of {len(names)} layers, spread over depth." if shown < len(names) else ""


def _step_chart(
    id: str, title: str, name: str, points: Sequence[tuple[int, Any]], y_title: str, y_log: bool
) -> Chart:
    """A line over the steps of one recorded training series (loss, gradient norm)."""
    return Chart(
        id=id,
        title=title,
        series=(
            Series(
                name,
                tuple(i for i, _ in points),
                tuple(_finite(v) for _, v in points),
                style="lines+markers",
            ),
        ),
        x_title="step",
        y_title=y_title,
        x_unit="int",
        y_log=y_log,
    )


def _health_section(profile: Profile) -> Section | None:
    charts: list[Chart | None] = []
    loss = profile.series("loss")
    if loss:
        charts.append(_step_chart("loss", "Training loss", "loss", loss, "loss", y_log=False))
    norm = profile.series("grad_norm")
    if norm:
        charts.append(
            _step_chart(
                "grad-norm", "Global gradient norm", "gradient norm", norm, "L2 norm", y_log=True
            )
        )
    facts: tuple[Fact, ...] = ()
    health = profile.health
    if health is not None:
        types = {m.name: m.type for m in profile.modules}
        charts.extend(_health_charts(health, types))
        if health.nonfinite:
            where = ", ".join(f"{k} {v}" for k, v in health.nonfinite.items() if v is not None)
            facts = (Fact("first non-finite value", where, "text"),)
    return _section(
        "health",
        "Training health",
        [
            "The series the recorder kept while training: how the loss, gradients and updates "
            "behaved, layer by layer."
        ],
        facts=facts,
        charts=charts,
    )


def _positive(series: tuple[Series, ...]) -> tuple[Series, ...]:
    """Series with non-positive values made gaps, so they sit on a log axis."""
    return tuple(
        Series(s.name, s.x, tuple(y if y is not None and y > 0 else None for y in s.y), s.style)
        for s in series
    )


def _typed(names: Sequence[str], types: Mapping[str, str]) -> list[str]:
    """Layer names with their module type, as a reader recognises them (``0 (Conv2d)``)."""
    return [f"{n or '(model)'} ({types[n]})" if n in types else n or "(model)" for n in names]


def _health_charts(health: Health, types: Mapping[str, str]) -> list[Chart | None]:
    charts: list[Chart | None] = []
    layers = _typed(health.layers, types)
    for chart_id, title, steps, matrix, y_title, marks in (
        (
            "layer-grad-norm",
            "Gradient norm per layer",
            health.grad_steps,
            health.grad_norm,
            "L2 norm",
            (),
        ),
        (
            "update-ratio",
            "Update-to-weight ratio per layer (‖Δw‖ / ‖w‖ per optimizer step)",
            health.update_steps,
            health.update_ratio,
            "ratio",
            (Mark("y", 1e-3, "≈ 1e-3: healthy"),),
        ),
    ):
        per_layer = _positive(_layer_series(layers, steps, matrix))
        if per_layer:
            charts.append(
                Chart(
                    id=chart_id,
                    title=title,
                    series=per_layer,
                    x_title="step",
                    y_title=y_title,
                    x_unit="int",
                    y_log=True,
                    marks=marks,
                    note=_layers_note(health.layers),
                )
            )
    for family, title, matrix, chart_id in (
        (("relu",), "Dead units per ReLU layer", health.dead_share, "dead-units"),
        (
            ("sigmoid", "tanh"),
            "Saturated outputs per sigmoid/tanh layer",
            health.saturated_share,
            "saturated-units",
        ),
    ):
        columns = [j for j, kind in enumerate(health.activation_kinds) if kind in family]
        if not columns or not matrix:
            continue
        names = _typed([health.activation_layers[j] for j in columns], types)
        rows = [[row[j] if j < len(row) else None for j in columns] for row in matrix]
        series = _layer_series(names, health.activation_steps, rows)
        if series:
            charts.append(
                Chart(
                    id=chart_id,
                    title=title,
                    series=series,
                    x_title="step",
                    y_title="share of units",
                    x_unit="int",
                    y_unit="share",
                    marks=(Mark("y", 0.5, "50 %: reported"),),
                    note=_layers_note(names),
                )
            )
    return charts


def _machine_section(machine: Machine, environment: Environment | None) -> Section | None:
    gpu = machine.gpu or {}
    peaks = machine.peaks
    facts = [
        Fact("processor", machine.cpu_model or None),
        Fact("physical cores", machine.cores_physical, "int"),
        Fact("logical cores", machine.cores_logical, "int"),
        Fact("threads used", machine.threads, "int"),
        Fact("memory", machine.memory_bytes, "bytes"),
        Fact("operating system", machine.os or None),
        Fact("architecture", machine.arch or None),
        Fact("instruction-set extensions", ", ".join(machine.cpu_flags) or None),
        Fact("GPU", gpu.get("name")),
        Fact("GPU compute capability", gpu.get("capability")),
        Fact("GPU memory", gpu.get("memory_bytes"), "bytes"),
    ]
    for key, value in peaks.items():
        if key.startswith("flops_"):
            facts.append(Fact(f"calibrated matmul peak, {key[6:]}", value, "flops_per_s"))
        elif key == "bandwidth_bytes_per_s":
            facts.append(Fact("calibrated memory bandwidth", value, "bytes_per_s"))
        elif key == "dispatch_s":
            facts.append(Fact("per-operator overhead", value, "s"))
    if environment is not None:
        facts.append(Fact("Python", environment.python or None))
    packages = sorted((environment.packages if environment is not None else {}).items())
    table = _table(
        "packages",
        "Packages",
        [Column("package"), Column("version")],
        packages,
        limit=len(packages) or 1,
    )
    return _section("machine", "Machine and environment", facts=_facts(*facts), tables=[table])


# --------------------------------------------------------------------------- traces


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
        sections=_kept(
            [
                _ranks_section(ranks),
                _trace_steps_section(ranks),
                _stragglers_section(data.get("straggler_test")),
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
                _finite(r.get("step_time_s")),
                gpu.get("idle_share"),
                gpu.get("compute_share"),
                gpu.get("non_compute_share"),
                gpu.get("comm_comp_overlap"),
                gpu.get("exposed_communication_share"),
                str(r.get("file", "")),
            )
        )
    table = _table(
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
                    tuple(_finite((r["gpu"].get("idle_causes") or {}).get(name)) for r in with_gpu),
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
    facts = _facts(
        Fact("ranks analysed", len(ranks), "int"),
        Fact("world size", ", ".join(sorted(world, key=len)) or None),
        Fact("backend", ", ".join(sorted(backends)) or None),
    )
    return _section("ranks", "Ranks", text, facts, [table], [breakdown, causes])


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
                _finite((r["phases"].get(phase) or {}).get("median_s")) or 0.0 for r in with_phases
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
    return _section(
        "steps",
        "Where a step's time goes",
        [
            "Phases come from the host thread that holds the ProfilerStep spans; each bar sums "
            "the phases' medians over that rank's steps."
        ],
        charts=[chart],
    )


def _stragglers_section(test: Mapping[str, Any] | None) -> Section | None:
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
                    tuple(_finite(p.get("median_busy_s")) for p in chosen),
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
    table = _table(
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
    facts = _facts(
        Fact("stragglers", ", ".join(f"rank {r}" for r in sorted(flagged)) or "none"),
        Fact("matched steps", test.get("steps"), "int"),
        Fact("test", test.get("method")),
        Fact("family-wise α", test.get("alpha"), "number"),
        Fact("minimum excess", test.get("min_excess_share"), "share"),
        Fact("power", test.get("power")),
    )
    text = [str(test["note"])] if test.get("note") else []
    return _section("stragglers", "Stragglers", text, facts, [table], [chart])


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
    table = _table(
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
    return _section("kernels", "Top kernels", facts=_facts(*facts), tables=[table])


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
    table = _table(
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
    return _section("operators", "Top operators", tables=[table])


def _issues_section(data: Mapping[str, Any], ranks: Sequence[Mapping[str, Any]]) -> Section | None:
    issues = [str(i) for i in data.get("issues", [])] + [
        f"rank {r['rank']}: {issue}" for r in ranks for issue in r.get("issues", [])
    ]
    table = _table(
        "issues",
        "What was wrong with the input, and what was done",
        [Column("issue")],
        [(issue,) for issue in issues],
    )
    return _section("issues", "Input problems", tables=[table])


# --------------------------------------------------------------------------- optimize


def from_optimize(result: OptimizeResult | Mapping[str, Any]) -> Report:
    """The Report of an optimize run (the object, or its ``pinchpoint.optimize/1`` JSON)."""
    data = result if isinstance(result, Mapping) else result.to_dict()
    trials: list[Mapping[str, Any]] = list(data["trials"])
    best = data.get("best")
    pareto = {int(i) for i in data.get("pareto") or []}
    return Report(
        kind="optimize",
        title=str(data.get("target", "optimize")),
        subtitle=f"optimize · objective {data.get('objective')} · {len(trials)} trials",
        verdict=_optimize_verdict(data, trials),
        sections=_kept(
            [
                _trials_section(data, trials, best, pareto),
                _baseline_section(data, trials),
                _machine_section(Machine.from_dict(data.get("machine") or {}), None),
            ]
        ),
    )


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
                _finite(t.get("speedup")),
                _finite(lo),
                _finite(hi),
                _finite(t.get("quality")),
                _finite(t.get("quality_drop")),
                t.get("size_bytes"),
                bool(t.get("accepted")),
                _trial_status(i, best, pareto),
                str(t.get("why", "")),
            )
        )
    table = _table(
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
                _finite(baseline.get("size_bytes")),
            )
        )
    return _section(
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
        if _finite(t.get(key)) is not None and _finite(t.get("quality")) is not None
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
                key=lambda it: _finite(it[1].get(key)) or 0.0,
            ),
        ),
        ("best", "markers", [(i, t) for i, t in measured if i == best]),
    )
    emphasised = {"best"}
    series = [
        Series(
            name,
            tuple(_finite(t.get(key)) for _, t in group),
            tuple(_finite(t.get("quality")) for _, t in group),
            style=style,
            labels=tuple(f"#{i} {_labels(t)}" for i, t in group),
            emphasis=name in emphasised,
        )
        for name, style, group in groups
        if group
    ]
    base_quality = _finite(baseline.get("quality"))
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
    facts = _facts(
        Fact("workload", baseline.get("name")),
        Fact("mode", baseline.get("mode")),
        Fact("objective", data.get("objective")),
        Fact(
            "quality budget: largest drop",
            f"{max_drop}{relative}" if max_drop is not None else None,
        ),
        Fact(
            f"baseline {baseline.get('quality_metric', 'quality')}",
            _finite(baseline.get("quality")),
            "number",
        ),
        Fact(f"baseline time per {unit}", _finite(baseline.get("time_s")), "s"),
        Fact("baseline size", baseline.get("size_bytes"), "bytes"),
        Fact("threads", baseline.get("threads"), "int"),
        Fact("diagnosis: principal finding", diagnosis.get("principal")),
        Fact("diagnosis: findings", ", ".join(map(str, diagnosis.get("findings", []))) or None),
        Fact("trials", len(trials), "int"),
        Fact("search time", _finite(data.get("seconds")), "s"),
        Fact("stopped by the time budget", bool(data.get("stopped_early")), "bool"),
    )
    return Section("baseline", "Baseline and search", facts=facts)


# --------------------------------------------------------------------------- LR range test


def _loss_range(losses: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float] | None:
    """The y range that shows the smoothed curve from its start to its divergence."""
    curve = [v for v in map(_finite, smoothed) if v is not None]
    raw = [v for v in map(_finite, losses) if v is not None]
    if not curve:
        return None
    lo, hi = min(curve + raw), max(curve)
    if min(curve) > 0:
        # Up to where the sweep calls it diverged (4x the minimum) or where it started.
        hi = min(hi, max(curve[0], 4 * min(curve)))
    pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
    return lo - pad, hi + pad


def from_lr_find(result: LRFindResult) -> Report:
    """The Report of an LR range test: the suggestion first, then the loss against the rate."""
    reason = result.reason[:1].upper() + result.reason[1:]
    if result.suggestion is not None:
        verdict = Verdict(
            "suggestion", f"Suggested learning rate: {result.suggestion:.3g}.", (reason,)
        )
    else:
        verdict = Verdict("no_suggestion", "No learning rate made the loss fall.", (reason,))
    marks = (Mark("x", result.suggestion, "suggested"),) if result.suggestion is not None else ()
    chart = None
    if result.lrs:
        chart = Chart(
            id="lr-range",
            title="Loss against learning rate",
            series=(
                Series(
                    "loss (each batch)",
                    tuple(result.lrs),
                    tuple(_finite(v) for v in result.losses),
                    "markers",
                ),
                Series(
                    "loss (smoothed)",
                    tuple(result.lrs),
                    tuple(_finite(v) for v in result.smoothed),
                    "line",
                ),
            ),
            x_title="learning rate",
            y_title="loss",
            x_unit="lr",
            x_log=True,
            marks=marks,
            y_range=_loss_range(result.losses, result.smoothed),
            note="Batches whose loss lies beyond the smoothed curve's range are cut off: once "
            "training diverges their losses would flatten the rest of the curve.",
        )
    facts = _facts(
        Fact("optimizer", result.optimizer),
        Fact("steps", len(result.lrs), "int"),
        Fact("first rate", result.lrs[0] if result.lrs else None, "lr"),
        Fact("last rate", result.lrs[-1] if result.lrs else None, "lr"),
        Fact("suggested rate", result.suggestion, "lr"),
        Fact("stopped early (the loss diverged)", result.stopped_early, "bool"),
    )
    section = _section(
        "lr-range",
        "Learning-rate range test",
        [
            "A copy of the model trained one batch per rate, the rate growing exponentially; the "
            "suggestion is read where the loss falls fastest, capped at a tenth of the rate at its "
            "minimum."
        ],
        facts,
        charts=[chart],
    )
    return Report(
        kind="lr_find",
        title="LR range test",
        subtitle=f"{result.optimizer} · {len(result.lrs)} steps",
        verdict=verdict,
        sections=_kept([section]),
    )


# --------------------------------------------------------------------------- comparison

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
        sections=_kept(
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
            view, where = _finding_view(change.b), "added in B"
        elif change.status == "gone" and change.a is not None:
            view, where = _finding_view(change.a), "gone: only in A"
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
            tuple(_finite(t) for t in times),
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
    facts = _facts(
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
    return _section(
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
    phases = _table(
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
    device = _table(
        "device-changes",
        "The device's time, as shares of its span (averaged over ranks)",
        [Column("measure"), Column("A", "share"), Column("B", "share"), Column("B − A", "share")],
        [(_GPU_LABELS.get(d.name, d.name), d.a, d.b, d.delta) for d in shares],
        note="B − A is in percentage points.",
    )
    seconds = [d for d in c.gpu or [] if d.name.endswith("_s")]
    facts = _facts(
        *(
            Fact(f"{_GPU_LABELS.get(d.name, d.name)}, {label}", value, "s")
            for d in seconds
            for label, value in (("A", d.a), ("B", d.b), ("B − A", d.delta))
        )
    )
    return _section(
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
    return _table(
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
    return _section(
        "changes",
        "Operators and kernels that changed",
        [
            "Per-name totals divided by the steps they cover, so that runs of different lengths "
            "compare: added (only in B), gone (only in A) or changed."
        ],
        _facts(*_name_facts(c.operators), *_name_facts(c.kernels)),
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
    table = _table(
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
    return _section(
        "findings",
        "Findings added, gone and changed",
        [
            "Added: only B has it; gone: only A has it; worse or better: its severity rose or "
            "fell; same: unchanged."
        ],
        tables=[table],
    )


def _notes_section(notes: Sequence[str]) -> Section | None:
    table = _table(
        "notes", "What was not compared, and why", [Column("note")], [(n,) for n in notes]
    )
    return _section("notes", "Notes", tables=[table])


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
    table = _table(
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
    return _section("runs", "The two runs", tables=[table])


for _kind, _builder in (
    ("profile", from_profile),
    ("diagnosis", from_diagnosis),
    ("trace", from_trace),
    ("optimize", from_optimize),
    ("lr_find", from_lr_find),
    ("compare", from_comparison),
):
    register_builder(_kind, _builder)

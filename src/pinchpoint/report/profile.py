"""The Report of a Profile or a Diagnosis: steps, ranks, roofline, operators, memory, health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint._profile import Environment, Health, Machine, Profile
from pinchpoint.diagnosis import Diagnosis, roofline_summary
from pinchpoint.finding import Finding

if TYPE_CHECKING:
    from pinchpoint._profile import CommunicationStats
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
)
from pinchpoint.report.parts import (
    BLANK,
    BRIEF_RANKS,
    fill,
    finding_pieces,
    findings_verdict,
    finite_or_none,
    gapped,
    joined,
    kept_sections,
    line,
    make_facts,
    make_section,
    make_table,
    more_line,
    right_column,
    runs,
    spread_names,
    verdict_line,
)
from pinchpoint.report.trace import stragglers_section


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
        brief=_profile_brief(profile),
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
        brief=_diagnosis_brief(diagnosis),
    )


def _run_subtitle(profile: Profile) -> str:
    source = profile.settings.get("source")
    where = f" · from a trace ({profile.settings.get('file', '')})" if source == "trace" else ""
    return f"{profile.name} · {profile.mode} on {profile.device}{where}"


def _profile_sections(profile: Profile, roofline: Mapping[str, Any]) -> tuple[Section, ...]:
    return kept_sections(
        [
            _steps_section(profile),
            _data_parallel_section(profile),
            _profile_stragglers_section(profile),
            _roofline_section(roofline),
            _operators_section(profile),
            _modules_section(profile),
            _memory_section(profile),
            _health_section(profile),
            machine_section(profile.machine, profile.environment),
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
    table = make_table(
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
    return make_section(
        "steps", "Where a step's time goes", text, make_facts(*facts), [table], [chart]
    )


def _data_parallel_section(profile: Profile) -> Section | None:
    """A data-parallel run: the job's all-reduce, and a merged Profile's ranks side by side."""
    dist = profile.distributed
    if dist is None:
        return None
    stats = _communication(profile)
    facts = make_facts(
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
        table = make_table(
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
    return make_section("ranks", "Data-parallel ranks", text, facts, [table], charts)


def _profile_stragglers_section(profile: Profile) -> Section | None:
    """The straggler test over a merged Profile's ranks (busy time: the step less its wait)."""
    if len(profile.ranks) < 2:
        return None
    from pinchpoint.analyzers.ranks import straggler_test

    report = straggler_test(profile)
    return stragglers_section(report.to_dict() if report is not None else None)


def _roof_point(point: Mapping[str, Any]) -> tuple[float, float] | None:
    """A roofline point's (intensity, achieved rate) when both can sit on log axes."""
    x = finite_or_none(point.get("intensity_flops_per_byte"))
    y = finite_or_none(point.get("achieved_flops_per_s"))
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
    peak = finite_or_none(roofline.get("peak_flops_per_s"))
    bandwidth = finite_or_none(roofline.get("bandwidth_bytes_per_s"))
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
                if (rate := finite_or_none(p.get("bandwidth_bytes_per_s"))) is not None
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
    facts = make_facts(
        Fact("fp32 peak", peak, "flops_per_s"),
        Fact("memory bandwidth", bandwidth, "bytes_per_s"),
        Fact("ridge point", ridge, "flops_per_byte"),
        Fact(
            "model FLOPs utilisation",
            finite_or_none(roofline.get("model_flops_utilization")),
            "share",
        ),
        Fact(
            "operator time above the ridge",
            finite_or_none(roofline.get("compute_bound_time_share")),
            "share",
        ),
        Fact(
            "operator time below the ridge",
            finite_or_none(roofline.get("memory_bound_time_share")),
            "share",
        ),
        Fact(
            "achieved fraction of the roof",
            finite_or_none(roofline.get("achieved_fraction")),
            "share",
        ),
    )
    return make_section("roofline", "Roofline", facts=facts, charts=[chart])


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
    table = make_table(
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
    return make_section("operators", "Top operators", text, tables=[table])


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
    table = make_table(
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
    return make_section("modules", "Modules", tables=[table])


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
    facts = make_facts(
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
    return make_section("memory", "Memory", facts=facts, charts=[chart])


def _layer_series(
    names: Sequence[str], steps: Sequence[int], matrix: Sequence[Sequence[float | None]]
) -> tuple[Series, ...]:
    """One series per layer (column) over the recorded steps (rows), spread over depth."""
    if not matrix or not steps:
        return ()
    out = []
    for j in spread_names(names):
        ys = tuple(finite_or_none(row[j]) if j < len(row) else None for row in matrix)
        if any(y is not None for y in ys):
            out.append(Series(names[j], tuple(steps), ys, style="lines+markers"))
    return tuple(out)


def _layers_note(names: Sequence[str]) -> str:
    shown = len(spread_names(names))
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
                tuple(finite_or_none(v) for _, v in points),
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
    return make_section(
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


def machine_section(machine: Machine, environment: Environment | None) -> Section | None:
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
    table = make_table(
        "packages",
        "Packages",
        [Column("package"), Column("version")],
        packages,
        limit=len(packages) or 1,
    )
    return make_section(
        "machine", "Machine and environment", facts=make_facts(*facts), tables=[table]
    )


# --------------------------------------------------------------------------- the brief

#: Operators a brief lists; the report's table has more.
_BRIEF_OPERATORS = 8
#: Phases a brief leaves out when no step spent time in them.
_OPTIONAL_PHASES = ("transfer", "backward", "communication", "optimizer", "log")


def _communication(profile: Profile) -> CommunicationStats | None:
    """The job's all-reduce for a merged Profile (the rank that waited least), else this run's."""
    from pinchpoint.analyzers.device import job_communication

    return job_communication(profile) if profile.ranks else profile.communication_stats()


def _profile_brief(profile: Profile) -> Brief:
    """One screen of a Profile: the step breakdown, top operators, compute, memory, training."""
    title = line(Span(profile.name, tone="strong"), f" · {profile.mode} on {profile.device}")
    pieces = [
        _headline(profile),
        *gapped(
            _communication_lines(profile),
            _ranks_pieces(profile),
            _phase_grid(profile),
            _operator_grid(profile),
            _compute_lines(profile),
            [_memory_line(profile)],
            _training_lines(profile),
        ),
    ]
    return Brief(tuple(pieces), title)


def _diagnosis_brief(diagnosis: Diagnosis) -> Brief:
    """One screen of a diagnosis: the verdict first, then every finding and the roofline."""
    profile = diagnosis.profile
    pieces: list[Piece] = [verdict_line(diagnosis.findings), _headline(profile)]
    pieces += gapped(_communication_lines(profile), _ranks_pieces(profile))
    pieces += finding_pieces(diagnosis.findings)
    roof = diagnosis.roofline
    if roof:
        peak, bandwidth = roof["peak_flops_per_s"], roof["bandwidth_bytes_per_s"]
        spans = fill(
            "Roofline: fp32 peak {}, bandwidth {}, ridge {} FLOP/B",
            *(Span(peak, "flops_per_s"), Span(bandwidth, "bytes_per_s")),
            Span(roof["ridge_flops_per_byte"], "g3"),
        )
        if roof.get("model_flops_utilization") is not None:
            mfu = Span(roof["model_flops_utilization"], "share")
            spans += fill("; model FLOPs utilisation {}", mfu)
        pieces += [BLANK, Line(spans, "strong")]
    title = line(Span("diagnosis", tone="strong"), f" · {diagnosis.target} · {profile.mode}")
    return Brief(tuple(pieces), title)


def _headline(profile: Profile) -> Line:
    spans = runs(Span(f"{len(profile.measured_steps)} measured steps", tone="strong"))
    if profile.step_time_s is not None:
        walls = [s.wall_s for s in profile.measured_steps]
        spans += fill(" · {} per step", Span(profile.step_time_s, "s"))
        spans += fill(" (range {})", Span((min(walls), max(walls)), "s_range"), tone="muted")
    if profile.throughput is not None:
        over = f" over {len(profile.ranks)} ranks" if profile.ranks else ""
        spans += fill(f" · {{}} samples/s{over}", Span(profile.throughput, "whole"))
    if not profile.phase_stats():
        spans += runs(
            "\nno measured steps: run more steps than warm-up and sampled ones", tone="warn"
        )
    return Line(spans)


def _phase_grid(profile: Profile) -> list[Piece]:
    stats = profile.phase_stats()
    if not stats:
        return []
    columns = (
        Column("phase", wrap=False),
        right_column("median", "s"),
        right_column("p10–p90", "s_range", tone="muted"),
        right_column("share", "share"),
        Column("", "bar", tone="accent", wrap=False),
    )
    rows = tuple(
        (name, st.median_s, (st.p10_s, st.p90_s), st.share, st.share)
        for name, st in stats.items()
        if not (st.mean_s == 0 and name in _OPTIONAL_PHASES)
    )
    title = "Where a step's time goes" + (" (rank 0)" if profile.ranks else "")
    return [Grid(columns, rows, title)]


def _operator_grid(profile: Profile) -> list[Piece]:
    ranked = profile.operator_shares()
    if not ranked:
        return []
    columns = (
        Column("operator", max_width=36, wrap=False, grow=3),
        right_column("calls"),
        right_column("self", "s"),
        right_column("share", "share"),
        right_column("FLOPs"),
        Column("input shapes", tone="muted", wrap=False, grow=2),
    )
    rows = tuple(
        (op.name, str(op.count), op.self_s, share, _flops(op.flops), _shapes(op.input_shapes))
        for op, share in ranked[:_BRIEF_OPERATORS]
    )
    return [Grid(columns, rows, "Top operators in the profiled step (self time)", expand=True)]


def _flops(flops: float | None) -> Span:
    """An operator's FLOPs; ``?`` where no formula counts them, nothing where it has none."""
    return Span("?") if flops is None else Span(flops, "count") if flops else Span("")


def _compute_lines(profile: Profile) -> list[Piece]:
    flops = profile.flops
    if flops is None:
        return []
    spans = fill("Compute: {} per step", Span(flops.total, "flops"))
    parts = [(f"{k} ", Span(v, "count")) for k, v in flops.by_phase.items() if v]
    if parts:
        spans += runs(" (", *joined(parts), ")", tone="muted")
    if profile.achieved_flops_per_s is not None:
        spans += fill(" · {} achieved", Span(profile.achieved_flops_per_s, "flops_per_s"))
    if flops.uncounted:
        names = ", ".join(f"{name} ×{n}" for name, n in list(flops.uncounted.items())[:4])
        more = f" and {len(flops.uncounted) - 4} more" if len(flops.uncounted) > 4 else ""
        spans += runs(f"\n  not counted (no FLOP formula): {names}{more}", tone="warn")
    return [Line(spans, "strong")]


def _memory_line(profile: Profile) -> Line:
    m = profile.memory
    parts = [
        ("parameters", m.parameters_bytes),
        ("gradients", m.gradients_bytes),
        ("optimizer state", m.optimizer_state_bytes),
        ("activation peak", m.activations_peak_bytes),
        ("device peak", m.device_peak_bytes)
        if m.source == "cuda"
        else ("process", m.process_rss_bytes),
    ]
    kept = [(f"{label} ", Span(v, "bytes")) for label, v in parts if v is not None]
    return Line(runs("Memory: ", *joined(kept, " · ")), "strong")


def _training_lines(profile: Profile) -> list[Piece]:
    loss = [v for _, v in profile.series("loss")]
    norms = sorted(v for _, v in profile.series("grad_norm"))
    parts: list[tuple[str | Span, ...]] = []
    if loss:
        ends = (Span(loss[0], "g4"), Span(loss[-1], "g4"))
        parts.append(fill(f"loss {{}} → {{}} over {len(loss)} steps", *ends))
    if norms:
        parts.append(("gradient norm median ", Span(norms[len(norms) // 2], "g3")))
    return [Line(runs("Training: ", *joined(parts, " · ")), "strong")] if parts else []


def _communication_lines(profile: Profile) -> list[Piece]:
    """The gradient all-reduce of a data-parallel run (the job's, for a merged Profile)."""
    dist = profile.distributed
    if dist is None:
        return []
    nodes = dist.nodes or 1
    where = f"{dist.world_size} ranks" + (f" on {nodes} nodes" if nodes > 1 else "")
    spans = runs(f"Data-parallel: {where}, {dist.backend or 'unknown backend'}")
    if not profile.ranks:
        spans += runs(f" · this is rank {dist.rank}")
    if dist.ddp.get("comm_hook"):
        spans += runs(f" · {dist.ddp['comm_hook']} compression")
    if dist.buckets_bytes:
        count = len(dist.buckets_bytes)
        buckets = Span(sum(dist.buckets_bytes), "bytes")
        spans += fill(f" · {count} gradient bucket{'s' * (count != 1)} ({{}})", buckets)
    stats = _communication(profile)
    if stats is not None:
        spans += fill(
            "\n  all-reduce {} per step, exposed {} ({} of the step), {} overlapped with backward",
            *(Span(stats.allreduce_median_s, "s"), Span(stats.exposed_median_s, "s")),
            *(Span(stats.exposed_share, "share"), Span(stats.overlap, "pct")),
        )
    elif not dist.comm_measured:
        spans += runs("\n  all-reduce not measured (the model has a communication hook of its own)")
    return [Line(spans, "strong")]


def _ranks_pieces(profile: Profile) -> list[Piece]:
    """A merged Profile's ranks side by side: step, own work, all-reduce and its exposed wait."""
    if not profile.ranks:
        return []
    hosts = {r.distributed.hostname for r in profile.ranks if r.distributed is not None}
    columns = [right_column("rank")]
    columns += [Column("host", wrap=False)] if len(hosts) > 1 else []
    columns += [right_column("step", "s"), right_column("busy", "s")]
    columns += [right_column("all-reduce", "s")]
    columns += [right_column(name, "share") for name in ("exposed", "overlap")]
    rows = []
    for r in profile.ranks[:BRIEF_RANKS]:
        dist, stats = r.distributed, r.communication_stats()
        row: list[Any] = [str(dist.rank if dist is not None else "?")]
        row += [dist.hostname if dist is not None else ""] if len(hosts) > 1 else []
        row += [r.step_time_s, r.busy_time_s]
        row += (
            [stats.allreduce_median_s, stats.exposed_share, stats.overlap] if stats else [None] * 3
        )
        rows.append(tuple(row))
    return [
        Grid(tuple(columns), tuple(rows), "Ranks"),
        *more_line(BRIEF_RANKS, len(profile.ranks), "ranks in the JSON"),
        line(
            "busy: the step less its wait in the all-reduce · exposed: that wait's share of "
            "the step (a rank that finished early waits for the others)",
            tone="muted",
        ),
    ]

"""The Report of a Profile or a Diagnosis: steps, ranks, roofline, operators, memory, health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint._profile import Environment, Machine, Profile
from pinchpoint.diagnosis import Diagnosis

if TYPE_CHECKING:
    pass
from pinchpoint.report.health import health_section
from pinchpoint.report.model import (
    Chart,
    Column,
    Fact,
    Mark,
    Report,
    Section,
    Series,
)
from pinchpoint.report.parts import (
    findings_verdict,
    finite_or_none,
    kept_sections,
    make_facts,
    make_section,
    make_table,
    shapes_text,
)
from pinchpoint.report.profile_brief import diagnosis_brief, profile_brief
from pinchpoint.report.trace import stragglers_section


def from_profile(profile: Profile) -> Report:
    """The Report of a recorded run, from its analysis as it is (:meth:`Diagnosis.of`: nothing
    re-measured; without calibrated peaks the roofline rules have nothing to go on and say
    nothing, which the verdict notes)."""
    note = ""
    if not profile.machine.peaks:
        note = (
            "The analyzers ran on this Profile alone, without the machine's calibrated "
            "peaks, so the roofline rules (compute- and memory-bound) did not apply: "
            "`pinchpoint diagnose` on the saved profile adds them."
        )
    diagnosis = Diagnosis.of(profile)
    return Report(
        kind="profile",
        title=profile.name,
        subtitle=_run_subtitle(profile),
        verdict=findings_verdict(diagnosis.findings, note),
        sections=_profile_sections(diagnosis),
        created=profile.created,
        brief=profile_brief(profile),
    )


def from_diagnosis(diagnosis: Diagnosis) -> Report:
    """The Report of a diagnosis: its findings first, then the Profile they rest on."""
    profile = diagnosis.profile
    return Report(
        kind="diagnosis",
        title=diagnosis.target,
        subtitle=_run_subtitle(profile),
        verdict=findings_verdict(diagnosis.findings),
        sections=_profile_sections(diagnosis),
        created=profile.created,
        brief=diagnosis_brief(diagnosis),
    )


def _run_subtitle(profile: Profile) -> str:
    source = profile.settings.get("source")
    where = f" · from a trace ({profile.settings.get('file', '')})" if source == "trace" else ""
    return f"{profile.name} · {profile.mode} on {profile.device}{where}"


def _profile_sections(diagnosis: Diagnosis) -> tuple[Section, ...]:
    profile, roofline = diagnosis.profile, diagnosis.roofline
    return kept_sections(
        [
            _steps_section(profile),
            _data_parallel_section(profile),
            _profile_stragglers_section(diagnosis),
            _roofline_section(roofline),
            _operators_section(profile),
            _modules_section(profile),
            _memory_section(profile),
            health_section(profile),
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
    stats = profile.job_communication_stats()
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


def _profile_stragglers_section(diagnosis: Diagnosis) -> Section | None:
    """The straggler test over a merged Profile's ranks (busy time: the step less its wait)."""
    if len(diagnosis.profile.ranks) < 2:
        return None
    report = diagnosis.straggler_report()
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
            shapes_text(op.input_shapes),
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

"""The one-screen brief of a Profile and of a Diagnosis (what the terminal draws): the verdict,
the step breakdown, the top operators, compute, memory, training, and a job's ranks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinchpoint._profile import Profile
from pinchpoint.diagnosis import Diagnosis

if TYPE_CHECKING:
    pass
from pinchpoint.report.model import (
    Brief,
    Column,
    Grid,
    Line,
    Piece,
    Span,
)
from pinchpoint.report.parts import (
    BLANK,
    BRIEF_RANKS,
    fill,
    finding_pieces,
    gapped,
    joined,
    line,
    more_line,
    right_column,
    runs,
    shapes_text,
    verdict_line,
)

__all__ = ["diagnosis_brief", "profile_brief"]

_BRIEF_OPERATORS = 8
#: Phases a brief leaves out when no step spent time in them.
_OPTIONAL_PHASES = ("transfer", "backward", "communication", "optimizer", "log")


def profile_brief(profile: Profile) -> Brief:
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


def diagnosis_brief(diagnosis: Diagnosis) -> Brief:
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
        (op.name, str(op.count), op.self_s, share, _flops(op.flops), shapes_text(op.input_shapes))
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
    stats = profile.job_communication_stats()
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

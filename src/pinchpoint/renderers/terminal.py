"""The terminal summary of a Profile: one screen, built from rich renderables.

Every number shown comes from the Profile (its fields or its derived statistics); this module
only chooses what to show and how to format it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pinchpoint._profile import Profile
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.finding import Finding

if TYPE_CHECKING:
    from pinchpoint.optimizer import OptimizeResult
    from pinchpoint.traces import TraceAnalysis

__all__ = [
    "format_bytes",
    "format_count",
    "format_evidence",
    "format_seconds",
    "render_diagnosis",
    "render_profile",
    "render_trace",
]

_BAR_WIDTH = 20
_TOP_OPERATORS = 8
#: Remedies shown with their reasons for the principal finding; the rest by name.
_FULL_REMEDIES = 3
#: Ranks listed in a trace's table; the JSON holds every one.
_TOP_RANKS = 8
#: Trials of an optimize run whose verdict is spelled out under the table, besides the chosen.
_TOP_VERDICTS = 6


def _title(markup: str) -> Text:
    """A panel title from markup, without emoji codes: a name such as ``run:100:`` stays as
    written (and rich's 3,600-entry emoji table is never loaded)."""
    return Text.from_markup(markup, emoji=False)


def format_seconds(seconds: float | None) -> str:
    """A duration with a unit that keeps three significant digits (``812 µs``, ``3.21 ms``)."""
    if seconds is None:
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns" if seconds else "0"


def format_bytes(n: int | None) -> str:
    """A byte count in binary units (``75.0 KiB``)."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_count(n: float | None, unit: str = "") -> str:
    """A large count with an SI prefix (``2.61 M``), followed by ``unit``."""
    if n is None:
        return "–"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".rstrip()


def _bar(share: float) -> str:
    full = max(0.0, min(1.0, share)) * _BAR_WIDTH
    return "█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")


def _headline(profile: Profile) -> Text:
    measured = len(profile.measured_steps)
    text = Text()
    text.append(f"{measured} measured steps", style="bold")
    stats = profile.phase_stats()
    if profile.step_time_s is not None:
        walls = sorted(s.wall_s for s in profile.measured_steps)
        text.append(f" · {format_seconds(profile.step_time_s)} per step")
        text.append(f" (range {format_seconds(walls[0])}–{format_seconds(walls[-1])})", style="dim")
    if profile.throughput is not None:
        over = f" over {len(profile.ranks)} ranks" if profile.ranks else ""
        text.append(f" · {profile.throughput:,.0f} samples/s{over}")
    if not stats:
        text.append(
            "\nno measured steps: run more steps than warm-up and sampled ones", style="yellow"
        )
    return text


def _phase_table(profile: Profile) -> Table | None:
    stats = profile.phase_stats()
    if not stats:
        return None
    title = "Where a step's time goes" + (" (rank 0)" if profile.ranks else "")
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("phase", no_wrap=True)
    table.add_column("median", justify="right", no_wrap=True)
    table.add_column("p10–p90", justify="right", style="dim", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("", style="cyan", no_wrap=True)
    for name, st in stats.items():
        if st.mean_s == 0 and name in ("transfer", "backward", "communication", "optimizer", "log"):
            continue
        table.add_row(
            name,
            format_seconds(st.median_s),
            f"{format_seconds(st.p10_s)}–{format_seconds(st.p90_s)}",
            f"{st.share:.1%}",
            _bar(st.share),
        )
    return table


def _operator_table(profile: Profile) -> Table | None:
    ranked = profile.operator_shares()
    if not ranked:
        return None
    table = Table(
        title="Top operators in the profiled step (self time)",
        title_justify="left",
        box=None,
        pad_edge=False,
        expand=True,
    )
    table.add_column("operator", overflow="ellipsis", max_width=36, no_wrap=True, ratio=3)
    table.add_column("calls", justify="right", no_wrap=True)
    table.add_column("self", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("FLOPs", justify="right", no_wrap=True)
    table.add_column("input shapes", style="dim", overflow="ellipsis", no_wrap=True, ratio=2)
    for op, share in ranked[:_TOP_OPERATORS]:
        shapes = ", ".join("×".join(map(str, s)) for s in op.input_shapes if s)
        flops = "?" if op.flops is None else (format_count(op.flops) if op.flops else "")
        table.add_row(
            Text(op.name),
            str(op.count),
            format_seconds(op.self_s),
            f"{share:.1%}",
            flops,
            Text(shapes),
        )
    return table


def _compute_line(profile: Profile) -> Text | None:
    flops = profile.flops
    if flops is None:
        return None
    text = Text("Compute: ", style="bold")
    text.append(f"{format_count(flops.total, 'FLOP')} per step")
    parts = [f"{k} {format_count(v)}" for k, v in flops.by_phase.items() if v]
    if parts:
        text.append(f" ({', '.join(parts)})", style="dim")
    if profile.achieved_flops_per_s is not None:
        text.append(f" · {format_count(profile.achieved_flops_per_s, 'FLOP/s')} achieved")
    if flops.uncounted:
        names = ", ".join(f"{name} ×{n}" for name, n in list(flops.uncounted.items())[:4])
        more = f" and {len(flops.uncounted) - 4} more" if len(flops.uncounted) > 4 else ""
        text.append(f"\n  not counted (no FLOP formula): {names}{more}", style="yellow")
    return text


def _memory_line(profile: Profile) -> Text:
    m = profile.memory
    text = Text("Memory: ", style="bold")
    parts = [
        ("parameters", m.parameters_bytes),
        ("gradients", m.gradients_bytes),
        ("optimizer state", m.optimizer_state_bytes),
        ("activation peak", m.activations_peak_bytes),
    ]
    if m.source == "cuda":
        parts.append(("device peak", m.device_peak_bytes))
    else:
        parts.append(("process", m.process_rss_bytes))
    text.append(" · ".join(f"{label} {format_bytes(v)}" for label, v in parts if v is not None))
    return text


def _training_line(profile: Profile) -> Text | None:
    loss = [v for _, v in profile.series("loss")]
    norms = sorted(v for _, v in profile.series("grad_norm"))
    if not loss and not norms:
        return None
    text = Text("Training: ", style="bold")
    parts = []
    if loss:
        parts.append(f"loss {loss[0]:.4g} → {loss[-1]:.4g} over {len(loss)} steps")
    if norms:
        parts.append(f"gradient norm median {norms[len(norms) // 2]:.3g}")
    text.append(" · ".join(parts))
    return text


def _communication_line(profile: Profile) -> Text | None:
    """The gradient all-reduce of a data-parallel run (the job's, for a merged Profile)."""
    dist = profile.distributed
    if dist is None:
        return None
    text = Text("Data-parallel: ", style="bold")
    nodes = dist.nodes or 1
    where = f"{dist.world_size} ranks" + (f" on {nodes} nodes" if nodes > 1 else "")
    text.append(f"{where}, {dist.backend or 'unknown backend'}")
    if not profile.ranks:
        text.append(f" · this is rank {dist.rank}")
    if dist.ddp.get("comm_hook"):
        text.append(f" · {dist.ddp['comm_hook']} compression")
    if dist.buckets_bytes:
        count = len(dist.buckets_bytes)
        text.append(
            f" · {count} gradient bucket{'s' * (count != 1)} "
            f"({format_bytes(sum(dist.buckets_bytes))})"
        )
    if profile.ranks:
        from pinchpoint.analyzers.device import job_communication

        stats = job_communication(profile)
    else:
        stats = profile.communication_stats()
    if stats is not None:
        overlap = "–" if stats.overlap is None else f"{stats.overlap:.0%}"
        text.append(
            f"\n  all-reduce {format_seconds(stats.allreduce_median_s)} per step, exposed "
            f"{format_seconds(stats.exposed_median_s)} ({stats.exposed_share:.1%} of the step), "
            f"{overlap} overlapped with backward"
        )
    elif not dist.comm_measured:
        text.append("\n  all-reduce not measured (the model has a communication hook of its own)")
    return text


def _profile_ranks_table(profile: Profile) -> RenderableType | None:
    """A merged Profile's ranks side by side: step, own work, all-reduce and its exposed wait."""
    if not profile.ranks:
        return None
    table = Table(title="Ranks", title_justify="left", box=None, pad_edge=False)
    hosts = {r.distributed.hostname for r in profile.ranks if r.distributed is not None}
    columns = ["rank"] + (["host"] if len(hosts) > 1 else [])
    columns += ["step", "busy", "all-reduce", "exposed", "overlap"]
    for column in columns:
        table.add_column(column, justify="left" if column == "host" else "right", no_wrap=True)
    for r in profile.ranks[:_TOP_RANKS]:
        dist = r.distributed
        stats = r.communication_stats()
        row = [str(dist.rank if dist is not None else "?")]
        if len(hosts) > 1:
            row.append(escape(dist.hostname if dist is not None else ""))
        row += [
            format_seconds(r.step_time_s),
            format_seconds(r.busy_time_s),
            format_seconds(stats.allreduce_median_s) if stats is not None else "–",
            _pct(stats.exposed_share) if stats is not None else "–",
            _pct(stats.overlap) if stats is not None else "–",
        ]
        table.add_row(*row)
    parts: list[RenderableType] = [table]
    if len(profile.ranks) > _TOP_RANKS:
        more = len(profile.ranks) - _TOP_RANKS
        parts.append(Text(f"… and {more} more ranks in the JSON", style="dim"))
    parts.append(
        Text(
            "busy: the step less its wait in the all-reduce · exposed: that wait's share of "
            "the step (a rank that finished early waits for the others)",
            style="dim",
        )
    )
    return Group(*parts)


def render_profile(profile: Profile) -> RenderableType:
    """One screen summarising a Profile: the step breakdown, top operators, compute, memory."""
    parts: list[RenderableType] = [_headline(profile)]
    for part in (
        _communication_line(profile),
        _profile_ranks_table(profile),
        _phase_table(profile),
        _operator_table(profile),
        _compute_line(profile),
        _memory_line(profile),
        _training_line(profile),
    ):
        if part is not None:
            parts.append(Text(""))
            parts.append(part)
    title = f"[bold]{escape(profile.name)}[/] · {escape(profile.mode)} on {escape(profile.device)}"
    return Panel(Group(*parts), title=_title(title), title_align="left")


def format_evidence(key: str, value: Any) -> str:
    """An evidence value formatted by the unit its field name carries (``_s``, ``_bytes``…)."""
    if value is None:
        return "–"
    if isinstance(value, Mapping):
        # A breakdown (``idle_causes_s``): each part in the unit its parent's name carries.
        return ", ".join(f"{k} {format_evidence(key, v)}" for k, v in value.items())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    if "_share" in key or key.endswith(("_fraction", "_utilization")):
        return f"{value:.1%}"
    if key.endswith("_flops_per_s"):
        return format_count(value, "FLOP/s")
    if key.endswith("_bytes_per_s"):
        return format_count(value, "B/s")
    if key.endswith("_flops_per_byte"):
        return f"{value:.3g} FLOP/B"
    if key.endswith("_bytes"):
        return format_bytes(int(value))
    if key.endswith("_s"):
        return format_seconds(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return f"{value:,}"


_SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def _evidence_line(finding: Finding) -> Text:
    """The evidence as one wrapped line of ``name value`` pairs (the JSON keeps the raw data)."""
    text = Text()
    for i, (key, value) in enumerate(finding.evidence.items()):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{key} ", style="dim")
        text.append(format_evidence(key, value))
    return text


def _finding_block(index: int, finding: Finding, *, full: bool = True) -> RenderableType:
    """One finding: its head and summary; with ``full``, its evidence and why each remedy helps,
    else only the remedies' names (the principal gets the room, the rest fit the screen)."""
    head = Text(f"{index}. ", style="bold")
    head.append(finding.kind, style="bold")
    head.append(f"  {finding.severity}", style=_SEVERITY_STYLE[finding.severity])
    if finding.kind == "memory_capacity":
        head.append(f"  {finding.share:.0%} of the memory budget", style="dim")
    else:
        head.append(
            f"  {finding.share:.0%} of the step, saving ~{finding.saving_share:.0%} if removed",
            style="dim",
        )
    body: list[RenderableType] = [Text(finding.summary)]
    if full:
        if finding.rank_reason:
            # Why it comes first: a diagnosis saved before rank reasons existed has none.
            body.append(Text(finding.rank_reason, style="dim italic"))
        if finding.evidence:
            body.append(_evidence_line(finding))
        remedies = Table(box=None, pad_edge=False, show_header=False)
        remedies.add_column(style="cyan", no_wrap=True)
        remedies.add_column()
        for remedy in finding.remedies[:_FULL_REMEDIES]:
            remedies.add_row(f"→ {remedy.name}", Text(remedy.why))
        body.append(remedies)
    if finding.remedies and (not full or len(finding.remedies) > _FULL_REMEDIES):
        names = [r.name for r in finding.remedies[_FULL_REMEDIES if full else 0 :]]
        body.append(Text(("also → " if full else "→ ") + ", ".join(names), style="cyan"))
    return Group(head, Padding(Group(*body), (0, 0, 0, 3)))


def _finding_blocks(findings: list[Finding]) -> list[RenderableType]:
    """Every finding, the first (the principal) in full, each after a blank line."""
    parts: list[RenderableType] = []
    for i, finding in enumerate(findings, start=1):
        parts.append(Text(""))
        parts.append(_finding_block(i, finding, full=i == 1))
    return parts


def _verdict(findings: list[Finding]) -> Text:
    """The principal bottleneck in one line, or that the workload is healthy (no high finding)."""
    principal = findings[0] if findings else None
    verdict = Text()
    if any(f.severity == "high" for f in findings) and principal is not None:
        verdict.append("Principal bottleneck: ", style="bold")
        verdict.append(principal.kind, style="bold red")
        verdict.append(f" — {principal.summary}")
    else:
        verdict.append("Healthy: ", style="bold green")
        verdict.append("no high-severity bottleneck was found.")
        if principal is not None:
            verdict.append(f" The largest remaining opportunity is {principal.kind}.")
    return verdict


def render_diagnosis(diagnosis: Diagnosis) -> RenderableType:
    """One screen: the verdict first, then every finding with its evidence and remedies."""
    verdict = _verdict(diagnosis.findings)
    parts: list[RenderableType] = [verdict, _headline(diagnosis.profile)]
    for part in (
        _communication_line(diagnosis.profile),
        _profile_ranks_table(diagnosis.profile),
    ):
        if part is not None:
            parts.extend([Text(""), part])
    parts.extend(_finding_blocks(diagnosis.findings))
    roof = diagnosis.roofline
    if roof:
        line = Text("Roofline: ", style="bold")
        line.append(
            f"fp32 peak {format_count(roof['peak_flops_per_s'], 'FLOP/s')}, bandwidth "
            f"{format_count(roof['bandwidth_bytes_per_s'], 'B/s')}, ridge "
            f"{roof['ridge_flops_per_byte']:.3g} FLOP/B"
        )
        if roof.get("model_flops_utilization") is not None:
            line.append(f"; model FLOPs utilisation {roof['model_flops_utilization']:.1%}")
        parts.extend([Text(""), line])
    title = f"[bold]diagnosis[/] · {escape(diagnosis.target)} · {escape(diagnosis.profile.mode)}"
    return Panel(Group(*parts), title=_title(title), title_align="left")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _device_label(profile: Profile) -> str:
    kind = profile.trace.device_kind if profile.trace is not None else profile.device
    return str((profile.machine.gpu or {}).get("name") or kind)


def _rank_table(analysis: TraceAnalysis) -> RenderableType:
    """The ranks side by side; the device named once above them when all ranks share it."""
    labels = {_device_label(s) for s in analysis.ranks}
    shared = len(labels) == 1
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["rank"] + ([] if shared else ["device"])
    columns += ["steps", "step", "idle", "compute", "non-compute", "overlap", "exposed comm"]
    for column in columns:
        table.add_column(column, justify="left" if column == "device" else "right", no_wrap=True)
    for profile in analysis.ranks[:_TOP_RANKS]:
        tl = profile.device_timeline
        row = [str(profile.rank)] + ([] if shared else [escape(_device_label(profile))])
        row += [str(len(profile.steps)), format_seconds(profile.step_time_s)]
        row += [
            _pct(getattr(tl, name) if tl is not None else None)
            for name in (
                "idle_share",
                "compute_share",
                "non_compute_share",
                "comm_comp_overlap",
                "exposed_communication_share",
            )
        ]
        table.add_row(*row)
    parts: list[RenderableType] = []
    if shared:
        parts.append(Text(f"device: {labels.pop()}", style="dim"))
    parts.append(table)
    if len(analysis.ranks) > _TOP_RANKS:
        more = len(analysis.ranks) - _TOP_RANKS
        parts.append(Text(f"… and {more} more ranks in the JSON", style="dim"))
    return Group(*parts)


def render_trace(analysis: TraceAnalysis) -> RenderableType:
    """One screen for a trace: the verdict, the ranks side by side, stragglers, findings."""
    parts: list[RenderableType] = [_verdict(analysis.findings), Text(""), _rank_table(analysis)]
    report = analysis.stragglers
    if report is not None:
        line = Text("Stragglers: ", style="bold")
        if report.stragglers:
            line.append(
                ", ".join(
                    f"rank {s.rank} (+{s.excess_share:.0%}, confidence {s.confidence:.1%})"
                    for s in report.stragglers
                )
            )
        else:
            line.append("none. ")
        line.append(f" {report.note}")
        parts.extend([Text(""), line])
    parts.extend(_finding_blocks(analysis.findings))
    issues = analysis.all_issues()
    if issues:
        parts.append(Text(""))
        parts.append(Text("Reduced confidence: the input had problems", style="bold yellow"))
        parts.extend(Text(f"  • {issue}") for issue in issues[:12])
        if len(issues) > 12:
            parts.append(Text(f"  … and {len(issues) - 12} more (see the JSON)"))
    ranks = len(analysis.ranks)
    title = f"[bold]trace[/] · {escape(analysis.source)} · {ranks} rank{'s' * (ranks != 1)}"
    return Panel(Group(*parts), title=_title(title), title_align="left")


def _quality(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.4g}"


def _spelled_verdicts(result: OptimizeResult) -> set[int]:
    """The trials whose verdict is written out: the chosen one, the Pareto frontier, the
    accepted ones, then the rest in order, :data:`_TOP_VERDICTS` in all (one screen)."""
    chosen = result.best if result.best is not None else result.best_effort
    first = [chosen] if chosen is not None else []
    first += list(result.pareto)
    first += [i for i, r in enumerate(result.records) if r.accepted]
    order = first + list(range(len(result.records)))
    picked: list[int] = []
    for i in order:
        if i not in picked and len(picked) < _TOP_VERDICTS:
            picked.append(i)
    return set(picked)


def render_optimize(result: OptimizeResult) -> RenderableType:
    """One screen for an optimize run: the answer first, then every trial with its verdict."""
    chosen = result.chosen
    if result.best is not None and chosen is not None and chosen.trial is not None:
        t = chosen.trial
        headline = Text.assemble(
            ("Best: ", "bold green"),
            chosen.candidate.short,
            f" — {t.speedup:.2f}× faster ({t.speedup_ci[0]:.2f}–{t.speedup_ci[1]:.2f}), "
            f"{t.quality_metric} {_quality(t.quality)} (drop {_quality(t.quality_drop)}, "
            f"budget {t.budget}), {format_bytes(t.size_bytes)}",
        )
    elif chosen is not None:
        headline = Text.assemble(
            ("No candidate met the budget. ", "bold yellow"),
            f"Best effort kept: {chosen.candidate.short} ({chosen.why})",
        )
    else:
        headline = Text("Nothing could be measured.", style="bold yellow")
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("remedies", ratio=1, min_width=20)
    table.add_column("speed-up (95% CI)", justify="right", no_wrap=True)
    table.add_column("quality (drop)", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    verdicts: list[Text] = []
    spelled = _spelled_verdicts(result)
    for i, record in enumerate(result.records):
        measured = record.trial
        mark = "★" if i == result.best else ("◆" if i in result.pareto else "")
        if i in spelled:
            verdicts.append(
                Text(
                    f"{i:>2}. " + ("accepted: " if record.accepted else "") + record.why,
                    style="green" if record.accepted else "",
                )
            )
        if measured is None:
            table.add_row(str(i), escape(record.candidate.short), "—", "—", "—", "")
            continue
        table.add_row(
            str(i),
            escape(record.candidate.short),
            f"{measured.speedup:.2f}× ({measured.speedup_ci[0]:.2f}–{measured.speedup_ci[1]:.2f})",
            f"{_quality(measured.quality)} ({_quality(measured.quality_drop)})",
            format_bytes(measured.size_bytes),
            Text(mark, style="green" if record.accepted else ""),
        )
    if len(result.records) > len(spelled):
        more = len(result.records) - len(spelled)
        verdicts.append(Text(f"    the verdicts of {more} more trials: optimize.json", style="dim"))
    base = result.baseline
    facts = Text(
        f"baseline: {base.get('quality_metric', 'quality')} {_quality(base.get('quality'))}, "
        f"{format_seconds(base.get('time_s'))} per {base.get('time_unit', 'batch')}, "
        f"{format_bytes(base.get('size_bytes'))} · objective {result.objective} · budget "
        f"{result.budget} · {len(result.records)} trials in {result.seconds:.0f} s"
        + (" (time budget reached)" if result.stopped_early else "")
        + " · ★ best, ◆ Pareto frontier",
        style="dim",
    )
    title = f"[bold]optimize[/] · {escape(result.target)}"
    return Panel(
        Group(headline, Text(""), table, Text(""), *verdicts, Text(""), facts),
        title=_title(title),
        title_align="left",
    )

"""The terminal summary of a Comparison: the verdict first, then what changed, in one screen.

Every number comes from the :class:`~pinchpoint.comparison.Comparison`; this module chooses what
to show (the largest changes first, a few of each) and formats it for 80 columns.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pinchpoint.comparison import Comparison, Delta, NameChange, Side, TotalsChange
from pinchpoint.renderers.terminal import format_seconds

__all__ = ["render_comparison"]

#: Rows of operators and of kernels shown; the JSON holds every one.
_TOP_NAMES = 6
_VERDICT_STYLE = {"regression": "bold red", "improved": "bold green", "ok": "bold green"}
_STATUS_MARK = {"added": "+", "gone": "−", "changed": "~"}
_FINDING_MARK = {"added": "+", "gone": "−", "worse": "▲", "better": "▼", "same": "="}
_GPU_LABELS = {
    "idle_share": "device idle",
    "compute_share": "device compute",
    "non_compute_share": "device non-compute",
    "comm_comp_overlap": "comm/compute overlap",
    "exposed_communication_share": "exposed communication",
    "busy_per_step_s": "device busy per step",
}


def _signed_seconds(seconds: float) -> str:
    """A signed duration (``+1.2 ms``, ``−33.5 µs``), or ``0``."""
    if seconds == 0:
        return "0"
    return ("+" if seconds > 0 else "−") + format_seconds(abs(seconds))


def _signed_share(change: float) -> str:
    """A relative change as a signed percentage (``+4.3%``), or ``0``."""
    return "0" if change == 0 else f"{change:+.1%}".replace("-", "−")


def _points(delta: float) -> str:
    """A change of a share in percentage points (``+2.1 pt``), or ``0``."""
    return "0" if delta == 0 else f"{delta * 100:+.1f} pt".replace("-", "−")


def _side_line(label: str, side: Side, steps: int) -> Text:
    text = Text(f"{label}  ", style="bold")
    text.append(f"{side.kind} {side.source}")
    facts = []
    if side.ranks is not None and side.kind == "trace":
        facts.append(f"{side.ranks} rank{'s' * (side.ranks != 1)}")
    if side.mode:
        facts.append(side.mode)
    if side.device:
        facts.append(side.device)
    facts.append(f"{steps} step{'s' * (steps != 1)}")
    text.append(" · " + " · ".join(facts), style="dim")
    return text


def _relative(a: float, b: float) -> str:
    if a == b:
        return "0"
    return _signed_share(b / a - 1) if a > 0 else "new"


def _gpu_row(delta: Delta) -> tuple[str, str, str, str]:
    label = _GPU_LABELS.get(delta.name, delta.name)
    if delta.name.endswith("_s"):
        a, b = format_seconds(delta.a), format_seconds(delta.b)
        if delta.a is None or delta.b is None:
            change = "–"
        elif delta.a == delta.b:
            change = "0"
        else:
            change = f"{_signed_seconds(delta.b - delta.a)} ({_relative(delta.a, delta.b)})"
        return label, a, b, change
    a = "–" if delta.a is None else f"{delta.a:.1%}"
    b = "–" if delta.b is None else f"{delta.b:.1%}"
    return label, a, b, "–" if delta.delta is None else _points(delta.delta)


def _numbers(comparison: Comparison) -> Table:
    """Step time, phases and the device breakdown: A, B and the change."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    table.add_column("A", justify="right", no_wrap=True)
    table.add_column("B", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    step = comparison.step_time
    table.add_row(
        Text("step (median)", style="bold"),
        format_seconds(step.a_s),
        format_seconds(step.b_s),
        Text(_signed_share(step.change), style=_VERDICT_STYLE[comparison.verdict]),
    )
    for phase in comparison.phases:
        table.add_row(
            f"  {phase.name}",
            format_seconds(phase.a_s),
            format_seconds(phase.b_s),
            f"{_signed_seconds(phase.delta_s)} ({_relative(phase.a_s, phase.b_s)})"
            if phase.delta_s
            else "0",
        )
    for delta in comparison.gpu or []:
        if delta.a is None and delta.b is None:
            continue
        table.add_row(*_gpu_row(delta))
    return table


def _calls(row: NameChange) -> str:
    def one(calls: float | None) -> str:
        return "–" if calls is None else f"{calls:.3g}"

    if row.a_calls == row.b_calls:
        return one(row.a_calls)
    return f"{one(row.a_calls)} → {one(row.b_calls)}"


def _totals(totals: TotalsChange) -> RenderableType:
    """The names that changed most, per step, with a one-line count of the rest."""
    singular = totals.what.rstrip("s")
    head = Text(f"{totals.what.capitalize()} per step: ", style="bold")
    if not totals.rows:
        head.append(f"no change ({totals.unchanged} {singular}{'s' * (totals.unchanged != 1)})")
        return head
    counts = [
        f"{len(totals.with_status(status))} {status}"
        for status in ("added", "gone", "changed")
        if totals.with_status(status)
    ]
    counts.append(f"{totals.unchanged} unchanged")
    head.append(", ".join(counts))
    table = Table(box=None, pad_edge=False, header_style="bold", expand=True)
    table.add_column("", no_wrap=True, width=1)
    table.add_column(singular, overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("A", justify="right", no_wrap=True)
    table.add_column("B", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("calls", justify="right", no_wrap=True)
    for row in totals.rows[:_TOP_NAMES]:
        table.add_row(
            _STATUS_MARK[row.status],
            Text(row.name),
            format_seconds(row.a_s),
            format_seconds(row.b_s),
            _signed_seconds(row.delta_s),
            _calls(row),
        )
    parts: list[RenderableType] = [head, table]
    if len(totals.rows) > _TOP_NAMES:
        parts.append(Text(f"  … and {len(totals.rows) - _TOP_NAMES} more in the JSON", style="dim"))
    return Group(*parts)


def _findings(comparison: Comparison) -> RenderableType | None:
    changes = comparison.findings
    if changes is None:
        return None
    head = Text("Findings: ", style="bold")
    if not changes:
        head.append("none on either side.")
        return head
    moved = [c for c in changes if c.status != "same"]
    same = [c.kind for c in changes if c.status == "same"]
    if not moved:
        head.append(f"the same on both sides ({', '.join(same)}).")
        return head
    lines: list[RenderableType] = [head]
    for change in moved:
        line = Text(f"  {_FINDING_MARK[change.status]} ")
        line.append(change.kind, style="bold")
        a, b = change.a, change.b
        if a is None and b is not None:
            line.append(f" added ({b.severity}, saving ~{b.saving_share:.0%})")
        elif b is None and a is not None:
            line.append(f" gone (was {a.severity}, saving ~{a.saving_share:.0%})")
        elif a is not None and b is not None:
            line.append(
                f" {a.severity} → {b.severity} (saving ~{a.saving_share:.0%} → "
                f"~{b.saving_share:.0%})"
            )
        lines.append(line)
    if same:
        lines.append(Text(f"  = unchanged: {', '.join(same)}", style="dim"))
    return Group(*lines)


def render_comparison(comparison: Comparison) -> RenderableType:
    """One screen for a comparison: the verdict, the numbers side by side, what changed."""
    verdict = Text(f"{comparison.verdict.upper()}  ", style=_VERDICT_STYLE[comparison.verdict])
    verdict.append(comparison.why, style="")
    step = comparison.step_time
    parts: list[RenderableType] = [
        verdict,
        _side_line("A", comparison.a, len(step.a_times_s)),
        _side_line("B", comparison.b, len(step.b_times_s)),
        Text(""),
        _numbers(comparison),
    ]
    for totals in (comparison.operators, comparison.kernels):
        if totals is not None:
            parts.extend([Text(""), _totals(totals)])
    findings = _findings(comparison)
    if findings is not None:
        parts.extend([Text(""), findings])
    if comparison.notes:
        parts.append(Text(""))
        parts.extend(Text(f"note: {note}", style="dim") for note in comparison.notes)
    title = f"[bold]compare[/] · {escape(comparison.a.name)} → {escape(comparison.b.name)}"
    return Panel(Group(*parts), title=title, title_align="left")

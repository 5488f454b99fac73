"""The terminal renderer: any Report's brief on one screen, drawn with rich.

A :class:`~pinchpoint.report.Brief` is lines of toned runs, facts, compact tables and indented
blocks, every number raw with its unit; this module draws each piece and formats each value by
its unit (:func:`format_seconds`, :func:`format_bytes`, :func:`format_count`, bars). It knows
nothing of Profiles, traces or analyzers: what a summary shows is chosen by the report's
builder. ``render_profile`` and its siblings are the summaries of each result object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pinchpoint.report.model import FactLine, Grid, Line, Piece, Report, Span

if TYPE_CHECKING:
    from pinchpoint._profile import Profile
    from pinchpoint.comparison import Comparison
    from pinchpoint.diagnosis import Diagnosis
    from pinchpoint.optimizer import OptimizeResult
    from pinchpoint.traces import TraceAnalysis
    from pinchpoint.trials.scale import ScaleResult

__all__ = [
    "format_bytes",
    "format_count",
    "format_evidence",
    "format_seconds",
    "format_unit",
    "render_comparison",
    "render_diagnosis",
    "render_optimize",
    "render_profile",
    "render_scale",
    "render_terminal",
    "render_trace",
]

_BAR_WIDTH = 20
#: The rich style of each tone a brief's runs carry.
_TONES = {
    "": "",
    "strong": "bold",
    "muted": "dim",
    "aside": "dim italic",
    "accent": "cyan",
    "good": "green",
    "good_strong": "bold green",
    "warn": "yellow",
    "warn_strong": "bold yellow",
    "bad": "bold red",
}


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


def _bar(share: float) -> str:
    full = max(0.0, min(1.0, share)) * _BAR_WIDTH
    return "█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")


def _signed_seconds(seconds: float) -> str:
    """A signed duration (``+1.2 ms``, ``−33.5 µs``), or ``0``."""
    if seconds == 0:
        return "0"
    return ("+" if seconds > 0 else "−") + format_seconds(abs(seconds))


def _signed_share(change: float) -> str:
    """A relative change as a signed percentage (``+4.3%``), or ``0``."""
    return "0" if change == 0 else f"{change:+.1%}".replace("-", "−")


def _relative(pair: tuple[float, float]) -> str:
    """How B differs from A, relative to A (``+4.3%``); ``new`` where A had none."""
    a, b = pair
    if a == b:
        return "0"
    return _signed_share(b / a - 1) if a > 0 else "new"


#: How a value of each unit is written; a missing value is ``–`` (a quality's ``—``).
_UNITS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "s": format_seconds,
    "s_range": lambda pair: f"{format_seconds(pair[0])}–{format_seconds(pair[1])}",
    "bytes": lambda n: format_bytes(int(n)),
    "count": format_count,
    "flops": lambda n: format_count(n, "FLOP"),
    "flops_per_s": lambda n: format_count(n, "FLOP/s"),
    "bytes_per_s": lambda n: format_count(n, "B/s"),
    "flops_per_byte": lambda n: f"{n:.3g} FLOP/B",
    "share": lambda n: f"{n:.1%}",
    "pct": lambda n: f"{n:.0%}",
    "bar": _bar,
    "x": lambda n: f"{n:.2f}×",
    "ratio": lambda n: f"{n:.2f}",
    "g3": lambda n: f"{n:.3g}",
    "g4": lambda n: f"{n:.4g}",
    "quality": lambda n: "—" if n != n else f"{n:.4g}",
    "whole": lambda n: f"{n:,.0f}",
    "f0": lambda n: f"{n:.0f}",
    "tenths": lambda n: f"{n:,.1f}",
    "signed_s": _signed_seconds,
    "signed_share": _signed_share,
    "points": lambda n: "0" if n == 0 else f"{n * 100:+.1f} pt".replace("-", "−"),
    "relative": _relative,
}


def format_unit(value: Any, unit: str) -> str:
    """A brief's raw value as a reader sees it, by its unit (:class:`~pinchpoint.report.Span`)."""
    if value is None:
        return "—" if unit == "quality" else "–"
    return _UNITS[unit](value)


def _text(line: Line) -> Text:
    text = Text(style=_TONES[line.tone])
    for span in line.spans:
        text.append(format_unit(span.value, span.unit), style=_TONES[span.tone])
    return text


def _facts(facts: FactLine) -> Text:
    """Facts as one wrapped line of ``name value`` pairs."""
    text = Text()
    for i, fact in enumerate(facts.facts):
        if i:
            text.append(" · ", style="dim")
        text.append(f"{fact.label} ", style="dim")
        field = fact.unit == "field"
        text.append(
            format_evidence(fact.label, fact.value) if field else format_unit(fact.value, fact.unit)
        )
    return text


def _cell(value: Any, unit: str) -> Text:
    if isinstance(value, Line):
        return _text(value)
    if isinstance(value, Span):
        return Text(format_unit(value.value, value.unit), style=_TONES[value.tone])
    return Text(format_unit(value, unit))


def _grid(grid: Grid) -> Table:
    table = Table(
        title=grid.title or None,
        title_justify="left",
        box=None,
        pad_edge=False,
        expand=grid.expand,
        show_header=grid.header is not None,
        header_style=(_TONES[grid.header] or "table.header") if grid.header is not None else None,
    )
    for c in grid.columns:
        table.add_column(
            c.name,
            justify="right" if c.align == "right" else "left",
            style=_TONES[c.tone] or None,
            no_wrap=not c.wrap,
            width=c.width,
            min_width=c.min_width,
            max_width=c.max_width,
            ratio=c.grow,
        )
    for row in grid.rows:
        table.add_row(*(_cell(v, c.unit) for v, c in zip(row, grid.columns, strict=True)))
    return table


def _draw(piece: Piece) -> RenderableType:
    if isinstance(piece, Line):
        return _text(piece)
    if isinstance(piece, FactLine):
        return _facts(piece)
    if isinstance(piece, Grid):
        return _grid(piece)
    return Padding(Group(*map(_draw, piece.pieces)), (0, 0, 0, piece.by))


def render_terminal(report: Report) -> RenderableType:
    """One screen summarising a Report: its brief's pieces in order, in a panel under the
    brief's title when it has one."""
    brief = report.brief
    if brief is None:
        raise ValueError(f"the {report.kind} report {report.title!r} has no terminal summary")
    body = Group(*map(_draw, brief.pieces))
    return (
        body if brief.title is None else Panel(body, title=_text(brief.title), title_align="left")
    )


def render_profile(profile: Profile) -> RenderableType:
    """One screen summarising a Profile: the step breakdown, top operators, compute, memory."""
    return render_terminal(Report.build(profile))


def render_diagnosis(diagnosis: Diagnosis) -> RenderableType:
    """One screen: the verdict first, then every finding with its evidence and remedies."""
    return render_terminal(Report.build(diagnosis))


def render_trace(analysis: TraceAnalysis) -> RenderableType:
    """One screen for a trace: the verdict, the ranks side by side, stragglers, findings."""
    return render_terminal(Report.build(analysis))


def render_optimize(result: OptimizeResult) -> RenderableType:
    """One screen for an optimize run: the answer first, then every trial with its verdict."""
    return render_terminal(Report.build(result))


def render_comparison(comparison: Comparison) -> RenderableType:
    """One screen for a comparison: the verdict, the numbers side by side, what changed."""
    return render_terminal(Report.build(comparison))


def render_scale(result: ScaleResult) -> RenderableType:
    """One screen for a scaling measurement: the verdict first, then the table and notes."""
    from pinchpoint.report.scale import from_scale

    return render_terminal(from_scale(result))

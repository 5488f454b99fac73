"""The terminal summary of a scaling measurement: the verdict, then one row per process count.

Every number comes from the :class:`~pinchpoint.trials.scale.ScaleResult`; this module only
formats it for 80 columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pinchpoint.renderers.terminal import format_seconds

if TYPE_CHECKING:
    from pinchpoint.trials.scale import ScaleResult

__all__ = ["render_scale"]


def _interval(pair: tuple[float, float] | None, percent: bool) -> str:
    if pair is None:
        return ""
    low, high = pair
    return f" ({low:.0%}–{high:.0%})" if percent else f" ({low:.2f}–{high:.2f})"


def render_scale(result: ScaleResult) -> RenderableType:
    """One screen for a scaling measurement: the verdict first, then the table and notes."""
    from pinchpoint.trials.scale import NEAR_LINEAR

    last = result.points[-1]
    style = "bold green" if last.efficiency >= NEAR_LINEAR else "bold yellow"
    headline = Text(result.verdict, style=style)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("processes", justify="right")
    table.add_column("global batch", justify="right")
    table.add_column("step", justify="right")
    table.add_column("samples/s", justify="right")
    table.add_column("speed-up (95% CI)", justify="right", no_wrap=True)
    table.add_column("efficiency", justify="right", no_wrap=True)
    table.add_column("comm.", justify="right")
    for point in result.points:
        throughput = point.throughput_per_s
        share = point.communication_share
        table.add_row(
            str(point.nproc),
            "–" if point.global_batch is None else str(point.global_batch),
            format_seconds(point.step_time_s),
            "–" if throughput is None else f"{throughput:,.1f}",
            f"{point.speedup:.2f}×" + _interval(point.speedup_ci, percent=False),
            f"{point.efficiency:.0%}" + _interval(point.efficiency_ci, percent=True),
            "–" if share is None else f"{share:.0%}",
        )
    runs = sum(len(p.runs) for p in result.points)
    facts = Text(
        f"{result.target} on {result.device} · {runs} runs ({result.repeats} per "
        f"count, interleaved) of {result.warmup} + {result.steps} steps · "
        f"{result.threads} thread{'s' * (result.threads != 1)} per rank · "
        f"{result.seconds:.0f} s · efficiency = speed-up / (processes / "
        f"{result.reference.nproc})",
        style="dim",
    )
    parts: list[RenderableType] = [headline, Text(""), table, Text("")]
    parts += [Text(f"note: {note}", style="dim") for note in result.notes]
    parts.append(facts)
    return Group(*parts)

"""The Report of a scaling measurement: a brief only, the verdict and one row per process count.

It is the one result kind without a page: ``from_scale`` is not registered as a builder, so
``pinchpoint report scale.json`` still says a scaling measurement has no report. The terminal
draws its brief like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pinchpoint.report.model import Brief, Column, Grid, Line, Piece, Report, Span
from pinchpoint.report.parts import BLANK, fill, line, right_column

if TYPE_CHECKING:
    from pinchpoint.trials.scale import ScaleResult


def _interval(pair: tuple[float, float] | None, unit: str) -> tuple[Span, ...]:
    return () if pair is None else fill(" ({}–{})", Span(pair[0], unit), Span(pair[1], unit))


def from_scale(result: ScaleResult) -> Report:
    """The Report of a scaling measurement, whose brief is the verdict, the table and notes."""
    from pinchpoint.trials.scale import NEAR_LINEAR

    near = result.points[-1].efficiency >= NEAR_LINEAR
    columns = (
        Column("processes", align="right"),
        Column("global batch", align="right"),
        Column("step", "s", align="right"),
        Column("samples/s", "tenths", align="right"),
        right_column("speed-up (95% CI)"),
        right_column("efficiency"),
        Column("comm.", "pct", align="right"),
    )
    rows = tuple(
        (
            str(p.nproc),
            "–" if p.global_batch is None else str(p.global_batch),
            p.step_time_s,
            p.throughput_per_s,
            line(Span(p.speedup, "x"), *_interval(p.speedup_ci, "ratio")),
            line(Span(p.efficiency, "pct"), *_interval(p.efficiency_ci, "pct")),
            p.communication_share,
        )
        for p in result.points
    )
    runs = sum(len(p.runs) for p in result.points)
    threads = f"{result.threads} thread{'s' * (result.threads != 1)}"
    facts = fill(
        f"{result.target} on {result.device} · {runs} runs ({result.repeats} per count, "
        f"interleaved) of {result.warmup} + {result.steps} steps · {threads} per rank · {{}} s · "
        f"efficiency = speed-up / (processes / {result.reference.nproc})",
        Span(result.seconds, "f0"),
        tone="muted",
    )
    pieces: tuple[Piece, ...] = (
        line(result.verdict, tone="good_strong" if near else "warn_strong"),
        BLANK,
        Grid(columns, rows, header="strong"),
        BLANK,
        *(line(f"note: {note}", tone="muted") for note in result.notes),
        Line(facts),
    )
    return Report(kind="scale", title=result.target, brief=Brief(pieces))

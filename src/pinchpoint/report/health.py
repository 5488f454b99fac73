"""The training-health section of a run's Report: per-layer gradient norms, update ratios and
activation statistics over the steps, the charts Cockpit-style monitors draw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinchpoint._profile import Health, Profile

if TYPE_CHECKING:
    pass
from pinchpoint.report.model import (
    Chart,
    Fact,
    Mark,
    Section,
    Series,
)
from pinchpoint.report.parts import (
    finite_or_none,
    make_section,
    spread_names,
)

__all__ = ["health_section"]


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


def health_section(profile: Profile) -> Section | None:
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

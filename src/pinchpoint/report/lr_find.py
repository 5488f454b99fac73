"""The Report of an LR range test: the sweep's loss against the rate, the suggestion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinchpoint.lr_find import LRFindResult
from pinchpoint.report.model import Chart, Fact, Mark, Report, Series, Verdict
from pinchpoint.report.parts import finite_or_none, kept_sections, make_facts, make_section


def _loss_range(losses: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float] | None:
    """The y range that shows the smoothed curve from its start to its divergence."""
    curve = [v for v in map(finite_or_none, smoothed) if v is not None]
    raw = [v for v in map(finite_or_none, losses) if v is not None]
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
                    tuple(finite_or_none(v) for v in result.losses),
                    "markers",
                ),
                Series(
                    "loss (smoothed)",
                    tuple(result.lrs),
                    tuple(finite_or_none(v) for v in result.smoothed),
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
    facts = make_facts(
        Fact("optimizer", result.optimizer),
        Fact("steps", len(result.lrs), "int"),
        Fact("first rate", result.lrs[0] if result.lrs else None, "lr"),
        Fact("last rate", result.lrs[-1] if result.lrs else None, "lr"),
        Fact("suggested rate", result.suggestion, "lr"),
        Fact("stopped early (the loss diverged)", result.stopped_early, "bool"),
    )
    section = make_section(
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
        sections=kept_sections([section]),
    )

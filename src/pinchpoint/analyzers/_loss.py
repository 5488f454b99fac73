"""What the training analyzers read from the loss series: its trend over the run
(:func:`loss_trend`) and a schedule's overshoot (:func:`schedule_overshoot`); the rules and
thresholds they serve are stated in :mod:`pinchpoint.analyzers.training`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pinchpoint._profile import Step

__all__ = ["UNSTABLE_PEAK", "LossTrend", "loss_trend", "schedule_overshoot"]

TREND_T = 3.0
#: A loss is ``flat`` only when the 95 % bound of its decline over the run is below this share
#: of its mean; a larger bound leaves it ``noisy`` (undetermined).
FLAT_DECLINE = 0.10
#: A loss is ``falling`` only when its fitted decline over the run is at least this share of its
#: mean, besides being significant.
MIN_DECLINE = 0.02
#: A loss is ``unstable`` when it peaks at this multiple of its start and of its median.
UNSTABLE_PEAK = 3.0
#: The growth of the learning rate over a run from which a loss that rose after it points to
#: the schedule.
RATE_GROWTH = 2.0
#: How far below its start a loss must have fallen before a rise back over the start counts.
OVERSHOOT_FALL = 0.10


@dataclass(frozen=True)
class LossTrend:
    """The loss over a run, in one word and the numbers behind it."""

    kind: str  # falling, rising, flat, noisy, unstable, diverged
    t_statistic: float
    first: float
    last: float
    points: int


def loss_trend(losses: list[float]) -> LossTrend | None:
    """Classify the loss series (see :mod:`pinchpoint.analyzers.training`); None with fewer than 5
    points."""
    finite = []
    for value in losses:
        if not math.isfinite(value):
            break
        finite.append(value)
    diverged = len(finite) < len(losses)
    if len(finite) < 5:
        if diverged:
            return LossTrend("diverged", math.inf, losses[0], losses[-1], len(losses))
        return None
    n = len(finite)
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(finite)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, finite, strict=True)) / sxx
    residuals = [y - (mean_y + slope * (x - mean_x)) for x, y in zip(xs, finite, strict=True)]
    resid_sd = math.sqrt(sum(r * r for r in residuals) / max(1, n - 2))
    t = slope / (resid_sd / math.sqrt(sxx)) if resid_sd > 0 else math.copysign(math.inf, slope)
    start, end = statistics.fmean(finite[:3]), statistics.fmean(finite[-3:])
    if diverged:
        kind = "diverged"
    elif (
        finite[0] > 0
        and max(finite) >= UNSTABLE_PEAK * finite[0]
        and max(finite) >= UNSTABLE_PEAK * statistics.median(finite)
    ):
        kind = "unstable"
    elif t <= -TREND_T and end < start and -slope * n >= MIN_DECLINE * abs(mean_y):
        kind = "falling"
    elif t >= TREND_T or (start > 0 and end > 2 * start):
        kind = "rising"
    elif mean_y > 0 and -(slope - 2 * resid_sd / math.sqrt(sxx)) * n >= FLAT_DECLINE * mean_y:
        kind = "noisy"
    else:
        kind = "flat"
    return LossTrend(kind, t, finite[0], finite[-1], n)


def schedule_overshoot(steps: Sequence[Step]) -> dict[str, float | int] | None:
    """Where a loss that fell at a lower learning rate rose once the rate had grown.

    The loss is smoothed by a running median of three steps (one batch's loss is noise), and
    its start is the median of the first three. It *falls first* when its lowest smoothed value
    so far is at least 10 % below the start. It *rises* at the first step whose loss is
    non-finite, or whose smoothed loss is 3× that low and gives back at least half of what it
    had gained (a well-trained loss of 0.05 that reads 0.2 on two batches is noise, not a
    rise), or (having fallen first) climbs back above the start by as much as it fell. The rate
    at the rise must be at least twice the first step's and no lower than the rate at the low:
    the loss fell at the lower rates and got worse only after the rate grew, which points to
    the rate (a warm-up to too high a peak), not to the initialization or the data. The first
    step's rate is the first one above zero (a warm-up from 0 steps at 0 first). None when the
    steps carry no rates, the rate never grew, the loss never rose, or it rose before falling
    or before the rate grew.
    """
    pairs = [(s.index, s.loss, s.lr) for s in steps if s.loss is not None and s.lr is not None]
    if len(pairs) < 5 or not all(math.isfinite(v) for _, v, _ in pairs[:3]):
        return None
    # A warm-up from 0 (``n / warmup_steps``, as LRSchedule's) steps at rate 0 first: growth
    # is judged from the first rate that moved the weights.
    first_rate = next((rate for _, _, rate in pairs if rate > 0), None)
    if first_rate is None or max(rate for _, _, rate in pairs) < RATE_GROWTH * first_rate:
        return None
    start = statistics.median(v for _, v, _ in pairs[:3])
    smooth: list[float] = []
    best = 0
    for i, (step, loss, rate) in enumerate(pairs):
        if math.isfinite(loss):
            window = [v for _, v, _ in pairs[max(0, i - 2) : i + 1] if math.isfinite(v)]
            smooth.append(statistics.median(window))
        low = smooth[best]
        fell = low <= (1 - OVERSHOOT_FALL) * start
        climb = smooth[-1] - low
        rose = (
            not math.isfinite(loss)
            or (low > 0 and smooth[-1] >= UNSTABLE_PEAK * low and climb >= (start - low) / 2)
            or (fell and climb >= 2 * (start - low))
        )
        if rose:
            best_rate = pairs[best][2]
            if not (fell and rate >= RATE_GROWTH * first_rate and rate >= best_rate):
                return None
            return {
                "rise_step": step,
                "best_step": pairs[best][0],
                "lr_first": first_rate,
                "lr_at_best": best_rate,
                "lr_at_rise": rate,
                "loss_start": start,
                "loss_at_best": low,
                "loss_at_rise": loss,
            }
        if smooth[-1] < low:
            best = i
    return None

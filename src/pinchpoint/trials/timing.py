"""Speed comparison of two callables, run interleaved so that the machine's drift hits both.

:func:`compare_speed` warms both arms up, calibrates how many calls fill a round, then runs
rounds in which the two arms go back to back, alternating which one goes first (A B, B A, ...).
Each round gives one pair of times and one ratio (baseline time / candidate time); the pairs, not
the arms' separate averages, carry the comparison, because two timings taken a few milliseconds
apart share whatever the rest of the machine was doing.

The 95 % confidence interval is the distribution-free interval for the median of the pair
ratios, read from their order statistics (the interval the sign test gives): with ``n`` pairs
it runs from the ``k``-th smallest ratio to the ``k``-th largest, ``k`` the largest rank at
which ``P(Binomial(n, 1/2) < k) <= 2.5 %``. It holds whatever the ratios' distribution, and a
round that another process disturbed moves it no more than any other round. We weighed the two
usual choices against it on this 2-core shared machine, recomputing each interval from the same
measured ratios: on identical arms, a percentile bootstrap of the median called a difference in
5 of 60 training trials (8 %, above its nominal 5 %: the bootstrap distribution of a median of
a few dozen values is too narrow), a t-interval on log ratios in 3 of 60, this interval in 1 of
60; on functions 10 % apart, this interval and the bootstrap found the difference in 35 and 36
of 40 runs, the t-interval, widened by outlying rounds, in 30. It needs no random numbers, so
the same timings always give the same interval, and at least :data:`MIN_PAIRS` pairs.

:func:`speed_from_pairs` does the statistics alone, for pairs timed elsewhere (training steps).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pinchpoint import codec
from pinchpoint.stats import MIN_MEDIAN_VALUES, cv, median_interval

__all__ = [
    "MIN_PAIRS",
    "NOISY_CI_WIDTH",
    "NOISY_CV",
    "SpeedComparison",
    "Verdict",
    "compare_speed",
    "speed_from_pairs",
]

Verdict = Literal["faster", "slower", "indistinguishable"]

#: The fewest pairs that give a 95 % interval for the median of their ratios.
MIN_PAIRS = MIN_MEDIAN_VALUES
#: An arm whose per-round times vary more than this (standard deviation / mean) marks the
#: machine noisy: 10 % is several times what a quiet machine shows on a 20 ms round.
NOISY_CV = 0.10
#: A confidence interval wider than this share of the median speedup ((hi - lo) / median)
#: marks the machine noisy too: the comparison could not resolve differences of ±10 %.
NOISY_CI_WIDTH = 0.20


@dataclass(frozen=True)
class SpeedComparison(codec.Saved):
    """How fast a candidate ran against its baseline: per-arm medians and the paired ratio.

    Times are seconds per unit of work (per call, or per sample when the caller said how many
    units a call does). ``speedup`` above 1 means the candidate is faster.

    Attributes:
        baseline_s: the median of the baseline's per-round times.
        candidate_s: the median of the candidate's per-round times.
        speedup: the median of the per-round ratios baseline / candidate.
        speedup_ci: the 95 % confidence interval of that median, (low, high).
        verdict: ``"faster"`` when the interval lies above 1, ``"slower"`` when it lies below 1,
            else ``"indistinguishable"``.
        noisy: either arm's coefficient of variation exceeds :data:`NOISY_CV`, or the interval
            is wider than :data:`NOISY_CI_WIDTH` of the speedup.
        baseline_cv: the baseline's coefficient of variation across rounds (std / mean).
        candidate_cv: the candidate's.
        baseline_times_s: the baseline's time in each round, in round order.
        candidate_times_s: the candidate's time in each round.
        calls: the calls each arm made per round, (baseline, candidate).
        warmup: the warm-up calls each arm made before timing.
    """

    baseline_s: float
    candidate_s: float
    speedup: float
    speedup_ci: tuple[float, float]
    verdict: Verdict
    noisy: bool
    baseline_cv: float
    candidate_cv: float
    baseline_times_s: tuple[float, ...]
    candidate_times_s: tuple[float, ...]
    calls: tuple[int, int] = (1, 1)
    warmup: int = 0

    @property
    def ratios(self) -> tuple[float, ...]:
        """The per-round ratios baseline / candidate."""
        return tuple(
            b / c for b, c in zip(self.baseline_times_s, self.candidate_times_s, strict=True)
        )

    @property
    def rounds(self) -> int:
        """How many pairs were timed."""
        return len(self.baseline_times_s)

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        """With the rounds, ratios and the interval's method, for readers of the file."""
        return codec.arrange(
            data,
            _SPEED_KEYS,
            rounds=self.rounds,
            ratios=list(self.ratios),
            ci_method="median-order-statistics",
        )


#: The keys of a saved SpeedComparison, in the order files have them.
_SPEED_KEYS = (
    "baseline_s candidate_s speedup speedup_ci verdict noisy baseline_cv candidate_cv rounds ratios"
)


def compare_speed(
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    *,
    warmup: int = 2,
    rounds: int = 15,
    min_round_s: float = 0.02,
    max_time_s: float | None = None,
    baseline_units: float = 1.0,
    candidate_units: float = 1.0,
) -> SpeedComparison:
    """Time ``baseline`` and ``candidate`` interleaved, and compare them pair by pair.

    Each arm is called ``warmup`` times (alternately), then calibrated once: the number of calls
    that lasts at least ``min_round_s``. Each round then times both arms back to back, each
    making its calibrated number of calls, with the first arm alternating from round to round.
    The garbage collector is off while an arm is timed (as ``timeit`` does), so a collection
    of one arm's garbage never lands in the other's time.

    Args:
        baseline: the reference, called with no arguments.
        candidate: the contender.
        warmup: calls of each arm before calibration (0 allowed; the calibration calls warm up
            too).
        rounds: pairs to time (at least :data:`MIN_PAIRS`).
        min_round_s: the shortest an arm's block of calls in a round may last.
        max_time_s: stop adding rounds once this many seconds have passed since the start
            (warm-up included), but never before :data:`MIN_PAIRS` rounds.
        baseline_units: the units of work one baseline call does (samples, batches); times are
            reported per unit, so arms doing different amounts of work per call compare fairly.
        candidate_units: the units of work one candidate call does.

    Raises:
        ValueError: a setting is out of range.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    check_rounds(rounds, min_round_s, max_time_s)
    if not (baseline_units > 0 and candidate_units > 0):
        raise ValueError("baseline_units and candidate_units must be positive")
    start = time.perf_counter()
    for _ in range(warmup):
        baseline()
        candidate()
    calls = (_calibrate(baseline, min_round_s), _calibrate(candidate, min_round_s))
    arms = (baseline, candidate)
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(rounds):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for arm in order:
            times[arm].append(_timed(arms[arm], calls[arm]) / calls[arm])
        if (
            max_time_s is not None
            and index + 1 >= MIN_PAIRS
            and time.perf_counter() - start >= max_time_s
        ):
            break
    return speed_from_pairs(
        [t / baseline_units for t in times[0]],
        [t / candidate_units for t in times[1]],
        calls=calls,
        warmup=warmup,
    )


def check_rounds(rounds: int, min_round_s: float, max_time_s: float | None) -> None:
    """Raise ``ValueError`` for :func:`compare_speed` round settings out of range."""
    if rounds < MIN_PAIRS:
        raise ValueError(f"rounds must be >= {MIN_PAIRS} for a 95 % interval, got {rounds}")
    if not min_round_s > 0:
        raise ValueError(f"min_round_s must be positive, got {min_round_s}")
    if max_time_s is not None and not max_time_s > 0:
        raise ValueError(f"max_time_s must be positive, got {max_time_s}")


def speed_from_pairs(
    baseline_s: Sequence[float],
    candidate_s: Sequence[float],
    *,
    calls: tuple[int, int] = (1, 1),
    warmup: int = 0,
) -> SpeedComparison:
    """The :class:`SpeedComparison` of paired times: ``baseline_s[i]`` pairs ``candidate_s[i]``.

    Raises:
        ValueError: the sequences differ in length, hold fewer than :data:`MIN_PAIRS` pairs, or
            a time is not positive.
    """
    base = np.asarray(baseline_s, dtype=np.float64)
    cand = np.asarray(candidate_s, dtype=np.float64)
    if base.shape != cand.shape or base.ndim != 1:
        raise ValueError(f"got {base.size} baseline and {cand.size} candidate times: pair them")
    if base.size < MIN_PAIRS:
        raise ValueError(f"at least {MIN_PAIRS} pairs of times are needed, got {base.size}")
    if not (np.all(base > 0) and np.all(cand > 0) and np.all(np.isfinite(base + cand))):
        raise ValueError("every time must be positive and finite")
    ratios = base / cand
    speedup = float(np.median(ratios))
    low, high = median_interval(ratios)
    base_cv, cand_cv = cv(base), cv(cand)
    verdict: Verdict = "faster" if low > 1 else "slower" if high < 1 else "indistinguishable"
    noisy = max(base_cv, cand_cv) > NOISY_CV or (high - low) / speedup > NOISY_CI_WIDTH
    return SpeedComparison(
        baseline_s=float(np.median(base)),
        candidate_s=float(np.median(cand)),
        speedup=speedup,
        speedup_ci=(low, high),
        verdict=verdict,
        noisy=bool(noisy),
        baseline_cv=base_cv,
        candidate_cv=cand_cv,
        baseline_times_s=tuple(float(t) for t in base),
        candidate_times_s=tuple(float(t) for t in cand),
        calls=calls,
        warmup=warmup,
    )


def _calibrate(fn: Callable[[], object], min_round_s: float) -> int:
    """The number of calls of ``fn`` that lasts at least ``min_round_s``."""
    # Time doubling batches until one lasts a quarter of a round: long enough for the clock's
    # resolution and the loop's overhead not to matter, short enough to stay cheap.
    count = 1
    while True:
        elapsed = _timed(fn, count)
        if elapsed >= min_round_s / 4 or count >= 1 << 24:
            break
        count *= 2
    # Another process taking the core can only make a batch look slower, and one slow batch
    # would shrink every round: the quickest of three batches gives the estimate.
    elapsed = min(elapsed, _timed(fn, count), _timed(fn, count))
    per_call = max(elapsed / count, 1e-9)
    return max(1, math.ceil(min_round_s / per_call))


def _timed(fn: Callable[[], object], count: int) -> float:
    """Seconds that ``count`` calls of ``fn`` take, with the garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()

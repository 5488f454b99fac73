"""The statistics pinchpoint shares: means, medians and their distribution-free intervals.

- :func:`mean`, :func:`stdev` and :func:`cv` summarise a sample (NaN or 0 where it is too small
  to say, never an exception).
- :func:`median`, :func:`row_medians`: medians of finite values in numpy, without the
  ``numpy.ma`` import that ``np.median``'s NaN check makes (about 12 ms, once per analysis).
- :func:`median_interval` (and :func:`median_ci`, its None-for-too-few form): the 95 %
  interval of one sample's median, read from its order statistics at the ranks the sign test
  gives. It needs :data:`MIN_MEDIAN_VALUES` values.
- :func:`ratio_interval`: the interval of the ratio of two unpaired samples' typical values,
  Moses' interval for the shift between two samples on log values: the order statistics of all
  pairwise differences (:func:`kth_difference`) at ranks (:func:`moses_rank`) given by the exact
  Mann-Whitney distribution (:func:`u_counts`), its normal approximation beyond 2,500 pairs.

Both intervals hold whatever the distribution, need no random numbers, and give the same
interval for the same values. numpy is imported on first use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "CONFIDENCE",
    "MIN_MEDIAN_VALUES",
    "cv",
    "kth_difference",
    "mean",
    "median",
    "median_ci",
    "median_interval",
    "moses_rank",
    "ratio_interval",
    "row_medians",
    "stdev",
    "u_counts",
]

#: The confidence of the two-sample interval (:func:`ratio_interval`) unless asked otherwise.
CONFIDENCE = 0.95
#: The fewest values that give a 95 % interval for the median (with 5, even the smallest and the
#: largest value bound it with only 94 % confidence).
MIN_MEDIAN_VALUES = 6
# Ranks are found exactly up to this many values (the median's interval) or pairs (Moses'
# interval), by the normal approximation above it.
_EXACT_VALUES = 1000
_EXACT_PAIRS = 2500


# --------------------------------------------------------------------------- summaries


def mean(values: Iterable[float], *, finite_only: bool = False) -> float:
    """The arithmetic mean of ``values``, NaN when there are none; ``finite_only`` leaves out
    NaN and infinite values first."""
    chosen = [v for v in values if math.isfinite(v)] if finite_only else list(values)
    return float(statistics.fmean(chosen)) if chosen else math.nan


def stdev(values: Iterable[float], *, finite_only: bool = False) -> float:
    """The sample standard deviation of ``values``, 0 for fewer than two; ``finite_only`` leaves
    out NaN and infinite values first."""
    chosen = [v for v in values if math.isfinite(v)] if finite_only else list(values)
    return float(statistics.stdev(chosen)) if len(chosen) > 1 else 0.0


def cv(values: np.ndarray) -> float:
    """The coefficient of variation of ``values``: sample standard deviation / mean."""
    import numpy as np

    return float(np.std(values, ddof=1) / np.mean(values))


def median(values: NDArray[np.float64]) -> float:
    """The median of finite values (see :func:`row_medians`)."""
    return float(row_medians(values.reshape(1, -1))[0])


def row_medians(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's median: ``np.median(x, axis=1)`` for finite values, without the ``numpy.ma``
    import its NaN check makes."""
    import numpy as np

    ordered = np.sort(x, axis=1)
    half = ordered.shape[1] // 2
    if ordered.shape[1] % 2:
        return ordered[:, half]
    return (ordered[:, half - 1] + ordered[:, half]) / 2.0


# --------------------------------------------------------------------------- one median


def median_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The distribution-free 95 % confidence interval of the median of ``values``.

    Raises:
        ValueError: fewer than :data:`MIN_MEDIAN_VALUES` values.
    """
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=np.float64))
    rank = _lower_rank(ordered.size)
    if rank is None:
        raise ValueError(
            f"a 95 % interval for a median needs {MIN_MEDIAN_VALUES} values, got {ordered.size}"
        )
    return float(ordered[rank]), float(ordered[ordered.size - 1 - rank])


def median_ci(values: Sequence[float]) -> tuple[float, float] | None:
    """:func:`median_interval`, or None under :data:`MIN_MEDIAN_VALUES` values."""
    return median_interval(values) if len(values) >= MIN_MEDIAN_VALUES else None


def _lower_rank(n: int) -> int | None:
    """The 0-based rank of the interval's lower end among ``n`` sorted values (None: too few).

    It is the largest ``m`` with ``P(B <= m) <= 2.5 %`` for ``B ~ Binomial(n, 1/2)``, the count of
    values below the true median: the interval from the ``m``-th to the ``(n - 1 - m)``-th value
    misses the median with probability ``2 P(B <= m) <= 5 %``.
    """
    if n > _EXACT_VALUES:
        # Normal approximation with continuity correction: 0.98 = 1.96 / 2.
        return max(0, math.floor(n / 2 - 0.5 - 0.98 * math.sqrt(n)))
    # Exact, in integers: 40 * sum(C(n, i) for i <= m) <= 2**n.
    limit = 2**n
    cumulative = 0
    term = 1  # C(n, m)
    rank = None
    for m in range(n + 1):
        cumulative += term
        if 40 * cumulative > limit:
            break
        rank = m
        term = term * (n - m) // (m + 1)
    return rank


# --------------------------------------------------------------------------- two samples


def u_counts(m: int, n: int, upto: int) -> list[int]:
    """How many of the ``C(m + n, m)`` orderings of two samples give Mann-Whitney U = 0..upto.

    They are the coefficients of the Gaussian binomial ``[m + n choose m]_q``, built as the
    product of ``(1 - q^(n + i)) / (1 - q^i)`` for i = 1..m; each partial product is itself a
    polynomial with integer coefficients, so the exact integer arithmetic never rounds.
    """
    coeffs = [1] + [0] * upto
    for i in range(1, m + 1):
        stride = n + i
        for u in range(upto, stride - 1, -1):
            coeffs[u] -= coeffs[u - stride]
        for u in range(i, upto + 1):
            coeffs[u] += coeffs[u - i]
    return coeffs


def moses_rank(m: int, n: int, confidence: float = CONFIDENCE) -> int | None:
    """The 1-based rank ``k`` of the interval's lower end among the ``m * n`` sorted pairwise
    differences (the upper end is the ``(m n + 1 - k)``-th); None when no such interval exists.

    ``k`` is the largest with ``P(U <= k - 1) <= (1 - confidence) / 2`` under the null
    distribution of the Mann-Whitney U statistic.
    """
    # Exact rational arithmetic: at 95 % the tail is 1/40, and a float 0.025 times 40 orderings
    # must not round either way.
    tail = Fraction(1 - confidence).limit_denominator(10**6) / 2
    pairs = m * n
    if pairs > _EXACT_PAIRS:
        z = statistics.NormalDist().inv_cdf(1 - float(tail))
        sd = math.sqrt(pairs * (m + n + 1) / 12)
        k = math.floor(pairs / 2 - z * sd + 0.5)
        return k if k >= 1 else None
    total = math.comb(m + n, m)
    counts = u_counts(m, n, pairs // 2)
    cumulative = 0
    k = 0
    for u, count in enumerate(counts):
        cumulative += count
        if Fraction(cumulative, total) > tail:
            break
        k = u + 1
    return k if k >= 1 else None


def kth_difference(low: Sequence[float], high: Sequence[float], k: int) -> float:
    """The ``k``-th smallest (1-based) of ``high[j] - low[i]`` over all pairs."""
    import numpy as np

    a = np.sort(np.asarray(low, dtype=np.float64))
    b = np.sort(np.asarray(high, dtype=np.float64))
    if a.size * b.size <= 4_000_000:
        diffs = np.subtract.outer(b, a).ravel()
        return float(np.partition(diffs, k - 1)[k - 1])
    # Too many pairs to hold: bisect on the value, counting the pairs at or below it.
    lo, hi = float(b[0] - a[-1]), float(b[-1] - a[0])
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        below = int(np.searchsorted(b, a + mid, side="right").sum())
        lo, hi = (lo, mid) if below >= k else (mid, hi)
    return hi


def ratio_interval(
    a_times: Sequence[float], b_times: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The distribution-free interval of the ratio of B's typical time to A's (module docstring).

    None when the samples are too small for an interval at this confidence. Times that are not
    positive and finite are left out (a log cannot take them).
    """
    a = [math.log(t) for t in a_times if t > 0 and math.isfinite(t)]
    b = [math.log(t) for t in b_times if t > 0 and math.isfinite(t)]
    if not a or not b:
        return None
    k = moses_rank(len(a), len(b), confidence)
    if k is None:
        return None
    pairs = len(a) * len(b)
    low = kth_difference(a, b, k)
    high = kth_difference(a, b, pairs + 1 - k)
    return math.exp(low), math.exp(high)

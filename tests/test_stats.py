"""The shared statistics: summaries, medians, and the two distribution-free intervals.

The two-sample interval's ranks are checked against brute force and the Mann-Whitney tables,
and the interval itself by properties (a scaled copy, swapped sides) and by its two ways of
finding an order statistic.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinchpoint.stats import (
    kth_difference,
    mean,
    median,
    median_ci,
    moses_rank,
    ratio_interval,
    row_medians,
    stdev,
    u_counts,
)


def test_summaries_say_nan_or_zero_where_a_sample_is_too_small() -> None:
    assert math.isnan(mean([])) and stdev([]) == 0.0 and stdev([3.0]) == 0.0
    assert mean([1.0, 2.0, 6.0]) == 3.0 and stdev([1.0, 3.0]) == pytest.approx(math.sqrt(2))
    assert math.isnan(mean([1.0, math.nan]))
    assert mean([1.0, math.nan, 3.0, math.inf], finite_only=True) == 2.0
    assert stdev([1.0, math.nan, 3.0], finite_only=True) == pytest.approx(math.sqrt(2))
    assert math.isnan(mean([math.nan], finite_only=True))


def test_medians_agree_with_numpy() -> None:
    odd = np.array([[3.0, 1.0, 2.0], [4.0, 1.0, 3.0]])
    even = np.array([[3.0, 1.0, 2.0, 0.0], [4.0, 1.0, 3.0, 2.0]])
    assert row_medians(odd).tolist() == np.median(odd, axis=1).tolist() == [2.0, 3.0]
    assert row_medians(even).tolist() == np.median(even, axis=1).tolist() == [1.5, 2.5]
    assert median(np.array([5.0, 1.0, 4.0, 2.0])) == 3.0


def test_median_ci_needs_six_values() -> None:
    assert median_ci([1.0] * 5) is None
    assert median_ci([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)


def _brute_u_counts(m: int, n: int) -> list[int]:
    """Mann-Whitney U over every placement of m A-values among m + n ordered values."""
    counts: Counter[int] = Counter()
    for placed in itertools.combinations(range(m + n), m):
        others = [i for i in range(m + n) if i not in placed]
        counts[sum(1 for x in placed for y in others if y < x)] += 1
    return [counts[u] for u in range(m * n + 1)]


@pytest.mark.parametrize(("m", "n"), [(1, 3), (2, 2), (3, 4), (4, 4), (5, 3), (6, 5)])
def test_u_distribution_is_exact(m: int, n: int) -> None:
    assert u_counts(m, n, m * n) == _brute_u_counts(m, n)


def test_interval_ranks_match_the_mann_whitney_tables() -> None:
    # 95 % two-sided: n = m = 4 needs both extremes (P(U = 0) = 1/70); 3 against 3 never gets
    # there (1/20 > 2.5 %); 8 against 8 gives rank 14 (the critical U of 13 in the tables).
    assert moses_rank(4, 4) == 1
    assert moses_rank(3, 3) is None and moses_rank(2, 2) is None
    assert moses_rank(8, 8) == 14
    assert moses_rank(10, 10) == 24  # critical U 23
    assert moses_rank(60, 60) is not None  # the normal approximation beyond 2,500 pairs


positive_times = st.lists(
    st.floats(min_value=1e-4, max_value=10.0, allow_nan=False), min_size=6, max_size=30
)


@given(positive_times, st.floats(min_value=0.2, max_value=5.0))
def test_a_scaled_copy_has_its_factor_inside_the_interval(
    times: list[float], factor: float
) -> None:
    ci = ratio_interval(times, [t * factor for t in times])
    assert ci is not None
    assert ci[0] <= factor * (1 + 1e-9) and factor <= ci[1] * (1 + 1e-9)


@given(positive_times, positive_times)
def test_swapping_the_sides_inverts_the_interval(a: list[float], b: list[float]) -> None:
    forward, backward = ratio_interval(a, b), ratio_interval(b, a)
    assert forward is not None and backward is not None
    assert backward[0] == pytest.approx(1 / forward[1]) and backward[1] == pytest.approx(
        1 / forward[0]
    )


def test_the_bisection_path_agrees_with_sorting_all_pairs() -> None:
    rng = random.Random(3)
    a = [rng.gauss(0, 1) for _ in range(2100)]
    b = [rng.gauss(0.1, 1) for _ in range(2100)]  # 4.41 million pairs: bisected

    diffs = np.sort(np.subtract.outer(np.array(b), np.array(a)).ravel())
    for k in (1, 2_000_000, 4_410_000):
        assert kth_difference(a, b, k) == pytest.approx(float(diffs[k - 1]), abs=1e-9)

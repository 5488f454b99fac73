"""Tests of the straggler-rank test: exact p-values, calibration, power, edge cases and speed."""

from __future__ import annotations

import itertools
import json
import math
import time
from fractions import Fraction

import numpy as np
import pytest

from pinchpoint.stragglers import (
    METHOD,
    Straggler,
    StragglerReport,
    _null_cdf,
    find_stragglers,
)


def _job(
    rng: np.random.Generator,
    ranks: int = 8,
    steps: int = 20,
    slow: int | None = None,
    factor: float = 1.10,
    sigma: float = 0.05,
) -> dict[int, list[float]]:
    """Busy seconds: i.i.d. lognormal per-rank noise times a common per-step factor."""
    common = np.exp(rng.normal(0.0, 0.2, steps))[None, :]
    x = 0.1 * common * np.exp(rng.normal(0.0, sigma, (ranks, steps)))
    if slow is not None:
        x[slow] *= factor
    return _rows(x)


def _rows(x: np.ndarray) -> dict[int, list[float]]:
    """Rank -> list of busy seconds, one row of ``x`` per rank."""
    return {i: [float(v) for v in row] for i, row in enumerate(x)}


def _hand_job() -> dict[int, list[float]]:
    """Ranks 0-6 at 1.00 to 1.06 times the step's base time, rank 7 at 1.3 times it."""
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    factors = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.3]
    return _rows(np.array(factors)[:, None] * base[None, :])


def _exact_rank_sum_sf(steps: int, ranks: int, s: int) -> Fraction:
    """P(sum of `steps` uniforms on {0..ranks-1} >= s), by exact integer convolution."""
    counts = [1]
    for _ in range(steps):
        new = [0] * (len(counts) + ranks - 1)
        for i, c in enumerate(counts):
            for k in range(ranks):
                new[i + k] += c
        counts = new
    return Fraction(sum(counts[s:]), ranks**steps)


def _holm(raw: list[float]) -> list[float]:
    """Holm's adjusted p-values, written out plainly."""
    m = len(raw)
    order = sorted(range(m), key=lambda i: raw[i])
    out = [0.0] * m
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, (m - j) * raw[i])
        out[i] = min(1.0, running)
    return out


# --- exact numbers ---------------------------------------------------------------------------


def test_rank_slowest_in_every_step_has_hand_computed_p_value_and_excess() -> None:
    rep = find_stragglers(_hand_job())

    # Unique slowest in all 5 steps: raw p = 8**-5; Holm multiplies the smallest by 8.
    p = 8 * 8.0**-5
    assert p == 1 / 4096
    assert rep.power == "ok"
    assert [s.rank for s in rep.stragglers] == [7]
    s = rep.stragglers[0]
    assert s.p_value == pytest.approx(p, rel=1e-12)
    assert s.confidence == pytest.approx(1 - p, rel=1e-12)
    assert s.slowest_steps == 5
    assert s.steps == 5
    # Median of the 7 others in step t is 1.03 * base[t]; excess is 0.27 * base, median 0.81.
    assert s.excess_s == pytest.approx(0.27 * 3.0, rel=1e-12)
    # Denominator: median over ranks of their median busy time = 3 * (1.03 + 1.04) / 2.
    assert s.excess_share == pytest.approx(0.81 / (3 * 1.035), rel=1e-12)
    # Rank 6 is second slowest in every step (rank sum 30 of at most 35): P(S >= 30) is
    # 252 / 8**5 (the ways to lose at most 5 points over 5 steps), and Holm multiplies the
    # second smallest raw p-value by 7. The fastest rank gets p = 1.
    raw6 = _exact_rank_sum_sf(5, 8, 30)
    assert raw6 == Fraction(252, 8**5)
    assert rep.per_rank[6]["p_value"] == pytest.approx(7 * 252 / 8**5, rel=1e-12)
    assert rep.per_rank[0]["p_value"] == 1.0
    assert rep.per_rank[7]["median_busy_s"] == pytest.approx(3.9)


@pytest.mark.parametrize(("steps", "ranks"), [(1, 2), (3, 2), (4, 3), (7, 5), (20, 8)])
def test_null_distribution_is_exact(steps: int, ranks: int) -> None:
    cdf = _null_cdf(steps, ranks)
    top = steps * (ranks - 1)
    assert cdf.size == top + 1
    for s in range(top + 1):
        expected = float(_exact_rank_sum_sf(steps, ranks, s))
        # P(S >= s) = P(S <= top - s) by symmetry, which is how the module reads it.
        assert cdf[top - s] == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_null_distribution_tail_is_accurate_for_1000_ranks_100_steps() -> None:
    n, r = 100, 1000
    cdf = _null_cdf(n, r)

    def exact_cdf(m: int) -> float:  # inclusion-exclusion with exact integers
        total = sum(
            (-1) ** k * math.comb(n, k) * math.comb(m - k * r + n, n)
            for k in range(min(n, m // r) + 1)
        )
        return float(Fraction(total, r**n))

    for m in (0, 1, 7, 999, 1000, 5000, 20000, 40000):
        assert cdf[m] == pytest.approx(exact_cdf(m), rel=1e-10)
    assert cdf[0] == pytest.approx(1e-300, rel=1e-12)


def test_p_values_match_brute_force_permutation_test() -> None:
    # 3 ranks x 3 steps, no ties: enumerate all (3!)**3 within-step permutations.
    x = np.array([[1.0, 2.2, 1.9], [1.5, 1.4, 2.8], [1.2, 3.0, 2.9]])
    busy = _rows(x)
    rep = find_stragglers(busy, alpha=0.5, min_excess_share=0.0)

    def rank_sums(cols: tuple[np.ndarray, ...]) -> list[int]:
        out = [0, 0, 0]
        for col in cols:
            for i in range(3):
                out[i] += int(np.sum(col < col[i]))
        return out

    observed = rank_sums(tuple(x[:, t] for t in range(3)))
    perms = [list(itertools.permutations(x[:, t])) for t in range(3)]
    total = 0
    hits = [0, 0, 0]
    for combo in itertools.product(*perms):
        sums = rank_sums(tuple(np.array(c) for c in combo))
        total += 1
        for i in range(3):
            hits[i] += sums[i] >= observed[i]
    raw = [h / total for h in hits]
    assert total == 216
    assert observed == [1, 3, 5]
    expected = _holm(raw)
    for i in range(3):
        assert rep.per_rank[i]["p_value"] == pytest.approx(expected[i], rel=1e-12)


# --- alike ranks and ties --------------------------------------------------------------------


def test_eight_identical_ranks_have_no_straggler_and_p_one() -> None:
    busy = {r: [0.25] * 10 for r in range(8)}
    rep = find_stragglers(busy, min_excess_share=0.0)
    assert rep.stragglers == []
    assert rep.power == "ok"
    assert rep.ranks == 8
    assert rep.steps == 10
    for values in rep.per_rank.values():
        assert values == {
            "median_busy_s": 0.25,
            "excess_s": 0.0,
            "excess_share": 0.0,
            "p_value": 1.0,
        }
    assert "No straggler" in rep.note


def test_identical_ranks_varying_over_steps_have_p_one() -> None:
    steps = [float(v) for v in np.linspace(0.1, 0.3, 12)]
    rep = find_stragglers({r: steps for r in range(8)}, min_excess_share=0.0)
    assert rep.stragglers == []
    assert {v["p_value"] for v in rep.per_rank.values()} == {1.0}


def test_ties_never_count_as_slowest_but_tied_stragglers_are_still_found() -> None:
    rng = np.random.Generator(np.random.PCG64(3))
    x = 0.1 * np.exp(rng.normal(0.0, 0.01, (8, 20)))
    x[0] = x[1] = 0.15  # two identical stragglers, tied at the top in every step
    rep = find_stragglers(_rows(x))
    assert sorted(s.rank for s in rep.stragglers) == [0, 1]
    for s in rep.stragglers:
        assert s.slowest_steps == 0
        # Each scores 6 (the lowest score of its tie group) in all 20 steps.
        raw = float(_exact_rank_sum_sf(20, 8, 6 * 20))
        assert s.p_value == pytest.approx(8 * raw, rel=1e-9)  # Holm: 8 * raw, 7 * raw -> max
    assert all(rep.per_rank[r]["p_value"] > 0.01 for r in range(2, 8))


# --- low power -------------------------------------------------------------------------------


def test_two_ranks_two_steps_cannot_reach_alpha() -> None:
    rep = find_stragglers({0: [1.0, 1.0], 1: [5.0, 5.0]})
    assert rep.stragglers == []
    assert rep.power == "low"
    # Rank 1 is the slowest in both steps: raw p = 2**-2, Holm doubles it.
    assert rep.per_rank[1]["p_value"] == 0.5
    assert rep.per_rank[0]["p_value"] == 1.0
    assert "smallest possible p-value is 0.5" in rep.note
    assert "at least 8 steps" in rep.note  # 2 ** (1 - n) < 0.01 needs n >= 8


def test_low_power_boundary_is_exact() -> None:
    # 8 ranks: 8 ** (1 - n) < 0.01 needs n >= 4 (8**-2 = 0.0156, 8**-3 = 0.00195).
    slow = {r: [1.0, 1.1, 1.2] for r in range(7)} | {7: [2.0, 2.0, 2.0]}
    rep3 = find_stragglers(slow)
    assert rep3.power == "low"
    assert rep3.stragglers == []
    rep4 = find_stragglers({r: [*v, 1.0] if r < 7 else [*v, 2.0] for r, v in slow.items()})
    assert rep4.power == "ok"
    assert [s.rank for s in rep4.stragglers] == [7]
    assert rep4.stragglers[0].p_value == pytest.approx(8.0**-3, rel=1e-12)


def test_fewer_than_two_ranks() -> None:
    for busy in ({}, {0: [1.0, 2.0]}):
        rep = find_stragglers(busy)
        assert rep.stragglers == []
        assert rep.power == "low"
        assert rep.per_rank == {}
        assert "at least 2 ranks" in rep.note


# --- planted stragglers, calibration and power -----------------------------------------------


def test_planted_straggler_found_with_five_steps() -> None:
    rng = np.random.Generator(np.random.PCG64(7))
    found = 0
    for _ in range(50):
        rep = find_stragglers(_job(rng, steps=5, slow=3, factor=1.3))
        found += [s.rank for s in rep.stragglers] == [3]
    assert found == 50


def test_false_positive_rate_on_exchangeable_noise_is_at_most_alpha() -> None:
    rng = np.random.Generator(np.random.PCG64(12345))
    jobs = 200
    alpha = 0.01
    flagged = sum(bool(find_stragglers(_job(rng), alpha=alpha).stragglers) for _ in range(jobs))
    # FWER <= alpha means about 2 of 200 in expectation; allow 2 * alpha * jobs + 2.
    assert flagged <= 2 * alpha * jobs + 2
    assert flagged == 0  # measured; the 5 % share filter removes the rest


def test_statistical_part_alone_is_calibrated() -> None:
    # No practical-significance filter; check P(min adjusted p <= a) <= a over 1000 null jobs.
    rng = np.random.Generator(np.random.PCG64(2024))
    jobs = 1000
    min_p = np.array(
        [
            min(
                v["p_value"]
                for v in find_stragglers(_job(rng), min_excess_share=0.0).per_rank.values()
            )
            for _ in range(jobs)
        ]
    )
    for a in (0.01, 0.05, 0.1, 0.25, 0.5):
        rate = float(np.mean(min_p <= a))
        sd = math.sqrt(a * (1 - a) / jobs)
        assert rate <= a + 3 * sd, (a, rate)
    assert float(np.mean(min_p <= 0.05)) == pytest.approx(0.05, abs=0.02)  # not far too strict


def test_power_for_ten_percent_slower_rank() -> None:
    rng = np.random.Generator(np.random.PCG64(99))
    jobs = 200
    found = 0
    others = 0
    shares: list[float] = []
    for k in range(jobs):
        slow = k % 8
        rep = find_stragglers(_job(rng, slow=slow))
        hit = [s for s in rep.stragglers if s.rank == slow]
        if hit and hit[0].confidence >= 0.99:
            found += 1
            shares.append(hit[0].excess_share)
        others += sum(s.rank != slow for s in rep.stragglers)
    assert found >= 0.95 * jobs
    assert found == 200  # measured with this seed
    assert others == 0
    # The excess is 10 % of a rank's busy time; the per-step common factor spreads the share.
    assert float(np.median(shares)) == pytest.approx(0.1, abs=0.01)


def test_practically_insignificant_rank_is_not_reported() -> None:
    rng = np.random.Generator(np.random.PCG64(5))
    busy = _job(rng, sigma=0.0005, slow=2, factor=1.005)
    rep = find_stragglers(busy)
    assert rep.stragglers == []
    assert rep.per_rank[2]["p_value"] < 1e-10
    assert rep.per_rank[2]["excess_share"] == pytest.approx(0.005, abs=0.001)
    assert "rank 2 is consistently slower" in rep.note
    assert "min_excess_share=5%" in rep.note
    rep_low = find_stragglers(busy, min_excess_share=0.001)
    assert [s.rank for s in rep_low.stragglers] == [2]


def test_thousand_ranks_one_straggler_fast() -> None:
    rng = np.random.Generator(np.random.PCG64(11))
    busy = _job(rng, ranks=1000, steps=100, slow=417, factor=1.10)
    _null_cdf.cache_clear()
    start = time.perf_counter()
    rep = find_stragglers(busy)
    elapsed = time.perf_counter() - start
    assert [s.rank for s in rep.stragglers] == [417]
    assert rep.stragglers[0].p_value < 1e-20
    assert rep.ranks == 1000
    assert rep.steps == 100
    assert sum(v["p_value"] < 0.01 for v in rep.per_rank.values()) == 1
    assert elapsed < 1.0, elapsed


# --- inputs and settings ---------------------------------------------------------------------


def test_uneven_lengths_and_non_finite_steps() -> None:
    busy: dict[int, list[float]] = {r: [1.0, 1.1, 1.2, 1.3, 1.4, 1.5] for r in range(8)}
    busy[7] = [2.0, float("nan"), 2.4, 2.6, 2.8, 3.0, 9.9, 9.9]
    busy[3] = [1.0, 1.1, float("inf"), 1.3, 1.4, 1.5]
    rep = find_stragglers(busy)
    assert rep.steps == 4
    assert "first 6 steps" in rep.note
    assert "dropped 2 steps" in rep.note
    assert rep.note.endswith(".")
    # Ranks 0-6 tie in every step, so rank 7 is the unique slowest of 4: Holm p = 8 * 8**-4.
    assert [s.rank for s in rep.stragglers] == [7]
    assert rep.stragglers[0].p_value == pytest.approx(8.0**-3, rel=1e-12)
    assert rep.stragglers[0].excess_s == pytest.approx(1.35)  # median of 1.0, 1.3, 1.4, 1.5


def test_step_time_is_the_share_denominator() -> None:
    busy = _hand_job()
    step = {r: [10.0, 10.0, 10.0, 10.0, 10.0] for r in range(8)}
    rep = find_stragglers(busy, step_s=step)
    assert rep.stragglers[0].excess_share == pytest.approx(0.81 / 10.0)


def test_no_usable_step() -> None:
    rep = find_stragglers({0: [float("nan")], 1: [1.0]})
    assert rep.stragglers == []
    assert rep.power == "low"
    assert rep.steps == 0
    assert "nothing can be tested" in rep.note


@pytest.mark.parametrize(
    ("alpha", "share"),
    [(0.0, 0.05), (1.0, 0.05), (float("nan"), 0.05), (-0.1, 0.05), (0.01, -0.01), (0.01, math.inf)],
)
def test_bad_settings_raise(alpha: float, share: float) -> None:
    with pytest.raises(ValueError, match=r"alpha|min_excess_share"):
        find_stragglers({0: [1.0], 1: [1.0]}, alpha=alpha, min_excess_share=share)


def test_to_dict_is_plain_json() -> None:
    busy = _hand_job()
    rep = find_stragglers(busy)
    assert isinstance(rep, StragglerReport)
    assert isinstance(rep.stragglers[0], Straggler)
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["method"] == METHOD == "rank-permutation"
    assert d["per_rank"][0]["rank"] == 0
    assert [row["rank"] for row in d["per_rank"]] == list(range(8))
    assert d["stragglers"][0]["rank"] == 7
    assert type(d["stragglers"][0]["slowest_steps"]) is int
    assert type(d["per_rank"][7]["p_value"]) is float


@pytest.mark.parametrize("ranks", [2, 3, 4, 5, 8])
def test_excess_matches_brute_force_median_of_other_ranks(ranks: int) -> None:
    rng = np.random.Generator(np.random.PCG64(ranks))
    x = rng.normal(1.0, 0.2, (ranks, 9)).round(1)  # rounding makes ties
    rep = find_stragglers(_rows(x), min_excess_share=0.0)
    for r in range(ranks):
        diffs = [x[r, t] - float(np.median(np.delete(x[:, t], r))) for t in range(9)]
        assert rep.per_rank[r]["excess_s"] == pytest.approx(float(np.median(diffs)), abs=1e-12)
        assert rep.per_rank[r]["median_busy_s"] == pytest.approx(float(np.median(x[r])))

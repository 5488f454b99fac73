"""A calibrated test for straggler ranks in a synchronous data-parallel job.

In synchronous data parallelism every rank's step wall time is about the same, because the
collectives make the fast ranks wait for the slowest one. A straggler therefore shows in the
*busy* time of each rank (its own work per step: the step time less the time spent waiting in
collectives, or its compute-kernel time), which is consistently larger than the other ranks'.
Ranks whose busy times are merely noisy must not be named: eight identical ranks have no
straggler, whatever order the noise happens to put them in.

Method ("rank-permutation"): an exact within-step rank permutation test.

1. Matched steps. Step ``t`` means the same step on every rank. When the series have different
   lengths, only the common prefix is used; steps where any rank has a non-finite value are
   dropped for every rank. Both are said in the report's note.
2. Score. In each step, each rank scores the number of *other* ranks that were strictly faster
   (strictly smaller busy time), from 0 (fastest) to ``R - 1`` (the unique slowest). Tied ranks
   all get the lowest score of their tie group, so a tie never counts as "slowest" and ranks
   with identical times all score 0. A rank's statistic ``S`` is the sum of its scores.
3. Null distribution. If ranks are alike (their busy times exchangeable within each step, as
   with i.i.d. per-rank noise on top of any common per-step factor), the ranks' order in each
   step is a uniformly random permutation, independent across steps, so with ties broken at
   random each score is uniform on ``{0, ..., R - 1}`` and ``S`` is a sum of ``n`` independent
   such uniforms. Its exact distribution is computed by ``n - 1`` box-filter convolutions in
   float64 (no sampling, so results are deterministic); the raw p-value is ``P(S >= S_obs)``.
   The lowest-of-the-group tie rule can only lower ``S`` below what random tie breaking would
   give, so with ties the test is conservative, never anti-conservative. A rank that is the
   unique slowest in all ``n`` steps has the smallest possible raw p-value, ``R ** -n``.
4. Multiplicity. All ``R`` ranks are tested, so the raw p-values are Holm-adjusted
   (step-down Bonferroni); the family-wise error rate, the chance of naming any rank when all
   are alike, is at most ``alpha``. Reported p-values are the adjusted ones, and
   ``confidence = 1 - p_value``.
5. Practical significance. A rank is reported only when its adjusted p-value is below
   ``alpha`` *and* its ``excess_share`` is at least ``min_excess_share``. ``excess_s`` is the
   median over steps of (the rank's busy time minus the median busy time of the other ranks in
   that step); ``excess_share`` divides it by the typical step time: the median over ranks of
   each rank's median step wall time when ``step_s`` is given (over the matched steps where
   those are available), else of each rank's median busy time.

Thresholds:

- ``alpha`` (default 0.01): the family-wise false positive rate allowed across all ranks of
  one job; it must lie in (0, 1).
- ``min_excess_share`` (default 0.05): the smallest excess, as a share of the typical step
  time, worth a finding; a rank 0.1 % slower may be statistically certain but not worth
  fixing. It must be finite and non-negative.
- Power: Holm's smallest possible adjusted p-value is ``R * R ** -n = R ** (1 - n)``. When that
  is not below ``alpha`` (for example 2 ranks and 2 steps: 0.5), even a rank that was the
  slowest in every step could not be reported; the report says ``power = "low"`` and how many
  steps would be needed. Otherwise power is ``"ok"``. Fewer than 2 ranks, or no usable step,
  also gives ``"low"``.

Everything is vectorised over ranks and steps with numpy (1000 ranks by 100 steps takes a few
tens of milliseconds); p-values smaller than float64 can hold (about 1e-308) are reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from pinchpoint import codec
from pinchpoint.stats import median, row_medians

__all__ = ["METHOD", "Straggler", "StragglerReport", "find_stragglers"]

METHOD = "rank-permutation"

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Straggler(codec.Saved):
    """One rank whose busy time per step is consistently and materially above the others'."""

    rank: int
    excess_s: float
    excess_share: float
    slowest_steps: int
    steps: int
    p_value: float
    confidence: float


@dataclass(frozen=True)
class StragglerReport(codec.Saved):
    """The outcome of testing every rank of one job for being a straggler.

    ``per_rank`` maps each rank to ``{"median_busy_s", "excess_s", "excess_share", "p_value"}``
    (``p_value`` Holm-adjusted); it is empty when nothing could be tested. It is saved as a
    list of ``{"rank": ..., ...}`` dicts sorted by rank.
    """

    stragglers: list[Straggler]
    ranks: int
    steps: int
    method: str
    alpha: float
    min_excess_share: float
    power: str
    note: str
    per_rank: dict[int, dict[str, float]] = field(
        metadata=codec.custom(
            lambda per_rank: [
                {"rank": int(rank), **{k: float(v) for k, v in values.items()}}
                for rank, values in sorted(per_rank.items())
            ],
            lambda rows: {
                int(row["rank"]): {
                    k: math.nan if v is None else codec.float_in(v)
                    for k, v in row.items()
                    if k != "rank"
                }
                for row in rows
            },
        )
    )


@lru_cache(maxsize=32)
def _null_cdf(steps: int, ranks: int) -> FloatArray:
    """The exact CDF of a sum of ``steps`` independent uniforms on ``{0, ..., ranks - 1}``.

    Each step convolves the PMF with a box of width ``ranks`` through a cumulative sum, so the
    cost is O(steps² · ranks). The lower tail (below the mean) keeps full relative precision
    because the PMF increases there and the differences of cumulative sums do not cancel;
    callers use it through the distribution's symmetry, ``P(S >= s) = P(S <= top - s)``.
    """
    pmf = np.full(ranks, 1.0 / ranks)
    for _ in range(steps - 1):
        cum = np.cumsum(np.concatenate((pmf, np.zeros(ranks - 1))))
        cum[ranks:] -= cum[:-ranks].copy()
        pmf = cum / ranks
    cdf: FloatArray = np.minimum(np.cumsum(np.maximum(pmf, 0.0)), 1.0)
    cdf.setflags(write=False)
    return cdf


def _rank_sum_sf(sums: NDArray[np.int64], steps: int, ranks: int) -> FloatArray:
    """``P(S >= s)`` for each observed rank sum ``s`` under the null of exchangeable ranks."""
    top = steps * (ranks - 1)
    cdf = _null_cdf(steps, ranks)
    return np.asarray(cdf[top - sums], dtype=np.float64)


def _holm(p: FloatArray) -> FloatArray:
    """Holm's step-down adjusted p-values (family-wise error control over all entries)."""
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def _steps_needed(ranks: int, alpha: float) -> int:
    """The fewest steps for which Holm's smallest adjusted p-value ``R ** (1 - n)`` is < alpha."""
    n = 1
    while float(ranks) ** (1 - n) >= alpha:
        n += 1
    return n


def _fmt_p(p: float) -> str:
    """A p-value in two significant digits, for notes."""
    return f"{p:.2g}"


def _check_settings(alpha: float, min_excess_share: float) -> None:
    """The guard that rejects meaningless settings with a ``ValueError``."""
    if not (math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    if not math.isfinite(min_excess_share) or min_excess_share < 0.0:
        raise ValueError(f"min_excess_share must be a finite number >= 0, got {min_excess_share!r}")


def _as_series(rank: int, values: Sequence[float], what: str) -> FloatArray:
    """One rank's per-step seconds as a flat float64 array (``ValueError`` if not flat)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what}[{rank}] must be a flat sequence of seconds per step")
    return arr


def _empty(
    ranks: int, alpha: float, min_excess_share: float, note: str, steps: int = 0
) -> StragglerReport:
    """A report with nothing tested: no straggler, no per-rank rows, power ``"low"``."""
    return StragglerReport(
        stragglers=[],
        ranks=ranks,
        steps=steps,
        method=METHOD,
        alpha=alpha,
        min_excess_share=min_excess_share,
        power="low",
        note=note,
        per_rank={},
    )


def _median_of_others(x: FloatArray) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
    """Per step, the median of the other ranks' values; also the sort order and sorted values.

    ``x`` is ranks × steps. Removing the element at sorted position ``i`` shifts every sorted
    position ``j >= i`` down by one, so the median of the others is read from the sorted column
    directly, for all ranks at once.
    """
    r = x.shape[0]
    order = np.argsort(x, axis=0, kind="stable")
    srt = np.take_along_axis(x, order, axis=0)
    pos = np.arange(r)[:, None]
    m = r - 1
    lo, hi = (m - 1) // 2, m // 2

    def reduced(j: int) -> FloatArray:
        picked: FloatArray = np.where(pos > j, srt[j][None, :], srt[j + 1][None, :])
        return picked

    med_sorted = 0.5 * (reduced(lo) + reduced(hi))
    med = np.empty_like(x)
    np.put_along_axis(med, order, med_sorted, axis=0)
    return med, order, srt


def _scores(order: NDArray[np.intp], srt: FloatArray) -> NDArray[np.int64]:
    """Per rank and step, how many other ranks were strictly faster (ties: lowest of group)."""
    r = srt.shape[0]
    is_new = np.ones(srt.shape, dtype=bool)
    is_new[1:] = srt[1:] != srt[:-1]
    first = np.where(is_new, np.arange(r, dtype=np.int64)[:, None], 0)
    low_sorted = np.maximum.accumulate(first, axis=0)
    scores = np.empty(srt.shape, dtype=np.int64)
    np.put_along_axis(scores, order, low_sorted, axis=0)
    return scores


def _typical_step(
    step_s: Mapping[int, Sequence[float]] | None,
    prefix: int,
    keep: NDArray[np.bool_],
    busy_medians: FloatArray,
) -> tuple[float, str]:
    """The denominator of ``excess_share``, and a remark when ``step_s`` could not be used."""
    if step_s is not None:
        medians: list[float] = []
        for rank, values in step_s.items():
            arr = _as_series(int(rank), values, "step_s")[:prefix]
            if arr.size == prefix:
                arr = arr[keep]
            arr = arr[np.isfinite(arr)]
            if arr.size:
                medians.append(median(arr))
        if medians:
            return median(np.asarray(medians)), ""
        remark = "step_s had no finite values, so shares are of the median busy time"
        return median(busy_medians), remark
    return median(busy_medians), ""


def find_stragglers(
    busy_s: Mapping[int, Sequence[float]],
    *,
    step_s: Mapping[int, Sequence[float]] | None = None,
    alpha: float = 0.01,
    min_excess_share: float = 0.05,
) -> StragglerReport:
    """Test every rank for being a straggler; the module docstring describes the method.

    ``busy_s`` maps rank to its busy seconds per step, in the same step order on every rank.
    ``step_s`` optionally gives wall seconds per step per rank, used only for the denominator of
    ``excess_share``. Raises ``ValueError`` for ``alpha`` outside (0, 1) or a negative
    ``min_excess_share``.
    """
    alpha = float(alpha)
    min_excess_share = float(min_excess_share)
    _check_settings(alpha, min_excess_share)

    rank_ids = sorted(int(k) for k in busy_s)
    series = [_as_series(k, busy_s[k], "busy_s") for k in rank_ids]
    r = len(rank_ids)
    if r < 2:
        return _empty(r, alpha, min_excess_share, f"Need at least 2 ranks to compare; got {r}.")

    lengths = [a.size for a in series]
    prefix = min(lengths)
    remarks: list[str] = []
    if max(lengths) != prefix:
        remarks.append(
            f"used the first {prefix} steps common to all ranks "
            f"(series had {prefix} to {max(lengths)} steps)"
        )
    x_all = np.stack([a[:prefix] for a in series])
    keep = np.all(np.isfinite(x_all), axis=0)
    dropped = int(prefix - np.count_nonzero(keep))
    if dropped:
        remarks.append(f"dropped {dropped} steps with non-finite values on some rank")
    x = np.ascontiguousarray(x_all[:, keep])
    n = x.shape[1]

    def sentence(head: str) -> str:
        """The note: the main clause, then any remarks about the input, as one sentence."""
        return "; ".join([head, *remarks]) + "."

    if n == 0:
        return _empty(
            r,
            alpha,
            min_excess_share,
            sentence("No step has a finite busy time on every rank, so nothing can be tested"),
        )

    med_others, order, srt = _median_of_others(x)
    scores = _scores(order, srt)
    sums = scores.sum(axis=1)
    slowest = np.count_nonzero(scores == r - 1, axis=1)
    p_adj = _holm(_rank_sum_sf(sums, n, r))

    excess = row_medians(x - med_others)
    busy_medians = row_medians(x)
    typical, remark = _typical_step(step_s, prefix, keep, busy_medians)
    if remark:
        remarks.append(remark)
    if typical > 0.0 and math.isfinite(typical):
        share = excess / typical
    else:
        share = np.zeros(r)
        remarks.append("the typical step time is not positive, so shares are set to 0")

    per_rank = {
        rank: {
            "median_busy_s": float(busy_medians[i]),
            "excess_s": float(excess[i]),
            "excess_share": float(share[i]),
            "p_value": float(p_adj[i]),
        }
        for i, rank in enumerate(rank_ids)
    }
    significant = p_adj < alpha
    chosen = np.flatnonzero(significant & (share >= min_excess_share))
    stragglers = [
        Straggler(
            rank=rank_ids[i],
            excess_s=float(excess[i]),
            excess_share=float(share[i]),
            slowest_steps=int(slowest[i]),
            steps=n,
            p_value=float(p_adj[i]),
            confidence=float(min(1.0, max(0.0, 1.0 - p_adj[i]))),
        )
        for i in chosen
    ]
    stragglers.sort(key=lambda s: (-s.excess_s, s.rank))

    best_p = float(r) ** (1 - n)
    power = "ok" if best_p < alpha else "low"
    if power == "low":
        head = (
            f"No rank can be reported: with {r} ranks and {n} matched steps the smallest "
            f"possible p-value is {_fmt_p(best_p)}, not below alpha={alpha:g}; "
            f"at least {_steps_needed(r, alpha)} steps are needed"
        )
    elif stragglers:
        listed = ", ".join(
            f"{s.rank} (+{100 * s.excess_share:.1f}% of step time, p={_fmt_p(s.p_value)})"
            for s in stragglers
        )
        head = f"Straggler rank{'s' if len(stragglers) > 1 else ''}: {listed}"
    elif significant.any():
        i = int(np.argmin(p_adj))
        head = (
            f"No straggler: rank {rank_ids[i]} is consistently slower (p={_fmt_p(p_adj[i])}) "
            f"but only by {100 * share[i]:.2f}% of step time, below "
            f"min_excess_share={100 * min_excess_share:g}%"
        )
    else:
        head = (
            f"No straggler: no rank's busy time is consistently above the others' at "
            f"alpha={alpha:g}, so the ranks look alike"
        )
    return StragglerReport(
        stragglers=stragglers,
        ranks=r,
        steps=n,
        method=METHOD,
        alpha=alpha,
        min_excess_share=min_excess_share,
        power=power,
        note=sentence(head),
        per_rank=per_rank,
    )

"""Interval arithmetic of trace analysis, against brute force over whole nanoseconds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pinchpoint.traces import _intervals as iv

spans = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=8,
)


def merged(pairs: list[tuple[int, int]]) -> iv.Intervals:
    starts = np.array([a for a, _ in pairs], dtype=np.int64)
    ends = np.array([b for _, b in pairs], dtype=np.int64)
    return iv.merge(starts, ends)


def instants(intervals: iv.Intervals) -> set[int]:
    return {
        t for a, b in zip(*(side.tolist() for side in intervals), strict=True) for t in range(a, b)
    }


@settings(max_examples=300, deadline=None)
@given(spans, st.lists(st.integers(-1, 80), max_size=30))
def test_covered_is_membership(pairs: list[tuple[int, int]], points: list[int]) -> None:
    intervals = merged(pairs)
    inside = instants(intervals)
    got = iv.covered(intervals, np.array(points, dtype=np.int64)).tolist()
    assert got == [p in inside for p in points]


@settings(max_examples=300, deadline=None)
@given(spans, st.lists(spans, max_size=5))
def test_each_instant_goes_to_its_first_claim(
    base_pairs: list[tuple[int, int]], claim_pairs: list[list[tuple[int, int]]]
) -> None:
    base = merged(base_pairs)
    claims = [merged(c) for c in claim_pairs]
    left = instants(base)
    expected = []
    for claim in claims:
        took = left & instants(claim)
        expected.append(len(took))
        left -= took
    expected.append(len(left))
    assert iv.claimed(base, claims) == expected
    # The step-by-step route (intersect what is left, subtract the piece) agrees.
    remaining = base
    for claim, want in zip(claims, expected, strict=False):
        piece = iv.intersect(remaining, claim)
        assert iv.length(piece) == want
        remaining = iv.subtract(remaining, piece)
    assert iv.length(remaining) == expected[-1]

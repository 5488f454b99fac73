"""Folding host events into operators: self time from nesting, grouping by name and shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pinchpoint._events import (
    HostEvent,
    _thread_start_order,
    count_at_most,
    fold_events,
    self_ns,
)


def test_self_time_subtracts_direct_children_only() -> None:
    events = [
        HostEvent("aten::linear", 1, 0, 100, [[4, 8], [2, 8]]),
        HostEvent("aten::t", 1, 5, 10, [[2, 8]]),
        HostEvent("aten::transpose", 1, 6, 4, [[2, 8]]),
        HostEvent("aten::addmm", 1, 20, 70, [[2], [4, 8], [8, 2]]),
        HostEvent("aten::linear", 1, 200, 50, [[4, 8], [2, 8]]),
        HostEvent("aten::relu", 2, 0, 30, [[4, 2]]),  # another thread: no parent
    ]
    rows = {r.name: r for r in fold_events(events)}
    assert rows["aten::linear"].count == 2
    assert rows["aten::linear"].total_ns == 150
    assert rows["aten::linear"].self_ns == (100 - 10 - 70) + 50
    assert rows["aten::t"].self_ns == 6  # its child transpose took 4
    assert rows["aten::transpose"].self_ns == 4
    assert rows["aten::relu"].self_ns == 30


def test_same_name_different_shapes_are_separate_rows() -> None:
    events = [
        HostEvent("aten::mm", 1, 0, 5, [[2, 3], [3, 4]]),
        HostEvent("aten::mm", 1, 10, 5, [[8, 8], [8, 8]]),
    ]
    assert [r.shapes for r in fold_events(events)] == [[[2, 3], [3, 4]], [[8, 8], [8, 8]]]


@st.composite
def nested_events(
    draw: st.DrawFn, depth: int = 0, start: int = 0, span: int = 10_000
) -> list[HostEvent]:
    """Properly nested events on one thread inside [start, start + span)."""
    out: list[HostEvent] = []
    cursor = start
    for _ in range(draw(st.integers(0, 3 if depth < 3 else 0))):
        room = start + span - cursor
        if room < 4:
            break
        begin = cursor + draw(st.integers(0, room // 4))
        length = draw(st.integers(1, max(1, (start + span - begin) // 2)))
        out.append(HostEvent(f"op{depth}", 7, begin, length, [[length % 5]]))
        out.extend(draw(nested_events(depth + 1, begin, length)))
        cursor = begin + length
    return out


@given(nested_events())
@settings(max_examples=200, deadline=None)
def test_self_times_partition_the_top_level_time(events: list[HostEvent]) -> None:
    rows = fold_events(events)
    for row in rows:
        assert 0 <= row.self_ns <= row.total_ns
    roots_ns = sum(e.duration_ns for e in events if e.name == "op0")
    assert sum(r.self_ns for r in rows) == roots_ns
    shuffled = fold_events(list(reversed(events)))
    assert sorted((r.name, r.self_ns, r.count) for r in shuffled) == sorted(
        (r.name, r.self_ns, r.count) for r in rows
    )


@given(nested_events(), st.sets(st.sampled_from(["op0", "op1", "op2", "op3"])))
@settings(max_examples=200, deadline=None)
def test_work_time_is_the_outermost_counted_calls(
    events: list[HostEvent], counted: set[str]
) -> None:
    # Brute force: a call owns work when its name is counted and no enclosing call's is; it
    # owns its whole duration, and nothing below it owns any.
    def inside(e: HostEvent, outer: HostEvent) -> bool:
        return (
            outer is not e
            and outer.start_ns <= e.start_ns
            and e.start_ns + e.duration_ns <= outer.start_ns + outer.duration_ns
            and (outer.start_ns, -outer.duration_ns) < (e.start_ns, -e.duration_ns)
        )

    owners = [
        e
        for e in events
        if e.name in counted and not any(o.name in counted and inside(e, o) for o in events)
    ]
    rows = fold_events(events, counted.__contains__)
    for name in {"op0", "op1", "op2", "op3"}:
        mine = [e for e in owners if e.name == name]
        got = [r for r in rows if r.name == name]
        assert sum(r.work_ns or 0 for r in got) == sum(e.duration_ns for e in mine)
        assert sum(r.work_count or 0 for r in got) == len(mine)
    for row in rows:
        assert row.work_ns is not None and 0 <= row.work_ns <= row.total_ns
    # Work intervals never overlap, so they add up to no more than the top-level time.
    assert sum(r.work_ns or 0 for r in rows) <= sum(
        e.duration_ns for e in events if e.name == "op0"
    )
    assert all(r.work_ns is None and r.work_count is None for r in fold_events(events))


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 6)), min_size=1, max_size=60
    ),
    st.sampled_from([0, 2**19, 2**50]),
)
@settings(max_examples=300, deadline=None)
def test_packed_sort_orders_like_a_three_key_lexsort(
    rows: list[tuple[int, int, int]], offset: int
) -> None:
    # Many events share a thread and a start (ties broken longest first, then input order);
    # the offsets push threads or starts past what packs into one key, taking the lexsort path.
    threads = np.array([r[0] for r in rows], dtype=np.int64) + (offset if offset == 2**19 else 0)
    starts = np.array([r[1] for r in rows], dtype=np.int64) * (offset or 1)
    durations = np.array([r[2] for r in rows], dtype=np.int64)
    expected = np.lexsort((-durations, starts, threads))
    assert _thread_start_order(threads, starts, durations).tolist() == expected.tolist()


@given(
    st.lists(st.integers(-5, 30), max_size=40).map(sorted),
    st.lists(st.integers(-8, 35), max_size=40).map(sorted),
)
@settings(max_examples=300, deadline=None)
def test_count_at_most_is_a_right_searchsorted(values: list[int], points: list[int]) -> None:
    a, q = np.array(values, dtype=np.int64), np.array(points, dtype=np.int64)
    assert count_at_most(a, q).tolist() == np.searchsorted(a, q, side="right").tolist()


@st.composite
def nested_with_ties(
    draw: st.DrawFn, depth: int = 0, start: int = 0, span: int = 60
) -> list[tuple[int, int]]:
    """Properly nested (start, duration) pairs, with zero-length events and shared starts."""
    out: list[tuple[int, int]] = []
    cursor = start
    for _ in range(draw(st.integers(0, 3 if depth < 4 else 0))):
        if cursor > start + span:
            break
        begin = draw(st.integers(cursor, start + span))
        length = draw(st.integers(0, start + span - begin))
        out.append((begin, length))
        out.extend(draw(nested_with_ties(depth + 1, begin, length)))
        cursor = begin + length  # the next sibling may start where this one ends
    return out


@given(st.lists(nested_with_ties(), min_size=1, max_size=3), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_self_time_matches_brute_force(threads: list[list[tuple[int, int]]], rng: Any) -> None:
    # Each event's parent is the latest event before it (by start, longest first, then input
    # order) on its thread that is still open at its start and ends no earlier than it does.
    events = [(t, s, d) for t, pairs in enumerate(threads) for s, d in pairs]
    rng.shuffle(events)
    expected = [d for _, _, d in events]
    for t in range(len(threads)):
        mine = sorted(
            (i for i, e in enumerate(events) if e[0] == t),
            key=lambda i: (events[i][1], -events[i][2], i),
        )
        for k, i in enumerate(mine):
            _, s, d = events[i]
            parents = [
                j
                for j in mine[:k]
                if events[j][1] + events[j][2] > s and s + d <= events[j][1] + events[j][2]
            ]
            if parents:
                expected[parents[-1]] -= d
    got = self_ns(
        np.array([e[0] for e in events], dtype=np.int64),
        np.array([e[1] for e in events], dtype=np.int64),
        np.array([e[2] for e in events], dtype=np.int64),
    )
    assert got.tolist() == expected

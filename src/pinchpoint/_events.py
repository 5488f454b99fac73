"""Fold profiler events into per-operator rows: calls, self time and total time.

A live recording (torch.profiler's Kineto events) and, later, an imported trace file both give
host events as (name, thread, start, duration, shapes, dtypes); this one piece of code turns them
into operator rows. It does not import torch.

Self time is the event's duration less the durations of its direct children: events on the same
thread nest by their intervals, so a stack swept in start order finds each event's parent.

Work time is the time of the calls whose FLOPs and bytes a counter attributed to an operator.
A FLOP counter that hooks the dispatcher (a ``TorchDispatchMode``) sees an operator such as
``aten::convolution`` but not the operators its kernel calls (``aten::_convolution``,
``aten::mkldnn_convolution``): those run below the dispatcher it hooks, and the profiler shows
them as children that hold nearly all of the time. So an event that carries counted work and is
not nested in another such event owns its whole duration, its children included; events nested
in it own none (their work is its work). Placing FLOPs against self time instead puts a
convolution's FLOPs against the few microseconds of its dispatch and the roofline point tens of
times above the roof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "HostEvent",
    "OperatorRow",
    "count_at_most",
    "covered_ns",
    "fold_events",
    "outermost",
    "self_ns",
]


class HostEvent(NamedTuple):
    """One host-side event: an operator call or an annotation, in nanoseconds.

    A named tuple rather than a dataclass: a profiled step has thousands of events, and
    building them must cost less than the step.
    """

    name: str
    thread: int
    start_ns: int
    duration_ns: int
    shapes: Sequence[Any] = ()
    dtypes: Sequence[str] = ()


@dataclass
class OperatorRow:
    """The calls of one operator with one set of input shapes, summed.

    ``work_ns`` and ``work_count`` are the duration (children included) and number of the calls
    that carry counted work and are not nested in another such call (see the module docstring);
    None where :func:`fold_events` was given no ``carries``.
    """

    name: str
    shapes: list[Any]
    dtypes: list[str]
    count: int = 0
    self_ns: int = 0
    total_ns: int = 0
    work_ns: int | None = None
    work_count: int | None = None


def fold_events(
    events: Iterable[HostEvent], carries: Callable[[str], bool] | None = None
) -> list[OperatorRow]:
    """Group events by name and input shapes, with self time computed from their nesting.

    Rows come in order of first appearance in time. An event only partly inside another (which a
    well-formed trace never has) is treated as a sibling, not a child. ``carries`` says which
    operator names a FLOP counter attributed work to; given it, each row also gets its work time
    and calls (:class:`OperatorRow`).
    """
    events = sorted(events, key=_start_then_longest)
    if not events:
        return []
    threads = np.fromiter((e.thread for e in events), dtype=np.int64, count=len(events))
    starts = np.fromiter((e.start_ns for e in events), dtype=np.int64, count=len(events))
    durations = np.fromiter((e.duration_ns for e in events), dtype=np.int64, count=len(events))
    own = self_ns(threads, starts, durations).tolist()
    working: list[bool] = []
    if carries is not None:
        verdicts: dict[str, bool] = {}
        mask = np.fromiter(
            (verdicts.setdefault(e.name, carries(e.name)) for e in events),
            dtype=bool,
            count=len(events),
        )
        top = np.zeros(len(events), dtype=bool)
        top[mask] = outermost(threads[mask], starts[mask], durations[mask])
        working = top.tolist()
    rows: dict[tuple[str, str], OperatorRow] = {}
    for i, (event, self_time) in enumerate(zip(events, own, strict=True)):
        key = (event.name, repr(event.shapes))
        row = rows.get(key)
        if row is None:
            shapes = [list(s) if isinstance(s, (list, tuple)) else s for s in event.shapes]
            row = rows[key] = OperatorRow(event.name, shapes, list(event.dtypes))
            if carries is not None:
                row.work_ns = row.work_count = 0
        row.count += 1
        row.total_ns += event.duration_ns
        row.self_ns += self_time
        if working and working[i]:
            row.work_ns = (row.work_ns or 0) + event.duration_ns
            row.work_count = (row.work_count or 0) + 1
    return list(rows.values())


def outermost(
    threads: npt.NDArray[np.int64], starts: npt.NDArray[np.int64], durations: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Whether each event is nested in no other of these events on its thread (depth 0)."""
    n = starts.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = _thread_start_order(threads, starts, durations)
    t = threads[order]
    bounds = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1], [True])))
    s, d = starts[order], durations[order]
    top = np.empty(n, dtype=bool)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        top[lo:hi] = _depths(s[lo:hi], d[lo:hi]) == 0
    out: npt.NDArray[np.bool_] = np.empty(n, dtype=bool)
    out[order] = top
    return out


def self_ns(
    threads: npt.NDArray[np.int64], starts: npt.NDArray[np.int64], durations: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Each event's duration less its direct children's, from how events nest on each thread.

    Vectorised: per thread, events sorted by start (longest first at equal starts) get their
    nesting depth from how many earlier events are still open at their start; an event's parent
    is the nearest earlier event one level up (see below). Partly overlapping events (malformed
    traces) never make a self time negative.
    """
    n = starts.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Arrays are let go as soon as they are used: a long trace has millions of host events, and
    # each array of them is tens of MB.
    order = _thread_start_order(threads, starts, durations)
    t = threads[order]
    bounds = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1], [True])))
    del t
    s, d = starts[order], durations[order]
    depth = np.empty(n, dtype=np.int64)  # the threads' runs cover every row
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        depth[lo:hi] = _depths(s[lo:hi], d[lo:hi])
    del s
    # An event's parent is the nearest earlier event one level up: on its thread, every event
    # between the two is nested deeper (or it would have closed the parent), and depths restart
    # at 0 on each thread. So each level's children find their parents in one merge with the
    # level above (both in row order), the events grouped by depth once.
    # Small integers take numpy's radix sort.
    top = int(depth.max())
    by_depth = np.argsort(depth.astype(np.int16) if top < 2**15 else depth, kind="stable")
    level_bounds = np.concatenate(([0], np.cumsum(np.bincount(depth, minlength=top + 1))))
    del depth
    parent_of = np.full(n, n, dtype=np.intp)  # n: none found (only top-level events keep it)
    for level in range(len(level_bounds) - 2):
        parents = by_depth[level_bounds[level] : level_bounds[level + 1]]
        kids = by_depth[level_bounds[level + 1] : level_bounds[level + 2]]
        if kids.size and parents.size:
            parent_of[kids] = parents[count_at_most(parents, kids) - 1]
    nested = by_depth[level_bounds[1] :]
    child_total = np.bincount(parent_of[nested], weights=d[nested], minlength=n + 1)[:n]
    del parent_of, nested, by_depth
    own = child_total.astype(np.int64)
    del child_total
    np.subtract(d, own, out=own)
    np.maximum(own, 0, out=own)
    out: npt.NDArray[np.int64] = np.empty(n, dtype=np.int64)
    out[order] = own
    return out


def count_at_most(values: npt.NDArray[Any], points: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """For each of the sorted ``points``, how many of the sorted ``values`` are at most it:
    ``np.searchsorted(values, points, side="right")``, by one merge of the two sorted runs (a
    stable sort, which finds the runs) instead of a binary search per point."""
    merged = np.argsort(np.concatenate((values, points)), kind="stable")
    # Ties put values first (earlier in the input); points keep their order.
    found: npt.NDArray[np.intp] = np.flatnonzero(merged >= values.size) - np.arange(points.size)
    return found


def distinct(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The sorted distinct values of a 1-D array: ``np.unique`` without its masked-array check,
    which imports ``numpy.ma`` (about 12 ms in every process that analyses a trace)."""
    ordered = np.sort(values)
    return (
        ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if ordered.size else ordered
    )


#: Bits of a start (ns from the earliest) and of a thread index in a packed sort key.
_START_BITS, _THREAD_BITS = 44, 19


def _thread_start_order(
    threads: npt.NDArray[np.int64], starts: npt.NDArray[np.int64], durations: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """The order by thread, then start, then longest first (a lexsort of the three).

    Where thread and start pack into one int64 (threads below 2**19, a span under 4.8 hours),
    one stable sort of the packed key does it: events come nearly in time order, which the
    stable sort runs through fast (about 40x faster than a three-key lexsort). Only the few runs
    of events that share a thread and a start are then ordered by duration.
    """
    rel = starts - starts.min()
    if threads.min() < 0 or threads.max() >= 2**_THREAD_BITS or rel.max() >= 2**_START_BITS:
        return np.lexsort((-durations, starts, threads))
    key = threads << _START_BITS
    key |= rel
    del rel
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if tied.size:
        at = distinct(np.concatenate((tied, tied + 1)))  # positions of every run of equal keys
        run = order[at]  # within a run, still in input order
        order[at] = run[np.lexsort((-durations[run], key[run]))]
    return order


def _depths(s: npt.NDArray[np.int64], d: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Nesting depth of one thread's events, sorted by start and then longest first."""
    ends = s + d
    ends.sort()
    closed = count_at_most(ends, s)  # events ended by each start
    del ends  # a long trace's threads hold millions of events: one array less at the peak
    zero = d == 0
    if zero.any():
        # Zero-length events end at their own start; the ones sorted after an event (equal
        # start, shorter) and the event itself are not "earlier events already closed".
        zero_starts = s[zero]
        z_hi = np.searchsorted(zero_starts, s, side="right")
        z_lo = np.searchsorted(zero_starts, s, side="left")
        zero_index = np.cumsum(zero) - 1
        closed -= np.where(zero, z_hi - zero_index - 1, z_hi - z_lo) + zero
    depth: npt.NDArray[np.int64] = np.arange(s.size, dtype=np.int64)
    depth -= closed
    np.maximum(depth, 0, out=depth)
    return depth


def _start_then_longest(event: HostEvent) -> tuple[int, int]:
    return (event.start_ns, -event.duration_ns)


def covered_ns(events: Iterable[HostEvent]) -> int:
    """Nanoseconds during which at least one event was open, per thread, summed over threads.

    The rest of a step's host time ran no operator at all: Python, the framework's module
    machinery, the user's own code between operators.
    """
    by_thread: dict[int, list[tuple[int, int]]] = {}
    for event in events:
        by_thread.setdefault(event.thread, []).append(
            (event.start_ns, event.start_ns + event.duration_ns)
        )
    total = 0
    for spans in by_thread.values():
        spans.sort()
        end_so_far = None
        for start, end in spans:
            if end_so_far is None or start >= end_so_far:
                total += end - start
                end_so_far = end
            elif end > end_so_far:
                total += end - end_so_far
                end_so_far = end
    return total

"""Fold profiler events into per-operator rows: calls, self time and total time.

A live recording (torch.profiler's Kineto events) and, later, an imported trace file both give
host events as (name, thread, start, duration, shapes, dtypes); this one piece of code turns them
into operator rows. It does not import torch.

Self time is the event's duration less the durations of its direct children: events on the same
thread nest by their intervals, so a stack swept in start order finds each event's parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["HostEvent", "OperatorRow", "covered_ns", "fold_events"]


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
    """The calls of one operator with one set of input shapes, summed."""

    name: str
    shapes: list[Any]
    dtypes: list[str]
    count: int = 0
    self_ns: int = 0
    total_ns: int = 0


def fold_events(events: Iterable[HostEvent]) -> list[OperatorRow]:
    """Group events by name and input shapes, with self time computed from their nesting.

    Rows come in order of first appearance in time. An event only partly inside another (which a
    well-formed trace never has) is treated as a sibling, not a child.
    """
    by_thread: dict[int, list[HostEvent]] = {}
    for event in events:
        by_thread.setdefault(event.thread, []).append(event)

    rows: dict[tuple[str, str], OperatorRow] = {}
    for thread_events in by_thread.values():
        thread_events.sort(key=_start_then_longest)
        child_ns = [0] * len(thread_events)
        stack: list[tuple[int, int]] = []  # (end_ns, index) of the open events
        for index, (_, _, start, duration, _, _) in enumerate(thread_events):
            end = start + duration
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack and end <= stack[-1][0]:
                child_ns[stack[-1][1]] += duration
            stack.append((end, index))
        for event, children in zip(thread_events, child_ns, strict=True):
            key = (event.name, repr(event.shapes))
            row = rows.get(key)
            if row is None:
                shapes = [list(s) if isinstance(s, (list, tuple)) else s for s in event.shapes]
                row = rows[key] = OperatorRow(event.name, shapes, list(event.dtypes))
            row.count += 1
            row.total_ns += event.duration_ns
            row.self_ns += max(0, event.duration_ns - children)
    return list(rows.values())


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

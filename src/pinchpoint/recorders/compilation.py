"""What ``torch.compile`` does in each recorded step, read from torch._dynamo's own counters.

Dynamo keeps process-wide tallies: ``counters["stats"]["unique_graphs"]`` (graphs compiled),
``counters["graph_break"]`` (graph breaks by reason), ``counters["unimplemented"]`` (where it
gave up, its recompile limit among them), ``compilation_time_metrics["_compile.compile_inner"]``
(seconds per compile, the backend's included) and ``guard_failures`` (why each recompile
happened, per code object). :class:`CompileMeter` snapshots them when a step begins and keeps
the difference when it ends, so compiles elsewhere in the process before or after the run do
not count. Nothing is imported: a process that never loaded torch._dynamo compiled nothing, and
the meter then records nothing.

The recorder's heavier instruments do not mix with compiled code: a ``TorchDispatchMode`` (the
FLOP counter) active while dynamo meets a frame makes dynamo skip that code for good, and global
module hooks (the per-module timer) are traced into the graphs as graph breaks of their own.
:func:`is_compiled` tells the recorder when to keep them away (see
:mod:`pinchpoint.recorders.recorder`).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any

from pinchpoint._profile import Compilation

__all__ = ["CompileMeter", "batch_shapes", "is_compiled"]

#: The dynamo timer whose entries are whole compiles (tracing, guards, the backend).
_COMPILE_TIMER = "_compile.compile_inner"
#: Reasons are kept by their first line, at most this long.
_REASON_CHARS = 160
_NUMBERS = re.compile(r"\.?\s*expected .*$|\b\d+/\d+:\s*")


def is_compiled(model: Any) -> bool:
    """Whether ``model`` holds a compiled module (``torch.compile``'s, or pinchpoint's own)."""
    if "torch._dynamo" not in sys.modules:
        return False
    names = {"OptimizedModule", "CompiledModule"}
    return any(type(module).__name__ in names for module in model.modules())


def batch_shapes(batch: Any) -> str:
    """The shapes of the tensors in ``batch`` (``8x697,8``), followed through tuples, lists and
    dicts; empty without any."""
    found: list[str] = []
    stack = [batch]
    while stack and len(found) < 8:
        item = stack.pop(0)
        shape = getattr(item, "shape", None)
        if shape is not None and hasattr(item, "dim"):
            found.append("x".join(str(int(n)) for n in shape) or "scalar")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return ",".join(found)


class _Snapshot:
    """Dynamo's tallies at one moment (all zero before torch._dynamo is loaded)."""

    def __init__(self) -> None:
        if "torch._dynamo" not in sys.modules:
            self.graphs = self.limit_hits = self.compiles = 0
            self.breaks: Counter[str] = Counter()
            self.failures: dict[Any, int] = {}
            return
        from torch._dynamo import utils

        counters = utils.counters
        self.graphs = int(counters["stats"]["unique_graphs"])
        self.breaks = Counter({k: int(v) for k, v in counters["graph_break"].items()})
        self.limit_hits = sum(
            int(v) for k, v in counters["unimplemented"].items() if "recompile limit" in k.lower()
        )
        timer = utils.compilation_time_metrics.get(_COMPILE_TIMER, [])
        self.compiles = len(timer)
        self.failures = {code: len(v) for code, v in utils.guard_failures.items()}


def _fingerprint() -> tuple[int, ...] | None:
    """A few sums that change whenever dynamo's tallies do (None before it is loaded): a step
    that left them as they were compiled nothing, and needs no full snapshot."""
    if "torch._dynamo" not in sys.modules:
        return None
    from torch._dynamo import utils

    counters = utils.counters
    return (
        int(counters["stats"]["unique_graphs"]),
        len(utils.compilation_time_metrics.get(_COMPILE_TIMER, ())),
        sum(counters["graph_break"].values()),
        sum(counters["unimplemented"].values()),
        sum(len(v) for v in utils.guard_failures.values()),
    )


class CompileMeter:
    """Per-step compile counts, compile seconds and graph breaks for a recorded run.

    The full snapshot of dynamo's tallies is taken only when their :func:`_fingerprint` moved:
    a step of a model that compiles nothing costs a few dictionary reads.
    """

    def __init__(self) -> None:
        self._before: _Snapshot | None = None
        self._last: tuple[tuple[int, ...] | None, _Snapshot] | None = None
        self._seen = False
        self.graphs: list[int] = []
        self.compile_s: list[float] = []
        self.graph_breaks: list[int] = []
        self.shapes: list[str] = []
        self.recompile_reasons: Counter[str] = Counter()
        self.graph_break_reasons: Counter[str] = Counter()
        self.limit_hits = 0

    def begin(self) -> None:
        """Snapshot dynamo's tallies as a step begins."""
        self._before = self._snapshot()

    def _snapshot(self) -> _Snapshot:
        """The tallies now: the last snapshot again if its fingerprint still holds."""
        fingerprint = _fingerprint()
        if self._last is None or self._last[0] != fingerprint:
            self._last = (fingerprint, _Snapshot())
        return self._last[1]

    def end(self, shapes: str) -> None:
        """Keep what changed since :meth:`begin` as this step's entry."""
        before = self._before or _Snapshot()
        self._before = None
        self.shapes.append(shapes)
        if "torch._dynamo" not in sys.modules:  # nothing was ever compiled
            self.graphs.append(0)
            self.compile_s.append(0.0)
            self.graph_breaks.append(0)
            return
        from torch._dynamo import utils

        after = self._snapshot()
        self._seen = True
        if after is before:  # nothing moved: nothing compiled, nothing broke
            self.graphs.append(0)
            self.compile_s.append(0.0)
            self.graph_breaks.append(0)
            return
        # Clamped: torch._dynamo.reset() in the middle of a step may clear a tally.
        self.graphs.append(max(0, after.graphs - before.graphs))
        timer = utils.compilation_time_metrics.get(_COMPILE_TIMER, [])
        self.compile_s.append(float(sum(timer[before.compiles : after.compiles])))
        breaks = after.breaks - before.breaks
        self.graph_breaks.append(sum(breaks.values()))
        for reason, count in breaks.items():
            self.graph_break_reasons[_first_line(reason)] += count
        self.limit_hits += max(0, after.limit_hits - before.limit_hits)
        # A recompile fails the guards of every graph cached before it: count each reason once
        # per step, so the tally says in how many steps it caused recompiles.
        self.recompile_reasons.update(
            {
                _reason(str(reason))
                for code, reasons in utils.guard_failures.items()
                for reason in reasons[before.failures.get(code, 0) :]
            }
        )

    def result(self) -> Compilation | None:
        """The run's :class:`~pinchpoint._profile.Compilation`, or None when nothing compiled
        and nothing broke a graph."""
        if not self._seen or not (any(self.graphs) or any(self.graph_breaks)):
            return None
        return Compilation(
            graphs=list(self.graphs),
            compile_s=list(self.compile_s),
            graph_breaks=list(self.graph_breaks),
            shapes=list(self.shapes),
            recompile_reasons=dict(self.recompile_reasons.most_common(10)),
            graph_break_reasons=dict(self.graph_break_reasons.most_common(10)),
            limit_hits=self.limit_hits,
        )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:_REASON_CHARS] if text.strip() else "unknown"


def _reason(text: str) -> str:
    """A guard failure's reason without its numbers: ``0/3: tensor 'x' size mismatch at index
    1. expected 12, actual 13`` becomes ``tensor 'x' size mismatch at index 1``."""
    return _NUMBERS.sub("", _first_line(text)).strip() or "unknown"

"""The heavier instruments of a Recorder's sampled steps, apart from its timing of every step.

After warm-up a Recorder runs a few instrumented steps (:func:`sample_plan`): one under the FLOP
counter, then one under torch's profiler (a profiler warm-up step before it on a GPU). This module
holds what those steps need beyond the Recorder's clock: the plan, the filter that keeps the
profiler's own stderr chatter from the user's terminal, and :func:`fold_profiled_step`, which
turns the profiled step's host events into operators with FLOPs and bytes joined from the counted
step, the host time they cover, and the CPU activation peak.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pinchpoint._events import HostEvent, covered_ns, fold_events
from pinchpoint._profile import Operator
from pinchpoint.recorders.flops import bytes_from_shapes, estimate_from_tallies, flops_from_shapes

__all__ = ["ProfiledStep", "StderrFilter", "fold_profiled_step", "sample_plan"]


def sample_plan(device: torch.device | str) -> tuple[str, ...]:
    """The instruments of the steps right after warm-up, in order, on ``device``.

    The profiler's own warm-up step lets CUPTI settle on a GPU; on a CPU there is nothing to
    settle, so the profiled step follows the FLOP-counting one directly.
    """
    if torch.device(device).type == "cuda":
        return ("flops", "profiler-warmup", "operators")
    return ("flops", "operators")


#: Lines that torch's C++ side prints straight to stderr while the profiler runs.
_PROFILER_NOISE = (
    "USDT:",
    "CPUAllocator.cpp",
    "SyncActivityProfilerHandler",
    "IpcFabricConfigClient",
)


class StderrFilter:
    """Capture file descriptor 2 while the profiler runs; give back every line that is not noise.

    Kineto and the CPU allocator write to the descriptor directly, around Python's back, so the
    descriptor is swapped for a temporary file and the user's own lines are written back after.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._file: Any = None

    def start(self) -> None:
        if self._saved is not None:
            return
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError):
            self._saved = None

    def stop(self) -> None:
        if self._saved is None:
            return
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        kept = [
            line
            for line in self._file.read().decode(errors="replace").splitlines(keepends=True)
            if not line.startswith(_PROFILER_NOISE) and not any(n in line for n in _PROFILER_NOISE)
        ]
        self._file.close()
        if kept:
            sys.stderr.write("".join(kept))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class ProfiledStep:
    """What the profiled step gave: its operators (by self time, longest first), how much of the
    step's host time (``wall_s``, data loading left out) their events cover (``covered_s``, with the
    optimizer's share, ``optimizer_s`` and ``optimizer_calls``), and the CPU activation peak from
    the profiler's memory events (None on a GPU, where CUDA's allocator reports it)."""

    operators: list[Operator]
    coverage: dict[str, float]
    activation_peak: int | None


@_gc_paused()
def fold_profiled_step(
    prof: Any, tallies: Mapping[Any, Any], body_s: float, *, cuda: bool
) -> ProfiledStep:
    """Fold the profiled step's host events into operators and join the counter's FLOPs to them.

    Reads Kineto's events directly: building torch's FunctionEvent objects would cost more than
    the step itself on a small model. The cyclic garbage collector is paused meanwhile: thousands
    of fresh lists would set it off to sweep the whole heap several times. ``tallies`` are the FLOP
    counter's per-operator tallies of the counted step (empty when none ran), ``body_s`` the
    profiled step's wall time less its data loading.
    """
    cpu = torch.autograd.DeviceType.CPU  # type: ignore[attr-defined]
    host: list[HostEvent] = []
    memory: list[tuple[int, int]] = []
    for event in prof.profiler.kineto_results.events():
        name = event.name()
        if event.device_type() != cpu:
            continue
        if name == "[memory]":
            memory.append((event.start_ns(), event.nbytes()))
        elif not name.startswith("ProfilerStep"):
            host.append(
                HostEvent(
                    name=name,
                    thread=event.start_thread_id(),
                    start_ns=event.start_ns(),
                    duration_ns=event.duration_ns(),
                    shapes=event.shapes(),
                    dtypes=event.dtypes(),
                )
            )
    counted_names = {tally.name for tally in tallies.values()}
    operators = []
    # The counter's operators own their children's time (see pinchpoint._events): the
    # roofline needs FLOPs and the time they took on the same operator. A call nested in
    # another counted call (an aten::copy_ inside aten::_to_copy) ran inside a kernel the
    # counter saw whole: its FLOPs and bytes are that call's, so only the outermost calls
    # are scaled from the tally (counting the nested ones too counted them twice).
    carries = counted_names.__contains__ if tallies else None
    for row in fold_events(host, carries):
        calls = row.count if row.work_count is None else row.work_count
        flops, nbytes = _join_tally(tallies, row.name, row.shapes, row.dtypes, calls, counted_names)
        operators.append(
            Operator(
                name=row.name,
                count=row.count,
                self_s=row.self_ns / 1e9,
                total_s=row.total_ns / 1e9,
                input_shapes=row.shapes,
                input_dtypes=row.dtypes,
                flops=flops,
                bytes=nbytes,
                work_s=None if row.work_ns is None else row.work_ns / 1e9,
            )
        )
    operators.sort(key=lambda o: o.self_s, reverse=True)
    optimizer_ns, optimizer_calls = _optimizer_span(host)
    coverage = {
        "wall_s": body_s,
        "covered_s": min(body_s, covered_ns(host) / 1e9),
        "optimizer_s": optimizer_ns / 1e9,
        "optimizer_calls": float(optimizer_calls),
    }
    activation_peak = None
    if not cuda and memory:
        activation_peak = max(itertools.accumulate((d for _, d in sorted(memory)), initial=0))
    return ProfiledStep(operators, coverage, activation_peak)


def _join_tally(
    tallies: Mapping[Any, Any],
    name: str,
    shapes: list[Any],
    dtypes: list[str],
    count: int,
    counted_names: set[str],
) -> tuple[int | None, int | None]:
    """FLOPs and bytes for a profiler row, from the FLOP counter's step.

    Rows match a tally on name and tensor shapes, scaled by call count. The profiled step may
    see other shapes than the counted one (batches padded to their own length): then
    matmul-family FLOPs come from torch's formulas on the profiled shapes, and other
    operators scale from the counted step per element of their first input. An operator the
    counter never saw (a composite like ``aten::linear``, an annotation) did its work in
    children that carry the FLOPs, so its own are zero.
    """
    if not tallies:
        return None, None
    if name not in counted_names:
        return 0, 0
    key = (name, tuple(tuple(s) for s in shapes if isinstance(s, list) and s))
    tally = tallies.get(key)
    if tally is not None:
        if tally.method == "unknown":
            return None, tally.bytes * count // tally.count
        return tally.flops * count // tally.count, tally.bytes * count // tally.count
    same_name = [t for t in tallies.values() if t.name == name]
    flops, nbytes = estimate_from_tallies(same_name, shapes, count)
    exact = flops_from_shapes(name, shapes)
    if exact is not None:
        flops = exact * count
    exact_bytes = bytes_from_shapes(name, shapes, dtypes)
    if exact_bytes is not None:
        nbytes = exact_bytes * count
    return flops, nbytes


def _optimizer_span(events: list[HostEvent]) -> tuple[int, int]:
    """Nanoseconds inside the optimizer's step annotations, and the ATen calls within them."""
    spans = [
        (e.thread, e.start_ns, e.start_ns + e.duration_ns)
        for e in events
        if e.name.startswith("Optimizer.step#")
    ]
    calls = sum(
        1
        for e in events
        if e.name.startswith("aten::")
        and any(t == e.thread and a <= e.start_ns < b for t, a, b in spans)
    )
    return sum(b - a for _, a, b in spans), calls

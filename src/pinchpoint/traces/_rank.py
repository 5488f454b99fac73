"""Analyse one rank's trace into its Profile (the "map" of trace analysis).

:func:`summarize_rank` reads an :class:`~pinchpoint.traces._parse.EventTable` and returns the
rank's :class:`~pinchpoint._profile.Profile`, the model a live run records too: the host-side
steps and their phases, the device timeline with Holistic Trace Analysis' definitions
(:class:`~pinchpoint._profile.DeviceTimeline`), per-kernel and per-operator totals keyed by name
for later comparisons, and where it came from with launch and sync statistics
(:class:`~pinchpoint._profile.TraceSource`). Cross-rank analyses read only these Profiles, a
few kilobytes each, never events.

Definitions (the README repeats them):

- **Device events** are kernels, memory copies and sets, and device-side syncs on a stream
  (``args.stream`` ≥ 0). As HTA does, when the trace has two or more ``ProfilerStep`` spans the
  last one is left out (it is usually cut short when the profiler stops): only device events
  launched (matched by correlation id) by host events that start before the last step does count.
- **Span**: from the first device event's start to the last one's end in that window.
  ``idle_share`` = span minus the union of all device events, over the span; ``compute_share`` =
  the union of computation kernels over the span; ``non_compute_share`` = the rest.
- **Kernel kinds**: communication (``nccl…Kernel``), memory (``Memcpy…``, ``Memset…``, ``dma…``
  or the copy and set categories), sync (device-side sync events) and computation (all others).
- **Communication/computation overlap**: the time communication and computation kernels run
  together over the union of communication time (HTA's ``comm_comp_overlap``).
- **Idle breakdown** per stream (HTA's): the gap before a kernel is ``host_wait`` when the kernel
  was launched after the previous one on its stream ended, else ``kernel_wait`` when shorter than
  30 µs, else ``other``; shares are of the summed per-stream gaps. "The previous one" is the
  latest end so far on the stream, and kernels that start together go in launch order, so the
  split does not depend on the order of events in the file.
- **Step phases** from the host thread that holds the ``ProfilerStep`` spans; see
  :data:`PHASE_PATTERNS` and :func:`_step_phases`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pinchpoint._events import distinct, self_ns
from pinchpoint._profile import (
    CallStats,
    DeviceTimeline,
    KernelTotal,
    Operator,
    Profile,
    Step,
    TraceSource,
)
from pinchpoint.traces import _intervals as iv
from pinchpoint.traces._format import trace_profile
from pinchpoint.traces._parse import (
    ANNOTATION,
    CPU_OP,
    GPU_CATEGORIES,
    GPU_SYNC,
    MEMCPY,
    MEMSET,
    RUNTIME,
    EventTable,
)

__all__ = [
    "COMMUNICATION_OP",
    "KERNEL_WAIT_NS",
    "PHASE_PATTERNS",
    "SYNC_CALLS",
    "kernel_kind",
    "summarize_rank",
]

#: A gap between two kernels on a stream shorter than this is launch latency (HTA's default).
KERNEL_WAIT_NS = 30_000

_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_COMM_KERNEL = re.compile(r"^(nccl|rccl).*Kernel", re.IGNORECASE)
_MEMORY_KERNEL = re.compile(r"^(Memcpy|Memset|dma)")

#: Host events that mark a phase, matched against their names (case-insensitive where shown).
PHASE_PATTERNS: dict[str, re.Pattern[str]] = {
    "data": re.compile(
        r"DataLoader.*__next__|(?i:data_?load|load_batch|wait_for_batch|next_batch|get_batch)"
    ),
    "optimizer": re.compile(r"(?i:optimizer)(?!.*zero_grad)"),
    "backward": re.compile(r"(?i:backward)|^autograd::engine::evaluate_function"),
    "forward": re.compile(r"(?i:\bforward\b)|^nn\.Module:"),
}
_AUTOGRAD = re.compile(r"^autograd::engine::evaluate_function")
_TRANSFER_CALL = re.compile(r"^(cuda|hip)Memcpy(?!.*Peer)")
#: Host calls that block until the device catches up.
SYNC_CALLS = frozenset(
    {
        "cudaStreamSynchronize",
        "cudaDeviceSynchronize",
        "cudaEventSynchronize",
        "hipStreamSynchronize",
        "hipDeviceSynchronize",
        "hipEventSynchronize",
    }
)
_SYNC_CALL = re.compile("^(" + "|".join(sorted(SYNC_CALLS)) + ")$")
_LAUNCH = re.compile(
    r"^(cuda|hip)(LaunchKernel|LaunchCooperativeKernel|ModuleLaunchKernel)|^cuLaunch"
)
#: Host operators that are collective communication (a rank waits in them for the others).
COMMUNICATION_OP = re.compile(
    r"(?i:^(nccl|gloo|c10d)[:_]|record_param_comms|all_?reduce|all_?gather|reduce_?scatter|"
    r"^broadcast|barrier|all_?to_?all)"
)
_RANK_IN_NAME = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)
#: The categories of host events: operators, annotations and runtime calls.
_HOST = (CPU_OP, ANNOTATION, RUNTIME)


def kernel_kind(name: str, category: int) -> str:
    """The kind of a device event: communication, memory, sync or computation (see module)."""
    if _COMM_KERNEL.match(name):
        return "communication"
    if category in (MEMCPY, MEMSET) or _MEMORY_KERNEL.match(name):
        return "memory"
    if category == GPU_SYNC:
        return "sync"
    return "computation"


def summarize_rank(table: EventTable, path: str | Path = "", order: int = 0) -> Profile:
    """The Profile of one rank's trace (see the module docstring for every definition)."""
    rank, rank_source = _rank_of(table, Path(path), order)
    steps = _profiler_steps(table)
    main_thread = _main_thread(table, steps)
    issues = list(table.issues)
    if not steps:
        issues.append("no ProfilerStep spans: no step phases, and the whole trace is one window")
    launches = _launch_stats(table, len(steps))
    gpu = _device_summary(
        table, steps, _by_correlation(table, RUNTIME, table.ts_ns), main_thread, issues, launches
    )
    step_rows = _step_rows(table, steps, gpu)
    distributed = table.distributed
    kind, device, facts = _device_facts(table, gpu is not None)
    backend = distributed.get("backend") if isinstance(distributed, dict) else None
    source = TraceSource(
        file=str(path),
        rank=rank,
        rank_source=rank_source,
        world_size=_int(distributed.get("world_size")),
        backend=backend,
        device_kind=kind,
        events=table.events_read,
        launches=launches,
        sync=_sync_stats(table),
        issues=issues,
    )
    timeline = gpu["timeline"] if gpu is not None else None
    operators = _operator_totals(table, steps)
    return trace_profile(source, device, facts, step_rows, operators, timeline)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rank_of(table: EventTable, path: Path, order: int) -> tuple[int, str]:
    raw_rank = table.distributed.get("rank")
    if isinstance(raw_rank, str) and raw_rank.isdigit() and len(raw_rank) < 10:
        raw_rank = int(raw_rank)
    rank = _int(raw_rank)
    if rank is not None:
        return rank, "distributedInfo"
    match = _RANK_IN_NAME.search(path.name)
    if match:
        return int(match.group(1)), "file name"
    return order, "file order"


def _profiler_steps(table: EventTable) -> list[tuple[int, int, int, int]]:
    """``(step number, start_ns, end_ns, thread)`` of each ProfilerStep span, by start."""
    host = np.flatnonzero((table.cat == CPU_OP) | (table.cat == ANNOTATION))
    step_names = {
        i: int(m.group(1))
        for i, n in enumerate(table.names)
        if (m := _STEP.match(n)) and len(m.group(1)) < 18  # step numbers fit in JSON's int64
    }
    if not step_names:
        return []
    ids = np.fromiter(step_names, dtype=np.int32)
    rows = host[np.isin(table.name[host], ids)]
    out = [
        (
            step_names[int(table.name[r])],
            int(table.ts_ns[r]),
            int(table.ts_ns[r] + table.dur_ns[r]),
            int(table.thread[r]),
        )
        for r in rows
    ]
    out.sort(key=lambda s: s[1])
    # Keep one span per step number (a step can appear as both an operator and an annotation).
    first: dict[int, tuple[int, int, int, int]] = {}
    for step in out:
        first.setdefault(step[0], step)
    return list(first.values())


def _main_thread(table: EventTable, steps: list[tuple[int, int, int, int]]) -> int | None:
    if steps:
        return Counter(s[3] for s in steps).most_common(1)[0][0]
    host = table.thread[(table.cat == CPU_OP) | (table.cat == ANNOTATION)]
    if host.size == 0:
        return None
    return int(np.bincount(host).argmax())


def _by_correlation(
    table: EventTable, category: int, column: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.int64]]:
    """An index for :func:`_lookup`: ``column``'s value of each ``category`` event by its
    correlation id (a host runtime call's start, a device copy's duration)."""
    rows = np.flatnonzero((table.cat == category) & (table.correlation >= 0))
    corr = table.correlation[rows]
    order = np.argsort(corr, kind="stable")
    return {"corr": corr[order], "value": column[rows][order]}


def _lookup(index: dict[str, npt.NDArray[np.int64]], corr: npt.NDArray[np.int64]) -> Any:
    """The indexed value of each correlation id, -1 where the index lacks it."""
    keys = index["corr"]
    if keys.size == 0:
        return np.full(corr.shape, -1, dtype=np.int64)
    idx = np.clip(np.searchsorted(keys, corr), 0, keys.size - 1)
    found = keys[idx] == corr
    return np.where(found, index["value"][idx], -1)


def _device_summary(
    table: EventTable,
    steps: list[tuple[int, int, int, int]],
    launch_of: dict[str, npt.NDArray[np.int64]],
    main_thread: int | None,
    issues: list[str],
    launches: CallStats,
) -> dict[str, Any] | None:
    on_device = np.isin(table.cat, GPU_CATEGORIES) & (table.stream >= 0)
    rows = np.flatnonzero(on_device)
    if rows.size == 0:
        return None
    launched = _lookup(launch_of, table.correlation[rows])
    # Every device event, for per-step accounting; the breakdown below uses HTA's window.
    everything_rows = {
        "ts": table.ts_ns[rows],
        "end": table.ts_ns[rows] + table.dur_ns[rows],
        "launched": launched,
        "kinds": _kinds(table, rows),
    }
    window, kinds = "whole trace", everything_rows["kinds"]
    if len(steps) >= 2:
        # HTA's window: device work launched before the last profiler step began.
        keep = (launched >= 0) & (launched < steps[-1][1])
        rows, launched, kinds = rows[keep], launched[keep], kinds[keep]
        window = "all profiler steps but the last"
        if rows.size == 0:
            issues.append("no device work was launched before the last profiler step")
            return None
    ts = table.ts_ns[rows]
    end = ts + table.dur_ns[rows]
    everything = iv.merge(ts, end)
    span_lo, span_hi = int(ts.min()), int(end.max())  # zero-length events merge to nothing
    span = span_hi - span_lo
    busy = iv.length(everything)
    comp_mask = kinds == "computation"
    comm_mask = kinds == "communication"
    comp = iv.merge(ts[comp_mask], end[comp_mask])
    comm = iv.merge(ts[comm_mask], end[comm_mask])
    compute = iv.length(comp)
    communication = iv.length(comm)
    overlap = iv.length(iv.intersect(comm, comp))
    idle = span - busy
    gaps = iv.subtract((np.array([span_lo]), np.array([span_hi])), everything)
    dur = end - ts
    timeline = DeviceTimeline(
        window=window,
        span_s=span / 1e9,
        busy_s=busy / 1e9,
        idle_s=idle / 1e9,
        compute_s=compute / 1e9,
        non_compute_s=(busy - compute) / 1e9,
        communication_s=communication / 1e9,
        exposed_communication_s=(communication - overlap) / 1e9,
        idle_share=idle / span if span else 0.0,
        compute_share=compute / span if span else 0.0,
        non_compute_share=(busy - compute) / span if span else 0.0,
        exposed_communication_share=(communication - overlap) / span if span else 0.0,
        comm_comp_overlap=overlap / communication if communication else None,
        idle_causes=_idle_causes(table, main_thread, gaps),
        streams=int(distinct(table.stream[rows]).size),
        idle_breakdown=_idle_breakdown(table.stream[rows], ts, end, launched),
        kernels=int(dur.size),
        kernel_time_s=int(dur.sum()) / 1e9,
        kernel_median_s=float(np.median(dur)) / 1e9 if dur.size else 0.0,
        kernel_kinds=_kind_totals(kinds, dur),
        kernel_totals=_kernel_totals(table.names, table.name[rows], kinds, dur),
        launches_per_step=launches.per_step,
        launch_median_s=launches.median_s,
    )
    return {"timeline": timeline, "gaps": gaps, **everything_rows}


def _kinds(table: EventTable, rows: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """The kernel kind of each device event, decided once per (name, category) pair."""
    pair = table.name[rows].astype(np.int64) * 16 + table.cat[rows]
    uniq, inverse = np.unique(pair, return_inverse=True)
    kinds = np.array(
        [kernel_kind(table.names[int(p) // 16], int(p) % 16) for p in uniq.tolist()],
        dtype=object,
    )
    return kinds[inverse]


def _idle_causes(table: EventTable, main_thread: int | None, gaps: iv.Intervals) -> Any:
    """The device's idle seconds split by what the host was doing meanwhile.

    Each idle instant goes to the first that applies: ``data`` (the main thread waits for a
    batch), ``sync`` (some thread is blocked in a synchronising or copy call), ``optimizer``
    (the main thread runs the optimizer step), else ``host``: Python, the framework and kernel
    launches did not keep the device fed.
    """
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    main = _host_rows(table, main_thread, lo, hi)
    runtime = np.flatnonzero(table.cat == RUNTIME)
    blocking = distinct(
        np.concatenate(
            (_matching(table, runtime, _TRANSFER_CALL), _matching(table, runtime, _SYNC_CALL))
        )
    )
    claims = [
        ("data", _span_of(table, _matching(table, main, PHASE_PATTERNS["data"]))),
        ("sync", _span_of(table, blocking)),
        ("optimizer", _span_of(table, _matching(table, main, PHASE_PATTERNS["optimizer"]))),
    ]
    taken = iv.claimed(gaps, [spans for _, spans in claims])
    out = {cause: ns / 1e9 for (cause, _), ns in zip(claims, taken, strict=False)}
    out["host"] = taken[-1] / 1e9
    return out


def _idle_breakdown(
    streams: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    launched: npt.NDArray[np.int64],
) -> dict[str, Any]:
    order = np.lexsort((launched, end, ts, streams))  # ties: the first launched goes first
    s, t, e, lt = streams[order], ts[order], end[order], launched[order]
    same = np.concatenate(([False], s[1:] == s[:-1]))
    # The stream is busy until the latest end so far, not only the previous kernel's: with
    # kernels that overlap or start together, that keeps the split independent of their order.
    busy_until = e.copy()
    for first, stop in _segments(same):
        np.maximum.accumulate(busy_until[first:stop], out=busy_until[first:stop])
    prev_end = np.concatenate(([0], busy_until[:-1]))
    gap = np.where(same, t - prev_end, 0)
    host_wait = same & (lt > prev_end)
    kernel_wait = same & ~host_wait & (gap < KERNEL_WAIT_NS)
    other = same & ~host_wait & ~kernel_wait
    # Overlapping kernels on one stream (gap < 0) have no idle time between them.
    positive = np.maximum(gap, 0)
    totals = {
        "host_wait": int(positive[host_wait].sum()),
        "kernel_wait": int(positive[kernel_wait].sum()),
        "other": int(positive[other].sum()),
    }
    whole = sum(totals.values())
    out: dict[str, Any] = {f"{k}_s": v / 1e9 for k, v in totals.items()}
    out.update({f"{k}_share": (v / whole if whole else 0.0) for k, v in totals.items()})
    out["kernel_wait_threshold_s"] = KERNEL_WAIT_NS / 1e9
    return out


def _segments(same: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The ``[first, stop)`` index ranges of runs where ``same`` is True after the first row."""
    starts = np.flatnonzero(~same).tolist()
    return list(zip(starts, [*starts[1:], len(same)], strict=True))


def _kind_totals(kinds: npt.NDArray[Any], dur: npt.NDArray[np.int64]) -> dict[str, KernelTotal]:
    out = {}
    total_time = int(dur.sum())
    for kind in ("computation", "communication", "memory", "sync"):
        mask = kinds == kind
        if mask.any():
            t = int(dur[mask].sum())
            share = t / total_time if total_time else 0.0
            out[kind] = KernelTotal(count=int(mask.sum()), time_s=t / 1e9, share=share)
    return out


def _kernel_totals(
    names: list[str],
    name_ids: npt.NDArray[np.int32],
    kinds: npt.NDArray[Any],
    dur: npt.NDArray[np.int64],
) -> dict[str, KernelTotal]:
    uniq, inverse = np.unique(name_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=dur).astype(np.int64)
    counts = np.bincount(inverse)
    # A name's kind is its last event's (names do not change kind in practice).
    last = np.argsort(inverse, kind="stable")[np.cumsum(counts) - 1]
    return {
        names[n]: KernelTotal(count=int(c), time_s=int(t) / 1e9, kind=str(k))
        for n, c, t, k in zip(
            uniq.tolist(), counts.tolist(), sums.tolist(), kinds[last].tolist(), strict=True
        )
    }


def _host_rows(table: EventTable, thread: int | None, lo: int, hi: int) -> npt.NDArray[np.intp]:
    """Host events (operators, annotations, runtime calls) on ``thread`` starting in the window,
    by start.

    Host events are sorted by start once per table, so each window is two binary searches
    rather than a pass over every event (a long trace has hundreds of steps).
    """
    order = table.cache.get("host_order")
    if order is None:
        host = np.flatnonzero(np.isin(table.cat, _HOST))
        order = table.cache["host_order"] = host[np.argsort(table.ts_ns[host], kind="stable")]
        table.cache["host_ts"] = table.ts_ns[order]
    starts = table.cache["host_ts"]
    rows: npt.NDArray[np.intp] = order[
        np.searchsorted(starts, lo, side="left") : np.searchsorted(starts, hi, side="left")
    ]
    if thread is not None:
        rows = rows[table.thread[rows] == thread]
    return rows


def _matching(table: EventTable, rows: npt.NDArray[np.intp], pattern: re.Pattern[str]) -> Any:
    """The rows whose event name matches ``pattern`` (host events only)."""
    if rows.size == 0:
        return rows
    return rows[_name_mask(table, pattern)[table.name[rows]]]


def _name_mask(table: EventTable, pattern: re.Pattern[str]) -> npt.NDArray[np.bool_]:
    """For every name id, whether a host event's name matches ``pattern``; cached per table.

    Only names that host events carry are tested: kernel names run to kilobytes of C++
    templates, and no host pattern is meant for them.
    """
    cache = table.cache.setdefault("name_masks", {})
    mask: npt.NDArray[np.bool_] | None = cache.get(pattern)
    if mask is None:
        host_ids = table.cache.get("host_name_ids")
        if host_ids is None:
            host = np.isin(table.cat, _HOST)
            host_ids = table.cache["host_name_ids"] = distinct(table.name[host]).tolist()
        mask = np.zeros(len(table.names), dtype=bool)
        names = table.names
        hits = [i for i in host_ids if pattern.search(names[i])]
        mask[hits] = True
        cache[pattern] = mask
    return mask


def _span_of(table: EventTable, rows: npt.NDArray[np.intp]) -> iv.Intervals:
    ts = table.ts_ns[rows]
    return iv.merge(ts, ts + table.dur_ns[rows])


def _step_rows(
    table: EventTable,
    steps: list[tuple[int, int, int, int]],
    gpu: dict[str, Any] | None,
) -> list[Step]:
    out = []
    copies = _by_correlation(table, MEMCPY, table.dur_ns)
    if gpu is not None:
        # Device events by launch time, so each step's are found by binary search.
        by_launch = np.argsort(gpu["launched"], kind="stable")
        launch_sorted = gpu["launched"][by_launch]
    for number, lo, hi, thread in steps:
        rows = _host_rows(table, thread, lo, hi)
        all_threads = _host_rows(table, None, lo, hi)
        phases = _step_phases(table, rows, all_threads, lo, hi, copies)
        comm_rows = _matching(table, rows, COMMUNICATION_OP)
        comm_host = iv.length(iv.clip(_span_of(table, comm_rows), lo, hi))
        device_busy = device_comm = None
        if gpu is not None:
            in_step = by_launch[
                np.searchsorted(launch_sorted, lo) : np.searchsorted(launch_sorted, hi)
            ]
            comm = gpu["kinds"][in_step] == "communication"
            work, talk = in_step[~comm], in_step[comm]
            device_busy = iv.length(iv.merge(gpu["ts"][work], gpu["end"][work])) / 1e9
            device_comm = iv.length(iv.merge(gpu["ts"][talk], gpu["end"][talk])) / 1e9
        out.append(
            Step(
                index=number,
                start_s=(lo - steps[0][1]) / 1e9,
                wall_s=(hi - lo) / 1e9,
                phases=phases,
                communication_host_s=comm_host / 1e9,
                backward=bool(_matching(table, all_threads, _AUTOGRAD).size),
                device_busy_s=device_busy,
                device_communication_s=device_comm,
                # What the rank did itself: the device's non-communication work, or on a
                # host-only trace the step less the time it waited inside collectives.
                busy_s=device_busy if device_busy is not None else (hi - lo - comm_host) / 1e9,
            )
        )
    return out


def _step_phases(
    table: EventTable,
    rows: npt.NDArray[np.intp],
    all_threads: npt.NDArray[np.intp],
    lo: int,
    hi: int,
    copies: dict[str, npt.NDArray[np.int64]],
) -> dict[str, float]:
    """Seconds per phase of one step; each instant goes to the first phase that claims it.

    ``rows`` are the step's host events on its own thread, ``all_threads`` on every thread.
    Order of claims: ``transfer`` (host copy calls, ``cudaMemcpy*``, less the time they wait
    for the device to reach the copy: only the copy's own device duration, at the end of the
    call, counts; the wait is the device's work, not the copy's), ``data`` (DataLoader
    ``__next__`` or data-loading annotations), ``optimizer`` (``Optimizer.step#…`` or an
    optimizer annotation, not ``zero_grad``), ``backward`` (a backward annotation, or from the
    first to the last autograd engine call of the step on any thread), ``forward`` (a forward
    annotation or ``nn.Module`` spans; without them, the time before backward starts) and
    ``other`` (the rest).
    """
    wall = hi - lo
    if wall <= 0:
        return {"other": 0.0}
    claims: list[tuple[str, iv.Intervals]] = [("transfer", _copy_time(table, rows, copies))]
    for phase in ("data", "optimizer", "backward", "forward"):
        claims.append((phase, _span_of(table, _matching(table, rows, PHASE_PATTERNS[phase]))))
    backward = claims[3][1]
    if backward[0].size == 0:
        autograd = _matching(table, all_threads, _AUTOGRAD)
        if autograd.size:
            first = int(table.ts_ns[autograd].min())
            last = int((table.ts_ns[autograd] + table.dur_ns[autograd]).max())
            claims[3] = ("backward", (np.array([first]), np.array([min(last, hi)])))
    if claims[4][1][0].size == 0:
        back_start = int(claims[3][1][0][0]) if claims[3][1][0].size else hi
        claims[4] = ("forward", (np.array([lo]), np.array([back_start])))
    taken = iv.claimed((np.array([lo]), np.array([hi])), [spans for _, spans in claims])
    out = {phase: ns / 1e9 for (phase, _), ns in zip(claims, taken, strict=False) if ns}
    out["other"] = taken[-1] / 1e9
    return out


def _copy_time(
    table: EventTable, rows: npt.NDArray[np.intp], copies: dict[str, npt.NDArray[np.int64]]
) -> iv.Intervals:
    """The host copy calls among ``rows``, each cut to its device copy's duration at its end."""
    calls = _matching(table, rows, _TRANSFER_CALL)
    start = table.ts_ns[calls]
    end = start + table.dur_ns[calls]
    device_dur = _lookup(copies, table.correlation[calls])
    copy_start = np.where(device_dur >= 0, np.maximum(start, end - device_dur), start)
    return iv.merge(copy_start, end)


def _launch_stats(table: EventTable, steps: int) -> CallStats:
    rows = _matching(table, np.flatnonzero(table.cat == RUNTIME), _LAUNCH)
    dur = table.dur_ns[rows]
    return CallStats(
        count=int(rows.size),
        per_step=rows.size / steps if steps else None,
        median_s=float(np.median(dur)) / 1e9 if dur.size else None,
        p90_s=_percentile(dur, 0.9) / 1e9 if dur.size else None,
        time_s=int(dur.sum()) / 1e9,
    )


def _percentile(values: npt.NDArray[np.int64], q: float) -> float:
    """``np.percentile``'s default (linear) estimate, without the ``numpy.ma`` import it makes."""
    ordered = np.sort(values)
    at = q * (ordered.size - 1)
    lo = int(at)
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo))


def _sync_stats(table: EventTable) -> CallStats:
    rows = _matching(table, np.flatnonzero(table.cat == RUNTIME), _SYNC_CALL)
    return CallStats(count=int(rows.size), time_s=int(table.dur_ns[rows].sum()) / 1e9)


def _operator_totals(table: EventTable, steps: list[tuple[int, int, int, int]]) -> list[Operator]:
    """Per host operator (by name): calls, self and total seconds, inside the profiler steps."""
    mask = np.isin(table.cat, _HOST)
    if steps:
        lo, hi = steps[0][1], steps[-1][2]
        mask &= (table.ts_ns >= lo) & (table.ts_ns < hi)
    step_ids = [i for i, n in enumerate(table.names) if _STEP.match(n)]
    mask &= ~np.isin(table.name, step_ids)
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return []
    names, dur, thread, start = (
        table.name[rows],
        table.dur_ns[rows],
        table.thread[rows].astype(np.int64),
        table.ts_ns[rows],
    )
    del rows, mask  # a long trace's host rows: tens of MB each
    own = self_ns(thread, start, dur)
    del thread, start
    uniq, inverse = np.unique(names, return_inverse=True)
    counts = np.bincount(inverse)
    self_sum = np.bincount(inverse, weights=own)
    total_sum = np.bincount(inverse, weights=dur)
    out = [
        Operator(name=table.names[n], count=int(c), self_s=sf / 1e9, total_s=tt / 1e9)
        for n, c, sf, tt in zip(
            uniq.tolist(), counts.tolist(), self_sum.tolist(), total_sum.tolist(), strict=True
        )
    ]
    out.sort(key=lambda o: (-o.self_s, o.name))
    return out


def _device_facts(table: EventTable, has_gpu: bool) -> tuple[str, str, dict[str, Any] | None]:
    """The device kind, the Profile's device name, and its facts (:attr:`Machine.gpu`: name, and
    compute capability and memory where the trace's device properties give them)."""
    if not has_gpu:
        return "cpu", "cpu", None
    devices = table.device[np.isin(table.cat, GPU_CATEGORIES) & (table.device >= 0)]
    index = 0
    if devices.size:
        # The most common device id; by value, not bincount: a damaged id can be in the billions.
        ids, counts = np.unique(devices, return_counts=True)
        index = int(ids[counts.argmax()])
    rocm = any(n.startswith("hip") for n in table.names[:5000])
    facts: dict[str, Any] = {"name": None}
    for props in table.device_properties:
        if props.get("id") == index:
            facts["name"] = props.get("name")
            major, minor = props.get("computeMajor"), props.get("computeMinor")
            if major is not None:
                facts["capability"] = f"{major}.{minor}"
            facts["memory_bytes"] = props.get("totalGlobalMem")
    return "rocm" if rocm else "cuda", f"cuda:{index}", facts

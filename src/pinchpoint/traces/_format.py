"""The ``pinchpoint.trace/1`` file: a trace analysis as JSON, written from and read back into
Profiles.

A trace analysis lives in memory as the job's Profiles (:mod:`pinchpoint.traces._rank`); this
module is only the file's contract, which the README documents and users' scripts read: one row
per rank with the rank's facts, steps, device summary (``gpu``), launches, syncs and operators,
each under the names and in the order the format has always had. :func:`rank_row` writes a
rank's Profile as its row and :func:`rank_profile` reads a row back, so a saved analysis loads
into the same Profiles a fresh one has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pinchpoint._profile import (
    CallStats,
    DeviceTimeline,
    KernelTotal,
    Machine,
    Operator,
    Profile,
    Step,
    TraceSource,
)

__all__ = ["rank_profile", "rank_row", "trace_profile"]

_STEP_KEYS = ("communication_host_s", "backward", "device_busy_s", "device_communication_s")
_SHARES = ("idle_share", "compute_share", "non_compute_share", "exposed_communication_share")
#: The device facts (:attr:`Machine.gpu` keys) a row's ``device`` holds, under their row names.
_FACTS = (("capability", "compute_capability"), ("memory_bytes", "memory_bytes"))


def trace_profile(
    source: TraceSource,
    device: str,
    gpu: dict[str, Any] | None,
    steps: list[Step],
    operators: list[Operator],
    timeline: DeviceTimeline | None,
) -> Profile:
    """The Profile of one rank of a trace, whether analysed now or read from a saved file."""
    return Profile(
        name=f"rank {source.rank}",
        mode="train" if any(s.backward for s in steps) else "infer",
        device=device,
        steps=steps,
        operators=operators,
        machine=Machine(gpu=gpu),
        settings={"source": "trace", "file": source.file, "rank": source.rank},
        device_timeline=timeline,
        trace=source,
    )


def rank_row(profile: Profile) -> dict[str, Any]:
    """A rank's Profile as its ``ranks`` row of a ``pinchpoint.trace/1`` file."""
    source = profile.trace
    if source is None:
        raise ValueError(f"{profile.name} was not read from a trace")
    return {
        "rank": source.rank,
        "rank_source": source.rank_source,
        "file": source.file,
        "world_size": source.world_size,
        "backend": source.backend,
        "device": _device(profile, source),
        "events": source.events,
        "steps": [_step(s) for s in profile.steps],
        "gpu": _gpu(profile.device_timeline) if profile.device_timeline is not None else None,
        "launches": {
            "count": source.launches.count,
            "per_step": source.launches.per_step,
            "median_s": source.launches.median_s,
            "p90_s": source.launches.p90_s,
            "time_s": source.launches.time_s,
        },
        "sync": {"count": source.sync.count, "time_s": source.sync.time_s},
        "operators": [
            {"name": o.name, "count": o.count, "self_s": o.self_s, "total_s": o.total_s}
            for o in profile.operators
        ],
        "issues": list(source.issues),
        # Derived, for readers of the file; never read back.
        "phases": {k: v.to_dict() for k, v in profile.phase_stats().items()},
        "step_time_s": profile.step_time_s,
    }


def _device(profile: Profile, source: TraceSource) -> dict[str, Any]:
    if source.device_kind == "cpu":
        return {"kind": "cpu", "index": None, "name": None}
    gpu = profile.machine.gpu or {}
    out: dict[str, Any] = {
        "kind": source.device_kind,
        "index": int(profile.device.partition(":")[2] or 0),
        "name": gpu.get("name"),
    }
    return out | {row: gpu[fact] for fact, row in _FACTS if fact in gpu}


def _step(step: Step) -> dict[str, Any]:
    row: dict[str, Any] = {
        "index": step.index,
        "start_s": step.start_s,
        "wall_s": step.wall_s,
        "phases": dict(step.phases),
    }
    row.update({k: v for k in _STEP_KEYS if (v := getattr(step, k)) is not None})
    row["busy_s"] = step.own_s
    return row


def _gpu(tl: DeviceTimeline) -> dict[str, Any]:
    return {
        "window": tl.window,
        "span_s": tl.span_s,
        "busy_s": tl.busy_s,
        "idle_s": tl.idle_s,
        "compute_s": tl.compute_s,
        "non_compute_s": tl.non_compute_s,
        "communication_s": tl.communication_s,
        "exposed_communication_s": tl.exposed_communication_s,
        **{k: getattr(tl, k) for k in _SHARES},
        "comm_comp_overlap": tl.comm_comp_overlap,
        "idle_causes": dict(tl.idle_causes),
        "streams": tl.streams,
        "idle_breakdown": dict(tl.idle_breakdown),
        "kernels": {
            "count": tl.kernels,
            "time_s": tl.kernel_time_s,
            "median_s": tl.kernel_median_s,
            "by_kind": {
                k: {"count": v.count, "time_s": v.time_s, "share": v.share}
                for k, v in tl.kernel_kinds.items()
            },
            "top": [
                {
                    "name": name,
                    "kind": v.kind,
                    "count": v.count,
                    "time_s": v.time_s,
                    "mean_s": v.time_s / v.count,
                    "share": share,
                }
                for name, v, share in tl.top_kernels()
            ],
            "totals": {
                k: {"count": v.count, "time_s": v.time_s, "kind": v.kind}
                for k, v in tl.kernel_totals.items()
            },
            "span_s": tl.span_s,
        },
    }


def rank_profile(row: Mapping[str, Any]) -> Profile:
    """The Profile of one ``ranks`` row of a ``pinchpoint.trace/1`` file."""
    device = row["device"]
    kind = device.get("kind", "cpu")
    facts = None
    if kind != "cpu":
        facts = {"name": device.get("name")}
        facts |= {fact: device[row] for fact, row in _FACTS if row in device}
    steps = [
        Step(
            index=int(s["index"]),
            wall_s=float(s["wall_s"]),
            phases=dict(s["phases"]),
            start_s=s.get("start_s"),
            busy_s=s.get("busy_s"),
            **{k: s[k] for k in _STEP_KEYS if s.get(k) is not None},
        )
        for s in row["steps"]
    ]
    launches = row.get("launches") or {}
    g = row.get("gpu")
    source = TraceSource(
        file=row["file"],
        rank=int(row["rank"]),
        rank_source=row.get("rank_source", "file order"),
        world_size=row.get("world_size"),
        backend=row.get("backend"),
        device_kind=kind,
        events=int(row.get("events", 0)),
        launches=CallStats.from_dict(launches),
        sync=CallStats.from_dict(row.get("sync") or {}),
        issues=list(row.get("issues", [])),
    )
    operators = [
        Operator(name=o["name"], count=o["count"], self_s=o["self_s"], total_s=o["total_s"])
        for o in row["operators"]
    ]
    return trace_profile(
        source,
        "cpu" if kind == "cpu" else f"cuda:{device.get('index') or 0}",
        facts,
        steps,
        operators,
        _timeline(g, launches) if g is not None else None,
    )


def _timeline(g: Mapping[str, Any], launches: Mapping[str, Any]) -> DeviceTimeline:
    kernels = g["kernels"]
    return DeviceTimeline(
        window=g["window"],
        span_s=g["span_s"],
        busy_s=g["busy_s"],
        idle_s=g.get("idle_s", -1.0),
        compute_s=g["compute_s"],
        non_compute_s=g.get("non_compute_s"),
        communication_s=g["communication_s"],
        exposed_communication_s=g["exposed_communication_s"],
        **{k: g.get(k) for k in _SHARES},
        comm_comp_overlap=g["comm_comp_overlap"],
        idle_causes=dict(g["idle_causes"]),
        streams=g.get("streams"),
        idle_breakdown={
            k: v for k, v in g["idle_breakdown"].items() if isinstance(v, (int, float))
        },
        kernels=kernels["count"],
        kernel_time_s=kernels.get("time_s"),
        kernel_median_s=kernels["median_s"],
        kernel_kinds={
            k: KernelTotal(count=v["count"], time_s=v["time_s"], share=v.get("share"))
            for k, v in kernels.get("by_kind", {}).items()
        },
        kernel_totals={
            k: KernelTotal(count=v["count"], time_s=v["time_s"], kind=v.get("kind"))
            for k, v in kernels.get("totals", {}).items()
        },
        launches_per_step=launches.get("per_step"),
        launch_median_s=launches.get("median_s"),
    )

"""The Profile: everything one recorded run measured, typed and saved as versioned JSON.

Structure (each a dataclass with ``to_dict``/``from_dict``; ``Profile.save``/``Profile.load`` go
through JSON and give back an equal object):

- :class:`Step`: one step's wall time split into :data:`PHASES` that add up to it, plus the
  training series (loss, global gradient norm) and whether the step counts in statistics.
- :class:`Operator`: one operator (grouped by name and input shapes) from the profiler's sampled
  steps: count, self and total time, FLOPs and bytes moved per sampled step.
- :class:`ModuleStat`: per-module parameter count and FLOPs.
- :class:`FlopCount`: FLOPs of one step by phase, and the operators that could not be counted.
- :class:`Memory`: parameters, gradients, optimizer state, activation peak, process memory.
- :class:`Machine` and :class:`Environment`: where the run happened.
- :class:`DeviceTimeline`: the device's busy, idle, compute and communication time, from a
  trace's kernel timeline (imported traces; None for runs recorded without one).
- :class:`Distributed`: which rank of a data-parallel job recorded the run, and how its
  gradients were reduced (None for a single process).

A multi-rank Profile (a data-parallel job, see :mod:`pinchpoint.recorders.job`) is rank 0's
Profile with every rank's own Profile, rank 0's included, in :attr:`Profile.ranks`, sorted by
rank; each of those has no ranks of its own.

Statistics (medians, spread, shares) are derived on demand from the steps and are written to JSON
under ``summary`` for readers of the file; ``from_dict`` ignores that key, so the file's numbers
have one source: the recorded steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from pinchpoint._io import atomic_write_bytes, read_json
from pinchpoint.errors import ProfileFormatError

__all__ = [
    "PHASES",
    "SCHEMA",
    "CallStats",
    "CommunicationStats",
    "Compilation",
    "DeviceTimeline",
    "Distributed",
    "Environment",
    "FlopCount",
    "Health",
    "KernelTotal",
    "Machine",
    "Memory",
    "ModuleStat",
    "Operator",
    "PhaseStats",
    "Profile",
    "Step",
    "TraceSource",
]

SCHEMA = "pinchpoint.profile/1"

#: The phases a step's wall time is split into, in the order they happen. ``communication`` is
#: the wait for gradient all-reduce after backward (data-parallel runs only; absent elsewhere).
#: ``log`` is the user's per-step logging (a Workload's ``log``, a ``Recorder.logging()`` block;
#: absent from runs that never log).
PHASES: tuple[str, ...] = (
    "data",
    "transfer",
    "forward",
    "backward",
    "communication",
    "optimizer",
    "log",
    "other",
)


def _float_out(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: write them as strings so a diverging loss survives."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _float_in(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    return float(value)


def _from_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the dataclass's own fields from ``data``, refusing a record that lacks required ones."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Step:
    """One step: its wall time, the phases that add up to it, and its training series.

    Attributes:
        index: position in the run, from 0.
        wall_s: wall-clock seconds from the end of the previous step to the end of this one,
            waiting for the batch included.
        phases: seconds per phase name (see :data:`PHASES`); they sum to ``wall_s``.
        warmup: a warm-up step, left out of statistics.
        sampled: ``"flops"`` or ``"operators"`` when heavier instruments ran in this step, which
            leaves it out of statistics too; else None.
        samples: the batch size seen in this step, when known.
        loss: the training loss, when recorded.
        grad_norm: the global L2 norm of the gradients before the optimizer step.
        comm_s: data-parallel runs: the seconds in which some gradient all-reduce of this step
            ran (the union of its buckets' all-reduces, start to completion); None elsewhere.
            The part of it not overlapped with backward is the ``communication`` phase.
        lr: the learning rate this step's optimizer step used (its first parameter group's),
            when an optimizer stepped; a schedule shows as its change from step to step.

    A step read from a profiler trace also has (None elsewhere; written only when present):
    ``start_s`` (from the first profiler step's start), ``communication_host_s`` (host time
    inside collective calls), ``backward`` (whether autograd ran), ``device_busy_s`` and
    ``device_communication_s`` (the union of the device work, and of the communication
    kernels, launched in the step) and ``busy_s``, the rank's own work: its device work but
    communication, or on a host-only trace the step less its wait in collectives (see
    :attr:`own_s`).
    """

    index: int
    wall_s: float
    phases: dict[str, float]
    warmup: bool = False
    sampled: str | None = None
    samples: int | None = None
    loss: float | None = None
    grad_norm: float | None = None
    comm_s: float | None = None
    lr: float | None = None
    start_s: float | None = None
    communication_host_s: float | None = None
    backward: bool | None = None
    device_busy_s: float | None = None
    device_communication_s: float | None = None
    busy_s: float | None = None

    @property
    def measured(self) -> bool:
        """Whether this step counts in statistics (neither warm-up nor instrumented)."""
        return not self.warmup and self.sampled is None

    @property
    def own_s(self) -> float:
        """The rank's own work in this step: ``busy_s`` where a trace measured it, else the wall
        time less the ``communication`` phase (the wait in the gradient all-reduce)."""
        if self.busy_s is not None:
            return self.busy_s
        return self.wall_s - self.phases.get("communication", 0.0)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "index": self.index,
            "wall_s": self.wall_s,
            "phases": dict(self.phases),
            "warmup": self.warmup,
            "sampled": self.sampled,
            "samples": self.samples,
            "loss": _float_out(self.loss),
            "grad_norm": _float_out(self.grad_norm),
        }
        if self.comm_s is not None:
            # Written only where measured: a single process's files stay as they were.
            d["comm_s"] = self.comm_s
        if self.lr is not None:
            d["lr"] = self.lr
        for name in _TRACE_STEP_FIELDS:
            if (value := getattr(self, name)) is not None:
                d[name] = value
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        d = _from_fields(cls, data)
        d["phases"] = {str(k): float(v) for k, v in d["phases"].items()}
        d["wall_s"] = float(d["wall_s"])
        d["loss"] = _float_in(d.get("loss"))
        d["grad_norm"] = _float_in(d.get("grad_norm"))
        if d.get("comm_s") is not None:
            d["comm_s"] = float(d["comm_s"])
        if d.get("lr") is not None:
            d["lr"] = float(d["lr"])
        return cls(**d)


_TRACE_STEP_FIELDS = (
    "start_s",
    "communication_host_s",
    "backward",
    "device_busy_s",
    "device_communication_s",
    "busy_s",
)


@dataclass(frozen=True)
class Operator:
    """One operator with one set of input shapes, summed over the profiled step.

    Attributes:
        name: the operator as the profiler names it (``aten::addmm``, or a user annotation).
        count: calls in the profiled step.
        self_s: seconds in the operator itself, children excluded.
        total_s: seconds in the operator, children included.
        input_shapes: the shape of each input (``[]`` for a non-tensor argument).
        input_dtypes: the dtype of each input, as the profiler names it.
        flops: floating-point operations of all calls, or None where they could not be counted.
        bytes: bytes read and written by all calls (from tensor sizes), or None where unknown.
        work_s: seconds of the calls that ``flops`` and ``bytes`` count, each with everything it
            ran below it (the kernels its dispatcher entry calls); 0 for an operator that only
            ran inside another counted one, whose work it is. The roofline divides ``flops`` by
            it: a convolution's FLOPs are counted on ``aten::convolution`` while its time is
            spent in its child ``aten::mkldnn_convolution``. None where not measured (trace
            files, profiles saved before it existed); ``self_s`` stands in then.
    """

    name: str
    count: int
    self_s: float
    total_s: float
    input_shapes: list[Any] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)
    flops: int | None = None
    bytes: int | None = None
    work_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "self_s": self.self_s,
            "total_s": self.total_s,
            "input_shapes": self.input_shapes,
            "input_dtypes": list(self.input_dtypes),
            "flops": self.flops,
            "bytes": self.bytes,
            "work_s": self.work_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operator:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True)
class ModuleStat:
    """One module of the model: its parameters and the FLOPs run inside it in one step.

    ``name`` is the module's qualified name as ``model.named_modules()`` gives it (``""`` for the
    model itself). ``params`` counts its own and its children's parameters. ``bytes_forward`` is
    what its forward operators read and write; ``forward_s`` the time of its forward calls in
    the profiled step, children included (host time; None where not measured).
    """

    name: str
    type: str
    params: int
    flops: int
    flops_forward: int = 0
    flops_backward: int = 0
    bytes_forward: int = 0
    forward_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "params": self.params,
            "flops": self.flops,
            "flops_forward": self.flops_forward,
            "flops_backward": self.flops_backward,
            "bytes_forward": self.bytes_forward,
            "forward_s": self.forward_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModuleStat:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one step, split by phase, with the operators that could not be counted.

    ``by_phase`` maps phase name to FLOPs; ``uncounted`` maps an operator name to its calls in
    that step where no formula applied (its FLOPs are missing from the totals, not zero).
    """

    by_phase: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """FLOPs of the whole step."""
        return sum(self.by_phase.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_phase": dict(self.by_phase),
            "uncounted": dict(self.uncounted),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlopCount:
        return cls(
            by_phase=dict(data.get("by_phase", {})), uncounted=dict(data.get("uncounted", {}))
        )


@dataclass(frozen=True)
class Memory:
    """Where the run's memory goes, in bytes; None where it was not measured.

    ``activations_peak_bytes`` is the largest amount allocated during a step above what was
    allocated at its start (activations and temporaries). ``process_limit_bytes`` is the most
    the process may use: its cgroup's limit, its address-space limit, or the machine's memory.
    ``source`` says how the activation peak was measured:
    ``"cuda"`` (the CUDA caching allocator's statistics) or ``"cpu-profiler"`` (the profiler's
    allocation events).
    """

    parameters_bytes: int | None = None
    gradients_bytes: int | None = None
    optimizer_state_bytes: int | None = None
    activations_peak_bytes: int | None = None
    process_rss_bytes: int | None = None
    process_peak_rss_bytes: int | None = None
    device_peak_bytes: int | None = None
    device_capacity_bytes: int | None = None
    process_limit_bytes: int | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        return cls(**_from_fields(cls, data))


def _floats_out(rows: list[list[float | None]]) -> list[list[float | str | None]]:
    return [[_float_out(v) for v in row] for row in rows]


def _floats_in(rows: Any) -> list[list[float | None]]:
    return [[_float_in(v) for v in row] for row in rows]


@dataclass(frozen=True)
class Health:
    """Training-health series: per-layer gradients and updates, activations, non-finite values.

    Matrices are ``[row][column]``: one row per recorded step (``grad_steps``, ``update_steps``,
    ``activation_steps``), one column per layer (``layers``: modules with parameters of their own)
    (``layer_ndim``: the most dimensions among its parameters, 2 or more for weight matrices)
    or per activation module (``activation_layers``, of family ``activation_kinds``: relu,
    sigmoid, tanh or smooth). ``update_ratio`` is ``‖Δw‖ / ‖w‖`` over an optimizer step and
    ``weight_norm`` is ``‖w‖`` after it (rows of ``update_steps``);
    ``dead_share`` the share of ReLU-family units that output zero for the whole batch;
    ``saturated_share`` the share of sigmoid/tanh outputs within 0.01 of their limits.
    ``nonfinite`` says where a NaN or infinity first appeared (step, in loss, gradients or
    weights, which tensor, and the first module whose output was non-finite), or None.
    """

    layers: list[str] = field(default_factory=list)
    layer_ndim: list[int] = field(default_factory=list)
    grad_steps: list[int] = field(default_factory=list)
    grad_norm: list[list[float | None]] = field(default_factory=list)
    update_steps: list[int] = field(default_factory=list)
    update_ratio: list[list[float | None]] = field(default_factory=list)
    weight_norm: list[list[float | None]] = field(default_factory=list)
    activation_layers: list[str] = field(default_factory=list)
    activation_kinds: list[str] = field(default_factory=list)
    activation_steps: list[int] = field(default_factory=list)
    dead_share: list[list[float | None]] = field(default_factory=list)
    saturated_share: list[list[float | None]] = field(default_factory=list)
    activation_mean: list[list[float | None]] = field(default_factory=list)
    activation_std: list[list[float | None]] = field(default_factory=list)
    nonfinite: dict[str, Any] | None = None

    _MATRICES = (
        "grad_norm",
        "update_ratio",
        "weight_norm",
        "dead_share",
        "saturated_share",
        "activation_mean",
        "activation_std",
    )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self._MATRICES:
            d[name] = _floats_out(d[name])
        d["nonfinite"] = dict(self.nonfinite) if self.nonfinite is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Health:
        d = _from_fields(cls, data)
        for name in cls._MATRICES:
            if name in d:
                d[name] = _floats_in(d[name])
        return cls(**d)


@dataclass(frozen=True)
class Machine:
    """The machine a run happened on: processor, memory and accelerator facts.

    ``cpu_flags`` holds the instruction-set extensions that decide which fast paths exist
    (``avx2``, ``avx512f``, ``avx512_vnni``, ``avx512_bf16``, ``amx_tile``, ``amx_int8``…).
    ``gpu`` is None without a GPU, else its name, compute capability and memory.
    ``peaks`` holds calibrated peak rates, filled in by calibration.
    """

    cpu_model: str = ""
    cpu_flags: list[str] = field(default_factory=list)
    cores_physical: int | None = None
    cores_logical: int | None = None
    threads: int | None = None
    memory_bytes: int | None = None
    os: str = ""
    arch: str = ""
    gpu: dict[str, Any] | None = None
    peaks: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cpu_flags"] = list(self.cpu_flags)
        d["peaks"] = dict(self.peaks)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True)
class Environment:
    """The software a run used: Python and package versions, keyed by name."""

    python: str = ""
    packages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "packages": dict(self.packages)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Environment:
        return cls(python=data.get("python", ""), packages=dict(data.get("packages", {})))


@dataclass(frozen=True)
class KernelTotal:
    """Device events of one kernel name, or of one kind: calls and seconds summed over the
    window; ``kind`` (computation, communication, memory, sync) for a name, ``share`` of all
    kernel time for a kind."""

    count: int
    time_s: float
    kind: str | None = None
    share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"count": self.count, "time_s": self.time_s}
        d.update({k: v for k, v in (("kind", self.kind), ("share", self.share)) if v is not None})
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelTotal:
        return cls(**_from_fields(cls, data))


#: The kernels a trace's summary lists, by time.
TOP_KERNELS = 10


@dataclass(frozen=True)
class DeviceTimeline:
    """What the device's kernel timeline shows, over the span Holistic Trace Analysis uses.

    ``span_s`` runs from the first device event's start to the last one's end (in ``window``);
    ``busy_s`` is the union of all device events in it, ``compute_s`` the union of computation
    kernels, ``communication_s`` the union of communication kernels and
    ``exposed_communication_s`` the part of it no computation kernel overlaps.
    ``comm_comp_overlap`` is the overlapped share of communication time (None without any).
    ``idle_causes`` splits the device's idle seconds by what the host was doing meanwhile:
    ``data`` (waiting for a batch), ``optimizer``, ``sync`` (blocked in synchronising or copy
    calls) and ``host`` (anything else: Python, framework and launch overhead).
    ``idle_breakdown`` is HTA's per-stream split (host_wait, kernel_wait, other).

    The shares (``idle_share`` ...) are the trace's exact ratios of nanoseconds, kept as
    measured; ``kernel_totals`` and ``kernel_kinds`` sum the window's device events by name and
    by kind (``kernel_time_s`` all of them), ``streams`` counts the streams they ran on. None
    (or empty) in profiles saved before they were kept.
    """

    window: str = ""
    span_s: float = 0.0
    busy_s: float = 0.0
    compute_s: float = 0.0
    communication_s: float = 0.0
    exposed_communication_s: float = 0.0
    comm_comp_overlap: float | None = None
    idle_causes: dict[str, float] = field(default_factory=dict)
    idle_breakdown: dict[str, float] = field(default_factory=dict)
    kernels: int = 0
    kernel_median_s: float | None = None
    launches_per_step: float | None = None
    launch_median_s: float | None = None
    idle_s: float = -1.0
    non_compute_s: float | None = None
    idle_share: float | None = None
    compute_share: float | None = None
    non_compute_share: float | None = None
    exposed_communication_share: float | None = None
    streams: int | None = None
    kernel_time_s: float | None = None
    kernel_kinds: dict[str, KernelTotal] = field(default_factory=dict)
    kernel_totals: dict[str, KernelTotal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.idle_s < 0:  # not given: the span less the busy time
            object.__setattr__(self, "idle_s", max(0.0, self.span_s - self.busy_s))

    def top_kernels(self, n: int = TOP_KERNELS) -> list[tuple[str, KernelTotal, float]]:
        """The ``n`` kernels with the most time: name, totals and share of all kernel time."""
        ranked = sorted(self.kernel_totals.items(), key=lambda kv: (-kv[1].time_s, kv[0]))[:n]
        # The share of the trace's integer nanoseconds, which kernel_time_s holds divided by 1e9.
        total_ns = round((self.kernel_time_s or 0.0) * 1e9)
        return [(k, v, v.time_s * 1e9 / total_ns if total_ns else 0.0) for k, v in ranked]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["idle_causes"] = dict(self.idle_causes)
        d["idle_breakdown"] = dict(self.idle_breakdown)
        d["kernel_kinds"] = {k: v.to_dict() for k, v in self.kernel_kinds.items()}
        d["kernel_totals"] = {k: v.to_dict() for k, v in self.kernel_totals.items()}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceTimeline:
        d = _from_fields(cls, data)
        for key in ("kernel_kinds", "kernel_totals"):
            d[key] = {k: KernelTotal.from_dict(v) for k, v in (d.get(key) or {}).items()}
        return cls(**d)


@dataclass(frozen=True)
class CallStats:
    """Host runtime calls of one kind in a trace (kernel launches, synchronisations): how many,
    their summed seconds, and for launches the calls per step and their median and 90th
    percentile duration (None where there were none)."""

    count: int = 0
    time_s: float = 0.0
    per_step: float | None = None
    median_s: float | None = None
    p90_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallStats:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True)
class TraceSource:
    """Where a Profile read from a profiler trace came from, and what the trace held besides
    steps, operators and the device timeline.

    Attributes:
        file: the trace file.
        rank: the rank, from ``rank_source``: the trace's ``distributedInfo``, the file name
            (``rank3``, ``rank-3``), or the file's place in its folder.
        world_size, backend: the job's, from ``distributedInfo`` (None where absent).
        device_kind: ``cpu``, ``cuda`` or ``rocm``.
        events: events read.
        launches, sync: the host's kernel launches and synchronising calls.
        issues: what was wrong with the file and repaired or skipped.
    """

    file: str
    rank: int = 0
    rank_source: str = "file order"
    world_size: int | None = None
    backend: str | None = None
    device_kind: str = "cpu"
    events: int = 0
    launches: CallStats = field(default_factory=CallStats)
    sync: CallStats = field(default_factory=CallStats)
    issues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(launches=self.launches.to_dict(), sync=self.sync.to_dict())
        d["issues"] = list(self.issues)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceSource:
        d = _from_fields(cls, data)
        d["launches"] = CallStats.from_dict(d.get("launches") or {})
        d["sync"] = CallStats.from_dict(d.get("sync") or {})
        return cls(**d)


@dataclass(frozen=True)
class Distributed:
    """One rank of a data-parallel job: where it ran and how its gradients were reduced.

    ``rank`` and ``world_size`` are the process group's; ``local_rank`` the rank on its node,
    ``node_rank`` the node's (torchrun's ``GROUP_RANK``) and ``nodes`` how many nodes the job
    spans (for a merged Profile: the distinct nodes its ranks report). ``job`` identifies the
    job (torchrun's run id), so that files from different jobs are never merged. ``ddp`` holds
    the DistributedDataParallel settings in force (``bucket_cap_mb``, ``comm_hook``,
    ``gradient_as_bucket_view``, ``static_graph``, ``find_unused_parameters``) and
    ``buckets_bytes`` the size of each gradient bucket, in the order they were all-reduced in
    the last step that reduced them. ``comm_measured`` says whether pinchpoint's timing hook
    saw the all-reduces (False where the model had a communication hook of its own).
    """

    rank: int = 0
    world_size: int = 1
    backend: str = ""
    local_rank: int | None = None
    node_rank: int | None = None
    nodes: int | None = None
    hostname: str = ""
    job: str = ""
    ddp: dict[str, Any] = field(default_factory=dict)
    buckets_bytes: list[int] = field(default_factory=list)
    comm_measured: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["ddp"] = dict(self.ddp)
        d["buckets_bytes"] = list(self.buckets_bytes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Distributed:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True)
class Compilation:
    """What ``torch.compile`` did during the run, step by step, from torch._dynamo's counters.

    The per-step lists run parallel to :attr:`Profile.steps` (one entry per step, warm-up and
    sampled steps included): ``graphs`` is how many graphs dynamo compiled in the step (its
    ``unique_graphs`` counter), ``compile_s`` the seconds it spent compiling them (its
    ``_compile.compile_inner`` timer, backend compilation included), ``graph_breaks`` the graph
    breaks met while tracing, and ``shapes`` the shapes of the step's batch tensors (``8x697``,
    comma-separated; empty when unknown). ``recompile_reasons`` counts, for each reason a guard
    failed and caused a recompile (its numbers left out: ``tensor 'x' size mismatch at index
    1``), the steps it did so in; ``graph_break_reasons`` the graph breaks by the first line of
    their reason, and ``limit_hits`` how often dynamo gave up on a function at its recompile
    limit and ran it eagerly.
    """

    graphs: list[int] = field(default_factory=list)
    compile_s: list[float] = field(default_factory=list)
    graph_breaks: list[int] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    recompile_reasons: dict[str, int] = field(default_factory=dict)
    graph_break_reasons: dict[str, int] = field(default_factory=dict)
    limit_hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "graphs": list(self.graphs),
            "compile_s": list(self.compile_s),
            "graph_breaks": list(self.graph_breaks),
            "shapes": list(self.shapes),
            "recompile_reasons": dict(self.recompile_reasons),
            "graph_break_reasons": dict(self.graph_break_reasons),
            "limit_hits": self.limit_hits,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Compilation:
        return cls(
            graphs=[int(v) for v in data.get("graphs", [])],
            compile_s=[float(v) for v in data.get("compile_s", [])],
            graph_breaks=[int(v) for v in data.get("graph_breaks", [])],
            shapes=[str(v) for v in data.get("shapes", [])],
            recompile_reasons={
                str(k): int(v) for k, v in data.get("recompile_reasons", {}).items()
            },
            graph_break_reasons={
                str(k): int(v) for k, v in data.get("graph_break_reasons", {}).items()
            },
            limit_hits=int(data.get("limit_hits", 0)),
        )


@dataclass(frozen=True)
class PhaseStats:
    """Median and spread of one phase over the measured steps, in seconds and as a share."""

    median_s: float
    p10_s: float
    p90_s: float
    mean_s: float
    share: float

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class CommunicationStats:
    """Gradient all-reduce over the measured steps of a data-parallel run.

    ``allreduce_s`` is the all-reduce time summed over the steps (each step's union of its
    buckets' all-reduces), ``exposed_s`` the ``communication`` phase summed (the wait after the
    last local gradient), ``wall_s`` the steps' wall time; the medians are per step.
    ``overlap`` is the share of all-reduce time hidden behind backward, ``1 - exposed /
    allreduce`` (clipped to 0-1; None without any all-reduce).
    """

    steps: int
    allreduce_s: float
    exposed_s: float
    wall_s: float
    allreduce_median_s: float
    exposed_median_s: float

    @property
    def exposed_share(self) -> float:
        """The exposed wait's share of the steps' wall time."""
        return self.exposed_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def overlap(self) -> float | None:
        """The share of all-reduce time that backward hid (None without any all-reduce)."""
        if self.allreduce_s <= 0:
            return None
        return min(1.0, max(0.0, 1.0 - self.exposed_s / self.allreduce_s))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["exposed_share"] = self.exposed_share
        d["overlap"] = self.overlap
        return d


def communication_stats(steps: Iterable[Step]) -> CommunicationStats | None:
    """All-reduce statistics of the given steps; None when none of them measured any."""
    steps = [s for s in steps if s.comm_s is not None]
    if not steps:
        return None
    reduce = [s.comm_s or 0.0 for s in steps]
    exposed = [s.phases.get("communication", 0.0) for s in steps]
    return CommunicationStats(
        steps=len(steps),
        allreduce_s=sum(reduce),
        exposed_s=sum(exposed),
        wall_s=sum(s.wall_s for s in steps),
        allreduce_median_s=statistics.median(reduce),
        exposed_median_s=statistics.median(exposed),
    )


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted, non-empty list."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def phase_stats(steps: Iterable[Step]) -> dict[str, PhaseStats]:
    """Per-phase median, 10th/90th percentile, mean and share of the given steps' wall time."""
    steps = list(steps)
    if not steps:
        return {}
    total_wall = sum(s.wall_s for s in steps)
    names = [p for p in PHASES if any(p in s.phases for s in steps)]
    names += sorted({p for s in steps for p in s.phases} - set(names))
    out = {}
    for name in names:
        values = sorted(s.phases.get(name, 0.0) for s in steps)
        out[name] = PhaseStats(
            median_s=statistics.median(values),
            p10_s=_quantile(values, 0.1),
            p90_s=_quantile(values, 0.9),
            mean_s=statistics.fmean(values),
            share=sum(values) / total_wall if total_wall > 0 else 0.0,
        )
    return out


@dataclass
class Profile:
    """What one recorded run measured: steps and phases, operators, FLOPs, memory, machine.

    Attributes:
        name: the workload's name.
        mode: ``"train"`` or ``"infer"``.
        device: where the model ran (``"cpu"``, ``"cuda:0"``).
        steps: every step, warm-up and sampled ones included (see :attr:`Step.measured`).
        operators: per-operator time, FLOPs and bytes from the profiled step.
        modules: per-module parameters and FLOPs.
        flops: FLOPs per step by phase.
        memory: the memory breakdown.
        machine: the machine facts.
        environment: the software versions.
        settings: how the run was recorded (steps, warm-up, which steps were sampled...).
        optimizer: the optimizer's facts (``type``, ``param_tensors``, ``params``, ``foreach``,
            ``fused``, ``lr``), None for inference.
        health: per-layer training-health series (training runs), see :class:`Health`.
        device_timeline: the device's kernel timeline (imported traces), see
            :class:`DeviceTimeline`.
        distributed: the rank, world size, backend and DDP settings of a data-parallel run
            (see :class:`Distributed`); None for a single process.
        ranks: a merged multi-rank Profile's per-rank Profiles, sorted by rank (rank 0's
            included: this Profile's own fields are rank 0's); empty for one rank.
        operator_coverage: of the profiled step's host time (``wall_s``, its batch wait left
            out), how much ran inside some operator or annotation (``covered_s``; the rest is
            Python and framework machinery between operators), and how much of it, with how
            many ATen calls, was the optimizer's step (``optimizer_s``, ``optimizer_calls``).
        created: when the run was recorded, ISO 8601 in UTC.
        compilation: what ``torch.compile`` did in each step (graphs compiled, seconds,
            graph breaks), see :class:`Compilation`; None when nothing was compiled. Written
            to JSON only when present.
    """

    name: str
    mode: str
    device: str
    steps: list[Step] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    modules: list[ModuleStat] = field(default_factory=list)
    flops: FlopCount | None = None
    memory: Memory = field(default_factory=Memory)
    machine: Machine = field(default_factory=Machine)
    environment: Environment = field(default_factory=Environment)
    settings: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    operator_coverage: dict[str, float] | None = None
    health: Health | None = None
    device_timeline: DeviceTimeline | None = None
    distributed: Distributed | None = None
    ranks: list[Profile] = field(default_factory=list)
    created: str = ""
    compilation: Compilation | None = None
    trace: TraceSource | None = None

    @property
    def rank(self) -> int | None:
        """The rank this Profile was recorded on (a trace's or a data-parallel run's), or None."""
        if self.trace is not None:
            return self.trace.rank
        return self.distributed.rank if self.distributed is not None else None

    @property
    def measured_steps(self) -> list[Step]:
        """The steps that count in statistics: neither warm-up nor instrumented."""
        return [s for s in self.steps if s.measured]

    def matched_steps(self) -> dict[int, list[Step]]:
        """A multi-rank Profile's measured steps that every rank has: step index to the ranks'
        steps, in rank order (empty for a Profile without ranks)."""
        if not self.ranks:
            return {}
        by_rank = [{s.index: s for s in r.measured_steps} for r in self.ranks]
        common = set.intersection(*(set(steps) for steps in by_rank))
        return {i: [steps[i] for steps in by_rank] for i in sorted(common)}

    def phase_stats(self) -> dict[str, PhaseStats]:
        """Per-phase median, spread and share over the measured steps."""
        return phase_stats(self.measured_steps)

    @property
    def step_time_s(self) -> float | None:
        """The median wall time of the measured steps, or None without any."""
        walls = [s.wall_s for s in self.measured_steps]
        return statistics.median(walls) if walls else None

    @property
    def busy_time_s(self) -> float | None:
        """The median of the measured steps' own work (:attr:`Step.own_s`): a rank's time per
        step without its wait in collectives."""
        busy = [s.own_s for s in self.measured_steps]
        return statistics.median(busy) if busy else None

    @property
    def throughput(self) -> float | None:
        """Samples per second over the measured steps, when batch sizes are known (for a merged
        multi-rank Profile: of the whole job, every rank's summed)."""
        if self.ranks:
            rates = [r.throughput for r in self.ranks]
            return None if any(r is None for r in rates) else sum(r or 0.0 for r in rates)
        steps = self.measured_steps
        if not steps or any(s.samples is None for s in steps):
            return None
        wall = sum(s.wall_s for s in steps)
        return sum(s.samples or 0 for s in steps) / wall if wall > 0 else None

    def operator_shares(self) -> list[tuple[Operator, float]]:
        """Operators by self time, most first, each with its share of all operators' self time."""
        total = sum(o.self_s for o in self.operators)
        ranked = sorted(self.operators, key=lambda o: o.self_s, reverse=True)
        return [(o, o.self_s / total if total > 0 else 0.0) for o in ranked]

    @property
    def achieved_flops_per_s(self) -> float | None:
        """FLOPs per step divided by the median step time: the rate the whole step sustains."""
        step = self.step_time_s
        if self.flops is None or not step:
            return None
        return self.flops.total / step

    def series(self, name: str) -> list[tuple[int, float]]:
        """``(step index, value)`` of a per-step series (``loss``, ``grad_norm``) where recorded."""
        return [(s.index, v) for s in self.steps if (v := getattr(s, name)) is not None]

    def communication_stats(self) -> CommunicationStats | None:
        """Gradient all-reduce over the measured steps (None for a single process)."""
        return communication_stats(self.measured_steps)

    def summary(self) -> dict[str, Any]:
        """Derived statistics for readers of the JSON file (never read back)."""
        out: dict[str, Any] = {
            "measured_steps": len(self.measured_steps),
            "step_time_s": self.step_time_s,
            "throughput_per_s": self.throughput,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "phases": {k: v.to_dict() for k, v in self.phase_stats().items()},
        }
        comm = self.communication_stats()
        if comm is not None:
            out["communication"] = comm.to_dict()
        return out

    def to_dict(self) -> dict[str, Any]:
        """The Profile as JSON-ready data, with the schema version and a derived summary."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "mode": self.mode,
            "device": self.device,
            "created": self.created,
            "settings": dict(self.settings),
            "optimizer": dict(self.optimizer) if self.optimizer is not None else None,
            "operator_coverage": (
                dict(self.operator_coverage) if self.operator_coverage is not None else None
            ),
            "machine": self.machine.to_dict(),
            "environment": self.environment.to_dict(),
            "summary": self.summary(),
            "steps": [s.to_dict() for s in self.steps],
            "flops": self.flops.to_dict() if self.flops is not None else None,
            "memory": self.memory.to_dict(),
            "health": self.health.to_dict() if self.health is not None else None,
            "device_timeline": (
                self.device_timeline.to_dict() if self.device_timeline is not None else None
            ),
            "distributed": self.distributed.to_dict() if self.distributed is not None else None,
            "modules": [m.to_dict() for m in self.modules],
            "operators": [o.to_dict() for o in self.operators],
            "ranks": [r.to_dict() for r in self.ranks],
            # Only runs that compiled carry the key, so other files stay as they were.
            **({"compilation": self.compilation.to_dict()} if self.compilation else {}),
            **({"trace": self.trace.to_dict()} if self.trace else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Build a Profile from :meth:`to_dict` output; ProfileFormatError if it is not one."""
        if not isinstance(data, Mapping):
            raise ProfileFormatError("not a pinchpoint profile: the JSON is not an object")
        schema = data.get("schema")
        if schema != SCHEMA:
            found = f"schema {schema!r}" if schema else "no schema field"
            raise ProfileFormatError(f"not a pinchpoint profile ({found}; expected {SCHEMA!r})")
        try:
            flops = data.get("flops")
            return cls(
                name=str(data["name"]),
                mode=str(data["mode"]),
                device=str(data["device"]),
                created=str(data.get("created", "")),
                settings=dict(data.get("settings", {})),
                optimizer=dict(data["optimizer"]) if data.get("optimizer") is not None else None,
                operator_coverage=(
                    dict(data["operator_coverage"])
                    if data.get("operator_coverage") is not None
                    else None
                ),
                machine=Machine.from_dict(data.get("machine", {})),
                environment=Environment.from_dict(data.get("environment", {})),
                steps=[Step.from_dict(s) for s in data.get("steps", [])],
                flops=FlopCount.from_dict(flops) if flops is not None else None,
                memory=Memory.from_dict(data.get("memory", {})),
                modules=[ModuleStat.from_dict(m) for m in data.get("modules", [])],
                health=Health.from_dict(data["health"]) if data.get("health") else None,
                device_timeline=(
                    DeviceTimeline.from_dict(data["device_timeline"])
                    if data.get("device_timeline")
                    else None
                ),
                distributed=(
                    Distributed.from_dict(data["distributed"]) if data.get("distributed") else None
                ),
                operators=[Operator.from_dict(o) for o in data.get("operators", [])],
                ranks=[cls.from_dict(r) for r in data.get("ranks") or []],
                compilation=(
                    Compilation.from_dict(data["compilation"]) if data.get("compilation") else None
                ),
                trace=TraceSource.from_dict(data["trace"]) if data.get("trace") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileFormatError(
                f"broken pinchpoint profile: {type(exc).__name__}: {exc}"
            ) from exc

    def to_json(self) -> bytes:
        """The Profile as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, text: bytes | str) -> Profile:
        """Parse JSON text made by :meth:`to_json`."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProfileFormatError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the Profile as JSON to ``path`` atomically (never a half-written file)."""
        return atomic_write_bytes(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a Profile saved by :meth:`save`."""
        return cls.from_dict(read_json(path))

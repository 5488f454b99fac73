"""The Profile: everything one recorded run measured, typed and saved as versioned JSON.

One file, over 700 lines, for a reason: these are the record types of one saved document, read
and written together, and each is a few lines of fields with their meaning.

Structure (each a dataclass saved by :mod:`pinchpoint.codec`, with ``to_dict``/``from_dict``;
``Profile.save``/``Profile.load`` go through JSON and give back an equal object):

- :class:`Step`: one step's wall time split into :data:`PHASES` that add up to it, plus the
  training series (loss, global gradient norm) and whether the step counts in statistics.
- :class:`Operator`: one operator (grouped by name and input shapes) from the profiler's sampled
  steps: count, self and total time, FLOPs and bytes moved per sampled step.
- :class:`ModuleStat`: per-module parameter count and FLOPs.
- :class:`FlopCount`: FLOPs of one step by phase, and the operators that could not be counted.
- :class:`Memory`: parameters, gradients, optimizer state, activation peak, process memory.
- :class:`Machine` and :class:`Environment`: where the run happened.
- :class:`DeviceTimeline`: the device's busy, idle, compute and communication time and its
  kernels by name and kind (:class:`KernelTotal`), from a trace's kernel timeline (None for
  runs recorded without one).
- :class:`Distributed`: which rank of a data-parallel job recorded the run, and how its
  gradients were reduced (None for a single process).
- :class:`TraceSource`: for a Profile read from a profiler trace, its file, rank, launches and
  syncs (:class:`CallStats`) and the file's issues (None for a live run).

A multi-rank Profile (a data-parallel job, see :mod:`pinchpoint.recorders.job`, or the ranks
of a trace, see :mod:`pinchpoint.traces`) is its first rank's Profile with every rank's own
Profile, the first included, in :attr:`Profile.ranks`, sorted by rank; each of those has no
ranks of its own.

Statistics (medians, spread, shares) are derived on demand from the steps and are written to JSON
under ``summary`` for readers of the file; ``from_dict`` ignores that key, so the file's numbers
have one source: the recorded steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pinchpoint import codec
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


@dataclass(frozen=True)
class Step(codec.Saved):
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
    # Written only where measured: a single process's files stay as they were.
    comm_s: float | None = field(default=None, metadata=codec.omit_none())
    lr: float | None = field(default=None, metadata=codec.omit_none())
    start_s: float | None = field(default=None, metadata=codec.omit_none())
    communication_host_s: float | None = field(default=None, metadata=codec.omit_none())
    backward: bool | None = field(default=None, metadata=codec.omit_none())
    device_busy_s: float | None = field(default=None, metadata=codec.omit_none())
    device_communication_s: float | None = field(default=None, metadata=codec.omit_none())
    busy_s: float | None = field(default=None, metadata=codec.omit_none())

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


@dataclass(frozen=True)
class Operator(codec.Saved):
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


@dataclass(frozen=True)
class ModuleStat(codec.Saved):
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


@dataclass(frozen=True)
class FlopCount(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"total": self.total, **data}  # for readers of the file


@dataclass(frozen=True)
class Memory(codec.Saved):
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


@dataclass(frozen=True)
class Health(codec.Saved):
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


@dataclass(frozen=True)
class Machine(codec.Saved):
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


@dataclass(frozen=True)
class Environment(codec.Saved):
    """The software a run used: Python and package versions, keyed by name."""

    python: str = ""
    packages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KernelTotal(codec.Saved):
    """Device events of one kernel name, or of one kind: calls and seconds summed over the
    window; ``kind`` (computation, communication, memory, sync) for a name, ``share`` of all
    kernel time for a kind."""

    count: int
    time_s: float
    kind: str | None = field(default=None, metadata=codec.omit_none())
    share: float | None = field(default=None, metadata=codec.omit_none())


#: The kernels a trace's summary lists, by time.
TOP_KERNELS = 10


@dataclass(frozen=True)
class DeviceTimeline(codec.Saved):
    """What the device's kernel timeline shows, over the span Holistic Trace Analysis uses.

    ``span_s`` runs from the first device event's start to the last one's end (in ``window``);
    ``busy_s`` is the union of all device events in it (``idle_s`` the rest of the span),
    ``compute_s`` the union of computation kernels, ``communication_s`` the union of
    communication kernels and ``exposed_communication_s`` the part of it no computation kernel
    overlaps. ``comm_comp_overlap`` is the overlapped share of communication time (None
    without any). ``idle_causes`` splits the device's idle seconds by what the host was doing
    meanwhile: ``data`` (waiting for a batch), ``optimizer``, ``sync`` (blocked in
    synchronising or copy calls) and ``host`` (anything else: Python, framework and launch
    overhead). ``idle_breakdown`` is HTA's per-stream split (host_wait, kernel_wait, other).

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
        if self.idle_s < 0:  # not given (older files): the span less the busy time
            object.__setattr__(self, "idle_s", max(0.0, self.span_s - self.busy_s))

    def top_kernels(self, n: int = TOP_KERNELS) -> list[tuple[str, KernelTotal, float]]:
        """The ``n`` kernels with the most time: name, totals and share of all kernel time."""
        ranked = sorted(self.kernel_totals.items(), key=lambda kv: (-kv[1].time_s, kv[0]))[:n]
        # The share of the trace's integer nanoseconds, which kernel_time_s holds divided by 1e9.
        total_ns = round((self.kernel_time_s or 0.0) * 1e9)
        return [(k, v, v.time_s * 1e9 / total_ns if total_ns else 0.0) for k, v in ranked]


@dataclass(frozen=True)
class CallStats(codec.Saved):
    """Host runtime calls of one kind in a trace (kernel launches, synchronisations): how many,
    their summed seconds, and for launches the calls per step and their median and 90th
    percentile duration (None where there were none)."""

    count: int = 0
    time_s: float = 0.0
    per_step: float | None = None
    median_s: float | None = None
    p90_s: float | None = None


@dataclass(frozen=True)
class TraceSource(codec.Saved):
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


@dataclass(frozen=True)
class Distributed(codec.Saved):
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


@dataclass(frozen=True)
class Compilation(codec.Saved):
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


@dataclass(frozen=True)
class PhaseStats(codec.Saved):
    """Median and spread of one phase over the measured steps, in seconds and as a share."""

    median_s: float
    p10_s: float
    p90_s: float
    mean_s: float
    share: float


@dataclass(frozen=True)
class CommunicationStats(codec.Saved):
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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "exposed_share": self.exposed_share, "overlap": self.overlap}


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
class Profile(codec.Saved):
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
    # Only runs that compiled carry the key, so other files stay as they were.
    compilation: Compilation | None = field(default=None, metadata=codec.omit_none())
    trace: TraceSource | None = field(default=None, metadata=codec.omit_none())

    saved_as = codec.Document(SCHEMA, "profile")

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

    def job_communication_stats(self) -> CommunicationStats | None:
        """The job's gradient all-reduce: for a multi-rank Profile, over the steps every rank
        measured, each step taken from the rank that waited least in it (that rank arrived
        last, so its wait is the communication itself; the others' longer waits are waiting
        for it); for one rank, :meth:`communication_stats`."""
        if not self.ranks:
            return self.communication_stats()
        chosen = [
            min(row, key=lambda s: s.phases.get("communication", 0.0))
            for row in self.matched_steps().values()
            if all(s.comm_s is not None for s in row)
        ]
        return communication_stats(chosen)

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

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        """The file's keys in the order they have always had, with the derived summary."""
        return codec.arrange(data, _PROFILE_KEYS, summary=self.summary())

    @classmethod
    def from_json(cls, text: bytes | str) -> Profile:
        """Parse JSON text made by :meth:`to_json`."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProfileFormatError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)


#: The keys of a saved Profile, in the order files have them.
_PROFILE_KEYS = (
    "schema name mode device created settings optimizer operator_coverage machine environment "
    "summary steps flops memory health device_timeline distributed modules operators ranks "
    "compilation trace"
)

"""Measure this machine's peak rates once and cache them: the ceilings of the roofline.

One file over 700 lines because it is one calibration: every measurement below is a job of the
one round-robin sampler (``_Job``, ``_fastest``), and the cache key (``_key_facts``) must change
with whatever any of them depends on (processor, threads, fp32 precision, versions, device), so
the key, the jobs and the cached ``Peaks`` are read together.

A roofline compares what a workload achieves with what the machine can do. Datasheet peaks are
rarely reachable (turbo limits, virtual machines, a framework's kernels), so pinchpoint measures
its own ceilings with the framework the workload uses:

- **compute**: FLOP/s of large dense matmuls, per dtype, for float32 always and for bfloat16,
  float16 and int8 only where the hardware runs them natively (an emulated path is no ceiling);
- **memory bandwidth**: bytes read plus written per second by a copy, a triad and an in-place
  update over tensors far larger than the last-level cache;
- **cache bandwidth** (CPU): the same three over a working set at most half the size of the
  L2 and of the L3 cache that the measuring threads share (sizes from Linux sysfs), for the
  hierarchical roofline: an operator whose bytes fit in a cache moves them at its bandwidth,
  several times main memory's, and would sit above a main-memory roof;
- **dispatch**: the framework's cost per operator, the median time of a tiny op.

Each rate is the best of many short samples: other processes only ever slow a sample down, so the
fastest one is the honest estimate of the ceiling. The samples are taken round-robin over every
dtype, problem size and bandwidth test, so that each quantity sees the quiet moments of a shared
machine, until no best improves any more or a time budget runs out (a CPU calibration takes 6 to
12 s on 2 cores). A machine busy for the whole of it still yields low peaks; ``refresh=True``
measures again. The result is cached as JSON under the key above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import platformdirs
import psutil

from pinchpoint import codec
from pinchpoint._version import __version__
from pinchpoint.errors import DeviceError
from pinchpoint.machine.facts import describe_machine

__all__ = ["CACHE_ENV", "DTYPES", "Peaks", "cache_path", "calibrate", "load_or_calibrate"]

#: Environment variable naming pinchpoint's cache folder; calibrations go in its ``calibration``.
CACHE_ENV = "PINCHPOINT_CACHE_DIR"

_SCHEMA = "pinchpoint.calibration/1"

# Bumped whenever the measuring method changes, so caches written by an older method are not
# trusted; it is part of the cache key. 2: cache bandwidths added (a method-1 cache lacks them and
# is measured over; its record still loads through Peaks.from_dict).
_METHOD = 2

#: The dtypes a matmul peak can be measured for.
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16", "int8")

# CPU flags (Linux names, see facts.INTERESTING_FLAGS) that mean a dtype's matmul runs natively:
# AVX-512 BF16 or AMX for bf16, AVX-512 FP16 or AMX-FP16 for fp16, VNNI or AMX-INT8 for int8.
# ``bf16`` and ``i8mm`` are the Arm names of the same extensions.
_CPU_NATIVE_FLAGS: dict[str, frozenset[str]] = {
    "bfloat16": frozenset({"avx512_bf16", "amx_bf16", "bf16"}),
    "float16": frozenset({"avx512_fp16", "amx_fp16"}),
    "int8": frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "i8mm"}),
}

# The CUDA compute capability from which each dtype has tensor-core matmuls.
_CUDA_NATIVE_CAPABILITY: dict[str, tuple[int, int]] = {
    "bfloat16": (8, 0),
    "float16": (7, 0),
    "int8": (7, 5),
}

# Time budgets in seconds for all the matmuls and the bandwidth test together. A quiet machine
# stops at half of one (the best stops improving); a busy one uses it up in search of quiet
# moments. On a 2-core machine a cold CPU calibration takes about 6 s (quiet) to 12 s (busy),
# the rest being set-up and the dispatch measurement.
_CPU_BUDGET_S = 9.0
_CUDA_BUDGET_S = 8.0

# A sample runs the op enough times to last this long, so the timer's resolution and the cost of
# reading it weigh nothing. Short samples suit the best-of estimate: on a shared machine a short
# one has a better chance to fall between two interruptions.
_CPU_SAMPLE_S = 0.002
_CUDA_SAMPLE_S = 0.02
# Cache-sized bandwidth samples: a few dozen calls of a few microseconds each, eight to a round
# (as long as one ordinary sample).
_CACHE_SAMPLE_S = 0.00025
_CACHE_SAMPLES = 8

# Stop sampling once this many rounds in a row improved the best by less than _IMPROVEMENT,
# after at least _MIN_ROUNDS rounds and _MIN_SHARE of the budget. The floor on time is needed:
# on a 2-core VM the second core can be unavailable for a second at a time, and matmuls run at
# one core's rate (half the peak) for as long, steadily enough to look converged.
_MIN_ROUNDS = 3
_MIN_SHARE = 0.5
_PATIENCE = 4
_IMPROVEMENT = 0.01

_DISPATCH_BATCHES = 150
_DISPATCH_CALLS = 40


@dataclass(frozen=True)
class Peaks(codec.Saved):
    """The machine's measured peak rates, the roofline's ceilings.

    A record written before cache bandwidths were measured loads with none.

    Attributes:
        device: ``"cpu"`` or ``"cuda:N"``.
        flops: dtype name → peak FLOP/s (int8: operations/s) of a dense matmul. ``"float32"`` is
            always there; ``"bfloat16"``, ``"float16"`` and ``"int8"`` only where the hardware
            runs them natively.
        bandwidth_bytes_per_s: sustained memory bandwidth, bytes read plus written per second
            (the best of a large copy, triad and in-place update).
        dispatch_s: the framework's overhead per operator on this device: the median seconds of
            a tiny op.
        cache_bandwidth_bytes_per_s: cache level (``"l2"``, ``"l3"``) → bandwidth, bytes read
            plus written per second, over a working set that fits in that level; empty where
            not measured (GPUs, machines whose cache sizes cannot be read, older records).
        cache_bytes: cache level → the bytes that level holds for the measuring threads
            together (a private L2 counts once per thread); work whose bytes per call fit
            comes under that level's bandwidth.
        threads: the torch threads the measurement used.
        key: the cache key of the machine and software this was measured on.
        measured_at: when, in ISO 8601 UTC.
        seconds: how long calibrating took.
    """

    device: str
    flops: dict[str, float]
    bandwidth_bytes_per_s: float
    dispatch_s: float
    threads: int
    key: str
    measured_at: str
    seconds: float
    cache_bandwidth_bytes_per_s: dict[str, float] = dataclasses.field(default_factory=dict)
    cache_bytes: dict[str, int] = dataclasses.field(default_factory=dict)

    saved_as = codec.Document(_SCHEMA, "calibration record")

    def ridge_flops_per_byte(self, dtype: str = "float32") -> float:
        """The roofline's ridge point: the arithmetic intensity where compute becomes the limit.

        Below it (FLOPs per byte moved) a kernel is bound by memory bandwidth, above it by the
        ``dtype`` peak. Raises KeyError for a dtype that has no measured peak here.
        """
        if dtype not in self.flops:
            raise KeyError(f"no {dtype} peak was measured on {self.device}")
        return self.flops[dtype] / self.bandwidth_bytes_per_s

    def as_machine_peaks(self) -> dict[str, float]:
        """The peaks as one flat dict, the form :attr:`pinchpoint._profile.Machine.peaks` holds.

        Keys: ``flops_<dtype>`` for each measured dtype, ``bandwidth_bytes_per_s``, ``dispatch_s``,
        and for each measured cache level ``bandwidth_<level>_bytes_per_s`` and
        ``cache_<level>_bytes`` (see :mod:`pinchpoint.roofline`).
        """
        peaks = {f"flops_{dtype}": rate for dtype, rate in self.flops.items()}
        peaks["bandwidth_bytes_per_s"] = self.bandwidth_bytes_per_s
        peaks["dispatch_s"] = self.dispatch_s
        for level, rate in self.cache_bandwidth_bytes_per_s.items():
            if level in self.cache_bytes:
                peaks[f"bandwidth_{level}_bytes_per_s"] = rate
                peaks[f"cache_{level}_bytes"] = float(self.cache_bytes[level])
        return peaks


# ---------------------------------------------------------------------------------------------
# Devices and cache keys


def _resolve_device(device: str) -> str:
    """``device`` in canonical form (``"cpu"``, ``"cuda:N"``); DeviceError if it is not here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{device!r} is not a device name") from exc
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise DeviceError(f"calibration measures cpu and cuda devices, not {dev.type!r}")
    if not torch.cuda.is_available():
        raise DeviceError(f"{device!r} was asked for, but torch sees no CUDA device")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"{device!r} was asked for, but torch sees {torch.cuda.device_count()} CUDA devices"
        )
    return f"cuda:{index}"


def _fp32_precision(device: str) -> str:
    """How float32 matmuls compute on ``device``: allowing TF32 or bf16 for them moves the peak."""
    import torch

    backend = torch.backends.cuda if device.startswith("cuda") else torch.backends.mkldnn
    # Where the setting lives has moved between torch versions, and reading it after a mix of the
    # old and new APIs raises; an unknown setting still makes a valid key.
    try:
        return str(backend.matmul.fp32_precision)
    except (AttributeError, RuntimeError):
        return "unknown"


def _key_facts(device: str) -> dict[str, Any]:
    """Everything the cache key covers: what, if it changed, would change the peaks."""
    import torch

    machine = describe_machine()
    facts: dict[str, Any] = {
        "method": _METHOD,
        "cpu_model": machine.cpu_model,
        "cpu_flags": sorted(machine.cpu_flags),
        "cores_logical": machine.cores_logical,
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "pinchpoint": __version__,
        "device": device,
        "fp32_precision": _fp32_precision(device),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(int(device.split(":")[1]))
        facts["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}"}
    return facts


def _cache_key(device: str) -> str:
    """A short hash over :func:`_key_facts` of an already resolved device."""
    blob = orjson.dumps(_key_facts(device), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_path(device: str = "cpu", cache_dir: Path | None = None) -> Path:
    """The JSON file that holds (or will hold) ``device``'s calibration on this machine.

    The folder is ``cache_dir`` when given, else ``$PINCHPOINT_CACHE_DIR/calibration`` when that
    variable is set, else ``calibration`` in the user's cache folder. The name carries the cache
    key, so a change of threads, torch version or hardware points to a different file. Loads torch
    (the key needs its version and thread count).
    """
    dev = _resolve_device(device)
    root = os.environ.get(CACHE_ENV)
    base = Path(root) if root else Path(platformdirs.user_cache_dir("pinchpoint"))
    folder = Path(cache_dir) if cache_dir is not None else base / "calibration"
    return folder / f"{dev.replace(':', '')}-{_cache_key(dev)}.json"


# ---------------------------------------------------------------------------------------------
# Timing


class _Clock:
    """Times ``reps`` back-to-back calls of a function on the CPU, by the wall clock."""

    sample_s = _CPU_SAMPLE_S

    def time(self, fn: Callable[[], object], reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return time.perf_counter() - start


class _CudaClock(_Clock):
    """Times calls on a CUDA device with events, waiting for the GPU to finish them."""

    sample_s = _CUDA_SAMPLE_S

    def time(self, fn: Callable[[], object], reps: int) -> float:
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3


@dataclass
class _Job:
    """One op to sample: the call and the work (FLOPs or bytes) one call does.

    ``sample_s`` (the clock's when None) is how long one sample lasts, ``samples`` how many a
    round takes: a cache-sized copy lasts microseconds, and several samples of a fraction of a
    millisecond each catch more of a shared machine's quiet moments than one long one.
    """

    run: Callable[[], object]
    work: float
    reps: int = 1
    best: float = 0.0  # best rate seen, work per second
    sample_s: float | None = None
    samples: int = 1


def _fastest(
    groups: Mapping[str, Sequence[_Job]], clock: _Clock, budget_s: float
) -> dict[str, float]:
    """Each group's best rate (work per second) over samples of all jobs taken round-robin.

    A group is one quantity (a dtype's matmul at several sizes, or the bandwidth tests); its rate
    is its fastest job's. Every round samples every job once, so each quantity's samples are
    spread over the whole measurement rather than crowded into a few seconds of it: on a shared
    machine the load changes from second to second, and a quantity measured only during a busy
    stretch would be underestimated. Sampling goes on for at least ``_MIN_SHARE`` of ``budget_s``
    and ``_MIN_ROUNDS`` rounds, then stops once ``_PATIENCE`` rounds in a row have raised no
    group's best by ``_IMPROVEMENT``, and in any case when ``budget_s`` has passed.

    The jobs must have run once already: a first call pays for kernel selection, JIT compilation
    and page faults.
    """
    started = time.perf_counter()
    jobs = [job for group in groups.values() for job in group]
    for job in jobs:
        once = clock.time(job.run, 1)
        job.best = job.work / max(once, 1e-9)
        job.reps = max(1, math.ceil((job.sample_s or clock.sample_s) / max(once, 1e-9)))

    def bests() -> dict[str, float]:
        return {name: max(job.best for job in group) for name, group in groups.items()}

    rounds = stale = 0
    while True:
        before = bests()
        for job in jobs:
            for _ in range(job.samples):
                rate = job.work * job.reps / max(clock.time(job.run, job.reps), 1e-9)
                job.best = max(job.best, rate)
        rounds += 1
        after = bests()
        improved = any(after[name] >= before[name] * (1 + _IMPROVEMENT) for name in groups)
        stale = 0 if improved else stale + 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget_s or (
            rounds >= _MIN_ROUNDS and stale >= _PATIENCE and elapsed >= _MIN_SHARE * budget_s
        ):
            return after


# ---------------------------------------------------------------------------------------------
# Measurements


def _native_dtypes(device: str) -> list[str]:
    """The dtypes whose matmul the hardware runs natively, float32 first."""
    dtypes = ["float32"]
    if device == "cpu":
        flags = set(describe_machine().cpu_flags)
        dtypes += [d for d in DTYPES[1:] if flags & _CPU_NATIVE_FLAGS[d]]
    else:
        import torch

        props = torch.cuda.get_device_properties(int(device.split(":")[1]))
        capability = (props.major, props.minor)
        dtypes += [d for d in DTYPES[1:] if capability >= _CUDA_NATIVE_CAPABILITY[d]]
    return dtypes


def _matmul_sizes(device: str, dtype: str = "float32") -> tuple[int, ...]:
    """Square matmul sizes large enough to reach the peak and small enough to sample often.

    Measured on a 2-core Xeon with AMX: bf16 and int8 reach only about half their peak below
    1536, where the work no longer splits well over both cores, so they start at 1024. float32
    runs within a few percent of its peak from 512 to 2048 here, but on another machine of the
    same kind a plain 512 matmul ran at 293 GFLOP/s while 1024-2048 peaked at 217 (its cache
    favours the small size), so float32 samples 512 too: sampling several sizes lets each
    machine show its own best one. And 256: its operands fit in the L2 caches, and on that
    2-core machine while another process ran it reached 177-200 GFLOP/s (best of 80 samples of
    2 ms, median 171) where 1024 reached 59-92 (median 39-66); a workload's small matmuls (a
    small transformer's projections) run at that rate, so a peak measured only at the large
    sizes put them 1.05-1.4 times above the roof. More threads need more work per call to keep
    every core busy.
    """
    import torch

    if device.startswith("cuda"):
        return (2048, 4096, 8192)
    sizes: tuple[int, ...] = (1024, 1536, 2048)
    if dtype == "float32":
        sizes = (256, 512, *sizes)
    if torch.get_num_threads() > 8:
        sizes += (4096,)
    return sizes


def _matmul_job(device: str, dtype: str, n: int) -> _Job:
    """A square ``n``×``n`` matmul in ``dtype`` on ``device``, into a preallocated output."""
    import torch

    if dtype == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        c = torch.empty((n, n), dtype=torch.int32, device=device)
        # The int8 × int8 → int32 matmul torch's quantized paths call (oneDNN VNNI/AMX on CPU,
        # cuBLASLt IMMA on CUDA); an op is a multiply or an add, as for FLOPs.
        return _Job(lambda: torch._int_mm(a, b, out=c), 2.0 * n**3)
    dt = getattr(torch, dtype)
    a = torch.randn((n, n), device=device).to(dt)
    b = torch.randn((n, n), device=device).to(dt)
    c = torch.empty((n, n), dtype=dt, device=device)
    return _Job(lambda: torch.mm(a, b, out=c), 2.0 * n**3)


def _matmul_jobs(device: str, dtype: str, share: float) -> list[_Job]:
    """Matmul jobs at each of :func:`_matmul_sizes` that fit in ``share`` of the free memory."""
    import torch

    sizes = _matmul_sizes(device, dtype)
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(int(device.split(":")[1]))
        # Three n×n tensors of at most 4 bytes an element, beside whatever is on the device.
        sizes = tuple(n for n in sizes if 3 * n * n * 4 <= free * share) or sizes[:1]
    jobs = [_matmul_job(device, dtype, n) for n in sizes]
    for job in jobs:
        # The warm-up call; it fails here where torch has no kernel for this dtype and device.
        job.run()
    return jobs


_SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


def _sysfs_size(text: str) -> int | None:
    """Bytes of a sysfs cache size (``"48K"``, ``"2048K"``, ``"32M"``), or None if unreadable."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    digits = text.rstrip("KMG")
    return int(digits) * scale if digits.isdigit() and int(digits) > 0 else None


def _cpu_cache_bytes(threads: int, root: Path = _SYSFS_CACHE) -> dict[str, int]:
    """The L2 and L3 bytes that ``threads`` threads hold together (Linux sysfs), or none.

    A cache shared by ``k`` CPUs counts once per ``k`` of the threads (at least once): two
    threads on two cores with private 1 MiB L2s hold 2 MiB in L2, and share one L3.
    """
    found: dict[str, int] = {}
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _sysfs_size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        if level not in ("2", "3") or kind not in ("Unified", "Data") or size is None:
            continue
        sharing = _cpu_count(shared)
        copies = max(1, threads // max(sharing, 1))
        found[f"l{level}"] = size * copies
    return found


def _cpu_count(cpu_list: str) -> int:
    """How many CPUs a sysfs CPU list (``"0-3,8"``) names."""
    count = 0
    for part in cpu_list.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            count += int(hi) - int(lo) + 1 if hi.strip().isdigit() else 1
    return count


def _bandwidth_bytes(device: str) -> int:
    """Bytes per tensor for the bandwidth test: large enough that no cache can hold the traffic.

    A copy touches two tensors, a triad three, so a tensor the size of the last-level cache
    streams at least twice the cache's size per pass; clamped to 128–512 MiB on a CPU
    (256 MiB–1 GiB on a GPU, from its L2) and to an eighth of the free memory.
    """
    if device.startswith("cuda"):
        import torch

        index = int(device.split(":")[1])
        l2 = int(getattr(torch.cuda.get_device_properties(index), "L2_cache_size", 0))
        free, _ = torch.cuda.mem_get_info(index)
        size = min(max(4 * l2, 256 * 2**20), 2**30)
    else:
        free = psutil.virtual_memory().available
        # The last-level cache (one thread's view: its largest L2 or L3), 32 MiB where unknown.
        last_level = max(_cpu_cache_bytes(1).values(), default=0) or 32 * 2**20
        size = min(max(last_level, 128 * 2**20), 512 * 2**20)
    return max(min(size, free // 8), 16 * 2**20)


def _bandwidth_jobs(device: str, nbytes: int | None = None) -> list[_Job]:
    """A copy, a triad and an in-place update over tensors of ``nbytes`` bytes (default: far
    larger than any cache); their rates count bytes read plus bytes written, as the FLOP counter
    counts an operator's bytes. Cache-sized ones take ``_CACHE_SAMPLES`` samples of
    ``_CACHE_SAMPLE_S`` a round (see :class:`_Job`).

    The in-place update is there because a CPU fetches a cache line before writing into it
    unless it already holds it: an out-of-place write costs a read the byte count does not
    show, an in-place one does not. So in-place operators (an optimizer's ``lerp_``,
    ``addcmul_``, ``mul_``) move their counted bytes up to a third faster than a copy does
    (measured on a 2-core Xeon: ``addcmul_`` 180-217 GB/s from L2 and L3 where copy and triad
    reached 140-185), and the roof must cover them.
    """
    import torch

    n = (nbytes or _bandwidth_bytes(device)) // 4
    a = torch.zeros(n, device=device)  # zeros, not empty: the first touch happens here
    b = torch.full((n,), 1.0, device=device)
    c = torch.full((n,), 2.0, device=device)
    jobs = [
        # copy: reads b, writes a.
        _Job(lambda: a.copy_(b), 2.0 * 4 * n),
        # triad (STREAM's a = b + s·c): reads b and c, writes a.
        _Job(lambda: torch.add(b, c, alpha=0.5, out=a), 3.0 * 4 * n),
        # in place: reads a, b and c, writes a (the copy resets a each round; b·c only grows it).
        _Job(lambda: a.addcmul_(b, c), 4.0 * 4 * n),
    ]
    if nbytes is not None:
        for job in jobs:
            job.sample_s, job.samples = _CACHE_SAMPLE_S, _CACHE_SAMPLES
    for job in jobs:
        job.run()
    return jobs


def _dispatch_seconds(device: str) -> float:
    """Median seconds of one tiny op (an add of one-element tensors) on ``device``.

    Each sample is the mean of a batch of calls (a single call is too short to time alone); the
    median over batches ignores the ones a context switch or a garbage collection hit. On CUDA a
    batch ends with a synchronize, so a sample is the rate at which tiny ops complete: the host's
    launch cost or the GPU's per-kernel time, whichever is the larger.
    """
    import torch

    x = torch.ones(1, device=device)
    y = torch.ones(1, device=device)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(200):
        torch.add(x, y)
    sync()
    samples = []
    for _ in range(_DISPATCH_BATCHES):
        start = time.perf_counter()
        for _ in range(_DISPATCH_CALLS):
            torch.add(x, y)
        sync()
        samples.append((time.perf_counter() - start) / _DISPATCH_CALLS)
    return statistics.median(samples)


def calibrate(device: str = "cpu") -> Peaks:
    """Measure ``device``'s peaks now (a few seconds to about fifteen), without the cache.

    Uses torch's current thread count. A dtype whose hardware support is missing, or whose
    matmul torch cannot run on this device, is left out of :attr:`Peaks.flops`. Raises
    DeviceError for a device that is not here.
    """
    started = time.perf_counter()
    import torch

    dev = _resolve_device(device)
    key = _cache_key(dev)
    cuda = dev.startswith("cuda")
    clock: _Clock = _CudaClock() if cuda else _Clock()
    dtypes = _native_dtypes(dev)
    # No autograd bookkeeping: these are the kernels' rates, not a training step's. On CUDA,
    # ``dev`` is the current device throughout.
    current = torch.cuda.device(int(dev.split(":")[1])) if cuda else contextlib.nullcontext()
    with torch.no_grad(), current:
        groups: dict[str, list[_Job]] = {}
        for dtype in dtypes:
            try:
                # The matmuls together take at most a quarter of a GPU's free memory; the
                # bandwidth tensors at most three eighths.
                groups[dtype] = _matmul_jobs(dev, dtype, share=1 / (4 * len(dtypes)))
            except (RuntimeError, NotImplementedError):
                # The hardware has it but this torch build has no kernel for it: no ceiling a
                # user can reach either. float32 always has one; its failure is a real error.
                if dtype == "float32":
                    raise
        groups["bandwidth"] = _bandwidth_jobs(dev)
        cache_bytes = {} if cuda else _cpu_cache_bytes(torch.get_num_threads())
        for level, size in cache_bytes.items():
            # The triad's three tensors fill half the level: what other data (the interpreter,
            # torch's own) leaves room for, so the samples run from that level.
            groups[f"cache_{level}"] = _bandwidth_jobs(dev, max(size // 6, 4096))
        rates = _fastest(groups, clock, _CUDA_BUDGET_S if cuda else _CPU_BUDGET_S)
        del groups  # free the tensors before the next measurement
        bandwidth = rates.pop("bandwidth")
        cache_rates = {level: rates.pop(f"cache_{level}") for level in cache_bytes}
        dispatch = _dispatch_seconds(dev)
    if cuda:
        torch.cuda.empty_cache()
    return Peaks(
        device=dev,
        flops=rates,
        bandwidth_bytes_per_s=bandwidth,
        dispatch_s=dispatch,
        threads=torch.get_num_threads(),
        key=key,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started,
        cache_bandwidth_bytes_per_s=cache_rates,
        cache_bytes=cache_bytes,
    )


# ---------------------------------------------------------------------------------------------
# Cache


def _read_cache(path: Path, key: str, device: str) -> Peaks | None:
    """The cached peaks at ``path``, or None when the file is missing, unreadable or not valid."""
    try:
        peaks = Peaks.from_dict(orjson.loads(path.read_bytes()))
    except (OSError, ValueError):  # orjson.JSONDecodeError and codec.FormatError are ValueErrors
        return None
    rates = [
        *peaks.flops.values(),
        *peaks.cache_bandwidth_bytes_per_s.values(),
        peaks.bandwidth_bytes_per_s,
        peaks.dispatch_s,
    ]
    if (
        peaks.key != key
        or peaks.device != device
        or "float32" not in peaks.flops
        or not all(math.isfinite(r) and r > 0 for r in rates)
    ):
        return None
    return peaks


def load_or_calibrate(
    device: str = "cpu", *, refresh: bool = False, cache_dir: Path | None = None
) -> tuple[Peaks, bool]:
    """``device``'s peaks from the cache, or measured and cached now; and whether they were cached.

    A missing, corrupted or foreign cache file is measured over and replaced; ``refresh`` measures
    anew in any case. The file is written atomically, so a concurrent reader never sees half of
    it; a cache folder that cannot be written only costs a warning. See :func:`cache_path` for
    where the file lives.
    """
    path = cache_path(device, cache_dir)
    dev = _resolve_device(device)
    if not refresh:
        cached = _read_cache(path, _cache_key(dev), dev)
        if cached is not None:
            return cached, True
    peaks = calibrate(dev)
    try:
        peaks.save(path)
    except OSError as exc:
        warnings.warn(
            f"could not cache the calibration at {path}: {exc}", RuntimeWarning, stacklevel=2
        )
    return peaks, False

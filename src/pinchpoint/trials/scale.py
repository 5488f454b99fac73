"""Scaling efficiency: a data-parallel job's throughput at several process counts, against
linear scaling.

:func:`scale` launches the target once per process count (through
:func:`pinchpoint.recorders.job.launch`, the way a user's job runs), repeats the sequence
interleaved (1 2, 2 1, 1 2… so the machine's drift reaches every count alike), and reads each
merged multi-rank Profile:

- **step time**: the median wall time of rank 0's measured steps over all runs of that count
  (the ranks wait for each other at every all-reduce, so each rank's steps last about as
  long); with gradient accumulation, of whole accumulation cycles (found from the steps that
  ran the optimizer), divided by their steps;
- **global batch**: the samples one step processes over all ranks: each step records its
  per-rank batch (the leading dimension of the batch's first tensor), times the ranks (the
  commonest value over the run, so a data set's short last batch does not change it);
- **throughput**: global batch / step time, in samples per second;
- **speed-up**: throughput over the throughput at the smallest count (the reference, usually
  1), and **efficiency**: speed-up / (count / reference count), 1.0 being linear scaling;
- **the interval**: the reference's runs and each count's runs are paired in the order they
  ran, and their steps paired in order; the per-sample time ratios of those pairs go through
  :func:`~pinchpoint.trials.timing.speed_from_pairs`, the statistics every trial uses, whose
  distribution-free 95 % interval of the median ratio, divided by the count ratio, is the
  efficiency's interval. It needs six pairs (``steps * repeats >= 6``); it covers the
  step-to-step and, with repeats, the run-to-run spread, but a machine that is slower for a
  whole session moves every run.
- **threads**: every rank runs with the same intra-op threads at every count (the machine's
  cores over the largest count), so a count's efficiency is more ranks, not fewer threads each;
- **communication**: the median share of the step spent waiting on the all-reduce (the
  Profile's ``communication`` phase), which says how much of the loss is the collective.

The result is a :class:`ScaleResult`; ``to_dict``/``save`` write it as JSON (schema
``pinchpoint.scale/1``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinchpoint import codec
from pinchpoint._profile import Machine
from pinchpoint.errors import WorkloadError
from pinchpoint.trials.distributed import (
    Launcher,
    RunWindows,
    default_launcher,
    interleaved,
    paired_times,
    run_windows,
)
from pinchpoint.trials.timing import MIN_PAIRS, SpeedComparison, speed_from_pairs

if TYPE_CHECKING:
    from pinchpoint._profile import Profile

__all__ = ["SCHEMA", "ScalePoint", "ScaleResult", "ScaleRun", "parse_nprocs", "scale"]

SCHEMA = "pinchpoint.scale/1"
#: Efficiency from which scaling counts as near-linear in the verdict.
NEAR_LINEAR = 0.9


def parse_nprocs(text: str | Iterable[int]) -> tuple[int, ...]:
    """Process counts from ``"1,2,4"`` (or a sequence of integers), in increasing order.

    Raises:
        ValueError: a count is not a positive integer, one repeats, or fewer than two are given.
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise ValueError(f"{text!r} is not a list of process counts like 1,2")
        counts: list[int] = []
        for part in parts:
            if not part.isdigit():
                raise ValueError(f"{part!r} in {text!r} is not a whole number of processes")
            counts.append(int(part))
    else:
        counts = list(text)
        for count in counts:
            if isinstance(count, bool) or not isinstance(count, int):
                raise ValueError(f"a process count must be an integer, not {count!r}")
    if any(c < 1 for c in counts):
        raise ValueError(f"process counts must be at least 1, got {min(counts)}")
    if len(set(counts)) != len(counts):
        raise ValueError(f"a process count appears twice in {','.join(map(str, counts))}")
    if len(counts) < 2:
        raise ValueError("scaling compares at least two process counts, e.g. 1,2")
    return tuple(sorted(counts))


@dataclass(frozen=True)
class ScaleRun(codec.Saved):
    """One launch: its process count, when it ran, and what its merged profile measured.

    Attributes:
        nproc: processes (ranks) in the run.
        position: its place in the sequence of launches (0 first).
        step_times_s: the measured steps' wall times (per step of each accumulation window).
        samples_per_step: samples per step over all ranks (None when a step's batch is unknown).
        communication_share: the median share of a step spent in the communication phase.
        launch_s: seconds the whole launch took (start-up and exit included).
    """

    nproc: int
    position: int
    step_times_s: tuple[float, ...]
    samples_per_step: int | None
    communication_share: float | None
    launch_s: float

    @property
    def step_time_s(self) -> float:
        """The median of :attr:`step_times_s`."""
        return float(statistics.median(self.step_times_s))

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, "nproc position step_time_s", step_time_s=self.step_time_s)


@dataclass(frozen=True)
class ScalePoint(codec.Saved):
    """One process count: its runs, and its throughput against the reference count.

    Attributes:
        nproc: processes (ranks).
        runs: its launches, in the order they ran.
        global_batch: samples per step over all ranks (None when unknown).
        step_time_s: the median step time over all its runs' measured steps.
        throughput_per_s: ``global_batch / step_time_s``, samples per second over all ranks
            (None when the batch is unknown).
        communication_share: the median of its runs' communication shares.
        speedup: its throughput over the reference's (1.0 for the reference itself).
        efficiency: ``speedup / (nproc / reference nproc)``; 1.0 is linear scaling.
        speedup_ci: the 95 % interval of the speed-up (None without six pairs, and for the
            reference).
        efficiency_ci: ``speedup_ci`` divided by the count ratio.
        comparison: the paired timing against the reference (its times are per sample, or per
            step when the batch is unknown), None for the reference.
    """

    nproc: int
    runs: tuple[ScaleRun, ...]
    global_batch: int | None
    step_time_s: float
    throughput_per_s: float | None
    communication_share: float | None
    speedup: float
    efficiency: float
    speedup_ci: tuple[float, float] | None = None
    efficiency_ci: tuple[float, float] | None = None
    comparison: SpeedComparison | None = None

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in data.items() if k != "runs"}, "runs": data["runs"]}


#: The keys of a saved ScaleResult, in the order files have them.
_RESULT_KEYS = (
    "schema target device steps warmup repeats ddp threads reference_nproc verdict notes "
    "machine seconds points"
)


@dataclass
class ScaleResult(codec.Saved):
    """What :func:`scale` measured: one :class:`ScalePoint` per process count, and the verdict.

    Attributes:
        target: the workload target that ran.
        device: where the ranks ran.
        steps: measured steps per run.
        warmup: warm-up steps per run.
        repeats: runs per process count.
        ddp: the DDP settings given to every run (empty: the target's own).
        threads: intra-op threads of every rank, at every count.
        points: one per process count, increasing; the first is the reference.
        verdict: one plain sentence on how the job scales.
        notes: what the reader should know about the measurement (a shared machine...).
        machine: the machine the runs reported.
        seconds: the whole measurement's wall time.
        profiles: the merged profile of every run, in launch order (not saved).
    """

    target: str
    device: str
    steps: int
    warmup: int
    repeats: int
    ddp: dict[str, Any] = field(metadata=codec.missing_as({}))
    threads: int
    points: list[ScalePoint]
    verdict: str
    notes: list[str] = field(default_factory=list)
    machine: Machine = field(default_factory=Machine)
    seconds: float = 0.0
    profiles: list[Profile] = field(
        default_factory=list, repr=False, compare=False, metadata=codec.not_saved()
    )

    saved_as = codec.Document(SCHEMA, "scaling result")

    @property
    def reference(self) -> ScalePoint:
        """The point the others are measured against (the smallest process count)."""
        return self.points[0]

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, _RESULT_KEYS, reference_nproc=self.reference.nproc)


def scale(
    target: str,
    nprocs: Sequence[int] | str = (1, 2),
    *,
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    ddp: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    repeats: int = 2,
    threads: int | None = None,
    launcher: Launcher | None = None,
) -> ScaleResult:
    """Measure ``target``'s data-parallel throughput at each of ``nprocs`` process counts.

    Each count runs ``repeats`` times, the counts interleaved (1 2, 2 1…); see the module
    docstring for what is computed from the runs.

    Args:
        target: what every rank loads (``zoo:NAME``, ``file.py``, ``file.py:function``).
        nprocs: the process counts (``"1,2"`` or a sequence); the smallest is the reference.
        steps: measured steps per run.
        warmup: warm-up steps per run.
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, one GPU per rank).
        ddp: DDP settings for every run (``bucket_cap_mb``, ``comm_hook``...).
        timeout_s: the longest one run may take.
        repeats: runs per process count (1 gives no run-to-run spread).
        threads: intra-op threads per rank, the same at every count (default:
            ``OMP_NUM_THREADS`` when set, else the machine's cores over the largest count, at
            least 1), so that a count's efficiency is not a change of threads per rank.
        launcher: what runs the ranks (default :func:`pinchpoint.recorders.job.launch`).

    Raises:
        ValueError: a setting is out of range.
        WorkloadError: a run failed or returned no profile.
    """
    counts = parse_nprocs(nprocs)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer, not {threads!r}")
    launcher = launcher or default_launcher()
    per_rank = threads or _default_threads(counts[-1])
    started = time.perf_counter()
    runs: dict[int, list[ScaleRun]] = {n: [] for n in counts}
    windows: dict[int, list[RunWindows]] = {n: [] for n in counts}
    profiles: list[Profile] = []
    for position, nproc in enumerate(interleaved(counts, repeats)):
        begun = time.perf_counter()
        with _omp_threads(per_rank):
            profile = launcher(
                target,
                nproc=nproc,
                steps=steps,
                warmup=warmup,
                device=device,
                ddp=dict(ddp) if ddp else None,
                timeout_s=timeout_s,
            )
        launch_s = time.perf_counter() - begun
        if profile is None:
            raise WorkloadError(f"the run of {target} on {nproc} processes returned no profile")
        profiles.append(profile)
        accumulate = _accumulate(profile)
        run = run_windows(profile, accumulate, nproc)
        if not run.times_s:
            raise WorkloadError(
                f"the run of {target} on {nproc} processes measured no whole step"
                + (f" window of {accumulate} steps: raise steps" if accumulate > 1 else "")
            )
        windows[nproc].append(run)
        runs[nproc].append(
            ScaleRun(
                nproc=nproc,
                position=position,
                step_times_s=tuple(t / run.width for t in run.times_s),
                samples_per_step=_samples_per_step(run),
                communication_share=_communication_share(profile),
                launch_s=launch_s,
            )
        )
    points = _points(counts, runs, windows)
    machine = profiles[0].machine if profiles else Machine()
    return ScaleResult(
        target=target,
        device=device,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        ddp=dict(ddp or {}),
        threads=per_rank,
        points=points,
        verdict=verdict(points),
        notes=_notes(points, machine, repeats),
        machine=machine,
        seconds=time.perf_counter() - started,
        profiles=profiles,
    )


def _default_threads(largest: int) -> int:
    """``OMP_NUM_THREADS`` when set, else the machine's cores shared by ``largest`` ranks."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, (os.cpu_count() or 1) // largest)


@contextlib.contextmanager
def _omp_threads(count: int) -> Iterator[None]:
    """``OMP_NUM_THREADS`` set to ``count`` for the block (the launched ranks inherit it)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _points(
    counts: Sequence[int],
    runs: Mapping[int, Sequence[ScaleRun]],
    windows: Mapping[int, Sequence[RunWindows]],
) -> list[ScalePoint]:
    reference = counts[0]
    base = _summary(runs[reference])
    points = []
    for nproc in counts:
        batch, step_s, throughput, share = _summary(runs[nproc])
        factor = nproc / reference
        if nproc == reference:
            speedup = 1.0
        elif throughput is not None and base[2] is not None:
            speedup = throughput / base[2]
        else:  # batch unknown: assume each rank keeps the reference's per-rank batch
            speedup = factor * base[1] / step_s
        comparison = None
        speedup_ci = efficiency_ci = None
        base_s, cand_s, unit = paired_times(windows[reference], windows[nproc])
        if nproc != reference and len(base_s) >= MIN_PAIRS:
            comparison = speed_from_pairs(base_s, cand_s)
            scale_by = factor if unit == "step" else 1.0
            low, high = comparison.speedup_ci
            speedup_ci = (low * scale_by, high * scale_by)
            efficiency_ci = (speedup_ci[0] / factor, speedup_ci[1] / factor)
        points.append(
            ScalePoint(
                nproc=nproc,
                runs=tuple(runs[nproc]),
                global_batch=batch,
                step_time_s=step_s,
                throughput_per_s=throughput,
                communication_share=share,
                speedup=speedup,
                efficiency=speedup / factor,
                speedup_ci=speedup_ci,
                efficiency_ci=efficiency_ci,
                comparison=comparison,
            )
        )
    return points


def _summary(runs: Sequence[ScaleRun]) -> tuple[int | None, float, float | None, float | None]:
    """Global batch, median step time, throughput and communication share of one count."""
    step_s = float(statistics.median([t for r in runs for t in r.step_times_s]))
    batches = {r.samples_per_step for r in runs}
    batch = batches.pop() if len(batches) == 1 else None
    throughput = batch / step_s if batch is not None and step_s > 0 else None
    shares = [r.communication_share for r in runs if r.communication_share is not None]
    share = float(statistics.median(shares)) if shares else None
    return batch, step_s, throughput, share


def verdict(points: Sequence[ScalePoint]) -> str:
    """One sentence on how the largest count scales against the reference, with its cause."""
    reference, last = points[0], points[-1]
    counts = f"{last.nproc} processes give {last.speedup:.2f}x the throughput of {reference.nproc}"
    linear = f"{last.efficiency:.0%} of linear"
    if last.efficiency_ci is not None:
        low, high = last.efficiency_ci
        linear += f" (95 % interval {low:.0%}–{high:.0%})"
    sentence = f"{counts}, {linear}"
    share = last.communication_share
    if last.efficiency > 1 / NEAR_LINEAR:
        return (
            f"{sentence}: more than linear, so per sample each rank outpaced the "
            f"{reference.nproc}-process run."
        )
    if last.efficiency >= NEAR_LINEAR:
        return f"{sentence}: near-linear scaling."
    if share is not None and share > 0:
        return f"{sentence}: communication takes {share:.0%} of the {last.nproc}-process step."
    if last.step_time_s > reference.step_time_s:
        grown = last.step_time_s / reference.step_time_s - 1
        return f"{sentence}: each step takes {grown:.0%} longer than with {reference.nproc}."
    return f"{sentence}."


def _notes(points: Sequence[ScalePoint], machine: Machine, repeats: int) -> list[str]:
    notes: list[str] = []
    cores = machine.cores_logical
    largest = points[-1].nproc
    if cores and largest >= cores:
        notes.append(
            f"{largest} processes share this machine's {cores} logical cores: the ranks "
            "compete for them, so this measures the job on this machine, not the method"
        )
    if repeats == 1:
        notes.append("one run per count: the interval covers step-to-step spread only")
    if any(p.global_batch is None for p in points):
        notes.append(
            "the batch size is unknown: throughput assumes every rank keeps the reference's "
            "per-rank batch"
        )
    if any(p.comparison is not None and p.comparison.noisy for p in points):
        notes.append("the machine was noisy: step times varied by more than 10 %")
    return notes


def _accumulate(profile: Profile) -> int:
    """Micro-batches per optimizer step, read from the steps: only a cycle's last step has
    optimizer time, so it is the smallest gap between two steps that stepped the optimizer."""
    stepped = [s.index for s in profile.steps if s.phases.get("optimizer", 0.0) > 0]
    gaps = [b - a for a, b in itertools.pairwise(stepped) if b > a]
    return min(gaps) if gaps else 1


def _samples_per_step(run: RunWindows) -> int | None:
    """The run's usual global batch: the commonest per-step count (a data set's short last
    batch does not change it); None when a window's is unknown."""
    if not run.samples or any(s is None for s in run.samples):
        return None
    return round(statistics.mode(s / run.width for s in run.samples if s is not None))


def _communication_share(profile: Profile) -> float | None:
    stats = profile.phase_stats().get("communication")
    return None if stats is None else float(stats.share)

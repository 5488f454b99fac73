"""Distributed trials: a candidate's settings against the baseline's, each a real multi-process
run through :func:`pinchpoint.recorders.job.launch`.

A remedy cannot be handed to other processes as an object, so a distributed trial runs what
the ranks can be told: the workload's DDP settings (``ddp``), its gradient accumulation
(``accumulate``) and its per-rank batch size (``batch_size``). :func:`launch_settings` reads
them off an applied Workload and refuses a candidate that changes anything else (a model, a
precision, an optimizer), since that change would silently not happen in the ranks.

The runs are interleaved, A B B A A B…, so the machine's drift hits both arms alike. Each run
yields its measured steps; they are grouped into windows of whole accumulation cycles
(``lcm`` of the two arms' ``accumulate``, one step when neither accumulates: with
accumulation, the step that all-reduces and the steps that do not must be counted together),
and the ``k``-th window of each baseline run is paired with the ``k``-th window of the
candidate run next to it. The pairs go through
:func:`~pinchpoint.trials.timing.speed_from_pairs`, the statistics every trial uses: the median
ratio and its distribution-free 95 % interval. Times are per step, or per sample when the arms'
batches differ. Quality is the loss the two arms reach after the same number of steps (the mean
of the last few steps' losses, averaged over the runs), held against the budget as a training
trial's is.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pinchpoint.errors import WorkloadError
from pinchpoint.stats import mean, stdev
from pinchpoint.trials._training import FINAL_LOSS_STEPS
from pinchpoint.trials.quality import Budget
from pinchpoint.trials.timing import MIN_PAIRS, speed_from_pairs
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Profile
    from pinchpoint.trials.trial import Trial

__all__ = [
    "LAUNCHABLE",
    "Launcher",
    "RunWindows",
    "default_launcher",
    "distributed_trial",
    "interleaved",
    "launch_settings",
    "paired_times",
    "run_length",
    "run_windows",
]

#: The remedies whose whole effect :func:`launch_settings` can pass to the ranks.
LAUNCHABLE = frozenset(
    {"ddp_buckets", "grad_compression", "no_sync_accumulation", "grad_accumulation"}
    | {"per_rank_batch"}
)

Launcher = Callable[..., "Profile | None"]


def interleaved(arms: Sequence[Any], repeats: int) -> list[Any]:
    """The order to run ``arms`` in: forwards, then backwards, ``repeats`` times (A B B A…)."""
    order: list[Any] = []
    for index in range(repeats):
        order.extend(arms if index % 2 == 0 else list(reversed(arms)))
    return order


# ----------------------------------------------------------------------------- settings


def launch_settings(workload: Workload, reference: Workload) -> dict[str, Any]:
    """The :func:`~pinchpoint.recorders.job.launch` keyword arguments that run ``workload``.

    ``ddp``, ``accumulate`` and ``batch_size`` are taken from ``workload``; ``batch_size`` is
    given only when it differs from ``reference``'s (the ranks otherwise keep the target's
    own).

    Raises:
        ValueError: ``workload`` carries a remedy the ranks cannot be told about, or a changed
            learning rate (launch sets the batch size, not the rate).
    """
    from pinchpoint.remedies.distributed import batch_size_of, ddp_settings

    added = workload.applied[len(reference.applied) :]
    if workload.applied[: len(reference.applied)] != reference.applied:
        raise ValueError("the candidate is not the baseline with remedies added")
    for label in added:
        name = label.split("(", 1)[0]
        if name not in LAUNCHABLE:
            raise ValueError(
                f"{label} cannot run on several processes: launch passes only DDP settings, "
                "accumulation and the per-rank batch size to the ranks"
            )
    if _learning_rates(workload) != _learning_rates(reference):
        raise ValueError(
            f"{' + '.join(added)} changes the learning rate, and launch sets the ranks' batch "
            "size but not their learning rate (PerRankBatch: use scale_lr=False)"
        )
    settings: dict[str, Any] = {
        "ddp": ddp_settings(workload) or None,
        "accumulate": workload.accumulate,
    }
    size = batch_size_of(workload)
    if size is not None and size != batch_size_of(reference):
        settings["batch_size"] = size
    return settings


def _learning_rates(workload: Workload) -> list[float]:
    groups = getattr(workload.optimizer, "param_groups", None) or []
    return [float(group.get("lr", 0.0)) for group in groups]


# ----------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class RunWindows:
    """The measured steps of one run, in whole windows of ``width`` consecutive steps.

    Attributes:
        width: steps per window (the accumulation cycle, or a multiple of it).
        times_s: each window's wall time (the sum of its steps').
        samples: each window's samples over all ranks (None where a step's is unknown).
        losses: the run's losses, each the mean over the ranks, in step order (steps that
            recorded none left out).
    """

    width: int
    times_s: tuple[float, ...]
    samples: tuple[int | None, ...]
    losses: tuple[float, ...]

    @property
    def final_loss(self) -> float:
        """The mean loss of the run's last :data:`FINAL_LOSS_STEPS` steps (NaN without any)."""
        last = self.losses[-FINAL_LOSS_STEPS:]
        return mean(last)


def run_windows(profile: Profile, width: int, ranks: int) -> RunWindows:
    """The measured steps of a merged multi-rank ``profile`` in windows of ``width`` steps.

    A window is the steps whose index ``i`` share ``i // width``, so with accumulation a
    window is whole cycles; a window with a warm-up or instrumented step in it is left out.
    Samples per step are the global batch: see :func:`global_samples`.
    """
    if width < 1:
        raise ValueError(f"a window holds at least one step, not {width}")
    groups: dict[int, list[Any]] = {}
    broken: set[int] = set()
    for step in profile.steps:
        key = step.index // width
        if step.measured:
            groups.setdefault(key, []).append(step)
        else:
            broken.add(key)
    times: list[float] = []
    samples: list[int | None] = []
    for key in sorted(groups):
        steps = groups[key]
        if key in broken or len(steps) != width:
            continue
        times.append(sum(s.wall_s for s in steps))
        counts = [global_samples(profile, s, ranks) for s in steps]
        samples.append(None if None in counts else sum(c for c in counts if c is not None))
    return RunWindows(
        width=width, times_s=tuple(times), samples=tuple(samples), losses=_job_losses(profile)
    )


def _job_losses(profile: Profile) -> tuple[float, ...]:
    """Each step's loss averaged over the ranks (each rank's is on its own shard of the
    batch), in step order; rank 0's alone where the profile lists no ranks."""
    sources = profile.ranks or [profile]
    by_index: dict[int, list[float]] = {}
    for rank in sources:
        for step in rank.steps:
            if step.loss is not None:
                by_index.setdefault(step.index, []).append(float(step.loss))
    return tuple(
        float(statistics.fmean(values))
        for _, values in sorted(by_index.items())
        if len(values) == len(sources)
    )


def global_samples(profile: Profile, step: Any, ranks: int) -> int | None:
    """The samples one step processed over all ranks, or None when the profile does not say.

    A merged Profile lists every rank's own Profile (:attr:`~pinchpoint.Profile.ranks`): the
    sum of their batches at that step's index. Without them, the step's own batch (rank 0's)
    times ``ranks``, since data parallelism gives every rank the same batch size.
    """
    if profile.ranks:
        counts = []
        for rank in profile.ranks:
            match = next((s for s in rank.steps if s.index == step.index), None)
            counts.append(None if match is None else match.samples)
        if all(c is not None for c in counts):
            return int(sum(c for c in counts if c is not None))
    return None if step.samples is None else int(step.samples) * ranks


def paired_times(
    baseline: Sequence[RunWindows], candidate: Sequence[RunWindows]
) -> tuple[list[float], list[float], str]:
    """Window times paired across the arms (run ``i`` of each, window ``k`` of each).

    Times are per sample when the samples are known and differ between the arms, else per
    step (a window's time over its steps). Returns the baseline's times, the candidate's, and
    the unit (``"sample"`` or ``"step"``).
    """
    pairs: list[tuple[tuple[float, int | None, int], tuple[float, int | None, int]]] = []
    for base, cand in zip(baseline, candidate, strict=True):
        for k in range(min(len(base.times_s), len(cand.times_s))):
            pairs.append(
                (
                    (base.times_s[k], base.samples[k], base.width),
                    (cand.times_s[k], cand.samples[k], cand.width),
                )
            )
    known = all(b[1] is not None and c[1] is not None for b, c in pairs)
    per_sample = known and any(b[1] / b[2] != c[1] / c[2] for b, c in pairs if b[1] and c[1])
    if per_sample:
        return (
            [b[0] / (b[1] or 1) for b, _ in pairs],
            [c[0] / (c[1] or 1) for _, c in pairs],
            "sample",
        )
    return [b[0] / b[2] for b, _ in pairs], [c[0] / c[2] for _, c in pairs], "step"


# ----------------------------------------------------------------------------- the trial


@dataclass(frozen=True)
class _Arm:
    """One arm of a distributed trial: its workload and what each rank is told."""

    workload: Workload
    settings: dict[str, Any]

    @property
    def accumulate(self) -> int:
        return int(self.settings.get("accumulate") or 1)


def distributed_trial(
    target: str,
    baseline: Workload,
    candidate: Workload,
    *,
    nproc: int,
    objective: str = "throughput",
    budget: Budget | float | str = 0.01,
    steps: int = 12,
    warmup: int = 2,
    repeats: int = 2,
    device: str = "cpu",
    timeout_s: float | None = None,
    launcher: Launcher | None = None,
) -> Trial:
    """Run ``baseline`` and ``candidate`` on ``nproc`` processes each, interleaved, and judge.

    Both are runs of ``target`` (what the ranks load); ``baseline`` and ``candidate`` are
    that target's Workload and the Workload a remedy made of it, and their settings are passed
    to the ranks as :func:`launch_settings` describes. Each arm runs ``repeats`` times, in the
    order A B, B A, A B…; a run records ``warmup`` steps, then at least ``steps`` measured
    ones (more when accumulation windows need them for :data:`MIN_PAIRS` pairs). Both arms
    start from the weights the target builds (DDP gives every rank rank 0's), the same
    when the target seeds its model, as the zoo's do.

    Args:
        target: the workload target the ranks load (``zoo:NAME``, ``file.py``).
        baseline: the target's workload.
        candidate: the workload with the remedies applied (``pinchpoint.apply``).
        nproc: processes (ranks) per run.
        objective: ``"latency"`` or ``"throughput"`` (the same ratio: time per step or sample).
        budget: the largest loss increase allowed (relative for ``"1%"``).
        steps: measured steps per run.
        warmup: warm-up steps per run.
        repeats: runs per arm (interleaved).
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, one GPU per rank).
        timeout_s: the longest one run may take.
        launcher: what runs the ranks (default :func:`pinchpoint.recorders.job.launch`), a seam
            for tests and for other launchers with its keyword arguments.

    Raises:
        ValueError: a setting is out of range, or the candidate changes what launch cannot
            pass on.
        WorkloadError: a run failed or returned no profile.
    """
    import numpy as np

    from pinchpoint.trials.trial import TrainingComparison, TrialMeasure

    if objective not in ("latency", "throughput"):
        raise ValueError(
            f"a distributed trial measures speed: objective must be latency or throughput, "
            f"not {objective!r}"
        )
    if baseline.mode != "train" or candidate.mode != "train":
        raise ValueError("a distributed trial runs training workloads (DDP needs gradients)")
    if nproc < 1 or repeats < 1 or steps < 1 or warmup < 0:
        raise ValueError("nproc, repeats and steps must be >= 1 and warmup >= 0")
    arms = (
        _Arm(baseline, launch_settings(baseline, baseline)),
        _Arm(candidate, launch_settings(candidate, baseline)),
    )
    width = math.lcm(arms[0].accumulate, arms[1].accumulate)
    warm, measured = run_length(width, warmup, steps, math.ceil(MIN_PAIRS / repeats), device)
    run = launcher or default_launcher()
    windows: tuple[list[RunWindows], list[RunWindows]] = ([], [])
    seconds: tuple[list[float], list[float]] = ([], [])
    for index in interleaved((0, 1), repeats):
        arm = arms[index]
        started = time.perf_counter()
        profile = run(
            target,
            nproc=nproc,
            steps=measured,
            warmup=warm,
            device=device,
            timeout_s=timeout_s,
            **arm.settings,
        )
        seconds[index].append(time.perf_counter() - started)
        if profile is None:
            raise WorkloadError(f"the run of {target} on {nproc} processes returned no profile")
        windows[index].append(run_windows(profile, width, nproc))
    base_s, cand_s, unit = paired_times(windows[0], windows[1])
    if len(base_s) < MIN_PAIRS:
        raise WorkloadError(
            f"the runs gave {len(base_s)} pairs of whole {width}-step windows; "
            f"{MIN_PAIRS} are needed: raise steps"
        )
    speed = speed_from_pairs(base_s, cand_s, warmup=warm)
    losses = (
        tuple(w.final_loss for w in windows[0]),
        tuple(w.final_loss for w in windows[1]),
    )
    comparison = TrainingComparison(
        steps=warm + measured,
        warmup=warm,
        seeds=repeats,
        loss_baseline=mean(losses[0], finite_only=True),
        loss_candidate=mean(losses[1], finite_only=True),
        loss_baseline_std=stdev(losses[0], finite_only=True),
        loss_candidate_std=stdev(losses[1], finite_only=True),
        losses_baseline=losses[0],
        losses_candidate=losses[1],
        same_initial_weights=True,
    )
    rates = _rates(windows, speed.baseline_s, speed.candidate_s, unit)
    notes = [
        f"ran on {nproc} processes ({device}), {repeats} run(s) per arm interleaved, "
        f"{measured} measured steps each; times are per {unit}"
        + (f", over windows of {width} steps (whole accumulation cycles)" if width > 1 else ""),
        "quality is the training loss each arm reached after the same number of steps",
        f"launch took {np.median(seconds[0]):.1f} s (baseline) and "
        f"{np.median(seconds[1]):.1f} s (candidate) per run",
    ]
    measure = TrialMeasure(
        objective="throughput" if objective == "throughput" else "latency",
        budget=Budget.parse(budget),
        warmup=warm,
        device=_torch_device(device),
    )
    return measure._verdict(
        baseline,
        candidate,
        speed=speed,
        unit=unit,
        metric="loss",
        greater=False,
        quality=comparison.loss_candidate,
        quality_baseline=comparison.loss_baseline,
        memory=(None, None, None),
        samples_per_s=rates,
        training=comparison,
        notes=notes,
    )


def run_length(width: int, warmup: int, steps: int, windows: int, device: str) -> tuple[int, int]:
    """Warm-up and measured steps for a run to give at least ``windows`` whole windows.

    The recorder's instrumented steps follow the warm-up (``sample_plan``); the warm-up is
    lengthened so that they end on a window's edge. With windows wider than one step, one
    more window is asked for, since a later instrumented step (activation statistics, every
    few dozen steps) breaks the window it falls in.
    """
    planned = 0
    if width > 1:
        from pinchpoint.recorders.sampling import sample_plan

        planned = len(sample_plan(_torch_device(device)))
    warm = warmup
    while (warm + planned) % width:
        warm += 1
    measured = width * math.ceil(max(steps, width * windows) / width)
    if width > 1:
        measured += width
    return warm, measured


def default_launcher() -> Launcher:
    """The launcher trials use unless given one: :func:`pinchpoint.recorders.job.launch`."""
    from pinchpoint.recorders.job import launch

    return launch


def _torch_device(device: str) -> Any:
    from pinchpoint.recorders.run import resolve_device

    return resolve_device(device)


def _rates(
    windows: tuple[list[RunWindows], list[RunWindows]],
    baseline_s: float,
    candidate_s: float,
    unit: str,
) -> tuple[float, float] | None:
    """Samples per second over all ranks for each arm, from its median time per unit."""
    if unit == "sample":
        return 1 / baseline_s, 1 / candidate_s
    per_step = []
    for runs in windows:
        counts = [s / w.width for w in runs for s in w.samples if s is not None]
        if not counts or len(counts) != sum(len(w.samples) for w in runs):
            return None
        per_step.append(statistics.median(counts))
    return per_step[0] / baseline_s, per_step[1] / candidate_s

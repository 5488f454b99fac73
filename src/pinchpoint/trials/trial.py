"""A Trial: a candidate workload measured against its baseline, and the verdict on it.

:func:`trial` runs both workloads the same way and decides whether the candidate is worth
having: faster (or smaller, or lighter on memory, by the objective) with its quality within the
user's budget.

Inference workloads run interleaved through :func:`~pinchpoint.trials.timing.compare_speed`:
both models in eval mode under ``torch.inference_mode``, each on the first few batches of its
own workload (the very same batch objects when the candidate kept the baseline's data), each
under its own workload's ``threads``. Quality is the baseline workload's ``evaluate`` on both
models, or, without one, the :func:`~pinchpoint.trials.quality.fidelity` of the candidate's
outputs to the baseline's.

Training workloads run a fixed number of steps per seed from the same initial weights and the
same data order, the two arms' steps alternating (``pinchpoint.trials._training``); steps are
paired across the arms (seed ``s``, step ``k``) for the speed ratio, and the losses reached
are compared. Peak memory is measured as :mod:`pinchpoint.trials.memory` describes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from pinchpoint import codec
from pinchpoint.errors import PinchpointError, WorkloadError
from pinchpoint.stats import mean, stdev
from pinchpoint.trials._inference import first_batches, infer_arm, repeat, units_of_work
from pinchpoint.trials._training import (
    TrainRun,
    matching_state,
    memory_arm,
    paired_steps,
    random_state_kept,
    seed_all,
    train_in_lockstep,
)
from pinchpoint.trials.memory import peak_memories, size_bytes
from pinchpoint.trials.quality import Budget, Fidelity, eval_mode, fidelity
from pinchpoint.trials.timing import (
    MIN_PAIRS,
    SpeedComparison,
    check_rounds,
    compare_speed,
    speed_from_pairs,
)
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    import torch

__all__ = [
    "MEMORY_TOLERANCE",
    "OBJECTIVES",
    "Objective",
    "TrainingComparison",
    "Trial",
    "trial",
]

Objective = Literal["latency", "throughput", "size", "memory"]
#: What a trial can optimize for: time per batch, samples per second (the same ratio), the
#: model's bytes, or peak memory.
OBJECTIVES: tuple[str, ...] = ("latency", "throughput", "size", "memory")
#: The share by which a candidate's peak memory must be below the baseline's to count as lower:
#: resident-set figures move by a page here and an allocator chunk there.
MEMORY_TOLERANCE = 0.01
# Passes over the batches while an inference arm's peak memory is measured.
_MEMORY_PASSES = 2


@dataclass(frozen=True)
class TrainingComparison(codec.Saved):
    """The losses two training arms reached over the same steps from the same start.

    Attributes:
        steps: optimizer steps (micro-batches) each arm ran per seed, warm-up included.
        warmup: the first steps of each run left out of the timing.
        seeds: how many seeds ran (each gives both arms the same data order and random state).
        loss_baseline: the baseline's final loss (mean of its last :data:`FINAL_LOSS_STEPS`
            steps), averaged over seeds.
        loss_candidate: the candidate's.
        loss_baseline_std: the spread of the baseline's final loss across seeds (0 for one).
        loss_candidate_std: the candidate's.
        losses_baseline: the baseline's final loss for each seed.
        losses_candidate: the candidate's for each seed.
        same_initial_weights: whether the candidate started from the baseline's weights (False
            when its structure differs, e.g. pruned: it then starts from its own).
    """

    steps: int
    warmup: int
    seeds: int
    # A loss that cannot be read (NaN) is written as null, the trial records' convention.
    loss_baseline: float = field(metadata=codec.nonfinite_null())
    loss_candidate: float = field(metadata=codec.nonfinite_null())
    loss_baseline_std: float = field(metadata=codec.nonfinite_null())
    loss_candidate_std: float = field(metadata=codec.nonfinite_null())
    losses_baseline: tuple[float, ...] = field(metadata=codec.nonfinite_null())
    losses_candidate: tuple[float, ...] = field(metadata=codec.nonfinite_null())
    same_initial_weights: bool


@dataclass(frozen=True)
class Trial(codec.Saved):
    """A candidate measured against its baseline: speed, size, memory, quality and the verdict.

    Attributes:
        remedies: the labels of the remedies the candidate carries (its workload's ``applied``).
        objective: what the trial optimized for (one of :data:`OBJECTIVES`).
        mode: ``"infer"`` or ``"train"``.
        accepted: whether the candidate is better by the objective with quality within budget.
        why: one plain sentence saying why it was accepted or not.
        speed: the paired timing; its times are seconds per ``unit``.
        unit: what a time is per: ``"batch"``, ``"sample"`` (when the arms' batches differ in
            size) or ``"step"`` (training).
        quality_metric: the metric of ``quality``: the workload's ``metric`` with an
            ``evaluate``, ``"cosine"`` (fidelity) for inference without one, ``"loss"`` for
            training without one.
        greater_is_better: whether a larger quality is better.
        quality: the candidate's quality.
        quality_baseline: the baseline's.
        quality_drop: how much worse the candidate is (positive worse), in the budget's terms
            (relative to the baseline for a relative budget).
        budget: the largest drop allowed.
        size_bytes: the candidate model's bytes (parameters, buffers, packed weights).
        size_bytes_baseline: the baseline model's.
        memory_bytes: the candidate's peak memory (``"memory"`` objective only, else None).
        memory_bytes_baseline: the baseline's.
        memory_method: how peak memory was read (``"cuda-max-allocated"``, ``"rss-peak"``,
            ``"rss-sampled"``), or None.
        samples_per_s: (baseline, candidate) samples per second, when batch sizes are known.
        fidelity: the output comparison (inference without ``evaluate``), else None.
        training: the losses reached (training), else None.
        notes: plain sentences on anything the reader should know (a different start...).
    """

    remedies: tuple[str, ...] = field(metadata=codec.missing_as(()))
    objective: Objective
    mode: Mode
    accepted: bool
    why: str
    speed: SpeedComparison
    unit: str
    quality_metric: str
    greater_is_better: bool
    quality: float = field(metadata=codec.nonfinite_null())
    quality_baseline: float = field(metadata=codec.nonfinite_null())
    # A drop that could not be read is never within budget.
    quality_drop: float = field(metadata=codec.nonfinite_null(read_as=math.inf))
    budget: Budget
    size_bytes: int
    size_bytes_baseline: int
    memory_bytes: int | None = None
    memory_bytes_baseline: int | None = None
    memory_method: str | None = None
    samples_per_s: tuple[float, float] | None = None
    fidelity: Fidelity | None = None
    training: TrainingComparison | None = None
    notes: tuple[str, ...] = ()

    @property
    def speedup(self) -> float:
        """The median paired ratio baseline time / candidate time (above 1: faster)."""
        return self.speed.speedup

    @property
    def speedup_ci(self) -> tuple[float, float]:
        """The 95 % confidence interval of :attr:`speedup`."""
        return self.speed.speedup_ci

    @property
    def noisy(self) -> bool:
        """Whether the machine was too noisy for a sharp comparison (see SpeedComparison)."""
        return self.speed.noisy

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        """The record's keys in the order files have them, with the speed's headline numbers
        (read back from ``speed``)."""
        return codec.arrange(
            data,
            _TRIAL_KEYS,
            speedup=self.speedup,
            speedup_ci=list(self.speedup_ci),
            noisy=self.noisy,
        )


#: The keys of a saved Trial, in the order files have them.
_TRIAL_KEYS = (
    "remedies objective mode speedup speedup_ci quality quality_baseline quality_drop "
    "quality_metric greater_is_better budget size_bytes size_bytes_baseline memory_bytes "
    "memory_bytes_baseline memory_method samples_per_s accepted why noisy unit"
)


def trial(
    baseline: Workload,
    candidate: Workload,
    *,
    objective: str = "latency",
    budget: Budget | float | str = 0.01,
    warmup: int = 2,
    rounds: int = 15,
    max_time_s: float | None = None,
    device: str = "cpu",
    seeds: int = 3,
    steps: int = 20,
    batches: int = 3,
    min_round_s: float = 0.02,
) -> Trial:
    """Measure ``candidate`` against ``baseline`` and decide whether to accept it.

    A candidate is accepted when it is better by the objective and its quality drop is within
    ``budget``: for ``"latency"`` and ``"throughput"``, the speedup's confidence interval lies
    above 1; for ``"size"``, its model has fewer bytes; for ``"memory"``, its peak memory is at
    least :data:`MEMORY_TOLERANCE` lower. Speed is measured whatever the objective.

    The caller's workloads are not changed, with one exception: an inference model is moved to
    ``device`` in place (as :func:`pinchpoint.profile` does) and its train/eval mode restored
    afterwards. Training arms run on copies. The random states of Python, numpy and torch, and
    the generators of the workloads' DataLoaders, are restored when the trial ends.

    Args:
        baseline: the reference workload.
        candidate: the workload to judge, usually ``pinchpoint.apply(baseline, ...)``.
        objective: ``"latency"``, ``"throughput"``, ``"size"`` or ``"memory"``.
        budget: the largest quality drop allowed: a :class:`Budget`, a float (absolute) or a
            string such as ``"1%"`` (see :meth:`Budget.parse`).
        warmup: inference: warm-up passes of each arm; training: steps of each run left out of
            the timing.
        rounds: inference: timed rounds (pairs), at least 6.
        max_time_s: inference: stop adding rounds after this many seconds (at least 6 rounds).
        device: ``"cpu"``, ``"cuda[:N]"`` or ``"auto"``.
        seeds: training: runs per arm, each from the same start with its own data order.
        steps: training: steps per run, warm-up included.
        batches: inference: how many of each workload's first batches one pass goes through.
        min_round_s: inference: the shortest an arm's block of calls in a round may last.

    Raises:
        ValueError: a setting is out of range, or the two workloads differ in mode.
        WorkloadError: a workload failed while it ran.
    """
    from pinchpoint.recorders.run import resolve_device

    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: use {', '.join(OBJECTIVES)}")
    if baseline.mode != candidate.mode:
        raise ValueError(
            f"cannot compare a {baseline.mode} baseline with a {candidate.mode} candidate"
        )
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    if baseline.mode == "infer":
        # compare_speed checks these too, but here they fail before any model runs.
        check_rounds(rounds, min_round_s, max_time_s)
    if baseline.mode == "train":
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        if steps <= warmup or seeds * (steps - warmup) < MIN_PAIRS:
            raise ValueError(
                f"{seeds} seed(s) of {steps} steps after {warmup} warm-up steps time fewer than "
                f"{MIN_PAIRS} steps per arm: raise steps or seeds"
            )
    parsed = Budget.parse(budget)
    target = resolve_device(device)
    measure = TrialMeasure(
        objective=cast(Objective, objective),
        budget=parsed,
        warmup=warmup,
        device=target,
    )
    try:
        if baseline.mode == "train":
            return measure.training(baseline, candidate, seeds=seeds, steps=steps)
        return measure.inference(
            baseline,
            candidate,
            rounds=rounds,
            max_time_s=max_time_s,
            batches=batches,
            min_round_s=min_round_s,
        )
    except PinchpointError:
        raise
    except Exception as exc:
        raise WorkloadError(
            f"trial of {candidate.name!r} against {baseline.name!r} failed while running: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


@dataclass
class TrialMeasure:
    """The settings one trial shares between its inference and training paths."""

    objective: Objective
    budget: Budget
    warmup: int
    device: torch.device

    def inference(
        self,
        baseline: Workload,
        candidate: Workload,
        *,
        rounds: int,
        max_time_s: float | None,
        batches: int,
        min_round_s: float,
    ) -> Trial:
        import torch

        from pinchpoint.recorders.recorder import move_to_device
        from pinchpoint.recorders.run import move_model

        for workload in (baseline, candidate):
            # A plain callable (an exported model's runner) has no device to move to.
            if callable(getattr(workload.model, "to", None)):
                move_model(workload.name, workload.model, self.device)
        with random_state_kept([baseline.data, candidate.data], self.device) as generators:
            seed_all(0, generators)
            base_batches = first_batches(baseline, batches)
            if candidate.data is baseline.data:
                cand_batches = base_batches
            else:
                seed_all(0, generators)
                cand_batches = first_batches(candidate, batches)
        base_on = [move_to_device(b, self.device) for b in base_batches]
        cand_on = (
            base_on
            if cand_batches is base_batches
            else [move_to_device(b, self.device) for b in cand_batches]
        )
        units, unit, rates = units_of_work(base_on, cand_on)
        notes: list[str] = []
        if unit == "sample":
            notes.append("the arms' batches differ in size: times are per sample")
        base_arm = infer_arm(baseline, base_on, self.device)
        cand_arm = infer_arm(candidate, cand_on, self.device)
        memory: tuple[int | None, int | None, str | None] = (None, None, None)
        with (
            eval_mode(baseline.model),
            eval_mode(candidate.model),
            torch.inference_mode(),
        ):
            speed = compare_speed(
                base_arm,
                cand_arm,
                warmup=self.warmup,
                rounds=rounds,
                min_round_s=min_round_s,
                max_time_s=max_time_s,
                baseline_units=units[0],
                candidate_units=units[1],
            )
            if self.objective == "memory":
                memory = peak_memories(
                    lambda: (baseline.model, lambda: repeat(base_arm, _MEMORY_PASSES)),
                    lambda: (candidate.model, lambda: repeat(cand_arm, _MEMORY_PASSES)),
                    self.device,
                )
        samples_per_s = None
        if rates is not None:
            samples_per_s = (rates[0] / speed.baseline_s, rates[1] / speed.candidate_s)
        fid: Fidelity | None = None
        if baseline.evaluate is not None:
            evaluate_candidate = candidate.evaluate or baseline.evaluate
            quality_baseline = float(baseline.evaluate(baseline.model))
            quality = float(evaluate_candidate(candidate.model))
            metric, greater = baseline.metric, baseline.greater_is_better
        else:
            fid = fidelity(baseline.model, candidate.model, base_on)
            quality_baseline, quality = 1.0, fid.cosine_mean
            metric, greater = "cosine", True
        return self._verdict(
            baseline,
            candidate,
            speed=speed,
            unit=unit,
            metric=metric,
            greater=greater,
            quality=quality,
            quality_baseline=quality_baseline,
            memory=memory,
            samples_per_s=samples_per_s,
            fid=fid,
            notes=notes,
        )

    def training(self, baseline: Workload, candidate: Workload, *, seeds: int, steps: int) -> Trial:
        start = matching_state(baseline.model, candidate.model)
        notes: list[str] = []
        if start is None:
            notes.append(
                "the candidate's model differs in structure from the baseline's: "
                "it started from its own weights"
            )
        evaluate = candidate.evaluate or baseline.evaluate
        evaluates = (baseline.evaluate, evaluate if baseline.evaluate is not None else None)
        runs: tuple[list[TrainRun], list[TrainRun]] = ([], [])
        memory: tuple[int | None, int | None, str | None] = (None, None, None)
        with random_state_kept([baseline.data, candidate.data], self.device) as generators:
            for index in range(seeds):
                pair = train_in_lockstep(
                    baseline,
                    candidate,
                    start=start,
                    evaluates=evaluates,
                    seed=index,
                    steps=steps,
                    device=self.device,
                    generators=generators,
                )
                runs[0].append(pair[0])
                runs[1].append(pair[1])
            if self.objective == "memory":
                short = min(steps, self.warmup + 3)
                memory = peak_memories(
                    memory_arm(baseline, None, short, self.device, generators),
                    memory_arm(candidate, start, short, self.device, generators),
                    self.device,
                )
        base_times, cand_times, unit = paired_steps(runs, self.warmup)
        speed = speed_from_pairs(base_times, cand_times, warmup=self.warmup)
        samples_per_s = None
        sizes = (runs[0][0].batch_sizes[0], runs[1][0].batch_sizes[0])
        if unit == "sample":
            samples_per_s = (1 / speed.baseline_s, 1 / speed.candidate_s)
        elif sizes[0] is not None and sizes[1] is not None:
            samples_per_s = (sizes[0] / speed.baseline_s, sizes[1] / speed.candidate_s)
        losses = (tuple(r.final_loss for r in runs[0]), tuple(r.final_loss for r in runs[1]))
        comparison = TrainingComparison(
            steps=steps,
            warmup=self.warmup,
            seeds=seeds,
            loss_baseline=mean(losses[0]),
            loss_candidate=mean(losses[1]),
            loss_baseline_std=stdev(losses[0]),
            loss_candidate_std=stdev(losses[1]),
            losses_baseline=losses[0],
            losses_candidate=losses[1],
            same_initial_weights=start is not None,
        )
        if baseline.evaluate is not None:
            quality_baseline = mean([r.quality for r in runs[0] if r.quality is not None])
            quality = mean([r.quality for r in runs[1] if r.quality is not None])
            metric, greater = baseline.metric, baseline.greater_is_better
        else:
            quality_baseline, quality = comparison.loss_baseline, comparison.loss_candidate
            metric, greater = "loss", False
        if unit == "sample":
            notes.append("the arms' batches differ in size: step times are per sample")
        return self._verdict(
            baseline,
            candidate,
            speed=speed,
            unit=unit,
            metric=metric,
            greater=greater,
            quality=quality,
            quality_baseline=quality_baseline,
            memory=memory,
            samples_per_s=samples_per_s,
            training=comparison,
            notes=notes,
        )

    def _verdict(
        self,
        baseline: Workload,
        candidate: Workload,
        *,
        speed: SpeedComparison,
        unit: str,
        metric: str,
        greater: bool,
        quality: float,
        quality_baseline: float,
        memory: tuple[int | None, int | None, str | None],
        samples_per_s: tuple[float, float] | None,
        notes: list[str],
        fid: Fidelity | None = None,
        training: TrainingComparison | None = None,
    ) -> Trial:
        sizes = (size_bytes(baseline.model), size_bytes(candidate.model))
        drop = self.budget.drop(quality_baseline, quality, greater)
        gain, gain_text = _gain(self.objective, speed, sizes, memory)
        quality_ok = self.budget.allows(drop)
        quality_text = _quality_text(metric, drop, self.budget, quality_ok)
        if gain and quality_ok:
            why = f"{gain_text}, {quality_text}"
        elif quality_ok:
            why = gain_text
        elif gain:
            why = quality_text
        else:
            why = f"{gain_text}, and {quality_text}"
        return Trial(
            remedies=tuple(candidate.applied),
            objective=self.objective,
            mode=candidate.mode,
            accepted=gain and quality_ok,
            why=why,
            speed=speed,
            unit=unit,
            quality_metric=metric,
            greater_is_better=greater,
            quality=quality,
            quality_baseline=quality_baseline,
            quality_drop=drop,
            budget=self.budget,
            size_bytes=sizes[1],
            size_bytes_baseline=sizes[0],
            memory_bytes=memory[1],
            memory_bytes_baseline=memory[0],
            memory_method=memory[2],
            samples_per_s=samples_per_s,
            fidelity=fid,
            training=training,
            notes=tuple(notes),
        )


def _gain(
    objective: Objective,
    speed: SpeedComparison,
    sizes: tuple[int, int],
    memory: tuple[int | None, int | None, str | None],
) -> tuple[bool, str]:
    """Whether the candidate is better by ``objective``, and that in a few words."""
    if objective in ("latency", "throughput"):
        low, high = speed.speedup_ci
        if speed.verdict == "faster":
            return True, f"{speed.speedup:.2f}x faster ({low:.2f}–{high:.2f})"
        return False, f"not faster: {speed.speedup:.2f}x ({low:.2f}–{high:.2f})"
    if objective == "size":
        base, cand = sizes
        if cand < base:
            ratio = base / cand if cand else math.inf
            return True, f"{ratio:.2f}x smaller ({cand} vs {base} bytes)"
        return False, f"not smaller: {cand} vs {base} bytes"
    base_mem, cand_mem, _ = memory
    if base_mem is None or cand_mem is None:
        return False, "peak memory could not be measured"
    if cand_mem < base_mem * (1 - MEMORY_TOLERANCE):
        share = 1 - cand_mem / base_mem
        return True, f"peak memory {share:.0%} lower ({cand_mem} vs {base_mem} bytes)"
    return False, f"peak memory not lower: {cand_mem} vs {base_mem} bytes"


def _quality_text(metric: str, drop: float, budget: Budget, within: bool) -> str:
    """The quality half of a trial's ``why``."""
    if drop <= 0 and within:
        return f"no {metric} drop"
    amount = f"{drop:.2%}" if budget.relative else f"{drop:.2g}"
    if within:
        return f"{metric} drop {amount} within {budget}"
    return f"{metric} drop {amount} exceeds budget {budget}"


# ----------------------------------------------------------------------------- numbers

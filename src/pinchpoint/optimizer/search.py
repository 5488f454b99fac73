"""The search: from the diagnosis to the fastest (or smallest) verified model within a budget.

:func:`optimize` diagnoses the workload, turns its findings into candidate remedies (the configs
whose ``addresses`` name the findings' remedies, plus the ones the objective calls for), and
measures each candidate against the baseline in a fair :func:`~pinchpoint.trials.trial`, most
promising first, then the combinations of the best ones, until the time budget runs out. A
candidate is accepted only when its trial shows it better with quality within budget; the best
accepted one is the answer, and the Pareto frontier (speed, quality, size) is kept for the user
to choose otherwise. Nothing is claimed that was not measured on this machine.

A remedy the machine cannot run fast (``RemedyConfig.gate``) is tried after the others, with
its reason recorded, never proposed as a speed-up on trust. A candidate that cannot be applied
(a model torch.fx cannot trace, say) is recorded with the reason and the search goes on.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinchpoint.errors import WorkloadError
from pinchpoint.optimizer.candidates import candidates_for, combinations, score
from pinchpoint.optimizer.result import Candidate, OptimizeResult, TrialRecord, writable_folder
from pinchpoint.remedies import RemedyConfig, apply, clone_workload
from pinchpoint.trials.quality import Budget
from pinchpoint.trials.trial import OBJECTIVES
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint.diagnosis import Diagnosis
    from pinchpoint.trials.trial import Trial

__all__ = ["optimize", "pareto_front", "parse_duration"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT_S = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """Seconds from ``"10m"``, ``"90s"``, ``"1.5h"`` or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not a duration like 10m, 90s or 1h")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a time budget must be positive, not {text!r}")
    return seconds


def optimize(
    workload: Workload,
    *,
    max_drop: Budget | float | str = 0.01,
    objective: str = "latency",
    time_budget: float | str = 600.0,
    out: str | Path | None = None,
    device: str = "cpu",
    candidates: Iterable[Candidate | RemedyConfig | Sequence[RemedyConfig]] | None = None,
    diagnose_first: bool = True,
    combine: bool = True,
    target: str | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    keep_models: bool = False,
    nproc: int | None = None,
    trial_options: Mapping[str, Any] | None = None,
) -> OptimizeResult:
    """Find the best candidate for ``objective`` whose quality stays within ``max_drop``.

    Args:
        workload: what to optimize; it is not changed (trials run copies).
        max_drop: the quality budget: ``"1%"`` (relative), ``0.01`` (absolute), ``"0.5pt"``.
        objective: ``"latency"``, ``"throughput"``, ``"size"`` or ``"memory"``.
        time_budget: seconds (or ``"10m"``) for the whole search, diagnosis included; a trial
            is not started when the time left is shorter than the longest one so far.
        out: a folder to save the result in (see :meth:`OptimizeResult.save`).
        device: where trials run.
        candidates: the candidates to try instead of the diagnosis-led ones (configs, tuples of
            configs or :class:`Candidate`); combinations are still added unless ``combine`` is
            False.
        diagnose_first: record and diagnose the workload first, so its findings order the
            candidates.
        combine: after the single remedies, try combinations of the best ones.
        target: the name to record for the workload (``zoo:NAME``, a file); default its name.
        on_trial: called with each record as it completes (progress display).
        keep_models: keep every candidate's workload in its record (by default only the best
            and best-effort ones are kept, to free memory).
        nproc: run the workload data-parallel on this many processes: the diagnosis records
            ``target`` through :func:`pinchpoint.recorders.job.launch`, and every trial is a
            :func:`~pinchpoint.trials.distributed.distributed_trial` (interleaved launches of
            the baseline and the candidate). Only remedies whose effect launch can pass to the
            ranks are tried (:data:`~pinchpoint.trials.distributed.LAUNCHABLE`). Needs
            ``target``, a training workload and a speed objective.
        trial_options: keyword arguments for every trial (``seeds``, ``steps``…; with
            ``nproc``: ``steps``, ``warmup``, ``repeats``, ``timeout_s``).

    Raises:
        ValueError: an unknown objective, a bad budget or time budget, or ``nproc`` without
            ``target`` or with an objective other than speed.
        WorkloadError: an objective that does not fit the workload (size for a training
            workload).
    """
    from pinchpoint._threads import torch_threads
    from pinchpoint.machine import describe_machine

    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: use {', '.join(OBJECTIVES)}")
    if workload.mode == "train" and objective == "size":
        raise WorkloadError(
            "objective 'size' shrinks a model for inference: give a workload without an "
            "optimizer (its model trained), with a loss if remedies may fine-tune it"
        )
    budget = Budget.parse(max_drop)
    total_s = parse_duration(time_budget)
    if nproc is not None:
        _check_distributed(workload, objective, nproc, target)
    if out is not None:
        writable_folder(Path(out))  # before the search, not after ten minutes of it
    started = time.perf_counter()
    deadline = started + total_s
    with torch_threads(workload.threads):
        machine = describe_machine()
    diagnosis_dict: dict[str, Any] | None = None
    findings: list[Any] = []
    ranks = 1
    if diagnose_first:
        if nproc is not None and target is not None:
            diagnosis, ranks = _diagnose_distributed(target, nproc, device)
        else:
            diagnosis = _diagnose(workload, device)
        findings = list(diagnosis.findings)
        diagnosis_dict = {
            "principal": diagnosis.principal.kind if diagnosis.principal else None,
            "findings": [f.kind for f in findings],
        }
    if candidates is None:
        queue = candidates_for(workload, objective, machine, findings, ranks=ranks)
        if nproc is not None:
            from pinchpoint.trials.distributed import LAUNCHABLE

            queue = [c for c in queue if all(r.name in LAUNCHABLE for r in c.remedies)]
    else:
        queue = [_as_candidate(c, machine) for c in candidates]
    options = dict(trial_options or {})
    run_trial = _trial_runner(nproc, target, options)
    records: list[TrialRecord] = []
    stopped_early = False
    longest = 0.0

    def run(candidate: Candidate) -> bool:
        nonlocal longest, stopped_early
        left = deadline - time.perf_counter()
        if left < max(longest, 5.0):
            stopped_early = True
            return False
        record = _try(workload, candidate, objective, budget, device, left, run_trial)
        longest = max(longest, record.seconds)
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return True

    tried: set[tuple[str, ...]] = set()

    def combine_promising(all_of_them: bool) -> bool:
        """Run the combinations not tried yet: all of them, or only those whose guessed score
        (the product of their parts') beats the best measured so far."""
        best_so_far = max(
            (score(r.trial, objective) for r in records if r.accepted and r.trial), default=1.0
        )
        for guess, candidate in combinations(records, objective, guesses=True):
            if candidate.labels in tried or (not all_of_them and guess <= best_so_far):
                continue
            tried.add(candidate.labels)
            if not run(candidate):
                return False
        return True

    for candidate in queue:
        if not run(candidate):
            break
        # A combination that could beat everything so far goes before the remaining singles:
        # on a time budget, the likely winner must not wait behind long shots.
        if combine and not combine_promising(all_of_them=False):
            break
    if combine and not stopped_early:
        combine_promising(all_of_them=True)
    best, best_effort = _choose(records, objective)
    result = OptimizeResult(
        target=target or workload.name,
        objective=objective,
        budget=budget,
        machine=machine,
        baseline=_baseline_facts(workload, records),
        records=records,
        best=best,
        best_effort=best_effort,
        pareto=pareto_front(records),
        diagnosis=diagnosis_dict,
        seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
        nproc=nproc,
    )
    for index, record in enumerate(records):
        if not keep_models and index not in (best, best_effort):
            record.workload = None  # keep only the model that may be saved
    if out is not None:
        result.save(out)
    return result


def _diagnose(workload: Workload, device: str) -> Diagnosis:
    import copy

    from pinchpoint.diagnosis import diagnose

    # Recording moves the model and runs steps: a training workload would learn from them, so
    # the diagnosis runs on a copy and the trials start from the caller's weights.
    subject = clone_workload(workload) if workload.mode == "train" else copy.copy(workload)
    return diagnose(subject, steps=8, warmup=2, device=device)


def _check_distributed(workload: Workload, objective: str, nproc: int, target: str | None) -> None:
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, not {nproc!r}")
    if target is None:
        raise ValueError("a distributed optimize needs target: what every rank loads (zoo:NAME…)")
    if objective not in ("latency", "throughput"):
        raise ValueError(
            f"a distributed optimize measures speed: use latency or throughput, not {objective!r}"
        )
    if workload.mode != "train":
        raise WorkloadError(
            f"workload {workload.name!r} does not train: data-parallel runs need an optimizer"
        )


def _diagnose_distributed(target: str, nproc: int, device: str) -> tuple[Diagnosis, int]:
    """The diagnosis of one launched run of ``target`` on ``nproc`` processes, and its ranks."""
    from pinchpoint.diagnosis import diagnose
    from pinchpoint.recorders.job import launch

    profile = launch(target, nproc=nproc, steps=8, warmup=2, device=device)
    if profile is None:
        raise WorkloadError(f"the run of {target} on {nproc} processes returned no profile")
    ranks = len(profile.ranks) or (profile.distributed.world_size if profile.distributed else 1)
    return diagnose(profile, name=target), ranks


TrialRunner = Callable[..., "Trial"]


def _trial_runner(nproc: int | None, target: str | None, options: dict[str, Any]) -> TrialRunner:
    """The function that measures a candidate: :func:`~pinchpoint.trials.trial`, or with
    ``nproc`` a distributed trial of ``target``; ``options`` go to every call."""
    if nproc is None or target is None:
        from pinchpoint.trials.trial import trial

        return lambda baseline, candidate, **kw: trial(baseline, candidate, **{**kw, **options})
    from pinchpoint.trials.distributed import distributed_trial

    def run(baseline: Workload, candidate: Workload, **kw: Any) -> Trial:
        kw.pop("max_time_s", None)  # a launched run's length is its steps
        return distributed_trial(target, baseline, candidate, nproc=nproc, **{**kw, **options})

    return run


def _as_candidate(
    item: Candidate | RemedyConfig | Sequence[RemedyConfig], machine: Any
) -> Candidate:
    if isinstance(item, Candidate):
        return item
    configs = (item,) if isinstance(item, RemedyConfig) else tuple(item)
    if not configs or not all(isinstance(c, RemedyConfig) for c in configs):
        raise ValueError(f"not a remedy config or a sequence of them: {item!r}")
    gates = [g for g in (c.gate(machine) for c in configs) if g]
    return Candidate(configs, "asked for", "; ".join(gates) or None)


def _try(
    workload: Workload,
    candidate: Candidate,
    objective: str,
    budget: Budget,
    device: str,
    left_s: float,
    run_trial: TrialRunner,
) -> TrialRecord:
    started = time.perf_counter()
    record = TrialRecord(candidate)
    try:  # a remedy that does not fit this model, or a failed trial: say why, go on
        applied = apply(workload, *candidate.remedies)
        _forget_compiled_graphs()
        record.trial = run_trial(
            workload,
            applied,
            objective=objective,
            budget=budget,
            device=device,
            max_time_s=min(60.0, max(10.0, left_s / 4)),
        )
        record.workload = applied
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {_one_line(exc)}"
    record.seconds = time.perf_counter() - started
    return record


def _forget_compiled_graphs() -> None:
    """Drop the graphs torch.compile cached in this process, if it ever compiled, so that each
    trial's arms compile as they would in a process of their own: a baseline that recompiles
    for every new shape would otherwise find the shapes an earlier trial ran compiled already,
    and later candidates would be judged against a baseline that no longer recompiles."""
    import sys

    if "torch._dynamo" in sys.modules:
        import torch._dynamo

        torch._dynamo.reset()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _choose(records: Sequence[TrialRecord], objective: str) -> tuple[int | None, int | None]:
    """The best accepted trial by the objective (ties: better quality), and when there is none,
    the best-effort one: the best within the quality budget, else the one that lost least."""
    measured = [(i, r.trial) for i, r in enumerate(records) if r.trial is not None]
    accepted = [(i, t) for i, t in measured if t.accepted]
    if accepted:
        best = max(accepted, key=lambda p: (score(p[1], objective), -p[1].quality_drop))
        return best[0], None
    if not measured:
        return None, None
    within = [(i, t) for i, t in measured if t.budget.allows(t.quality_drop)]
    if within:
        return None, max(within, key=lambda p: score(p[1], objective))[0]
    return None, min(measured, key=lambda p: p[1].quality_drop)[0]


def pareto_front(records: Sequence[TrialRecord]) -> list[int]:
    """Indices of the measured trials no other (nor the baseline) beats on speed, quality and
    size at once."""
    points: list[tuple[int, tuple[float, float, float]]] = []
    for i, record in enumerate(records):
        t = record.trial
        if t is None or not math.isfinite(t.quality_drop):
            continue
        points.append((i, (t.speedup, -t.quality_drop, -float(t.size_bytes))))
    if not points:
        return []
    first = records[points[0][0]].trial
    assert first is not None
    baseline = (1.0, 0.0, -float(first.size_bytes_baseline))
    everyone = [p for _, p in points] + [baseline]

    def dominated(p: tuple[float, float, float]) -> bool:
        return any(q != p and all(a >= b for a, b in zip(q, p, strict=True)) for q in everyone)

    return [i for i, p in points if not dominated(p)]


def _baseline_facts(workload: Workload, records: Sequence[TrialRecord]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "name": workload.name,
        "mode": workload.mode,
        "threads": workload.threads,
    }
    trial = next((r.trial for r in records if r.trial is not None), None)
    if trial is not None:
        facts.update(
            quality=trial.quality_baseline,
            quality_metric=trial.quality_metric,
            size_bytes=trial.size_bytes_baseline,
            time_s=trial.speed.baseline_s,
            time_unit=trial.unit,
        )
    return facts

"""Optimize: from the diagnosis to the fastest (or smallest) verified model within a quality budget.

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

``OptimizeResult.save(DIR)`` writes ``optimize.json`` (schema ``pinchpoint.optimize/1``), the
chosen model (``model.pt``: the whole module, ``torch.load(..., weights_only=False)``; plus
``model.onnx`` when ONNX Runtime won) and ``remedies.json``, the configs to apply to the original
workload to get it again.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies import RemedyConfig, apply, config_from_dict
from pinchpoint.trials.quality import Budget
from pinchpoint.trials.trial import OBJECTIVES
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine
    from pinchpoint.diagnosis import Diagnosis
    from pinchpoint.trials.trial import Trial

__all__ = [
    "SCHEMA",
    "Candidate",
    "OptimizeResult",
    "TrialRecord",
    "candidates_for",
    "optimize",
    "parse_duration",
]

SCHEMA = "pinchpoint.optimize/1"

#: The order remedies are applied in within a combination, by family: change the model's
#: structure first, then its numerics, then how it runs (a backend compiles what it is given).
FAMILIES: dict[str, int] = {
    "prune": 0,
    "distill": 0,
    "precision": 1,
    "quantize": 1,
    "smooth_quant": 1,
    "compile": 2,
    "onnx_runtime": 2,
    "threads": 3,
    "batch_size": 3,
    "dataloader": 3,
    "optimizer": 3,
    "mixed_precision": 1,
    "grad_clip": 4,
    "lr_schedule": 4,
    "grad_accumulation": 3,
    "activation_checkpointing": 2,
    # Data-parallel: compression changes the numbers sent, buckets how they are sent; the
    # last two both change the work per all-reduce, so only one of them goes in a combination.
    "grad_compression": 1,
    "ddp_buckets": 2,
    "no_sync_accumulation": 3,
    "per_rank_batch": 3,
}
#: ONNX Runtime runs the model it exports: it only combines with structural remedies.
_EXPORTS = {"onnx_runtime"}

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


@dataclass(frozen=True)
class Candidate:
    """Remedies to try together, why they are tried, and why they may not pay off here."""

    remedies: tuple[RemedyConfig, ...]
    reason: str
    gate: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(r.label() for r in self.remedies)

    @property
    def short(self) -> str:
        """The remedies for display: ``a + b``, each with only its non-default settings."""
        return " + ".join(r.short_label() for r in self.remedies)


@dataclass
class TrialRecord:
    """One candidate's outcome: its trial, or why it could not be measured."""

    candidate: Candidate
    trial: Trial | None = None
    error: str | None = None
    seconds: float = 0.0
    workload: Workload | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        return self.trial is not None and self.trial.accepted

    @property
    def why(self) -> str:
        if self.trial is not None:
            return self.trial.why
        return f"could not be tried: {self.error}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "remedies": [r.to_dict() for r in self.candidate.remedies],
            "labels": list(self.candidate.labels),
            "reason": self.candidate.reason,
            "gate": self.candidate.gate,
            "seconds": self.seconds,
        }
        if self.trial is None:
            out.update(
                speedup=None,
                speedup_ci=None,
                quality=None,
                quality_drop=None,
                size_bytes=None,
                accepted=False,
                why=self.why,
                error=self.error,
            )
            return out
        measured = self.trial.to_dict()
        measured.pop("remedies", None)
        out.update(measured)
        return out


@dataclass
class OptimizeResult:
    """What :func:`optimize` measured: every trial, the best one, the Pareto frontier."""

    target: str
    objective: str
    budget: Budget
    machine: Machine
    baseline: dict[str, Any]
    records: list[TrialRecord]
    best: int | None
    best_effort: int | None
    pareto: list[int]
    diagnosis: dict[str, Any] | None = None
    seconds: float = 0.0
    stopped_early: bool = False
    nproc: int | None = None

    @property
    def chosen(self) -> TrialRecord | None:
        """The best accepted trial, else the best-effort one."""
        index = self.best if self.best is not None else self.best_effort
        return None if index is None else self.records[index]

    @property
    def trials(self) -> list[Trial]:
        return [r.trial for r in self.records if r.trial is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "objective": self.objective,
            "budget": self.budget.to_dict(),
            "machine": self.machine.to_dict(),
            "baseline": self.baseline,
            "diagnosis": self.diagnosis,
            "trials": [r.to_dict() for r in self.records],
            "best": self.best,
            "best_effort": self.best_effort,
            "pareto": self.pareto,
            "seconds": self.seconds,
            "stopped_early": self.stopped_early,
            "nproc": self.nproc,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``optimize.json``, the chosen model and ``remedies.json`` into ``folder``."""
        folder = _writable_folder(Path(folder))
        chosen = self.chosen
        if chosen is not None and chosen.workload is not None:
            _save_model(chosen.workload.model, folder)
            _write_json(
                folder / "remedies.json",
                {
                    "schema": SCHEMA,
                    "best": self.best is not None,
                    "remedies": [r.to_dict() for r in chosen.candidate.remedies],
                },
            )
        return _write_json(folder / "optimize.json", self.to_dict())


def _writable_folder(folder: Path) -> Path:
    """``folder``, created if needed; a one-line PinchpointError when it cannot be."""
    from pinchpoint.errors import PinchpointError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PinchpointError(f"cannot write results to {folder}: it is a file") from None
    except OSError as exc:
        raise PinchpointError(f"cannot write results to {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise PinchpointError(f"cannot write results to {folder}: permission denied")
    return folder


def _write_json(path: Path, data: Any) -> Path:
    import orjson

    from pinchpoint._io import atomic_write_bytes

    return atomic_write_bytes(
        path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


def _save_model(model: Any, folder: Path) -> None:
    import os
    import tempfile

    import torch

    if hasattr(model, "save") and callable(model.save):  # an exported backend (ONNX)
        model.save(folder / "model.onnx")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model-", suffix=".pt")
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        try:
            torch.save(model, tmp)
        except Exception:  # a compiled or exported wrapper that does not pickle: keep weights
            torch.save(model.state_dict(), tmp)
        os.replace(tmp, folder / "model.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- candidates


def candidates_for(
    workload: Workload,
    objective: str,
    machine: Machine,
    findings: Sequence[Any] = (),
    *,
    ranks: int = 1,
) -> list[Candidate]:
    """The single-remedy candidates for ``workload``, most promising first.

    Those addressing the diagnosis's findings come first, then the other ones the objective
    calls for, each group in the objective's order of usual pay-off; gated ones (not fast on
    this machine) go last. When the findings come from a multi-rank profile (``ranks`` > 1) of
    a training workload and one of them is ``communication_bound``, the data-parallel remedies
    (:mod:`pinchpoint.remedies.distributed`) lead the pool.
    """
    pool = _objective_pool(workload, objective)
    wanted: list[str] = []
    for finding in findings:
        kind = getattr(finding, "kind", None)
        # A config may name the finding kind it addresses as well as catalog remedies.
        for name in (kind, *(r.name for r in getattr(finding, "remedies", ()))):
            if name and name not in wanted:
                wanted.append(name)
    if ranks > 1 and workload.mode == "train" and "communication_bound" in wanted:
        pool = [*_data_parallel_pool(machine), *pool]
    # Remedies whose settings a finding measured (the thread count per usable core) lead.
    from pinchpoint.remedies.runtime import threads_for_findings

    pool = [*threads_for_findings(findings), *pool]
    if "recompilation" in wanted:
        # A model that recompiles for every new shape: compile it for dynamic shapes, or pad
        # its batches to a few lengths (remedies.compile, remedies.shapes).
        from pinchpoint.remedies.compile import recompilation_candidates

        pool = [*recompilation_candidates(), *pool]

    def rank(item: tuple[int, RemedyConfig]) -> tuple[bool, bool, int]:
        # Gated last; then what the diagnosis asks for before the rest; within each, the
        # objective's own order (by usual pay-off), since on a time budget the likely winners
        # and their combinations must come first.
        position, config = item
        addressed = any(a in wanted for a in config.addresses)
        return (config.gate(machine) is not None, not addressed, position)

    out = []
    for _, config in sorted(enumerate(pool), key=rank):
        hits = [a for a in config.addresses if a in wanted]
        reason = (
            f"addresses the diagnosis ({', '.join(hits)})"
            if hits
            else f"a standard remedy for {objective}"
        )
        out.append(Candidate((config,), reason, config.gate(machine)))
    return out


def _data_parallel_pool(machine: Machine) -> list[RemedyConfig]:
    """The remedies for exposed gradient all-reduce, in order of their usual pay-off.

    One all-reduce per four micro-batches and twice the samples per all-reduce cut the
    collective's share most; larger buckets cut the number of all-reduces per step (each
    pays a fixed latency on top of its bytes; on a CPU, where backward is short, overlap hides
    little); compression halves the bytes. The larger batch keeps the learning rate, since a
    launched job's ranks are told their batch size, not their rate. Compression is bf16 where
    a GPU has it natively, else fp16.
    """
    from pinchpoint.remedies import DDPBuckets, GradCompression, NoSyncAccumulation, PerRankBatch

    bf16 = GradCompression("bf16")
    native_bf16 = machine.gpu is not None and bf16.gate(machine) is None
    return [
        NoSyncAccumulation(steps=4),
        PerRankBatch(factor=2, scale_lr=False),
        DDPBuckets(bucket_cap_mb=100.0),
        bf16 if native_bf16 else GradCompression("fp16"),
    ]


#: The ``log_every`` tried on a training workload that logs more often than that.
LOG_EVERY = 50


def _objective_pool(workload: Workload, objective: str) -> list[RemedyConfig]:
    """The remedies worth trying for ``objective``, in order of their usual pay-off on a CPU.

    A training workload with a ``log`` hook that runs more often than every
    :data:`LOG_EVERY` steps first tries logging every :data:`LOG_EVERY` steps.
    """
    from pinchpoint.remedies import (
        ActivationCheckpointing,
        BatchSize,
        Compile,
        DataLoaderSettings,
        Distill,
        LogEvery,
        MixedPrecision,
        OnnxRuntime,
        OptimizerSettings,
        Precision,
        Prune,
        Quantize,
        SmoothQuant,
    )

    transformer = _looks_like_transformer(workload.model)
    if workload.mode == "train":
        pool: list[RemedyConfig] = [
            OptimizerSettings(fused=True),
            OptimizerSettings(foreach=True),
            MixedPrecision("bf16"),
            Compile(freezing=False),
        ]
        if _is_dataloader(workload.data):
            pool.append(DataLoaderSettings(num_workers=2, persistent_workers=True))
        if workload.log is not None and workload.log_every < LOG_EVERY:
            # Logging less often changes nothing the model learns, so it leads the pool.
            pool.insert(0, LogEvery(every=LOG_EVERY))
        if objective == "memory":
            pool = [ActivationCheckpointing(), MixedPrecision("bf16"), *pool[:2]]
        return pool
    if objective == "size":
        pool = [
            Quantize("dynamic-int8"),
            SmoothQuant(),
            Quantize("weight-only-int8"),
            Quantize("weight-only-int4"),
            Precision("bf16", "convert"),
        ]
        # Structural remedies fine-tune on the workload's loss, or without one on matching the
        # original model's outputs.
        if transformer:
            pool += [Prune("heads", 0.25), Prune("mlp", 0.25)]
        else:
            pool += [
                Prune("channels", 0.3, finetune_steps=300),
                Prune("channels", 0.5, finetune_steps=600),
                Distill(width=0.5, steps=600),
            ]
        return pool
    if objective == "memory":
        return [
            Precision("bf16", "convert"),
            Quantize("dynamic-int8"),
            Quantize("weight-only-int8"),
            Precision("fp16", "convert"),
        ]
    # Compiled with freezing and the C++ wrapper, inductor drops Python from each call: on
    # bert-base with bf16 that is 5x fp32 eager where the plain compile gives 3.7-4.6x.
    pool = [
        Precision("bf16", "convert"),
        Compile(cpp_wrapper=True),
        Quantize("dynamic-int8"),
        SmoothQuant(),
        OnnxRuntime(quantize="int8"),
        OnnxRuntime(),
        Precision("bf16", "autocast"),
        Quantize("weight-only-int8"),
        Quantize("static-int8"),
        Compile(),
    ]
    if not transformer:
        pool.append(Prune("channels", 0.3, finetune_steps=300))
    if objective == "throughput":
        size = _batch_size(workload)
        if size is not None:
            pool.append(BatchSize(size * 4))
    return pool


def _looks_like_transformer(model: Any) -> bool:
    return any("attention" in type(m).__name__.lower() for m in model.modules())


def _is_dataloader(data: Any) -> bool:
    return type(data).__name__ == "DataLoader"


def _batch_size(workload: Workload) -> int | None:
    from pinchpoint.workload import first_batch_size

    return first_batch_size(next(workload.batches()))


@overload
def combinations(
    records: Sequence[TrialRecord],
    objective: str = ...,
    limit: int = ...,
    *,
    guesses: Literal[False] = ...,
) -> list[Candidate]: ...


@overload
def combinations(
    records: Sequence[TrialRecord],
    objective: str = ...,
    limit: int = ...,
    *,
    guesses: Literal[True],
) -> list[tuple[float, Candidate]]: ...


def combinations(
    records: Sequence[TrialRecord],
    objective: str = "latency",
    limit: int = 6,
    *,
    guesses: bool = False,
) -> list[Candidate] | list[tuple[float, Candidate]]:
    """Combinations of the best single remedies from different families, best guesses first.

    A single is a building block when its trial ran and its quality stayed within budget, and,
    for speed, it was not slower for certain (gains from different families usually multiply,
    quality losses add up). The two best per family by the objective are kept; every
    cross-family pair and the best of each family together are proposed, best guesses first
    (the product of the parts' scores); with ``guesses`` each comes with its guess.
    """
    blocks: dict[int, list[tuple[float, RemedyConfig]]] = {}
    for record in records:
        t = record.trial
        if t is None or len(record.candidate.remedies) != 1:
            continue
        if not t.budget.allows(t.quality_drop):
            continue
        if objective in ("latency", "throughput") and t.speedup_ci[1] < 1.0:
            continue
        (config,) = record.candidate.remedies
        family = FAMILIES.get(config.name, 5)
        blocks.setdefault(family, []).append((_score(t, objective), config))
    picks = {f: [c for _, c in sorted(v, key=lambda p: -p[0])[:2]] for f, v in blocks.items()}
    families = sorted(picks)
    out: list[tuple[float, Candidate]] = []
    seen: set[tuple[str, ...]] = set()
    score_of = {id(c): score for v in blocks.values() for score, c in v}

    def add(configs: Sequence[RemedyConfig]) -> None:
        if any(c.name in _EXPORTS for c in configs) and any(
            FAMILIES.get(c.name, 5) != 0 for c in configs if c.name not in _EXPORTS
        ):
            return
        ordered = tuple(sorted(configs, key=lambda c: FAMILIES.get(c.name, 5)))
        key = tuple(c.label() for c in ordered)
        if key in seen:
            return
        seen.add(key)
        guess = math.prod(score_of[id(c)] for c in configs)
        out.append((guess, Candidate(ordered, "combines the best single remedies")))

    for i, fa in enumerate(families):
        for fb in families[i + 1 :]:
            for a in picks[fa]:
                for b in picks[fb]:
                    add([a, b])
    if len(families) > 2:
        add([picks[f][0] for f in families])
    ranked = sorted(out, key=lambda p: -p[0])[:limit]
    return ranked if guesses else [c for _, c in ranked]


# --------------------------------------------------------------------------- the search


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
        _writable_folder(Path(out))  # before the search, not after ten minutes of it
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
            queue = [c for c in queue if _launchable(c)]
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
            (_score(r.trial, objective) for r in records if r.accepted and r.trial), default=1.0
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
    from pinchpoint.remedies import clone_workload

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


def _launchable(candidate: Candidate) -> bool:
    from pinchpoint.trials.distributed import LAUNCHABLE

    return all(r.name in LAUNCHABLE for r in candidate.remedies)


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
    run_trial: TrialRunner | None = None,
) -> TrialRecord:
    from pinchpoint.trials.trial import trial

    run_trial = run_trial or trial
    started = time.perf_counter()
    record = TrialRecord(candidate)
    try:
        applied = apply(workload, *candidate.remedies)
    except Exception as exc:  # a remedy that does not fit this model: say why, go on
        record.error = f"{type(exc).__name__}: {_one_line(exc)}"
        record.seconds = time.perf_counter() - started
        return record
    _forget_compiled_graphs()
    try:
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


def _score(trial: Trial, objective: str) -> float:
    """Larger is better: the speed-up, or how many times smaller the model or peak is."""
    if objective == "size":
        return trial.size_bytes_baseline / max(trial.size_bytes, 1)
    if objective == "memory" and trial.memory_bytes and trial.memory_bytes_baseline:
        return trial.memory_bytes_baseline / trial.memory_bytes
    return trial.speedup


def _choose(records: Sequence[TrialRecord], objective: str) -> tuple[int | None, int | None]:
    """The best accepted trial by the objective (ties: better quality), and when there is none,
    the best-effort one: the best within the quality budget, else the one that lost least."""
    measured = [(i, r.trial) for i, r in enumerate(records) if r.trial is not None]
    accepted = [(i, t) for i, t in measured if t.accepted]
    if accepted:
        best = max(accepted, key=lambda p: (_score(p[1], objective), -p[1].quality_drop))
        return best[0], None
    if not measured:
        return None, None
    within = [(i, t) for i, t in measured if t.budget.allows(t.quality_drop)]
    if within:
        return None, max(within, key=lambda p: _score(p[1], objective))[0]
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


def load_remedies(path: str | Path) -> list[RemedyConfig]:
    """The configs a saved ``remedies.json`` lists, to apply them to the original workload."""
    import orjson

    data = orjson.loads(Path(path).read_bytes())
    return [config_from_dict(d) for d in data.get("remedies", [])]

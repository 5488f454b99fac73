"""The candidates the search tries: the remedies a diagnosis and an objective call for, and
their combinations.

:func:`candidates_for` ranks the registered configs whose ``addresses`` name a finding's
remedies, plus the ones the objective calls for (the pools); :func:`combinations` joins the best
measured single remedies, applied in :data:`FAMILIES` order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from pinchpoint.optimizer.result import Candidate, TrialRecord
from pinchpoint.remedies import RemedyConfig
from pinchpoint.workload import Workload, first_batch_size

if TYPE_CHECKING:
    from pinchpoint._profile import Machine
    from pinchpoint.trials.trial import Trial

__all__ = ["FAMILIES", "LOG_EVERY", "candidates_for", "combinations", "score"]

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

    transformer = any("attention" in type(m).__name__.lower() for m in workload.model.modules())
    if workload.mode == "train":
        pool: list[RemedyConfig] = [
            OptimizerSettings(fused=True),
            OptimizerSettings(foreach=True),
            MixedPrecision("bf16"),
            Compile(freezing=False),
        ]
        if type(workload.data).__name__ == "DataLoader":
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
        size = first_batch_size(next(workload.batches()))
        if size is not None:
            pool.append(BatchSize(size * 4))
    return pool


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
        blocks.setdefault(family, []).append((score(t, objective), config))
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


def score(trial: Trial, objective: str) -> float:
    """Larger is better: the speed-up, or how many times smaller the model or peak is."""
    if objective == "size":
        return trial.size_bytes_baseline / max(trial.size_bytes, 1)
    if objective == "memory" and trial.memory_bytes and trial.memory_bytes_baseline:
        return trial.memory_bytes_baseline / trial.memory_bytes
    return trial.speedup

"""Findings: what holds a workload back, in the taxonomy's words, with the numbers that prove it.

A :class:`Finding` names one ``kind`` from the public taxonomy (``KINDS``), how much of the step
it accounts for (``share``), how much removing it would save (``saving_share``), a severity
derived from that saving, the evidence as raw numbers with the unit in each field's name, and the
remedies that apply, most promising first. Findings carry no display text beyond two plain
sentences, what was found (``summary``) and why it ranks where it does (``rank_reason``, set by
:func:`rank`); renderers format the rest.

:func:`rank` orders findings by a stated rule (docs/taxonomy.md, "Ranking"): a run that diverges
or does not learn comes before any time saving, root cause before symptom; then large, measured
time savings; then learning that is slowed but not stopped; then smaller savings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pinchpoint import codec

__all__ = [
    "KINDS",
    "RUNTIME_KINDS",
    "SEVERITIES",
    "TRAINING_KINDS",
    "Finding",
    "Remedy",
    "Severity",
    "rank",
    "rank_tier",
    "severity_for",
]

#: Where the time goes (TAXONOMY.md, "Runtime").
RUNTIME_KINDS: tuple[str, ...] = (
    "input_bound",
    "host_transfer_bound",
    "sync_bound",
    "host_sync_bound",
    "thread_oversubscription",
    "recompilation",
    "overhead_bound",
    "compute_bound",
    "memory_bound",
    "memory_capacity",
    "optimizer_bound",
    "communication_bound",
    "straggler",
)
#: Why learning is slow or broken (TAXONOMY.md, "Training method").
TRAINING_KINDS: tuple[str, ...] = (
    "vanishing_gradients",
    "exploding_gradients",
    "lr_too_high",
    "lr_too_low",
    "dead_units",
    "saturated_activations",
    "nan_inf",
    "loss_plateau",
)
#: Every finding kind: a public contract that JSON output and users' scripts match on.
KINDS: tuple[str, ...] = RUNTIME_KINDS + TRAINING_KINDS

Severity = Literal["high", "medium", "low"]
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")

#: Expected saving (fraction of step time) from which a finding is high or medium severity.
HIGH_SAVING = 0.30
MEDIUM_SAVING = 0.10


def severity_for(saving_share: float) -> Severity:
    """The severity of a finding that would save ``saving_share`` of the step if removed."""
    if saving_share >= HIGH_SAVING:
        return "high"
    if saving_share >= MEDIUM_SAVING:
        return "medium"
    return "low"


@dataclass(frozen=True)
class Remedy(codec.Saved):
    """A remedy that applies to a finding, and why it should help here."""

    name: str
    why: str


@dataclass(frozen=True)
class Finding(codec.Saved):
    """One bottleneck, with its share of the step, the saving if removed, and the evidence.

    Attributes:
        kind: one of :data:`KINDS`.
        severity: ``"high"``, ``"medium"`` or ``"low"``.
        share: fraction of the step's wall time the bottleneck accounts for (for
            ``memory_capacity``: the fraction of the memory budget in use).
        saving_share: the expected fraction of step time saved by removing it (for a training
            finding: its importance, 1.0 for a root cause); within a tier of :func:`rank` findings
            are ordered by it, so the first finding is the principal bottleneck.
        summary: one plain sentence saying what was found.
        evidence: the measured numbers and the thresholds they were held against, each field
            named with its unit (``data_share``, ``ops_per_step``, ``peak_bytes``).
        remedies: what to do, most promising first.
        rank_reason: one plain sentence saying why the finding ranks where it does (set by
            :func:`rank`; empty in diagnoses saved before it existed).
    """

    kind: str
    severity: Severity
    share: float
    saving_share: float
    summary: str = field(metadata=codec.missing_as(""))
    evidence: dict[str, Any] = field(default_factory=dict)
    remedies: list[Remedy] = field(default_factory=list)
    rank_reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; see TAXONOMY.md")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")


_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}

# --- ranking ------------------------------------------------------------------------------------
#
# Findings are compared in four tiers, then by their number within a tier (docs/taxonomy.md,
# "Ranking"):
#
# 0. the run does not work: a high-severity training finding (it diverges, its gradients explode,
#    it does not learn) or a run that does not fit in its memory budget. Its speed is moot, so
#    these outrank any time saving. Within the tier the training analyzer's importance orders
#    root cause before symptom (evidence ``explained_by`` names the cause of a symptom).
# 1. a large time saving: a runtime finding whose expected saving is >= 30 % of the step (the
#    threshold of high severity), measured.
# 2. learning slowed, not stopped: a training finding of medium or low severity (a plateau, a
#    minority of dead units). Its cost is a guess, a large measured saving's is not; but it comes
#    before a small saving.
# 3. a smaller time saving: the remaining runtime findings.
#
# Among runtime findings alone the order is therefore by saving, as it always was.

#: The tiers, first to last, each with the sentence that opens its findings' ``rank_reason``.
_TIER_REASONS: tuple[str, ...] = (
    "The run diverges or does not learn, which outranks any time saving",
    "A large, measured time saving ({saving:.0%} of the step): only a run that does not learn "
    "outranks it",
    "Learning is slowed, not stopped: it ranks after large time savings (theirs are measured, "
    "its cost is not) and before small ones",
    "A smaller time saving ({saving:.0%} of the step), ranked by saving",
)


def rank_tier(finding: Finding) -> int:
    """The tier a finding ranks in: 0 the run does not work, 1 a large time saving, 2 learning
    slowed, 3 a smaller time saving (see docs/taxonomy.md, "Ranking")."""
    if finding.kind in TRAINING_KINDS:
        return 0 if finding.severity == "high" else 2
    if finding.kind == "memory_capacity" and finding.severity == "high":
        return 0
    # By the saving itself, not the severity: a compute_bound finding is at most medium, yet
    # its saving, when large, still is one.
    return 1 if finding.saving_share >= HIGH_SAVING else 3


def _reason(finding: Finding, ordered: list[Finding]) -> str:
    """Why ``finding`` ranks where it does in ``ordered``: its tier, then cause and symptom."""
    tier = rank_tier(finding)
    if finding.kind == "memory_capacity" and tier == 0:
        reason = "The run does not fit in its memory budget, which outranks any time saving"
    else:
        reason = _TIER_REASONS[tier].format(saving=finding.saving_share)
    cause = finding.evidence.get("explained_by")
    symptoms = [
        f.kind
        for f in ordered
        if f is not finding and f.evidence.get("explained_by") == finding.kind
    ]
    if isinstance(cause, str) and cause != finding.kind:
        reason += f"; a symptom of {cause}, it ranks after it"
    elif symptoms:
        reason += f"; the root cause of {', '.join(symptoms)}, it ranks before"
        reason += " it" if len(symptoms) == 1 else " them"
    if finding.kind == "exploding_gradients" and finding.evidence.get("cause") == "initialization":
        reason += (
            "; the gradients explode from the first step, before any update: the cause is the "
            "initialization, not the learning rate"
        )
    if finding.kind == "lr_too_high" and finding.evidence.get("cause") == "schedule":
        reason += (
            "; the loss fell at the lower rates and rose only after the schedule raised the "
            "rate: the cause is the rate, not the initialization"
        )
    return reason + "."


def rank(findings: list[Finding]) -> list[Finding]:
    """Findings ranked, the principal first, each with its ``rank_reason``.

    By tier (:func:`rank_tier`: a run that does not work, a large time saving, slowed learning,
    a smaller time saving), then by expected saving or, for training findings, importance
    (largest first), then the more severe, then by kind.
    """
    ordered = _after_causes(
        sorted(
            findings,
            key=lambda f: (rank_tier(f), -f.saving_share, _SEVERITY_ORDER[f.severity], f.kind),
        )
    )
    return [replace(f, rank_reason=_reason(f, ordered)) for f in ordered]


def _after_causes(ordered: list[Finding]) -> list[Finding]:
    """``ordered`` with every symptom that sorted before its cause moved to just after it.

    A symptom names its cause in evidence ``explained_by``; fixing the cause changes the
    symptom's numbers (stalled threads inflate every operator's time), so its saving, however
    large, is not the next step. Symptoms already after their cause keep their place.
    """
    out = list(ordered)
    for symptom in ordered:
        cause = symptom.evidence.get("explained_by")
        host = next((f for f in out if f.kind == cause and f is not symptom), None)
        if host is None:
            continue
        at = {id(f): i for i, f in enumerate(out)}
        if at[id(symptom)] > at[id(host)]:
            continue
        del out[at[id(symptom)]]
        out.insert(next(i for i, f in enumerate(out) if f is host) + 1, symptom)
    return out

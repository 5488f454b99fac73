"""Findings: what holds a workload back, in the taxonomy's words, with the numbers that prove it.

A :class:`Finding` names one ``kind`` from the public taxonomy (``KINDS``), how much of the step
it accounts for (``share``), how much removing it would save (``saving_share``), a severity
derived from that saving, the evidence as raw numbers with the unit in each field's name, and the
remedies that apply, most promising first. Findings carry no display text beyond one plain
sentence (``summary``); renderers format the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "KINDS",
    "RUNTIME_KINDS",
    "SEVERITIES",
    "TRAINING_KINDS",
    "Finding",
    "Remedy",
    "Severity",
    "rank",
    "severity_for",
]

#: Where the time goes (TAXONOMY.md, "Runtime").
RUNTIME_KINDS: tuple[str, ...] = (
    "input_bound",
    "host_transfer_bound",
    "sync_bound",
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
class Remedy:
    """A remedy that applies to a finding, and why it should help here."""

    name: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "why": self.why}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Remedy:
        return cls(name=str(data["name"]), why=str(data["why"]))


@dataclass(frozen=True)
class Finding:
    """One bottleneck, with its share of the step, the saving if removed, and the evidence.

    Attributes:
        kind: one of :data:`KINDS`.
        severity: ``"high"``, ``"medium"`` or ``"low"``.
        share: fraction of the step's wall time the bottleneck accounts for (for
            ``memory_capacity``: the fraction of the memory budget in use).
        saving_share: the expected fraction of step time saved by removing it; findings are
            ranked by it, so the first finding is the principal bottleneck.
        summary: one plain sentence saying what was found.
        evidence: the measured numbers and the thresholds they were held against, each field
            named with its unit (``data_share``, ``ops_per_step``, ``peak_bytes``).
        remedies: what to do, most promising first.
    """

    kind: str
    severity: Severity
    share: float
    saving_share: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    remedies: list[Remedy] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; see TAXONOMY.md")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "share": self.share,
            "saving_share": self.saving_share,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "remedies": [r.to_dict() for r in self.remedies],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            kind=str(data["kind"]),
            severity=data["severity"],
            share=float(data["share"]),
            saving_share=float(data["saving_share"]),
            summary=str(data.get("summary", "")),
            evidence=dict(data.get("evidence", {})),
            remedies=[Remedy.from_dict(r) for r in data.get("remedies", [])],
        )


_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def rank(findings: list[Finding]) -> list[Finding]:
    """Findings by expected saving, largest first (ties: the more severe, then by kind)."""
    return sorted(findings, key=lambda f: (-f.saving_share, _SEVERITY_ORDER[f.severity], f.kind))

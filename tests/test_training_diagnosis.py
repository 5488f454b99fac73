"""Training-method diagnosis end to end: each planted case, for several seeds, and controls."""

from __future__ import annotations

import pytest

import pinchpoint
from pinchpoint import zoo
from pinchpoint.finding import TRAINING_KINDS
from pinchpoint.zoo.health import HEALTH_CONTROLS, HEALTH_PLANTED


def _training_findings(name: str, seed: int) -> list[pinchpoint.Finding]:
    diagnosis = pinchpoint.diagnose(zoo.get(name, seed=seed), steps=30, warmup=2, device="cpu")
    return [f for f in diagnosis.findings if f.kind in TRAINING_KINDS]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(HEALTH_PLANTED))
def test_planted_training_problem_is_the_principal_training_finding(name: str, seed: int) -> None:
    findings = _training_findings(name, seed)
    kinds = [(f.kind, f.severity) for f in findings]
    assert findings, f"{name} seed {seed}: nothing found"
    assert findings[0].kind == HEALTH_PLANTED[name], f"{name} seed {seed}: {kinds}"
    assert findings[0].evidence["loss_trend"] is not None
    assert findings[0].remedies


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", [*HEALTH_CONTROLS, "tiny-gpt"])
def test_healthy_controls_raise_no_high_severity_training_finding(name: str, seed: int) -> None:
    findings = _training_findings(name, seed)
    assert not [f for f in findings if f.severity == "high"], [
        (f.kind, f.severity) for f in findings
    ]

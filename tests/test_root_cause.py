"""The ranking end to end on the root-cause zoo: the planted cause is the principal finding.

``hot-init`` shows exploding gradients together with their symptoms (updates as large as the
weights, then NaNs); ``warmup-overshoot`` a loss that rises only after a warm-up raised the
rate, with the units it knocked out; ``looped-adam`` a large optimizer saving beside a mild loss
plateau. For
seeds 0-2 the planted kind must come first, with a reason, and each control must get no
high-severity finding of the planted family.
"""

from __future__ import annotations

import pytest

import pinchpoint
from pinchpoint import zoo
from pinchpoint.finding import TRAINING_KINDS
from pinchpoint.zoo.root_cause import ROOT_CAUSE_CONTROLS, ROOT_CAUSE_PLANTED

SEEDS = (0, 1, 2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _diagnose(name: str, seed: int) -> pinchpoint.Diagnosis:
    return pinchpoint.diagnose(zoo.get(name, seed=seed), steps=30, warmup=2, device="cpu")


def _kinds(diagnosis: pinchpoint.Diagnosis) -> list[tuple[str, str, float]]:
    return [(f.kind, f.severity, round(f.saving_share, 2)) for f in diagnosis.findings]


def test_the_root_cause_zoo_is_registered_and_described() -> None:
    entries = {entry.name: entry for entry in zoo.entries()}
    for name, kind in ROOT_CAUSE_PLANTED.items():
        assert f"(planted: {kind})" in entries[name].summary
        assert entries[name].mode == "train"
    for control, planted in ROOT_CAUSE_CONTROLS.items():
        assert planted in ROOT_CAUSE_PLANTED
        assert "(healthy control)" in entries[control].summary


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(ROOT_CAUSE_PLANTED))
def test_the_planted_cause_is_the_principal_finding(name: str, seed: int) -> None:
    diagnosis = _diagnose(name, seed)
    principal = diagnosis.principal
    assert principal is not None, f"{name} seed {seed}: nothing found"
    assert principal.kind == ROOT_CAUSE_PLANTED[name], f"{name} seed {seed}: {_kinds(diagnosis)}"
    assert principal.severity == "high"
    assert all(f.rank_reason for f in diagnosis.findings)
    kinds = [f.kind for f in diagnosis.findings]
    if name == "hot-init":
        # The initialization, not the rate: lr_too_high is not raised, the NaNs are a symptom.
        assert principal.evidence["cause"] == "initialization"
        assert "initialization, not the learning rate" in principal.rank_reason
        assert principal.remedies[0].name == "better_init"
        assert "lr_too_high" not in kinds
        nan = next(f for f in diagnosis.findings if f.kind == "nan_inf")
        assert nan.evidence["explained_by"] == "exploding_gradients"
        assert kinds.index("nan_inf") > kinds.index("exploding_gradients")
        assert "symptom of exploding_gradients" in nan.rank_reason
    elif name == "warmup-overshoot":
        # The rate, not the initialization: the loss fell at the warm-up's first rates and rose
        # only once the schedule had raised it; the units it knocked out are its symptom.
        evidence = principal.evidence
        assert evidence["cause"] == "schedule"
        assert evidence["best_step"] < evidence["rise_step"]
        assert evidence["loss_at_best"] <= 0.9 * evidence["loss_start"]
        after = [s.loss for s in diagnosis.profile.steps if s.index >= evidence["rise_step"]]
        assert max(v for v in after if v is not None) > 3 * evidence["loss_start"]
        assert evidence["lr_at_rise"] >= 2 * evidence["lr_first"]
        assert evidence["lr_at_best"] < evidence["lr_at_rise"]
        assert "rose only after the schedule raised the rate" in principal.rank_reason
        assert f"{evidence['lr_at_best']:.2g}" in principal.remedies[0].why
        first_norm = diagnosis.profile.steps[0].grad_norm
        assert first_norm is not None and first_norm < 10
        for f in diagnosis.findings:
            if f.kind in ("dead_units", "saturated_activations", "exploding_gradients"):
                assert f.evidence["explained_by"] == "lr_too_high", _kinds(diagnosis)
    else:
        # The plateau is mild and uncertain: where the loss is flat enough to call one (seeds
        # 0 and 1; seed 2's noise leaves room for a 11 % decline, "noisy"), it ranks after the
        # measured saving.
        assert "loss_plateau" in kinds or seed == 2, _kinds(diagnosis)
        assert "loss_plateau" not in kinds or kinds.index("loss_plateau") > 0
        assert "large, measured time saving" in principal.rank_reason


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(ROOT_CAUSE_CONTROLS))
def test_a_control_gets_no_high_finding_of_the_planted_family(name: str, seed: int) -> None:
    diagnosis = _diagnose(name, seed)
    planted = ROOT_CAUSE_PLANTED[ROOT_CAUSE_CONTROLS[name]]
    high = [f for f in diagnosis.findings if f.severity == "high"]
    # A tiny CPU model may still be overhead-bound; the planted family must be clean.
    family = TRAINING_KINDS if planted in TRAINING_KINDS else ("optimizer_bound",)
    assert not [f for f in high if f.kind in family], _kinds(diagnosis)
    # Nor is the planted kind its diagnosis: a low finding is a remark, not one (the matrix's
    # top-1 rule); a foreach Adam still takes some 8 % of a step this small.
    principal = diagnosis.principal
    assert principal is None or principal.severity == "low" or principal.kind != planted, _kinds(
        diagnosis
    )
    if name == "looped-adam-control":
        optimizer = next(f for f in diagnosis.findings if f.kind == "optimizer_bound")
        assert optimizer.severity == "low", _kinds(diagnosis)

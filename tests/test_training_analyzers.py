"""Training-method rules on hand-built health series: each kind, root cause over symptom."""

from __future__ import annotations

import math

import pytest

from pinchpoint import Profile, Step
from pinchpoint._profile import Health
from pinchpoint.analyzers import run_analyzers
from pinchpoint.analyzers.training import loss_trend, schedule_overshoot
from pinchpoint.remedies.training import LRSchedule


def _run(losses: list[float], health: Health, lr: float = 1e-3) -> list[str]:
    norm = math.sqrt(sum(g * g for g in health.grad_norm[0] if g is not None))
    steps = [
        Step(index=i, wall_s=0.01, phases={"forward": 0.01}, loss=v, grad_norm=norm)
        for i, v in enumerate(losses)
    ]
    profile = Profile(
        name="h",
        mode="train",
        device="cpu",
        steps=steps,
        health=health,
        optimizer={"type": "SGD", "lr": lr, "param_tensors": 4},
    )
    return [f.kind for f in run_analyzers(profile)]


def _health(grad: list[float], update: float, steps: int = 30, **extra: object) -> Health:
    layers = [f"l{i}" for i in range(len(grad))]
    return Health(
        layers=layers,
        grad_steps=list(range(steps)),
        grad_norm=[list(grad) for _ in range(steps)],
        update_steps=list(range(steps)),
        update_ratio=[[update] * len(grad) for _ in range(steps)],
        **extra,  # type: ignore[arg-type]
    )


falling = [2.3 - 0.05 * i + 0.01 * math.sin(i) for i in range(30)]
flat = [2.3 + 0.01 * math.sin(i * 1.7) for i in range(30)]
rising = [2.3 + 0.1 * i for i in range(30)]


def test_loss_trend_words() -> None:
    assert loss_trend(falling).kind == "falling"
    assert loss_trend(flat).kind == "flat"
    assert loss_trend(rising).kind == "rising"
    assert loss_trend([2.3, 5.0, 40.0, float("nan"), float("nan")]).kind == "diverged"
    assert loss_trend([1.0, 0.9]) is None


def test_healthy_run_raises_nothing() -> None:
    assert _run(falling, _health([0.5, 0.6, 0.8], 1e-3)) == []


def test_learning_rate_too_high_and_too_low() -> None:
    assert _run(rising, _health([1.0, 1.0, 1.0], 0.2))[0] == "lr_too_high"
    assert _run(flat, _health([1.0, 1.0, 1.0], 1e-6))[0] == "lr_too_low"
    # Large updates while the loss still falls fast are not called too high.
    assert "lr_too_high" not in _run(falling, _health([1.0, 1.0, 1.0], 0.05))


def test_divergence_is_lr_too_high_with_nan_inf_as_support() -> None:
    losses = [2.3, 3.0, 9.0, 80.0, 1e4, float("nan"), float("nan")]
    health = _health(
        [1.0, 1.0, 1.0], 0.5, steps=7, nonfinite={"step": 5, "in": "loss", "tensor": None}
    )
    kinds = _run(losses, health)
    assert kinds[:2] == ["lr_too_high", "nan_inf"]


def test_vanishing_exploding_and_root_causes() -> None:
    assert _run(falling, _health([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], 1e-3))[0] == "vanishing_gradients"
    assert _run(falling, _health([5e3, 500.0, 50.0, 5.0], 1e-3))[0] == "exploding_gradients"
    dead = _health(
        [1e-5, 1e-4, 1e-3, 1e-1],
        1e-3,
        activation_layers=["r1", "r2"],
        activation_kinds=["relu", "relu"],
        activation_steps=[0, 10],
        dead_share=[[0.9, 0.8], [0.95, 0.85]],
    )
    kinds = _run(flat, dead)
    assert kinds[0] == "dead_units" and "vanishing_gradients" not in kinds
    saturated = _health(
        [1e-5, 1e-4, 1e-3, 1e-1],
        1e-3,
        activation_layers=["t1"],
        activation_kinds=["tanh"],
        activation_steps=[0, 10],
        saturated_share=[[0.8], [0.7]],
    )
    kinds = _run(flat, saturated)
    assert kinds[0] == "saturated_activations" and "vanishing_gradients" not in kinds


def test_plateau_needs_a_long_enough_run_and_healthy_updates() -> None:
    assert _run(flat, _health([1.0, 1.0, 1.0], 1e-3)) == ["loss_plateau"]
    assert _run(flat[:10], _health([1.0, 1.0, 1.0], 1e-3, steps=10)) == []


def test_training_findings_outrank_runtime_ones() -> None:
    steps = [
        Step(index=i, wall_s=1.0, phases={"data": 0.7, "forward": 0.3}, loss=v, grad_norm=1.0)
        for i, v in enumerate(rising)
    ]
    profile = Profile(
        name="h",
        mode="train",
        device="cpu",
        steps=steps,
        health=_health([1.0, 1.0], 0.3),
        optimizer={"type": "SGD", "lr": 1.0},
    )
    kinds = [f.kind for f in run_analyzers(profile)]
    assert kinds[:2] == ["lr_too_high", "input_bound"]


@pytest.mark.parametrize("mode", ["infer"])
def test_inference_gets_no_training_finding(mode: str) -> None:
    profile = Profile(
        name="h", mode=mode, device="cpu", steps=[Step(i, 1.0, {"forward": 1.0}) for i in range(30)]
    )
    assert run_analyzers(profile) == []


def _scheduled(losses: list[float], rates: list[float]) -> list[Step]:
    return [
        Step(index=i, wall_s=0.01, phases={"forward": 0.01}, loss=v, lr=r, grad_norm=1.0)
        for i, (v, r) in enumerate(zip(losses, rates, strict=True))
    ]


# A warm-up from 0.1 to 2: the loss falls to 1.5 while the rate is below 1, then leaps.
warmup = [0.1 * (i + 1) for i in range(20)] + [2.0] * 10
overshoot = [2.3 - 0.08 * i for i in range(10)] + [1.6, 5.0, 9.0, 4.0, 12.0] + [4.0] * 15


def test_a_loss_that_rises_only_after_the_rate_grew_points_to_the_schedule() -> None:
    found = schedule_overshoot(_scheduled(overshoot, warmup))
    assert found is not None
    # Smoothed by a running median of 3: the low is 1.6 (step 10), 3x it is first reached at
    # step 12 (median of 1.6, 5, 9 = 5), at the rate 1.3 the warm-up had reached.
    assert (found["best_step"], found["rise_step"]) == (10, 12)
    assert found["lr_at_best"] == pytest.approx(1.1)
    assert found["lr_at_rise"] == pytest.approx(1.3)
    assert found["loss_at_best"] == pytest.approx(1.6)
    # The same losses under a constant rate, or a rate that only grew after the rise, or a
    # loss that never fell first: the schedule is not the cause.
    assert schedule_overshoot(_scheduled(overshoot, [1.0] * 30)) is None
    late = [0.1] * 13 + [0.1 * (i + 1) for i in range(17)]
    assert schedule_overshoot(_scheduled(overshoot, late)) is None
    assert schedule_overshoot(_scheduled([2.3] * 5 + [7.0] * 25, warmup)) is None
    # Back above its start by as much as it fell (2.3 to 1.8, then 2.8 and over) is a rise
    # too, short of 3x the low.
    climb = [2.3] * 3 + [2.1, 1.9, 1.8, 1.8, 3.4, 4.5, 4.5] + [4.0] * 20
    found = schedule_overshoot(_scheduled(climb, warmup))
    assert found is not None and found["rise_step"] == 8 and found["loss_at_best"] == 1.8
    # A loss that falls 5 % and wobbles back is noise, however the rate grew.
    wobble = [2.3, 2.3, 2.3, 2.2, 2.19, 2.19, 2.45, 2.45] + [2.3] * 22
    assert schedule_overshoot(_scheduled(wobble, warmup)) is None
    # Nor is a well-trained loss of 0.05 that reads 0.2 on two batches after the warm-up.
    trained = [2.3 - 0.25 * i for i in range(9)] + [0.05] * 4 + [0.2, 0.2] + [0.05] * 15
    assert schedule_overshoot(_scheduled(trained, warmup)) is None
    # A warm-up under which the loss keeps falling finds nothing.
    assert schedule_overshoot(_scheduled(falling, warmup)) is None
    # A warm-up from 0, as LRSchedule's: growth counts from the first rate above zero.
    from_zero = [2.0 * LRSchedule(kind="constant", warmup_steps=20).factor(i) for i in range(30)]
    found = schedule_overshoot(_scheduled(overshoot, from_zero))
    assert found is not None and found["lr_first"] == pytest.approx(0.1)
    # Non-finite losses rise too: the first of them is where.
    nan = overshoot[:11] + [math.nan] * 19
    found = schedule_overshoot(_scheduled(nan, warmup))
    assert found is not None and found["rise_step"] == 11


def test_the_schedule_finding_ranks_the_rate_first_with_its_symptoms_after() -> None:
    health = _health(
        [0.5, 0.6, 0.8],
        5e-3,
        activation_layers=["relu1"],
        activation_kinds=["relu"],
        activation_steps=[0, 10, 20],
        dead_share=[[0.1], [0.6], [0.7]],
    )
    profile = Profile(
        name="h",
        mode="train",
        device="cpu",
        steps=_scheduled(overshoot, warmup),
        health=health,
        optimizer={"type": "SGD", "lr": 2.0, "param_tensors": 4},
    )
    findings = run_analyzers(profile)
    assert [f.kind for f in findings][:2] == ["lr_too_high", "dead_units"]
    rate, units = findings[0], findings[1]
    assert rate.evidence["cause"] == "schedule"
    assert rate.remedies[0].name == "lower_lr" and "1.1" in rate.remedies[0].why
    assert units.evidence["explained_by"] == "lr_too_high"
    assert "symptom of lr_too_high" in units.rank_reason

"""Training-method rules on hand-built health series: each kind, root cause over symptom."""

from __future__ import annotations

import math

import pytest

from pinchpoint import Profile, Step
from pinchpoint._profile import Health
from pinchpoint.analyzers import run_analyzers
from pinchpoint.analyzers.training import loss_trend


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

"""Tests for the training-health zoo: each planted workload shows its symptom for seeds 0, 1, 2.

The symptoms are measured here directly, in a plain training loop (zero_grad, loss, backward,
step), with forward hooks and gradient norms, not with pinchpoint's analyzers: these tests check
that the workloads plant what they claim, so the analyzers can then be judged against them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import pinchpoint.zoo as zoo
from pinchpoint.workload import Workload
from pinchpoint.zoo import health

SEEDS = (0, 1, 2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, seed: int) -> Workload:
    """The zoo workload ``name`` built for ``seed``, through the registry."""
    return zoo.get(name, seed=seed)


def _linears(model: nn.Module) -> list[nn.Linear]:
    """The model's Linear layers, input first."""
    return [module for module in model.modules() if isinstance(module, nn.Linear)]


def _grad_norm(parameter: torch.Tensor) -> float:
    """The norm of ``parameter``'s gradient, which the last backward must have set."""
    assert parameter.grad is not None
    return float(parameter.grad.norm())


def _flat_parameters(model: nn.Module) -> torch.Tensor:
    """A detached copy of all the model's parameters as one vector."""
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def _train(
    workload: Workload,
    steps: int,
    after_backward: Callable[[int], None] | None = None,
    update_ratios: list[float] | None = None,
) -> list[float]:
    """Train ``workload`` for ``steps`` steps in a plain loop and return the losses.

    ``after_backward(step)`` runs once the gradients of a step are there, before the update.
    With ``update_ratios``, each step's ||update|| / ||weights|| is appended to it.
    """
    model, optimizer, loss_fn = workload.model, workload.optimizer, workload.loss
    assert loss_fn is not None
    model.train()
    batches = workload.batches()
    losses: list[float] = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model, next(batches))
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        before = _flat_parameters(model) if update_ratios is not None else None
        optimizer.step()
        if update_ratios is not None and before is not None:
            after = _flat_parameters(model)
            update_ratios.append(float((after - before).norm() / before.norm()))
        losses.append(loss.item())
    return losses


@contextmanager
def _outputs_of(model: nn.Module, kind: type[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of every ``kind`` module of ``model`` while the block runs."""
    outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        for module in model.modules()
        if isinstance(module, kind)
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _first_batch_outputs(workload: Workload, kind: type[nn.Module]) -> list[torch.Tensor]:
    """The outputs of the ``kind`` modules on the workload's first batch, without gradients."""
    x, _ = next(workload.batches())
    with _outputs_of(workload.model, kind) as outputs, torch.no_grad():
        workload.model(x)
    return list(outputs)


def _dead_share(workload: Workload) -> float:
    """The share of hidden ReLU units that output zero for every sample of the first batch."""
    outputs = _first_batch_outputs(workload, nn.ReLU)
    dead = sum(int(((out > 0).sum(dim=0) == 0).sum()) for out in outputs)
    return dead / sum(out.shape[1] for out in outputs)


def _saturated_share(workload: Workload) -> float:
    """The share of tanh outputs on the first batch whose magnitude exceeds 0.99."""
    outputs = _first_batch_outputs(workload, nn.Tanh)
    saturated = sum(int((out.abs() > 0.99).sum()) for out in outputs)
    return saturated / sum(out.numel() for out in outputs)


def _trend(losses: list[float]) -> tuple[float, float]:
    """The least-squares drop of ``losses`` across their window, and their residual std."""
    n = len(losses)
    t_mean, y_mean = (n - 1) / 2, statistics.fmean(losses)
    spread = sum((t - t_mean) ** 2 for t in range(n))
    slope = sum((t - t_mean) * (y - y_mean) for t, y in enumerate(losses)) / spread
    residuals = [y - (y_mean + slope * (t - t_mean)) for t, y in enumerate(losses)]
    return -slope * (n - 1), statistics.pstdev(residuals)


# --- the registry --------------------------------------------------------------------------------


def test_health_planted_lists_the_seven_kinds_and_each_is_registered() -> None:
    assert health.HEALTH_PLANTED == {
        "deep-sigmoid": "vanishing_gradients",
        "bad-init": "exploding_gradients",
        "lr-100x": "lr_too_high",
        "lr-1000x-low": "lr_too_low",
        "dead-relu": "dead_units",
        "saturated-tanh": "saturated_activations",
        "plateau": "loss_plateau",
    }
    entries = {entry.name: entry for entry in zoo.entries()}
    for name, kind in health.HEALTH_PLANTED.items():
        assert name in zoo.names()
        assert entries[name].mode == "train"
        assert entries[name].summary.endswith(f"(planted: {kind})")
    assert health.HEALTH_CONTROLS == ("healthy-mlp", "digits-cnn")
    assert all(name in zoo.names() for name in health.HEALTH_CONTROLS)
    assert entries["healthy-mlp"].summary.endswith("(healthy control)")


@pytest.mark.parametrize("name", [*health.HEALTH_PLANTED, "healthy-mlp"])
def test_workload_contract(name: str) -> None:
    workload = _build(name, 0)
    assert workload.name == name
    assert workload.mode == "train"
    assert workload.metric == "accuracy" and workload.greater_is_better
    assert workload.description and "\n" not in workload.description
    x, y = next(workload.batches())
    assert x.shape[0] == y.shape[0] == 64
    assert workload.evaluate is not None
    accuracy = workload.evaluate(workload.model)
    assert isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0
    smaller = zoo.get(name, batch_size=16)
    assert next(smaller.batches())[0].shape[0] == 16


@pytest.mark.parametrize("name", [*health.HEALTH_PLANTED, "healthy-mlp"])
def test_builders_are_deterministic_and_leave_the_global_rng_alone(name: str) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(1)
    torch.manual_seed(1234)
    first, again, other = _build(name, 0), _build(name, 0), _build(name, 1)
    assert torch.equal(torch.rand(1), expected)
    assert torch.equal(_flat_parameters(first.model), _flat_parameters(again.model))
    assert not torch.equal(_flat_parameters(first.model), _flat_parameters(other.model))
    assert torch.equal(next(first.batches())[0], next(again.batches())[0])


# --- the symptoms --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_deep_sigmoid_gradients_vanish_towards_the_input(seed: int) -> None:
    workload = _build("deep-sigmoid", seed)
    linears = _linears(workload.model)
    ratios: list[float] = []

    def measure(step: int) -> None:
        ratios.append(_grad_norm(linears[0].weight) / _grad_norm(linears[-1].weight))

    _train(workload, 30, measure)
    assert max(ratios) < 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_bad_init_gradients_explode(seed: int) -> None:
    workload = _build("bad-init", seed)
    model = workload.model
    linears = _linears(model)
    # dL/d(output) of each Linear: the gradient as it travels back through the layers.
    output_grads: dict[int, float] = {}

    def keep_output_grad(index: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            def store(grad: torch.Tensor) -> None:
                output_grads[index] = float(grad.norm())

            out.register_hook(store)

        return hook

    handles = [
        linear.register_forward_hook(keep_output_grad(i)) for i, linear in enumerate(linears)
    ]
    weight_norms: list[list[float]] = []

    def measure(step: int) -> None:
        weight_norms.append([_grad_norm(linear.weight) for linear in linears])

    try:
        losses = _train(workload, 30, measure)
    finally:
        for handle in handles:
            handle.remove()
    first_step = weight_norms[0]
    # Every layer's gradient is thousands where a healthy one is about 0.1; the first layer's
    # is as large as the head's, nothing vanishes on the way back.
    assert min(first_step) > 1e3
    assert first_step[0] > 0.3 * first_step[-1]
    # The backpropagated gradient grows by ~5.7 per layer towards the input (last step's).
    assert output_grads[0] > 100 * output_grads[len(linears) - 2]
    # It stays huge while training and the loss stays finite.
    assert min(math.sqrt(sum(n * n for n in norms)) for norms in weight_norms) > 1e2
    assert all(math.isfinite(loss) for loss in losses)


@pytest.mark.parametrize("seed", SEEDS)
def test_lr_100x_loss_rises_and_does_not_come_down(seed: int) -> None:
    losses = _train(_build("lr-100x", seed), 40)
    start = losses[0]
    assert not all(math.isfinite(loss) for loss in losses) or (
        max(losses[:10]) > 10 * start
        and statistics.fmean(losses) > start
        and statistics.fmean(losses[-10:]) > 0.75 * start
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_lr_1000x_low_weights_barely_move(seed: int) -> None:
    workload = _build("lr-1000x-low", seed)
    before = _flat_parameters(workload.model)
    losses = _train(workload, 30)
    change = float((_flat_parameters(workload.model) - before).norm() / before.norm())
    assert change < 1e-4
    assert abs(statistics.fmean(losses[-10:]) - statistics.fmean(losses[:10])) < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_dead_relu_most_units_never_fire(seed: int) -> None:
    workload = _build("dead-relu", seed)
    assert _dead_share(workload) >= 0.5
    _train(workload, 30)
    # Dead units get no gradient, so training does not revive them.
    assert _dead_share(workload) >= 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_saturated_tanh_outputs_sit_at_their_limits(seed: int) -> None:
    workload = _build("saturated-tanh", seed)
    assert _saturated_share(workload) >= 0.5
    _train(workload, 30)
    assert _saturated_share(workload) >= 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_plateau_loss_is_flat_with_healthy_updates(seed: int) -> None:
    ratios: list[float] = []
    losses = _train(_build("plateau", seed), 60, update_ratios=ratios)
    drop, noise = _trend(losses[10:])
    assert drop < 2 * noise
    assert abs(statistics.fmean(losses[-20:]) - math.log(10)) < 0.05
    assert 1e-5 < statistics.median(ratios) < 1e-1


@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_mlp_learns(seed: int) -> None:
    workload = _build("healthy-mlp", seed)
    losses = _train(workload, 200)
    assert workload.evaluate is not None
    assert workload.evaluate(workload.model) >= 0.90
    blocks = [statistics.fmean(losses[start : start + 50]) for start in range(0, 200, 50)]
    assert all(blocks[i + 1] < blocks[i] for i in range(len(blocks) - 1))
    assert blocks[-1] < 0.2 * blocks[0]
    # The plateau criterion that the planted workload meets does not fire on a healthy run.
    drop, noise = _trend(losses[10:60])
    assert drop > 2 * noise

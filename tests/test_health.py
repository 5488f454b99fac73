"""Training-health instruments on real models: numbers checked against direct computation."""

from __future__ import annotations

import math

import pytest
import torch

import pinchpoint
from pinchpoint.recorders import Recorder


def _mlp(bias: float | None = None) -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )
    if bias is not None:
        for layer in (model[0], model[2]):
            torch.nn.init.constant_(layer.bias, bias)
    return model


def _train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    data: torch.Tensor | None = None,
) -> pinchpoint.Profile:
    x = torch.randn(32, 8) if data is None else data
    y = torch.randint(0, 3, (32,))
    rec = Recorder(model, optimizer, warmup=0, sample=False, activation_every=2)
    for _ in range(steps):
        with rec.step():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            rec.record_loss(loss)
            loss.backward()
            optimizer.step()
    rec.close()
    return rec.profile()


def test_per_layer_gradient_norms_and_update_ratios_are_exact() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    rec = Recorder(model, optimizer, warmup=0, sample=False)
    with rec.step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = {
            name: torch.cat([p.grad.flatten() for p in m.parameters()]).norm().item()
            for name, m in (("0", model[0]), ("2", model[2]), ("4", model[4]))
        }
        before = {
            name: torch.cat([p.detach().flatten() for p in m.parameters()]).clone()
            for name, m in (("0", model[0]), ("2", model[2]), ("4", model[4]))
        }
        optimizer.step()
    rec.close()
    health = rec.profile().health
    assert health is not None and health.layers == ["0", "2", "4"]
    assert health.grad_norm[0] == pytest.approx([grads["0"], grads["2"], grads["4"]], rel=1e-5)
    for column, name in enumerate(["0", "2", "4"]):
        module = model[int(name)]
        after = torch.cat([p.detach().flatten() for p in module.parameters()])
        expected = (after - before[name]).norm().item() / after.norm().item()
        assert health.update_ratio[0][column] == pytest.approx(expected, rel=1e-4)
    total = math.sqrt(sum(g * g for g in grads.values()))
    assert rec.profile().steps[0].grad_norm == pytest.approx(total, rel=1e-5)


def test_dead_units_are_measured_on_sampled_steps() -> None:
    healthy = _train(_mlp(), torch.optim.SGD(_mlp().parameters(), lr=0.0), steps=3).health
    dead = _train(_mlp(bias=-10.0), torch.optim.SGD(_mlp().parameters(), lr=0.0), steps=3).health
    assert healthy is not None and dead is not None
    assert dead.activation_layers == ["1", "3"] and dead.activation_kinds == ["relu", "relu"]
    assert dead.activation_steps == [0, 2]
    assert dead.dead_share[0][0] == 1.0  # every unit of the first ReLU is off for every sample
    assert healthy.dead_share[0][0] < 0.5


def test_saturation_of_tanh_and_sigmoid() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1), torch.nn.Sigmoid()
    )
    rec = Recorder(model, None, warmup=0, sample=False)
    with rec.step():
        model(torch.randn(64, 8) * 100).sum().backward()
    rec.close()
    health = rec.profile().health
    assert health is not None and health.activation_kinds == ["tanh", "sigmoid"]
    assert health.saturated_share[0][0] > 0.9


def test_the_first_nan_is_located() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    rec = Recorder(model, optimizer, warmup=0, sample=False)
    for step in range(4):
        with rec.step():
            if step == 2:
                with torch.no_grad():
                    model[2].weight[0, 0] = float("nan")  # a weight goes bad between steps
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            rec.record_loss(loss)
            loss.backward()
            optimizer.step()
    rec.close()
    nonfinite = rec.profile().health.nonfinite
    assert nonfinite is not None and nonfinite["step"] == 2
    assert (nonfinite["in"], nonfinite["tensor"]) == ("weights", "2.weight")
    # The update spread it everywhere; the next step's module hooks still report a module.
    assert nonfinite["first_nonfinite_output"] in ("0", "2")


def test_health_survives_the_json_round_trip(tmp_path) -> None:
    profile = _train(_mlp(), torch.optim.Adam(_mlp().parameters(), lr=1e-3), steps=3)
    path = tmp_path / "p.json"
    profile.save(path)
    assert pinchpoint.Profile.load(path).health == profile.health

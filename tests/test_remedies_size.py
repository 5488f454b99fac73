"""Tests of the model-size remedies: pruning (four methods) and knowledge distillation.

The structured surgery is checked on tiny hand-built models where the right answer is known
(a channel whose contribution is zero can be removed without changing the output), on a tiny
random transformers ``BertModel``, and on the zoo's digits CNN trained once per module, where
fine-tuning and distillation must bring the smaller model back close to the original accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from pinchpoint._threads import torch_threads
from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import apply, config_from_dict
from pinchpoint.remedies.distill import Distill, build_student
from pinchpoint.remedies.prune import Prune
from pinchpoint.workload import Workload

torch = pytest.importorskip("torch")
nn = torch.nn


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _snapshot(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model: Any, snapshot: dict[str, Any]) -> bool:
    state = model.state_dict()
    return state.keys() == snapshot.keys() and all(
        state[k].shape == v.shape and torch.equal(state[k], v) for k, v in snapshot.items()
    )


def _train(workload: Workload, steps: int) -> None:
    batches = workload.batches()
    for _ in range(steps):
        workload.optimizer.zero_grad()
        workload.loss(workload.model, next(batches)).backward()
        workload.optimizer.step()


@pytest.fixture(scope="module")
def digits() -> Workload:
    """zoo:digits-cnn trained 300 steps (it starts untrained), about 97 % held-out accuracy."""
    pytest.importorskip("sklearn")
    from pinchpoint.zoo import get

    # One thread: the remedies' fine-tuning and distillation run under the workload's setting,
    # and a single thread is the fastest on a small shared CPU.
    workload = dataclasses.replace(get("digits-cnn", seed=0), threads=1)
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        _train(workload, 300)
    return workload


@pytest.fixture(scope="module")
def digits_accuracy(digits: Workload) -> float:
    assert digits.evaluate is not None
    accuracy = digits.evaluate(digits.model)
    assert accuracy > 0.93
    return accuracy


def _cnn() -> Any:
    """Conv -> BN -> ReLU -> Conv -> ReLU -> pool -> flatten -> Linear -> ReLU -> Linear."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 10, 3, padding=1),
        nn.BatchNorm2d(10),
        nn.ReLU(),
        nn.Conv2d(10, 10, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(10 * 4 * 4, 10),
        nn.ReLU(),
        nn.Linear(10, 5),
    )
    with torch.no_grad():
        # Random running statistics, so slicing the wrong BatchNorm channels would show.
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model.eval()


def _infer(model: Any, data: Any) -> Workload:
    return Workload(model=model, data=data, threads=1)


# --- channels ------------------------------------------------------------------------------


def test_channel_pruning_shrinks_digits_cnn_shapes_and_parameters(digits: Workload) -> None:
    before = _count(digits.model)
    pruned = apply(digits, Prune(method="channels", amount=0.5)).model
    conv1, conv2, hidden, classifier = pruned[0], pruned[2], pruned[6], pruned[8]
    assert tuple(conv1.weight.shape) == (8, 1, 3, 3)
    assert tuple(conv2.weight.shape) == (16, 8, 3, 3)
    # The flatten multiplies the 16 kept channels by the 4 x 4 spatial positions.
    assert tuple(hidden.weight.shape) == (32, 16 * 16)
    assert tuple(classifier.weight.shape) == (10, 32)  # the classes stay
    after = _count(pruned)
    assert after == 8 * 9 + 8 + 16 * 8 * 9 + 16 + 32 * 256 + 32 + 10 * 32 + 10
    # Removing half of the channels on both sides of a layer removes about 3/4 of its weights.
    assert 0.2 < after / before < 0.3
    x = torch.rand(7, 1, 8, 8)
    assert pruned(x).shape == (7, 10)


def test_channel_pruning_removes_zero_contribution_channels_exactly() -> None:
    model = _cnn()
    with torch.no_grad():
        # Channel 3 of the first conv is the weakest, and the next conv ignores it.
        model[0].weight[3] *= 1e-3
        model[3].weight[:, 3] = 0
        # Channel 7 of the second conv is the weakest; the Linear after the flatten ignores
        # its 16 spatial positions (7 * 16 .. 8 * 16 - 1).
        model[3].weight[7] *= 1e-3
        model[7].weight[:, 7 * 16 : 8 * 16] = 0
        # Hidden unit 6 of the first Linear is the weakest; the classifier ignores it.
        model[7].weight[6] *= 1e-3
        model[9].weight[:, 6] = 0
    x = torch.rand(6, 3, 8, 8)
    expected = model(x)
    pruned = apply(_infer(model, x), Prune(method="channels", amount=0.1)).model
    assert tuple(pruned[0].weight.shape) == (9, 3, 3, 3)
    assert tuple(pruned[3].weight.shape) == (9, 9, 3, 3)
    assert tuple(pruned[7].weight.shape) == (9, 9 * 16)
    assert tuple(pruned[9].weight.shape) == (5, 9)
    kept = [i for i in range(10) if i != 3]
    assert pruned[1].num_features == 9
    assert torch.equal(pruned[1].running_mean, model[1].running_mean[kept])
    assert torch.equal(pruned[1].running_var, model[1].running_var[kept])
    torch.testing.assert_close(pruned(x), expected, rtol=0, atol=1e-5)


def test_tiny_channel_pruning_keeps_the_output_close(
    digits: Workload, digits_accuracy: float
) -> None:
    assert digits.evaluate is not None
    pruned = apply(digits, Prune(method="channels", amount=0.05)).model
    shapes = [tuple(m.weight.shape) for m in pruned if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert shapes == [(15, 1, 3, 3), (30, 15, 3, 3), (61, 30 * 16), (10, 61)]
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, out = digits.model(x), pruned(x)
    assert out.shape == expected.shape
    assert float((out - expected).norm() / expected.norm()) < 0.2
    assert digits.evaluate(pruned) >= digits_accuracy - 0.01


def test_channel_pruning_follows_fx_functions_and_leaves_residuals_whole() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 12, 3, padding=1)
            self.fc = nn.Linear(12 * 2 * 2, 3)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.stem(x))
            x = x + torch.nn.functional.relu(self.body(x))  # a residual: stem and body stay
            x = torch.nn.functional.max_pool2d(self.head(x), 2)
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(0)
    model = Net()
    x = torch.rand(2, 1, 4, 4)
    pruned = apply(_infer(model, x), Prune(amount=0.5)).model
    assert type(pruned) is Net
    assert pruned.stem.out_channels == 8 and pruned.body.out_channels == 8
    assert pruned.head.out_channels == 6
    assert tuple(pruned.fc.weight.shape) == (3, 6 * 4)
    assert pruned(x).shape == (2, 3)


def test_channel_pruning_of_an_untraceable_model_is_a_clear_error() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: Any) -> Any:
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                x = -x
            return self.b(torch.relu(self.a(x)))

    x = torch.rand(2, 4)
    with pytest.raises(WorkloadError, match=r"cannot trace Dynamic with torch\.fx"):
        apply(_infer(Dynamic(), x), Prune(amount=0.5))
    with pytest.raises(WorkloadError, match="nothing to prune"):
        apply(_infer(nn.Sequential(nn.Linear(4, 2)), x), Prune(amount=0.5))


# --- magnitude -----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0.3, 0.8])
def test_magnitude_pruning_zeroes_the_fraction_asked(amount: float) -> None:
    model = _cnn()
    x = torch.rand(2, 3, 8, 8)
    pruned = apply(_infer(model, x), Prune(method="magnitude", amount=amount)).model
    weights = [m.weight for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(amount * total)
    # Permanent: plain parameters again, no masks, and the shapes are unchanged.
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())
    assert _count(pruned) == _count(model)
    assert Prune(method="magnitude").gate(None) is not None  # type: ignore[arg-type]
    assert Prune(method="channels").gate(None) is None  # type: ignore[arg-type]


# --- transformers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert() -> tuple[Any, list[dict[str, Any]]]:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=32,
        initializer_range=0.3,  # large weights, so the layers matter next to the residuals
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.BertModel(config).eval()
    generator = torch.Generator().manual_seed(1)
    data = []
    for _ in range(4):
        ids = torch.randint(0, 100, (4, 12), generator=generator)
        mask = torch.ones(4, 12, dtype=torch.long)
        mask[0, 9:] = 0
        data.append({"input_ids": ids, "attention_mask": mask})
    return model, data


def _hidden_cosine(model: Any, reference: Any, data: list[dict[str, Any]]) -> float:
    """Mean per-token cosine of ``model``'s last hidden states to ``reference``'s."""
    similarity = [
        torch.nn.functional.cosine_similarity(_hidden(model, b), _hidden(reference, b), dim=-1)
        for b in data
    ]
    return float(torch.stack(similarity).mean())


def _hidden(model: Any, batch: dict[str, Any]) -> Any:
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_heads_pruning_shrinks_attention_and_still_runs(tiny_bert: Any) -> None:
    model, data = tiny_bert
    pruned = apply(_infer(model, data), Prune(method="heads", amount=0.5)).model
    for layer in pruned.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads == 2 and attention.all_head_size == 32
        for name in ("query", "key", "value"):
            assert tuple(getattr(attention, name).weight.shape) == (32, 64)
        assert tuple(layer.attention.output.dense.weight.shape) == (64, 32)
    assert _hidden(pruned, data[0]).shape == (4, 12, 64)
    # Even at 0.9, every layer keeps one head.
    one = apply(_infer(model, data), Prune(method="heads", amount=0.9)).model
    assert all(layer.attention.self.num_attention_heads == 1 for layer in one.encoder.layer)
    assert _hidden(one, data[0]).shape == (4, 12, 64)


def test_removing_a_zero_head_leaves_the_output_unchanged(tiny_bert: Any) -> None:
    model = copy.deepcopy(tiny_bert[0])
    data = tiny_bert[1]
    size = 16
    with torch.no_grad():
        for layer, head in zip(model.encoder.layer, (2, 0), strict=True):
            rows = slice(head * size, (head + 1) * size)
            for name in ("query", "key", "value"):
                getattr(layer.attention.self, name).weight[rows] = 0
                getattr(layer.attention.self, name).bias[rows] = 0
            layer.attention.output.dense.weight[:, rows] = 0
    expected = _hidden(model, data[0])
    pruned = apply(_infer(model, data), Prune(method="heads", amount=0.25)).model
    assert all(layer.attention.self.num_attention_heads == 3 for layer in pruned.encoder.layer)
    torch.testing.assert_close(_hidden(pruned, data[0]), expected, rtol=0, atol=1e-5)
    # Cutting a head that matters does change the output.
    other = apply(_infer(tiny_bert[0], data), Prune(method="heads", amount=0.25)).model
    assert float((_hidden(other, data[0]) - _hidden(tiny_bert[0], data[0])).abs().max()) > 1e-3


def test_mlp_pruning_shrinks_transformer_ffns_and_plain_mlps(tiny_bert: Any) -> None:
    model, data = tiny_bert
    pruned = apply(_infer(model, data), Prune(method="mlp", amount=0.75)).model
    for layer in pruned.encoder.layer:
        assert tuple(layer.intermediate.dense.weight.shape) == (32, 64)
        assert tuple(layer.output.dense.weight.shape) == (64, 32)
        assert layer.attention.self.num_attention_heads == 4
    assert pruned.config.intermediate_size == 32 and model.config.intermediate_size == 128
    assert _hidden(pruned, data[0]).shape == (4, 12, 64)

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 24), nn.Tanh())
    mlp.append(nn.Linear(24, 3))
    x = torch.randn(5, 8)
    small = apply(_infer(mlp, x), Prune(method="mlp", amount=0.5)).model
    assert [tuple(m.weight.shape) for m in small if isinstance(m, nn.Linear)] == [
        (16, 8),
        (12, 16),
        (3, 12),
    ]
    assert small(x).shape == (5, 3)


# --- fine-tuning and distillation on digits ------------------------------------------------


def test_finetuning_recovers_the_accuracy_of_a_half_pruned_cnn(
    digits: Workload, digits_accuracy: float
) -> None:
    assert digits.evaluate is not None
    cut = apply(digits, Prune(amount=0.5))
    tuned = apply(digits, Prune(amount=0.5, finetune_steps=150))
    cut_accuracy = digits.evaluate(cut.model)
    tuned_accuracy = digits.evaluate(tuned.model)
    assert cut_accuracy < digits_accuracy - 0.05  # cutting half of the channels hurts...
    assert tuned_accuracy >= digits_accuracy - 0.03  # ...and fine-tuning brings it back
    assert _count(tuned.model) < _count(digits.model) / 3
    # The result trains: its optimizer is of the workload's class, over the pruned parameters.
    assert type(tuned.optimizer) is type(digits.optimizer)
    optimized = {id(p) for g in tuned.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in tuned.model.parameters()}
    assert tuned.applied == (
        "prune(method=channels, amount=0.5, finetune_steps=150, lr=None, importance=l1)",
    )


def test_fine_tuning_without_a_loss_matches_the_unpruned_outputs(tiny_bert: Any) -> None:
    model, data = tiny_bert
    snapshot = _snapshot(model)

    def cosine(pruned: Any) -> float:
        return _hidden_cosine(pruned, model, data)

    workload = _infer(model, data)  # no loss, so no labels: the original model is the target
    cut = apply(workload, Prune(method="heads", amount=0.5)).model.eval()
    tuned = apply(workload, Prune(method="heads", amount=0.5, finetune_steps=60, lr=1e-3))
    assert _same(model, snapshot) and not model.training
    assert tuned.model.encoder.layer[0].attention.self.num_attention_heads == 2
    assert cosine(tuned.model.eval()) > cosine(cut) + 0.05


def test_distilled_student_is_smaller_and_close_to_the_teacher(
    digits: Workload, digits_accuracy: float
) -> None:
    assert digits.evaluate is not None
    snapshot = _snapshot(digits.model)
    result = apply(digits, Distill(width=0.5, steps=200))
    student = result.model
    assert _same(digits.model, snapshot) and digits.model.training
    assert _count(student) < _count(digits.model) / 3
    untrained = build_student(digits.model, 0.5, None)
    assert _count(untrained) == _count(student)
    accuracy = digits.evaluate(student)
    assert accuracy > 0.9  # chance is 0.1
    assert accuracy >= digits_accuracy - 0.04
    assert accuracy > digits.evaluate(untrained) + 0.05  # it was trained, not only cut
    assert result.mode == "train" and type(result.optimizer) is type(digits.optimizer)
    optimized = {id(p) for g in result.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in student.parameters()}


def test_distilling_a_transformer_on_its_hidden_states(tiny_bert: Any) -> None:
    model, data = tiny_bert
    snapshot = _snapshot(model)

    def cosine(student: Any) -> float:
        return _hidden_cosine(student, model, data)

    result = apply(_infer(model, data), Distill(width=0.5, layers=1, steps=60))
    student = result.model
    assert _same(model, snapshot) and not model.training
    assert len(student.encoder.layer) == 1 and student.config.num_hidden_layers == 1
    assert model.config.num_hidden_layers == 2
    assert student.encoder.layer[0].attention.self.num_attention_heads == 2
    assert student.encoder.layer[0].intermediate.dense.out_features == 64
    assert result.optimizer is None and not student.training
    start = cosine(build_student(model, 0.5, 1).eval())
    assert cosine(student) > start + 0.2


# --- settings, purity, round trips ---------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Prune(method="random"), "prune method"),
        (lambda: Prune(amount=0), "prune amount"),
        (lambda: Prune(amount=1.0), "prune amount"),
        (lambda: Prune(amount=float("nan")), "prune amount"),
        (lambda: Prune(finetune_steps=-1), "finetune_steps"),
        (lambda: Prune(finetune_steps=True), "finetune_steps"),
        (lambda: Prune(lr=0.0), "prune lr"),
        (lambda: Prune(importance="l3"), "importance"),
        (lambda: Distill(width=0), "width"),
        (lambda: Distill(width=1.5), "width"),
        (lambda: Distill(width=1.0), "copy of the teacher"),
        (lambda: Distill(layers=0), "layers"),
        (lambda: Distill(temperature=0), "temperature"),
        (lambda: Distill(alpha=1.5), "alpha"),
        (lambda: Distill(steps=0), "steps"),
        (lambda: Distill(lr=-1e-3), "lr"),
        (lambda: Distill(seed=-1), "seed"),
    ],
)
def test_bad_settings_raise_value_error(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "config",
    [
        Prune(method="channels", amount=0.3, importance="l2"),
        Prune(method="magnitude", amount=0.6),
        Prune(method="mlp", amount=0.25),
    ],
    ids=["channels", "magnitude", "mlp"],
)
def test_apply_never_changes_the_callers_model(config: Prune) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = [(torch.randn(4, 6), torch.randint(0, 2, (4,)))]

    def loss(m: Any, batch: Any) -> Any:
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    workload = Workload(model=model, data=data, loss=loss, optimizer=optimizer)
    snapshot = _snapshot(model)
    tuned = dataclasses.replace(config, finetune_steps=3)
    result = apply(workload, tuned)
    assert _same(model, snapshot) and model.training
    assert result.model is not model and workload.optimizer is optimizer
    assert all(p.grad is None for p in model.parameters())
    assert result.optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    "config",
    [
        Prune(),
        Prune(method="heads", amount=0.25, finetune_steps=10, lr=1e-4, importance="l2"),
        Distill(),
        Distill(width=0.35, layers=3, temperature=2.0, alpha=0.5, steps=50, lr=3e-4, seed=7),
    ],
)
def test_config_round_trip(config: Any) -> None:
    assert config_from_dict(config.to_dict()) == config
    assert config.name in ("prune", "distill")
    assert config.addresses in (("prune_structured",), ("distill",))

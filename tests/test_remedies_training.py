"""The training remedies, on tiny models: each one changes what it should, in real steps."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from pinchpoint import WorkloadError
from pinchpoint._profile import Machine
from pinchpoint.recorders import profile
from pinchpoint.remedies._base import RemedyConfig, apply, config_from_dict
from pinchpoint.remedies.training import (
    ActivationCheckpointing,
    DataLoaderSettings,
    GradAccumulation,
    GradClip,
    LRSchedule,
    MixedPrecision,
    OptimizerSettings,
    checkpoint_blocks,
)
from pinchpoint.workload import Workload


class _Block(nn.Module):
    """A residual linear block: the repeated unit activation checkpointing wraps."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + torch.relu(self.linear(x))
        return out


class _DtypeProbe(nn.Module):
    """Passes its input through and keeps the dtype of every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.dtype)
        return x


class _Net(nn.Module):
    """An input layer, a stack of three blocks, a probe and a head."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(3))
        self.probe = _DtypeProbe()
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.head(self.probe(x))
        return out


def _mse(model: Any, batch: Any) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x).float(), y)


def _data(samples: int = 64, scale: float = 1.0) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 8, generator=generator)
    return TensorDataset(x, scale * torch.randn(samples, 1, generator=generator))


def _workload(
    data: Any = None,
    optimizer: Callable[[Any], Any] = lambda params: torch.optim.SGD(params, lr=0.1),
    scale: float = 1.0,
) -> Workload:
    torch.manual_seed(0)
    model = _Net()
    if data is None:
        data = DataLoader(
            _data(scale=scale),
            batch_size=8,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(1),
        )
    return Workload(model=model, data=data, loss=_mse, optimizer=optimizer(model.parameters()))


def _grad_norm(optimizer: Any, norm_type: float = 2.0) -> float:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads, norm_type))


CONFIGS: list[RemedyConfig] = [
    DataLoaderSettings(num_workers=0, pin_memory=False),
    OptimizerSettings(foreach=True),
    MixedPrecision("bf16"),
    GradClip(max_norm=0.5, norm_type=1.0),
    LRSchedule("exponential", warmup_steps=2, gamma=0.5, min_lr_ratio=0.1),
    GradAccumulation(steps=3),
    ActivationCheckpointing(),
]


# ---------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_configs_round_trip_and_name_their_catalog_remedies(config: RemedyConfig) -> None:
    assert config_from_dict(config.to_dict()) == config
    assert config.to_dict()["remedy"] == config.name
    assert "train" in config.modes and config.addresses


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DataLoaderSettings(), "changes nothing"),
        (lambda: DataLoaderSettings(num_workers=-1), "num_workers must be at least 0"),
        (lambda: DataLoaderSettings(num_workers=True), "num_workers must be an integer"),
        (lambda: DataLoaderSettings(prefetch_factor=0), "prefetch_factor must be at least 1"),
        (lambda: DataLoaderSettings(num_workers=0, prefetch_factor=2), "needs workers"),
        (lambda: DataLoaderSettings(num_workers=0, persistent_workers=True), "needs workers"),
        (lambda: DataLoaderSettings(pin_memory=1), "pin_memory must be True, False or None"),
        (lambda: OptimizerSettings(), "changes nothing"),
        (lambda: OptimizerSettings(foreach=True, fused=True), "cannot both be True"),
        (lambda: MixedPrecision("int8"), "dtype must be 'bf16' or 'fp16'"),
        (lambda: GradClip(max_norm=0.0), "max_norm must be positive"),
        (lambda: GradClip(max_norm=math.inf), "max_norm must be positive and finite"),
        (lambda: GradClip(norm_type=-1.0), "norm_type must be positive"),
        (lambda: GradClip(max_norm="1"), "max_norm must be a number"),
        (lambda: LRSchedule("linear"), "kind must be one of cosine, exponential, constant"),
        (lambda: LRSchedule(warmup_steps=-1), "warmup_steps must be at least 0"),
        (lambda: LRSchedule(total_steps=0), "total_steps must be at least 1"),
        (lambda: LRSchedule(warmup_steps=10, total_steps=10), "must be fewer than total_steps"),
        (lambda: LRSchedule(gamma=1.5), r"gamma must be in \(0, 1\]"),
        (lambda: LRSchedule(min_lr_ratio=2.0), r"min_lr_ratio must be in \[0, 1\]"),
        (lambda: LRSchedule("constant"), "without warm-up changes nothing"),
        (lambda: GradAccumulation(1), "steps must be at least 2"),
        (lambda: GradAccumulation(2.5), "steps must be an integer"),
        (lambda: ActivationCheckpointing(""), "modules must be"),
    ],
)
def test_bad_settings_raise_value_error(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_workload_refuses_bad_training_settings() -> None:
    model = nn.Linear(2, 1)
    base: dict[str, Any] = {
        "model": model,
        "data": torch.zeros(2, 2),
        "loss": _mse,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
    }
    for field, value, message in [
        ("accumulate", 0, "accumulate must be at least 1"),
        ("accumulate", 1.5, "accumulate must be an integer"),
        ("autocast", "int8", "autocast must be None, 'bf16' or 'fp16'"),
        ("max_grad_norm", 0.0, "max_grad_norm must be positive"),
        ("grad_norm_type", 0.0, "grad_norm_type must be positive"),
        ("lr_schedule", 3, "lr_schedule must be a function"),
    ]:
        with pytest.raises(WorkloadError, match=message):
            Workload(**base, **{field: value})


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_callers_workload_is_unchanged_and_the_remedy_runs_under_the_recorder(
    config: RemedyConfig,
) -> None:
    workload = _workload()
    loader = workload.data
    state = {k: v.clone() for k, v in workload.model.state_dict().items()}
    groups = [
        {k: v for k, v in g.items() if k != "params"} for g in workload.optimizer.param_groups
    ]
    generator_state = loader.generator.get_state()

    remedied = apply(workload, config)
    assert torch.equal(loader.generator.get_state(), generator_state)
    result = profile(remedied, steps=3, warmup=1, device="cpu")

    assert remedied.applied == (config.label(),)
    assert result.mode == "train" and len(result.steps) == 6
    assert all(step.loss is not None and math.isfinite(step.loss) for step in result.steps)
    # The remedied copy trained; the caller's model, optimizer and loader did not move.
    assert not torch.equal(remedied.model.head.weight, state["head.weight"])
    assert all(torch.equal(v, state[k]) for k, v in workload.model.state_dict().items())
    assert [
        {k: v for k, v in g.items() if k != "params"} for g in workload.optimizer.param_groups
    ] == groups
    assert not workload.optimizer.state
    assert workload.data is loader and loader.batch_size == 8 and loader.num_workers == 0
    if isinstance(config, DataLoaderSettings):
        # Only a rebuilt loader has a generator of its own; the others share the caller's data.
        assert torch.equal(loader.generator.get_state(), generator_state)
    assert all("forward" not in m.__dict__ for m in workload.model.modules())
    assert (workload.accumulate, workload.autocast, workload.max_grad_norm) == (1, None, None)
    assert workload.lr_schedule is None and workload.applied == ()
    # The training loop's own optimizer hooks are gone once the run ends.
    assert not remedied.optimizer._optimizer_step_pre_hooks
    assert not remedied.optimizer._optimizer_step_post_hooks


# ---------------------------------------------------------------------------------------------
# DataLoader


def test_dataloader_is_rebuilt_with_new_settings_and_the_same_batches() -> None:
    workload = _workload()
    loader = workload.data
    settings = DataLoaderSettings(num_workers=1, prefetch_factor=3, persistent_workers=True)
    rebuilt = apply(workload, settings).data

    assert rebuilt is not loader and rebuilt.dataset is loader.dataset
    assert (rebuilt.num_workers, rebuilt.prefetch_factor, rebuilt.persistent_workers) == (
        1,
        3,
        True,
    )
    assert (rebuilt.batch_size, rebuilt.drop_last) == (8, True)
    assert rebuilt.collate_fn is loader.collate_fn
    assert isinstance(rebuilt.sampler, RandomSampler)
    before = loader.generator.get_state()
    new_batches = list(rebuilt)
    # Iterating the copy leaves the caller's random state where it was...
    assert torch.equal(loader.generator.get_state(), before)
    old_batches = list(loader)
    # ...and both draw the same shuffled batches.
    assert len(new_batches) == len(old_batches) == 8
    for (new_x, new_y), (old_x, old_y) in zip(new_batches, old_batches, strict=True):
        assert torch.equal(new_x, old_x) and torch.equal(new_y, old_y)
    del rebuilt, new_batches


def test_dataloader_without_workers_drops_worker_settings() -> None:
    loader = DataLoader(_data(), batch_size=8, num_workers=2, prefetch_factor=4)
    rebuilt = apply(_workload(data=loader), DataLoaderSettings(num_workers=0, pin_memory=True)).data
    assert (rebuilt.num_workers, rebuilt.prefetch_factor, rebuilt.persistent_workers) == (
        0,
        None,
        False,
    )
    assert rebuilt.pin_memory is True and loader.pin_memory is False
    single = _workload(data=DataLoader(_data(), batch_size=8))
    with pytest.raises(ValueError, match="has no workers"):
        apply(single, DataLoaderSettings(prefetch_factor=4))


def test_dataloader_with_a_batch_sampler_keeps_its_batches() -> None:
    dataset = _data(samples=20)
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(3))
    loader = DataLoader(dataset, batch_sampler=BatchSampler(sampler, 6, drop_last=False))
    rebuilt = apply(_workload(data=loader), DataLoaderSettings(pin_memory=False)).data
    assert rebuilt.batch_sampler is not loader.batch_sampler
    new = [x for x, _ in rebuilt]
    old = [x for x, _ in loader]
    assert [len(x) for x in new] == [6, 6, 6, 2]
    assert all(torch.equal(a, b) for a, b in zip(new, old, strict=True))


def test_dataloader_settings_need_a_dataloader_and_apply_to_inference_too() -> None:
    x, y = _data(samples=16).tensors
    with pytest.raises(ValueError, match=r"needs a torch DataLoader.*is a list"):
        apply(_workload(data=[(x, y)]), DataLoaderSettings(num_workers=1))
    inference = Workload(model=nn.Linear(8, 1), data=DataLoader(x, batch_size=4))
    assert apply(inference, DataLoaderSettings(num_workers=1)).data.num_workers == 1


def test_dataloader_gate() -> None:
    cpu = Machine(cores_logical=2)
    gpu = Machine(cores_logical=32, gpu={"name": "H100", "capability": "9.0"})
    assert "no" in str(DataLoaderSettings(pin_memory=True).gate(cpu))
    assert DataLoaderSettings(pin_memory=True).gate(gpu) is None
    assert "2 logical cores" in str(DataLoaderSettings(num_workers=4).gate(cpu))
    assert DataLoaderSettings(num_workers=4).gate(gpu) is None


# ---------------------------------------------------------------------------------------------
# Optimizer


def test_optimizer_flags_land_in_every_group_and_the_update_is_the_same() -> None:
    def two_groups(params: Any) -> torch.optim.Optimizer:
        params = list(params)
        return torch.optim.Adam(
            [{"params": params[:2], "lr": 0.01}, {"params": params[2:]}], lr=0.02, betas=(0.8, 0.9)
        )

    workload = _workload(optimizer=two_groups)
    fused = apply(workload, OptimizerSettings(fused=True))
    assert type(fused.optimizer) is torch.optim.Adam
    assert [g["fused"] for g in fused.optimizer.param_groups] == [True, True]
    assert [g["lr"] for g in fused.optimizer.param_groups] == [0.01, 0.02]
    assert all(g["betas"] == (0.8, 0.9) for g in fused.optimizer.param_groups)
    assert [g["fused"] for g in workload.optimizer.param_groups] == [None, None]
    # Turning foreach on turns the fused kernel off.
    foreach = apply(fused, OptimizerSettings(foreach=True))
    assert [(g["foreach"], g["fused"]) for g in foreach.optimizer.param_groups] == [
        (True, False)
    ] * 2

    batch = next(iter(workload.data))
    for candidate in (fused, foreach, workload):
        candidate.optimizer.zero_grad()
        _mse(candidate.model, batch).backward()
        candidate.optimizer.step()
    for a, b, c in zip(
        fused.model.parameters(),
        foreach.model.parameters(),
        workload.model.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)


def test_optimizer_flags_the_class_does_not_accept_are_refused() -> None:
    rmsprop = _workload(optimizer=lambda p: torch.optim.RMSprop(p, lr=0.01))
    with pytest.raises(ValueError, match="RMSprop does not accept fused=True"):
        apply(rmsprop, OptimizerSettings(fused=True))
    assert apply(rmsprop, OptimizerSettings(foreach=True)).optimizer.defaults["foreach"] is True
    lbfgs = _workload(optimizer=lambda p: torch.optim.LBFGS(p))
    with pytest.raises(ValueError, match="LBFGS does not accept foreach=False"):
        apply(lbfgs, OptimizerSettings(foreach=False))


# ---------------------------------------------------------------------------------------------
# Mixed precision


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_runs_forward_and_loss_under_autocast(name: str, dtype: Any) -> None:
    workload = _workload()
    seen_in_loss: list[bool] = []

    def loss(model: Any, batch: Any) -> torch.Tensor:
        seen_in_loss.append(torch.is_autocast_enabled("cpu"))
        return _mse(model, batch)

    workload.loss = loss
    remedied = apply(workload, MixedPrecision(name))
    profile(remedied, steps=3, warmup=1, device="cpu", sample=False)
    assert remedied.model.probe.seen and set(remedied.model.probe.seen) == {dtype}
    assert seen_in_loss == [True] * 4
    # Weights and gradients keep their own precision.
    assert {p.dtype for p in remedied.model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in remedied.model.parameters()} == {torch.float32}
    profile(workload, steps=1, warmup=0, device="cpu", sample=False)
    assert set(workload.model.probe.seen) == {torch.float32}
    assert seen_in_loss[-1] is False


def test_mixed_precision_gate() -> None:
    plain = Machine(cpu_flags=["avx2", "avx512f"])
    amx = Machine(cpu_flags=["avx512f", "amx_bf16"])
    volta = Machine(gpu={"capability": "7.0"})
    ampere = Machine(gpu={"capability": "8.0"})
    pascal = Machine(gpu={"capability": "6.1"})
    bf16, fp16 = MixedPrecision("bf16"), MixedPrecision("fp16")
    assert "avx512_bf16" in str(bf16.gate(plain))
    assert bf16.gate(amx) is None and bf16.gate(ampere) is None
    assert "8.0" in str(bf16.gate(volta))
    assert "GPU" in str(fp16.gate(amx))
    assert fp16.gate(volta) is None and "7.0" in str(fp16.gate(pascal))


@pytest.mark.gpu
def test_fp16_on_cuda_scales_the_loss_and_clips_true_gradients() -> None:
    workload = _workload(scale=100.0)
    remedied = apply(workload, MixedPrecision("fp16"), GradClip(max_norm=0.5))
    norms: list[float] = []
    remedied.optimizer.register_step_post_hook(lambda o, a, k: norms.append(_grad_norm(o)))
    result = profile(remedied, steps=3, warmup=1, device="cuda")
    assert set(remedied.model.probe.seen) == {torch.float16}
    assert all(math.isfinite(step.loss) for step in result.steps if step.loss is not None)
    # Clipped after unscaling: the norm is the bound, not the bound over the loss scale.
    assert norms and all(0.45 <= n <= 0.5 + 1e-4 for n in norms)


# ---------------------------------------------------------------------------------------------
# Gradient clipping


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_grad_clip_bounds_the_norm_of_every_real_step(norm_type: float) -> None:
    workload = _workload(scale=100.0)
    remedied = apply(workload, GradClip(max_norm=0.5, norm_type=norm_type))
    norms: list[float] = []
    # A post-hook sees the gradients the step used, after the clipping pre-hook.
    remedied.optimizer.register_step_post_hook(
        lambda o, a, k: norms.append(_grad_norm(o, norm_type))
    )
    result = profile(remedied, steps=3, warmup=1, device="cpu")
    assert len(norms) == 6
    assert all(0.5 * 0.999 <= n <= 0.5 * (1 + 1e-5) for n in norms)
    # The recorded norm is the one before clipping: far above the bound on these targets.
    recorded = [s.grad_norm for s in result.steps if s.grad_norm is not None]
    assert recorded and min(recorded) > 5.0
    assert remedied.max_grad_norm == 0.5 and remedied.grad_norm_type == norm_type


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


def _lr_trace(workload: Workload) -> list[list[float]]:
    """The rates of every param group at each optimizer step, read as the step starts."""
    trace: list[list[float]] = []
    workload.optimizer.register_step_pre_hook(
        lambda o, a, k: trace.append([g["lr"] for g in o.param_groups])
    )
    return trace


def test_cosine_schedule_with_warmup_follows_the_closed_form() -> None:
    def two_groups(params: Any) -> torch.optim.Optimizer:
        params = list(params)
        return torch.optim.SGD([{"params": params[:2], "lr": 0.2}, {"params": params[2:]}], lr=0.1)

    workload = _workload(optimizer=two_groups)
    remedied = apply(
        workload, LRSchedule("cosine", warmup_steps=3, total_steps=11, min_lr_ratio=0.1)
    )
    trace = _lr_trace(remedied)
    profile(remedied, steps=7, warmup=1, device="cpu", sample=False)

    def expected(step: int) -> float:
        if step < 3:
            return step / 3
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 3) / 8)))

    assert len(trace) == 8
    for step, rates in enumerate(trace):
        assert rates == pytest.approx([0.2 * expected(step), 0.1 * expected(step)], rel=1e-9)
    assert trace[0] == [0.0, 0.0] and trace[3] == pytest.approx([0.2, 0.1])
    # A later run carries the schedule on, through the end of the cosine to its floor.
    profile(remedied, steps=5, warmup=1, device="cpu", sample=False)
    assert [rates[1] for rates in trace[8:]] == pytest.approx(
        [0.1 * expected(s) for s in range(8, 14)]
    )
    assert trace[-1][1] == pytest.approx(0.01)
    assert [g["lr"] for g in workload.optimizer.param_groups] == [0.2, 0.1]
    assert all("initial_lr" not in g for g in workload.optimizer.param_groups)


def test_exponential_schedule_and_its_floor() -> None:
    config = LRSchedule("exponential", warmup_steps=2, gamma=0.5, min_lr_ratio=0.1)
    remedied = apply(_workload(), config)
    trace = _lr_trace(remedied)
    profile(remedied, steps=6, warmup=1, device="cpu", sample=False)
    factors = [0.0, 0.5, 1.0, 0.5, 0.25, 0.125, 0.1]
    assert [rates[0] for rates in trace[:7]] == pytest.approx([0.1 * f for f in factors])
    assert [config.factor(s) for s in range(7)] == pytest.approx(factors)


def test_schedule_and_clipping_survive_later_remedies_that_rebuild_the_optimizer() -> None:
    workload = _workload(optimizer=lambda p: torch.optim.Adam(p, lr=0.1), scale=100.0)
    remedied = apply(
        workload,
        LRSchedule("constant", warmup_steps=4),
        GradClip(max_norm=0.5),
        OptimizerSettings(foreach=True),
        GradAccumulation(2),
        MixedPrecision("bf16"),
    )
    assert remedied.optimizer.defaults["foreach"] is True
    trace = _lr_trace(remedied)
    norms: list[float] = []
    remedied.optimizer.register_step_post_hook(lambda o, a, k: norms.append(_grad_norm(o)))
    profile(remedied, steps=3, warmup=1, device="cpu")
    # Six micro-batches, accumulated in pairs: three steps, warming up from 0.
    assert [rates[0] for rates in trace] == pytest.approx([0.0, 0.025, 0.05])
    assert len(norms) == 3 and all(n <= 0.5 * (1 + 1e-5) for n in norms)
    assert set(remedied.model.probe.seen) == {torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# Gradient accumulation


def test_accumulation_steps_once_per_cycle_on_the_big_batch_gradient() -> None:
    dataset = _data(samples=24)
    micro = [dataset[i : i + 4] for i in range(0, 24, 4)]
    # lr=0 keeps the weights fixed, so each cycle's gradient compares to one at the start.
    workload = _workload(data=micro, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    forwards = 0

    def loss(model: Any, batch: Any) -> torch.Tensor:
        nonlocal forwards
        forwards += 1
        return _mse(model, batch)

    workload.loss = loss
    remedied = apply(workload, GradAccumulation(steps=3))
    reference = copy.deepcopy(remedied.model)
    grads: list[list[torch.Tensor]] = []
    stepped_after: list[int] = []

    def keep(optimizer: Any, args: Any, kwargs: Any) -> None:
        stepped_after.append(forwards)
        grads.append([p.grad.clone() for p in remedied.model.parameters()])

    remedied.optimizer.register_step_pre_hook(keep)
    result = profile(remedied, steps=3, warmup=1, device="cpu")

    assert len(result.steps) == 6 and stepped_after == [3, 6]
    for cycle, accumulated in enumerate(grads):
        x = torch.cat([micro[i][0] for i in range(3 * cycle, 3 * cycle + 3)])
        y = torch.cat([micro[i][1] for i in range(3 * cycle, 3 * cycle + 3)])
        reference.zero_grad()
        _mse(reference, (x, y)).backward()
        for got, want in zip(accumulated, reference.parameters(), strict=True):
            torch.testing.assert_close(got, want.grad, rtol=1e-5, atol=1e-6)
    # Each recorded step is one micro-batch, with its own (undivided) loss.
    with torch.no_grad():
        first = _mse(reference, micro[0]).item()
    assert result.steps[0].loss == pytest.approx(first, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Activation checkpointing


def _encoder_workload() -> Workload:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    x = torch.randn(4, 6, 16)
    batch = (x, torch.randn(4, 6, 16))
    return Workload(
        model=model,
        data=[batch],
        loss=lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )


def _saved_and_grads(workload: Workload) -> tuple[int, list[torch.Tensor]]:
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    workload.model.train()
    torch.manual_seed(5)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = workload.loss(workload.model, workload.data[0])
    loss.backward()
    return saved, [p.grad for p in workload.model.parameters()]


def test_checkpointing_keeps_gradients_and_saves_fewer_activations() -> None:
    workload = _encoder_workload()
    remedied = apply(workload, ActivationCheckpointing())
    assert checkpoint_blocks(copy.deepcopy(workload.model)) == ["layers.0", "layers.1", "layers.2"]
    assert remedied.model.state_dict().keys() == workload.model.state_dict().keys()

    plain_saved, plain_grads = _saved_and_grads(workload)
    saved, grads = _saved_and_grads(remedied)
    # Only the blocks' inputs are kept: a small fraction of what the plain model saves.
    assert 0 < saved < plain_saved / 5
    for got, want in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # Without gradients the blocks run plainly.
    remedied.model.eval()
    workload.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            remedied.model(workload.data[0][0]), workload.model(workload.data[0][0])
        )
    result = profile(remedied, steps=3, warmup=1, device="cpu")
    assert all(math.isfinite(s.loss) for s in result.steps if s.loss is not None)


def test_checkpointing_by_name_or_class_and_refusals() -> None:
    model = _Net()
    assert checkpoint_blocks(copy.deepcopy(model), "blocks") == ["blocks.0", "blocks.1", "blocks.2"]
    assert checkpoint_blocks(copy.deepcopy(model), "_Block") == ["blocks.0", "blocks.1", "blocks.2"]
    assert checkpoint_blocks(copy.deepcopy(model), "head") == ["head"]
    twice = copy.deepcopy(model)
    checkpoint_blocks(twice)
    first = twice.blocks[0].forward
    checkpoint_blocks(twice)
    assert twice.blocks[0].forward is first
    with pytest.raises(ValueError, match="no module named 'decoder' and none of that class"):
        checkpoint_blocks(copy.deepcopy(model), "decoder")
    mlp = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    flat = Workload(
        model=mlp, data=torch.zeros(2, 8), loss=_mse, optimizer=torch.optim.SGD(mlp.parameters())
    )
    with pytest.raises(ValueError, match="no ModuleList or Sequential of repeated blocks"):
        apply(flat, ActivationCheckpointing())

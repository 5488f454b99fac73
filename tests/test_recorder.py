"""The live recorder: phase boundaries, real runs, FLOP and byte counts, memory, the user loop."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pinchpoint
from pinchpoint import PHASES, Workload, WorkloadError
from pinchpoint.recorders import FakeClock, Recorder
from pinchpoint.recorders.flops import OpCounter


class Tick(torch.autograd.Function):
    """Identity that spends planted fake time in forward and in backward."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, clock: FakeClock, fwd: float, bwd: float
    ) -> torch.Tensor:
        clock.advance(fwd)
        ctx.clock, ctx.bwd = clock, bwd
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        ctx.clock.advance(ctx.bwd)
        return grad, None, None, None


class Planted(torch.nn.Module):
    def __init__(self, clock: FakeClock, fwd: float, bwd: float) -> None:
        super().__init__()
        self.clock, self.fwd, self.bwd = clock, fwd, bwd
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Tick.apply(self.linear(x), self.clock, self.fwd, self.bwd)


class SlowSGD(torch.optim.SGD):
    def __init__(self, params: Any, clock: FakeClock, cost: float) -> None:
        super().__init__(params, lr=0.01)
        self.clock, self.cost = clock, cost

    def step(self, closure: Any = None) -> Any:
        self.clock.advance(self.cost)
        return super().step(closure)


class SlowData:
    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock, self.cost = clock, cost

    def __iter__(self) -> Any:
        while True:
            self.clock.advance(self.cost)
            yield torch.ones(3, 4)


def _planted_run(
    data: float, fwd: float, loss_cost: float, bwd: float, opt: float, other: float, steps: int = 3
) -> pinchpoint.Profile:
    clock = FakeClock()
    model = Planted(clock, fwd, bwd)
    optimizer = SlowSGD(model.parameters(), clock, opt)
    rec = Recorder(model, optimizer, warmup=1, sample=False, clock=clock)
    for batch in rec.data(SlowData(clock, data), steps=steps):
        with rec.step():
            optimizer.zero_grad()
            out = model(batch)
            clock.advance(loss_cost)
            loss = out.square().mean()
            rec.record_loss(loss)
            loss.backward()
            optimizer.step()
            clock.advance(other)
    rec.close()
    return rec.profile()


def test_phases_follow_planted_times() -> None:
    profile = _planted_run(data=0.5, fwd=1.0, loss_cost=0.25, bwd=2.0, opt=0.125, other=0.0625)
    assert len(profile.steps) == 3
    assert profile.steps[0].warmup and len(profile.measured_steps) == 2
    for step in profile.steps:
        assert step.phases == {
            "data": 0.5,
            "transfer": 0.0,
            "forward": 1.25,  # the loss computed from the model's output counts as forward
            "backward": 2.0,
            "optimizer": 0.125,
            "other": 0.0625,
        }
        assert step.wall_s == 3.9375
        assert step.loss is not None and step.grad_norm is not None
    assert profile.mode == "train"


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=6, max_size=6))
@settings(max_examples=40, deadline=None)
def test_phases_always_sum_to_wall(costs: list[float]) -> None:
    profile = _planted_run(*costs, steps=2)
    for step in profile.steps:
        assert all(v >= 0 for v in step.phases.values())
        assert sum(step.phases.values()) == pytest.approx(step.wall_s, rel=1e-9, abs=1e-12)


def test_gradient_accumulation_counts_every_forward_and_backward() -> None:
    clock = FakeClock()
    model = Planted(clock, 1.0, 3.0)
    rec = Recorder(model, None, warmup=0, sample=False, clock=clock)
    with rec.step():
        for _ in range(2):
            model(torch.ones(2, 4)).sum().backward()
            clock.advance(0.5)  # between micro-batches: other
    rec.close()
    step = rec.profile().steps[0]
    assert step.phases["forward"] == 2.0
    assert step.phases["backward"] == 6.0
    assert step.phases["other"] == 1.0
    assert step.grad_norm is not None  # no optimizer given: measured at the step's end


def test_inference_forward_ends_when_the_model_returns() -> None:
    clock = FakeClock()
    model = Planted(clock, 1.5, 0.0)
    rec = Recorder(model, warmup=0, sample=False, clock=clock)
    with rec.step(), torch.inference_mode():
        model(torch.ones(2, 4))
        clock.advance(0.25)  # post-processing after the model returns
    rec.close()
    profile = rec.profile()
    assert profile.mode == "infer"
    assert profile.steps[0].phases["forward"] == 1.5
    assert profile.steps[0].phases["other"] == 0.25


def _mlp_workload(batch: int = 16) -> Workload:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    data = [(torch.randn(batch, 32), torch.randint(0, 10, (batch,))) for _ in range(4)]
    return Workload(
        model=model,
        data=data,
        loss=lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
        name="mlp",
    )


@pytest.fixture(scope="module")
def mlp_profile() -> pinchpoint.Profile:
    return pinchpoint.profile(_mlp_workload(), steps=6, warmup=2, device="cpu")


def test_real_run_structure(mlp_profile: pinchpoint.Profile) -> None:
    p = mlp_profile
    assert [s.index for s in p.steps] == list(range(2 + 2 + 6))
    assert [s.sampled for s in p.steps[2:4]] == ["flops", "operators"]
    assert len(p.measured_steps) == 6
    for step in p.steps:
        # A single process has no gradient all-reduce: no communication phase, no comm_s; a
        # loop that never logs has no log phase.
        assert set(step.phases) == set(PHASES) - {"communication", "log"}
        assert step.comm_s is None
        assert step.wall_s > 0
        assert abs(sum(step.phases.values()) - step.wall_s) <= 0.02 * step.wall_s
        assert step.phases["forward"] > 0 and step.phases["backward"] > 0
        assert step.phases["optimizer"] > 0
        assert step.samples == 16
        assert math.isfinite(step.loss)
        # The profiled step carries no instruments of pinchpoint's own, the gradient norm's too.
        assert step.grad_norm is None if step.sampled == "operators" else step.grad_norm > 0
    assert p.mode == "train" and p.device == "cpu"
    assert p.settings["steps"] == 6 and p.settings["warmup"] == 2


def test_flops_match_hand_counts(mlp_profile: pinchpoint.Profile) -> None:
    b = 16
    # Linear(32→64) and Linear(64→10): 2·b·in·out each, forward.
    fc1, fc2 = 2 * b * 32 * 64, 2 * b * 64 * 10
    relu = b * 64  # pointwise: one per output element
    assert mlp_profile.flops is not None
    by_module = {m.name: m for m in mlp_profile.modules}
    assert by_module["0"].flops_forward == fc1
    assert by_module["2"].flops_forward == fc2
    assert by_module["1"].flops_forward == relu
    # Backward: grad w.r.t. weight for both layers, grad w.r.t. input only for the second.
    assert by_module["0"].flops_backward >= fc1
    assert by_module["2"].flops_backward >= 2 * fc2
    assert by_module[""].params == 32 * 64 + 64 + 64 * 10 + 10
    assert by_module[""].flops_forward == fc1 + fc2 + relu
    assert mlp_profile.flops.by_phase["forward"] >= fc1 + fc2 + relu
    assert mlp_profile.flops.by_phase["backward"] >= fc1 + 2 * fc2
    assert mlp_profile.flops.by_phase["optimizer"] > 0
    assert mlp_profile.flops.uncounted == {}


def test_operators_carry_time_shapes_flops_and_bytes(mlp_profile: pinchpoint.Profile) -> None:
    ops = {(o.name, repr(o.input_shapes)): o for o in mlp_profile.operators}
    addmm = ops[("aten::addmm", repr([[64], [16, 32], [32, 64], [], []]))]
    assert addmm.count == 1
    assert addmm.flops == 2 * 16 * 32 * 64
    assert addmm.bytes == 4 * (64 + 16 * 32 + 32 * 64 + 16 * 64)
    assert addmm.input_dtypes[:3] == ["float", "float", "float"]
    assert 0 < addmm.self_s <= addmm.total_s
    linear = next(o for o in mlp_profile.operators if o.name == "aten::linear")
    assert linear.flops == 0  # composite: its FLOPs are its children's
    assert not any(o.name.startswith("ProfilerStep") for o in mlp_profile.operators)


def test_memory_breakdown(mlp_profile: pinchpoint.Profile) -> None:
    m = mlp_profile.memory
    params = 4 * (32 * 64 + 64 + 64 * 10 + 10)
    assert m.parameters_bytes == params
    assert m.gradients_bytes == params
    assert m.optimizer_state_bytes >= 2 * params  # AdamW: two moments per parameter
    assert m.activations_peak_bytes > 0
    assert m.process_rss_bytes > 0 and m.process_peak_rss_bytes >= m.process_rss_bytes // 2
    assert m.source == "cpu-profiler"


def test_grad_norm_is_the_global_l2_norm() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    rec = Recorder(model, optimizer, warmup=0, sample=False)
    x = torch.tensor([[1.0, 2.0, 2.0]])
    with rec.step():
        model(x).sum().backward()
        expected = model.weight.grad.norm().item()
        optimizer.step()
    rec.close()
    assert rec.profile().steps[0].grad_norm == pytest.approx(expected)
    assert expected == pytest.approx(3.0)


def test_inference_counts_composites_through_decomposition() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5)
    ).eval()
    profile = pinchpoint.profile(
        Workload(model=model, data=torch.randn(2, 3, 8, 8)), steps=2, warmup=1, device="cpu"
    )
    conv = 2 * (2 * 8 * 6 * 6) * (3 * 3 * 3)  # 2 · outputs · (in_channels · kernel area)
    linear = 2 * 2 * (8 * 6 * 6) * 5
    by_module = {m.name: m for m in profile.modules}
    assert by_module["0"].flops_forward == conv
    assert by_module["3"].flops_forward == linear
    assert profile.mode == "infer"
    assert profile.flops.uncounted == {}
    assert profile.flops.by_phase == {"forward": conv + linear + 2 * 8 * 6 * 6}


def test_unknown_operators_are_reported_not_zeroed() -> None:
    counter = OpCounter(lambda: "forward")
    counter.start()
    try:
        torch.linalg.qr(torch.randn(4, 4))
    finally:
        counter.stop()
    assert "aten::linalg_qr" in counter.uncounted


def test_user_loop_with_recorder_api() -> None:
    workload = _mlp_workload()
    model, optimizer = workload.model, workload.optimizer
    rec = pinchpoint.Recorder(model, optimizer, warmup=1)
    for batch in rec.data(workload.data * 3):
        with rec.step():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
            rec.record_loss(loss)
            loss.backward()
            optimizer.step()
    profile = rec.profile()
    rec.close()
    assert len(profile.steps) == 12
    # warm-up (also sampling activation statistics) and the two instrumented steps
    assert len(profile.measured_steps) == 12 - 1 - 2
    assert profile.steps[0].sampled == "activations"
    assert profile.flops is not None and profile.operators
    assert all(s.phases["data"] > 0 for s in profile.steps)
    losses = [v for _, v in profile.series("loss")]
    assert len(losses) == 12 and losses[-1] < losses[0]


def test_close_removes_every_hook() -> None:
    workload = _mlp_workload()
    model, optimizer = workload.model, workload.optimizer
    rec = Recorder(model, optimizer, warmup=0, sample=False)
    rec.close()
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())


def test_only_one_gradient_hook_stays_after_the_first_backward() -> None:
    workload = _mlp_workload()
    rec = Recorder(workload.model, workload.optimizer, warmup=0, sample=False)
    for batch in rec.data(workload.data[:2]):
        with rec.step():
            workload.loss(workload.model, batch).backward()
    hooked = [p for p in workload.model.parameters() if p._post_accumulate_grad_hooks]
    rec.close()
    assert len(hooked) == 1


def test_a_failing_step_leaves_no_instrument_running() -> None:
    workload = _mlp_workload()
    rec = Recorder(workload.model, workload.optimizer, warmup=0)
    with pytest.raises(ZeroDivisionError), rec.step():
        _ = 1 / 0
    assert rec._counter is None and rec._profiler is None
    rec.close()


def test_workload_errors_name_the_step() -> None:
    def loss(model: Any, batch: Any) -> torch.Tensor:
        raise RuntimeError("boom")

    model = torch.nn.Linear(2, 2)
    workload = Workload(
        model=model,
        data=[torch.ones(1, 2)],
        loss=loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        name="w",
    )
    with pytest.raises(WorkloadError, match=r"workload 'w' failed at step 0: RuntimeError: boom"):
        pinchpoint.profile(workload, steps=1, warmup=0, device="cpu")
    assert not model._forward_hooks  # hooks removed on failure too


def test_non_scalar_loss_is_refused() -> None:
    model = torch.nn.Linear(2, 2)
    workload = Workload(
        model=model,
        data=[torch.ones(3, 2)],
        loss=lambda m, b: m(b),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    with pytest.raises(WorkloadError, match="must return a scalar tensor"):
        pinchpoint.profile(workload, steps=1, warmup=0, device="cpu")


def test_data_that_runs_out_is_iterated_again() -> None:
    model = torch.nn.Linear(2, 2)
    workload = Workload(model=model, data=[torch.ones(1, 2), torch.ones(2, 2)])
    profile = pinchpoint.profile(workload, steps=5, warmup=0, sample=False, device="cpu")
    # Five measured steps; step 0 also samples activation statistics, so six run in all.
    assert [s.samples for s in profile.steps] == [1, 2, 1, 2, 1, 2]
    assert len(profile.measured_steps) == 5


def test_device_errors() -> None:
    with pytest.raises(pinchpoint.DeviceError, match="unknown device 'tpu'"):
        pinchpoint.profile(_mlp_workload(), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(pinchpoint.DeviceError, match="no CUDA GPU"):
            pinchpoint.profile(_mlp_workload(), device="cuda")


@pytest.mark.gpu
def test_cuda_run_times_with_events() -> None:
    profile = pinchpoint.profile(_mlp_workload(batch=256), steps=5, warmup=2, device="cuda")
    assert profile.device.startswith("cuda")
    assert profile.settings["clock"] == "CudaClock"
    assert profile.memory.source == "cuda" and profile.memory.device_peak_bytes > 0
    for step in profile.steps:
        assert abs(sum(step.phases.values()) - step.wall_s) <= 0.02 * step.wall_s
        assert step.phases["forward"] > 0 and step.phases["backward"] > 0


def test_gpu_sample_plan_with_profiler_warmup_runs_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import pinchpoint.recorders.recorder as recorder_module

    monkeypatch.setattr(
        recorder_module, "sample_plan", lambda device: ("flops", "profiler-warmup", "operators")
    )
    profile = pinchpoint.profile(_mlp_workload(), steps=2, warmup=1, device="cpu")
    assert [s.sampled for s in profile.steps] == [
        "activations",
        "flops",
        "operators",
        "operators",
        None,
        None,
    ]
    assert profile.operators and any(o.name == "aten::addmm" for o in profile.operators)
    addmm_calls = sum(o.count for o in profile.operators if o.name == "aten::addmm")
    assert addmm_calls == 2  # one profiled step only: the warm-up step's events are discarded


def test_rows_with_other_shapes_than_the_counted_step_still_get_flops_and_bytes() -> None:
    """Batches padded to their own length: the profiled step's shapes differ from the counted."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU()).eval()
    lengths = [5, 7, 9, 11, 13]
    data = [torch.randn(n, 16) for n in lengths]
    profile = pinchpoint.profile(Workload(model=model, data=data), steps=1, warmup=1, device="cpu")
    profiled_rows = profile.steps[2].samples  # the step torch.profiler recorded
    assert profiled_rows == 9
    addmm = next(o for o in profile.operators if o.name == "aten::addmm")
    assert addmm.input_shapes[1] == [9, 16]
    assert addmm.flops == 2 * 9 * 16 * 32
    assert addmm.bytes == 4 * (32 + 9 * 16 + 16 * 32 + 9 * 32)
    gelu = next(o for o in profile.operators if o.name == "aten::gelu")
    assert gelu.flops == 9 * 32  # pointwise, scaled from the counted step's 7 rows

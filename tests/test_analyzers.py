"""Analyzers on Profiles built by hand (thresholds, ranking) and on real recorded operators."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import pinchpoint
from pinchpoint import Profile, Step, Workload
from pinchpoint._profile import Machine, Memory, Operator
from pinchpoint.analyzers import DEFAULT_ANALYZERS, run_analyzers
from pinchpoint.diagnosis import diagnose
from pinchpoint.finding import KINDS, severity_for
from pinchpoint.roofline import module_points, operator_points

PEAKS = {"flops_float32": 100e9, "bandwidth_bytes_per_s": 10e9, "dispatch_s": 2e-6}


def _profile(phases: dict[str, float], **fields: object) -> Profile:
    wall = sum(phases.values())
    steps = [Step(index=i, wall_s=wall, phases=dict(phases)) for i in range(5)]
    profile = Profile(name="hand", mode="train", device="cpu", steps=steps, **fields)  # type: ignore[arg-type]
    profile.machine = Machine(peaks=dict(PEAKS))
    return profile


def test_every_analyzer_accepts_an_empty_profile() -> None:
    empty = Profile(name="empty", mode="train", device="cpu")
    for analyzer in DEFAULT_ANALYZERS:
        assert analyzer(empty) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (0.04, None),
        (0.10, ("moderately", "medium")),
        (0.25, ("highly", "medium")),
        (0.62, ("highly", "high")),
    ],
)
def test_input_bound_levels(data: float, expected: tuple[str, str] | None) -> None:
    findings = run_analyzers(_profile({"data": data, "forward": 1 - data}))
    found = [f for f in findings if f.kind == "input_bound"]
    if expected is None:
        assert found == []
        return
    (finding,) = found
    assert finding.share == pytest.approx(data)
    assert finding.saving_share == pytest.approx(data)
    assert (finding.evidence["level"], finding.severity) == expected
    assert finding.remedies[0].name == "dataloader_workers"


def test_optimizer_bound_names_the_per_tensor_loop() -> None:
    looped = _profile(
        {"forward": 0.3, "backward": 0.2, "optimizer": 0.5},
        optimizer={"type": "Adam", "param_tensors": 400, "foreach": False, "fused": None},
    )
    (finding,) = [f for f in run_analyzers(looped) if f.kind == "optimizer_bound"]
    assert finding.saving_share == pytest.approx(0.5 * 0.6)
    assert finding.remedies[0].name == "foreach_optimizer"
    assert "400" in finding.remedies[0].why
    foreach = dataclasses.replace(
        looped, optimizer={"type": "Adam", "param_tensors": 400, "foreach": True}
    )
    (finding,) = [f for f in run_analyzers(foreach) if f.kind == "optimizer_bound"]
    assert finding.saving_share == pytest.approx(0.5 * 0.25)


def test_memory_over_budget_is_principal_and_high() -> None:
    profile = _profile(
        {"data": 0.5, "forward": 0.5},
        memory=Memory(
            parameters_bytes=10 * 2**20,
            gradients_bytes=10 * 2**20,
            optimizer_state_bytes=20 * 2**20,
            activations_peak_bytes=100 * 2**20,
        ),
    )
    profile.settings["memory_budget_bytes"] = 64 * 2**20
    findings = run_analyzers(profile)
    assert findings[0].kind == "memory_capacity" and findings[0].severity == "high"
    assert findings[0].evidence["peak_bytes"] == 140 * 2**20
    assert findings[0].share == pytest.approx(140 / 64)
    assert findings[1].kind == "input_bound"  # still reported, ranked after
    profile.settings["memory_budget_bytes"] = 150 * 2**20
    (near,) = [f for f in run_analyzers(profile) if f.kind == "memory_capacity"]
    assert near.severity == "medium" and near.saving_share == 0.0
    profile.settings["memory_budget_bytes"] = 1000 * 2**20
    assert not [f for f in run_analyzers(profile) if f.kind == "memory_capacity"]


def _ops_profile(ops: list[Operator], data_share: float = 0.0) -> Profile:
    profile = _profile({"data": data_share, "forward": 1.0 - data_share})
    profile.operators = ops
    return profile


def test_compute_and_memory_bound_from_the_roofline() -> None:
    # Ridge: 100 GFLOP/s / 10 GB/s = 10 FLOP/B.
    matmul = Operator(
        "aten::mm",
        1,
        self_s=0.8,
        total_s=0.8,
        input_dtypes=["float", "float"],
        flops=64_000_000_000,
        bytes=100_000_000,
    )  # 640 FLOP/B at 80 GFLOP/s
    add = Operator(
        "aten::add",
        1,
        self_s=0.2,
        total_s=0.2,
        input_dtypes=["float"],
        flops=100_000_000,
        bytes=1_200_000_000,
    )  # 0.083 FLOP/B
    findings = run_analyzers(_ops_profile([matmul, add]))
    compute = next(f for f in findings if f.kind == "compute_bound")
    assert compute.share == pytest.approx(0.8)
    assert compute.evidence["achieved_fraction"] == pytest.approx(0.8)
    assert compute.severity in ("medium", "low")  # near peak is the efficient end state
    assert not [f for f in findings if f.kind == "memory_bound"]

    points = {p.name: p for p in operator_points(_ops_profile([matmul, add]))}
    assert points["aten::add"].bound == "memory"
    assert points["aten::add"].attainable_flops_per_s == pytest.approx(10e9 * (1 / 12))
    assert points["aten::mm"].attainable_flops_per_s == pytest.approx(100e9)

    slow_add = dataclasses.replace(add, self_s=3.2)
    findings = run_analyzers(_ops_profile([matmul, slow_add]))
    memory = next(f for f in findings if f.kind == "memory_bound")
    assert memory.share == pytest.approx(0.8)
    assert memory.evidence["achieved_bytes_per_s"] == pytest.approx(1.2e9 / 3.2)


def test_low_precision_peak_raises_the_compute_saving() -> None:
    matmul = Operator(
        "aten::mm", 1, 1.0, 1.0, input_dtypes=["float"], flops=90_000_000_000, bytes=10_000_000
    )
    profile = _ops_profile([matmul])
    plain = next(f for f in run_analyzers(profile) if f.kind == "compute_bound")
    profile.machine = Machine(peaks={**PEAKS, "flops_bfloat16": 400e9})
    faster = next(f for f in run_analyzers(profile) if f.kind == "compute_bound")
    assert faster.saving_share == pytest.approx(1.0 * (1 - 1 / 4))
    assert faster.saving_share > plain.saving_share
    assert faster.remedies[0].name == "mixed_precision"


def test_findings_rank_by_saving_input_before_compute() -> None:
    matmul = Operator(
        "aten::mm", 1, 1.0, 1.0, input_dtypes=["float"], flops=90_000_000_000, bytes=10_000_000
    )
    findings = run_analyzers(_ops_profile([matmul], data_share=0.6))
    assert [f.kind for f in findings][:2] == ["input_bound", "compute_bound"]
    assert findings[0].saving_share >= findings[1].saving_share


def test_overhead_bound_from_gaps_and_dispatch() -> None:
    tiny = Operator(
        "aten::add",
        4000,
        self_s=4000 * 3e-6,
        total_s=4000 * 3e-6,
        flops=4000 * 16,
        bytes=4000 * 192,
    )
    profile = _ops_profile([tiny])
    profile.operator_coverage = {"wall_s": 0.030, "covered_s": 0.012}
    (finding,) = [f for f in run_analyzers(profile) if f.kind == "overhead_bound"]
    # Python gap 18 ms + 4000 calls x 2 us dispatch = 26 ms of the 30 ms step.
    assert finding.evidence["overhead_share_of_compute"] == pytest.approx(26 / 30)
    assert finding.evidence["ops_per_step"] == 4000
    assert finding.evidence["median_op_self_s"] == pytest.approx(3e-6)
    assert finding.remedies[0].name == "torch_compile"


def test_overhead_bound_leaves_the_profilers_own_time_out() -> None:
    # The case that read 'high' from the profiler's bookkeeping: a 3-layer MLP's profiled step
    # took 1.2 ms, 0.5 ms of it between operators, while the unwatched steps took 0.77 ms.
    ops = [Operator("aten::addmm", 160, self_s=0.7e-3, total_s=0.7e-3)]
    profile = _profile({"forward": 0.5e-3, "backward": 0.27e-3})
    profile.operators = ops
    profile.operator_coverage = {"wall_s": 1.2e-3, "covered_s": 0.7e-3}
    (finding,) = [f for f in run_analyzers(profile) if f.kind == "overhead_bound"]
    evidence = finding.evidence
    assert evidence["profiler_s"] == pytest.approx(0.43e-3)
    assert evidence["python_gap_s"] == pytest.approx(0.07e-3)
    # (0.07 ms of gaps + 160 x 2 us of dispatch) of the 0.77 ms step; 1.0 read off the profiled one.
    assert evidence["overhead_share_of_compute"] == pytest.approx(0.39e-3 / 0.77e-3)
    # A profiled step no slower than the unwatched ones keeps every gap.
    profile.operator_coverage = {"wall_s": 0.77e-3, "covered_s": 0.27e-3}
    (finding,) = [f for f in run_analyzers(profile) if f.kind == "overhead_bound"]
    assert finding.evidence["profiler_s"] == 0.0
    assert finding.evidence["python_gap_s"] == pytest.approx(0.5e-3)


def test_severity_thresholds_and_kinds_are_the_taxonomy() -> None:
    assert [severity_for(x) for x in (0.5, 0.3, 0.29, 0.1, 0.09)] == [
        "high",
        "high",
        "medium",
        "medium",
        "low",
    ]
    assert len(KINDS) == 21 and "input_bound" in KINDS and "loss_plateau" in KINDS
    with pytest.raises(ValueError, match="unknown finding kind"):
        pinchpoint.Finding(kind="slow", severity="high", share=1, saving_share=1, summary="")


def _record(model: torch.nn.Module, batch: torch.Tensor) -> Profile:
    profile = pinchpoint.profile(
        Workload(model=model.eval(), data=batch), steps=1, warmup=1, device="cpu"
    )
    profile.machine = dataclasses.replace(profile.machine, peaks=dict(PEAKS))
    return profile


def test_roofline_of_a_real_matmul_conv_and_elementwise_op() -> None:
    torch.manual_seed(0)
    linear = _record(torch.nn.Linear(256, 512, bias=False), torch.randn(128, 256))
    (mm,) = [p for p in operator_points(linear) if p.name == "aten::mm"]
    flops, nbytes = 2 * 128 * 256 * 512, 4 * (128 * 256 + 256 * 512 + 128 * 512)
    assert (mm.flops, mm.bytes) == (flops, nbytes)
    assert mm.intensity_flops_per_byte == pytest.approx(flops / nbytes)
    assert mm.bound == "compute"  # 51 FLOP/B is above the 10 FLOP/B ridge
    (module,) = module_points(linear)
    assert module.name == "(model)" and module.flops == flops
    assert module.seconds > 0 and module.achieved_flops_per_s == pytest.approx(
        flops / module.seconds
    )

    conv = _record(torch.nn.Conv2d(8, 16, 3, bias=False), torch.randn(4, 8, 10, 10))
    (c,) = [
        p
        for p in operator_points(conv)
        if p.name in ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution")
    ][:1]
    out = 4 * 16 * 8 * 8
    assert c.flops == 2 * out * 8 * 3 * 3
    assert c.bytes == 4 * (4 * 8 * 10 * 10 + 16 * 8 * 3 * 3 + out)

    class Add(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + x

    add = _record(Add(), torch.randn(1000, 100))
    (a,) = [p for p in operator_points(add) if p.name == "aten::add"]
    assert a.flops == 100_000  # one per output element
    assert a.bytes == 4 * 3 * 100_000  # two reads (the same tensor twice) and a write
    assert a.bound == "memory" and a.intensity_flops_per_byte == pytest.approx(1 / 12)


def test_diagnose_a_saved_profile_without_recording_again(tmp_path) -> None:
    profile = _profile({"data": 0.7, "forward": 0.3})
    path = tmp_path / "run.json"
    profile.save(path)
    diagnosis = diagnose(Profile.load(path))
    assert diagnosis.principal is not None and diagnosis.principal.kind == "input_bound"
    assert not diagnosis.healthy
    again = pinchpoint.Diagnosis.from_dict(diagnosis.to_dict())
    assert [f.kind for f in again.findings] == [f.kind for f in diagnosis.findings]

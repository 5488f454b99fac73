"""The data-parallel remedies, their launch settings and the distributed trial's pairing, all
without torchrun: configs validate, ``apply`` returns a new workload with the settings, the
caller's is never changed, and measured step windows pair as the statistics need."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pinchpoint._profile import Machine, Profile, Step
from pinchpoint.finding import Finding
from pinchpoint.optimizer import FAMILIES, candidates_for
from pinchpoint.remedies import (
    DDPBuckets,
    GradAccumulation,
    GradCompression,
    MixedPrecision,
    NoSyncAccumulation,
    PerRankBatch,
    RemedyConfig,
    apply,
    config_from_dict,
    registered,
)
from pinchpoint.trials.distributed import (
    LAUNCHABLE,
    interleaved,
    launch_settings,
    paired_times,
    run_windows,
)
from pinchpoint.workload import Workload

DDP_REMEDIES = (DDPBuckets, GradCompression, NoSyncAccumulation, PerRankBatch)


def _workload(*, shuffle: bool = True, lr: float = 0.05) -> Workload:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.randn(96, 6)
    y = torch.randint(0, 3, (96,))
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=8,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(3),
    )
    return Workload(
        model=model,
        data=loader,
        loss=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
        optimizer=torch.optim.SGD(
            [
                {"params": model[0].parameters(), "lr": lr},
                {"params": model[2].parameters(), "lr": lr / 10},
            ],
            lr=lr,
        ),
        name="ddp-mlp",
    )


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DDPBuckets(bucket_cap_mb=0), "bucket_cap_mb must be positive"),
        (lambda: DDPBuckets(bucket_cap_mb=-5.0), "bucket_cap_mb must be positive"),
        (lambda: DDPBuckets(bucket_cap_mb=math.inf), "bucket_cap_mb must be positive"),
        (lambda: DDPBuckets(bucket_cap_mb="25"), "bucket_cap_mb must be a number"),
        (lambda: DDPBuckets(bucket_cap_mb=True), "bucket_cap_mb must be a number"),
        (lambda: DDPBuckets(gradient_as_bucket_view=1), "gradient_as_bucket_view must be"),
        (lambda: GradCompression(dtype="int8"), "dtype must be 'fp16' or 'bf16'"),
        (lambda: GradCompression(dtype="float16"), "dtype must be 'fp16' or 'bf16'"),
        (lambda: NoSyncAccumulation(steps=1), "steps must be at least 2"),
        (lambda: NoSyncAccumulation(steps=2.0), "steps must be an integer"),
        (lambda: NoSyncAccumulation(steps=True), "steps must be an integer"),
        (lambda: PerRankBatch(factor=1), "factor must be at least 2"),
        (lambda: PerRankBatch(factor=1.5), "factor must be an integer"),
        (lambda: PerRankBatch(scale_lr="yes"), "scale_lr must be True or False"),
    ],
)
def test_a_bad_setting_is_a_one_line_value_error(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_the_configs_are_registered_train_only_and_address_communication() -> None:
    names = registered()
    for config_type in DDP_REMEDIES:
        assert names[config_type.name] is config_type
        assert config_type.modes == ("train",)
        assert config_type.addresses[0] == "communication_bound"
        assert config_type.name in LAUNCHABLE
        assert config_type.name in FAMILIES


@pytest.mark.parametrize(
    "config",
    [
        DDPBuckets(bucket_cap_mb=50.5, gradient_as_bucket_view=True),
        GradCompression("bf16"),
        NoSyncAccumulation(steps=3),
        PerRankBatch(factor=4, scale_lr=False),
    ],
)
def test_configs_round_trip_through_their_dict(config: RemedyConfig) -> None:
    again = config_from_dict(config.to_dict())
    assert again == config
    assert again.label() == config.label()


def test_grad_compression_gate_follows_the_gpu_and_passes_on_a_cpu() -> None:
    cpu = Machine(cpu_flags=[])
    old_gpu = Machine(gpu={"name": "V100", "capability": "7.0"})
    new_gpu = Machine(gpu={"name": "A100", "capability": "8.0"})
    assert GradCompression("bf16").gate(cpu) is None
    assert GradCompression("fp16").gate(cpu) is None
    assert GradCompression("fp16").gate(old_gpu) is None
    reason = GradCompression("bf16").gate(old_gpu)
    assert reason is not None and "7.0" in reason
    assert GradCompression("bf16").gate(new_gpu) is None


# ----------------------------------------------------------------------------- apply


def test_ddp_settings_land_on_a_new_workload_and_stack() -> None:
    original = _workload()
    first = apply(original, DDPBuckets(bucket_cap_mb=5, gradient_as_bucket_view=True))
    both = apply(first, GradCompression("fp16"))
    assert first.ddp == {"bucket_cap_mb": 5.0, "gradient_as_bucket_view": True}
    assert both.ddp == {"bucket_cap_mb": 5.0, "gradient_as_bucket_view": True, "comm_hook": "fp16"}
    assert both.applied == (
        "ddp_buckets(bucket_cap_mb=5, gradient_as_bucket_view=True)",
        "grad_compression(dtype=fp16)",
    )
    # Neither the caller's workload nor the first result changed; models are copies.
    assert original.ddp == {} and original.applied == ()
    assert first.ddp == {"bucket_cap_mb": 5.0, "gradient_as_bucket_view": True}
    assert both.model is not first.model is not original.model
    assert both.optimizer is not original.optimizer
    for mine, theirs in zip(original.model.parameters(), both.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_no_sync_accumulation_sets_accumulate_on_a_copy() -> None:
    original = _workload()
    result = apply(original, NoSyncAccumulation(steps=3))
    assert result.accumulate == 3
    assert original.accumulate == 1
    assert result.model is not original.model


def test_per_rank_batch_rebuilds_the_loader_in_the_same_order_and_scales_the_lr() -> None:
    original = _workload()
    before = original.data.generator.get_state().clone()
    result = apply(original, PerRankBatch(factor=3))
    assert result.data is not original.data
    assert result.data.batch_size == 24
    assert original.data.batch_size == 8
    big = next(iter(result.data))
    # Iterating the new loader did not advance the caller's generator...
    assert torch.equal(original.data.generator.get_state(), before)
    # ...and its batches are the caller's, in the caller's order, three at a time.
    small = iter(original.data)
    joined = [next(small) for _ in range(3)]
    assert torch.equal(big[0], torch.cat([b[0] for b in joined]))
    assert torch.equal(big[1], torch.cat([b[1] for b in joined]))
    assert [g["lr"] for g in result.optimizer.param_groups] == pytest.approx([0.15, 0.015])
    assert [g["lr"] for g in original.optimizer.param_groups] == pytest.approx([0.05, 0.005])


def test_per_rank_batch_can_keep_the_lr_and_rebatches_lists_and_single_batches() -> None:
    kept = apply(_workload(), PerRankBatch(factor=2, scale_lr=False))
    assert [g["lr"] for g in kept.optimizer.param_groups] == pytest.approx([0.05, 0.005])
    base = _workload()
    listed = Workload(
        model=base.model,
        data=[(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(6)],
        loss=base.loss,
        optimizer=base.optimizer,
    )
    doubled = apply(listed, PerRankBatch(factor=2))
    assert [b[0].shape[0] for b in doubled.data] == [8, 8, 8]
    assert torch.equal(doubled.data[0][0], torch.cat([listed.data[0][0], listed.data[1][0]]))
    single = Workload(
        model=base.model,
        data=torch.randn(5, 6),
        loss=lambda m, b: m(b).square().mean(),
        optimizer=base.optimizer,
    )
    assert apply(single, PerRankBatch(factor=2)).data.shape == (10, 6)


def test_the_remedies_refuse_an_inference_workload() -> None:
    infer = Workload(model=nn.Linear(3, 3), data=torch.randn(2, 3), name="infer")
    for config in (DDPBuckets(), GradCompression(), NoSyncAccumulation(), PerRankBatch()):
        with pytest.raises(ValueError, match="applies to train workloads"):
            apply(infer, config)


# ----------------------------------------------------------------------------- launch


def test_launch_settings_carry_ddp_accumulation_and_batch_size() -> None:
    base = _workload()
    assert launch_settings(base, base) == {"ddp": None, "accumulate": 1}
    combined = apply(base, GradCompression("bf16"), DDPBuckets(bucket_cap_mb=10))
    assert launch_settings(combined, base) == {
        "ddp": {"comm_hook": "bf16", "bucket_cap_mb": 10.0},
        "accumulate": 1,
    }
    assert launch_settings(apply(base, NoSyncAccumulation(steps=4)), base)["accumulate"] == 4
    larger = apply(base, PerRankBatch(factor=2, scale_lr=False))
    assert launch_settings(larger, base)["batch_size"] == 16


def test_launch_settings_refuse_what_the_ranks_cannot_be_told() -> None:
    base = _workload()
    with pytest.raises(ValueError, match=r"mixed_precision.*cannot run on several processes"):
        launch_settings(apply(base, MixedPrecision("bf16")), base)
    with pytest.raises(ValueError, match="learning rate"):
        launch_settings(apply(base, PerRankBatch(factor=2)), base)
    # Plain accumulation is the same thing under DDP.
    assert launch_settings(apply(base, GradAccumulation(steps=2)), base)["accumulate"] == 2


def test_interleaving_alternates_the_order() -> None:
    assert interleaved(("a", "b"), 3) == ["a", "b", "b", "a", "a", "b"]
    assert interleaved((1, 2, 4), 2) == [1, 2, 4, 4, 2, 1]


# ----------------------------------------------------------------------------- windows


def _profile(walls: list[float], samples: int, warmup: int, ranks: int = 2) -> Profile:
    steps = [
        Step(index=i, wall_s=w, phases={"other": w}, warmup=i < warmup, samples=samples, loss=1.0)
        for i, w in enumerate(walls)
    ]
    rank_profiles = [
        Profile(name="r", mode="train", device="cpu", steps=list(steps)) for _ in range(ranks)
    ]
    return Profile(name="r", mode="train", device="cpu", steps=steps, ranks=rank_profiles)


def test_windows_hold_whole_accumulation_cycles_and_count_every_rank() -> None:
    # Warm-up steps 0-1; with cycles of 4, steps 2-3 are a broken window and 4-11 two whole ones.
    walls = [9.0, 9.0, 1.0, 5.0, 1.0, 1.0, 1.0, 5.0, 2.0, 2.0, 2.0, 6.0]
    windows = run_windows(_profile(walls, samples=8, warmup=2), width=4, ranks=2)
    assert windows.times_s == (8.0, 12.0)
    assert windows.samples == (64, 64)  # 4 steps x 8 samples x 2 ranks
    plain = run_windows(_profile(walls, samples=8, warmup=2), width=1, ranks=2)
    assert plain.times_s == tuple(walls[2:])
    assert plain.samples == (16,) * 10


def test_pairs_are_per_step_for_equal_batches_and_per_sample_otherwise() -> None:
    base = run_windows(_profile([1.0, 2.0, 2.0, 4.0], samples=8, warmup=0), 1, 2)
    cycles = run_windows(_profile([1.0, 1.0, 1.0, 5.0], samples=8, warmup=0), 2, 2)
    wide = run_windows(_profile([3.0, 3.0], samples=16, warmup=0), 1, 2)
    b, c, unit = paired_times([base], [cycles])
    assert unit == "step"
    assert b == [1.0, 2.0] and c == [1.0, 3.0]  # the windows' times over their 2 steps
    b, c, unit = paired_times([base], [wide])
    assert unit == "sample"
    assert b == [1.0 / 16, 2.0 / 16] and c == [3.0 / 32, 3.0 / 32]


# ----------------------------------------------------------------------------- candidates


def _communication_finding() -> Finding:
    return Finding(
        kind="communication_bound",
        severity="high",
        share=0.5,
        saving_share=0.35,
        summary="exposed all-reduce",
        evidence={},
        remedies=[],
    )


def test_candidates_include_the_ddp_remedies_only_for_multi_rank_communication() -> None:
    workload = _workload()
    machine = Machine()
    findings = [_communication_finding()]
    multi = candidates_for(workload, "throughput", machine, findings, ranks=2)
    names = [c.remedies[0].name for c in multi]
    assert names[:4] == [
        "no_sync_accumulation",
        "per_rank_batch",
        "ddp_buckets",
        "grad_compression",
    ]
    assert all("communication_bound" in c.reason for c in multi[:4])
    single = candidates_for(workload, "throughput", machine, findings, ranks=1)
    assert not {c.remedies[0].name for c in single} & {cls.name for cls in DDP_REMEDIES}
    quiet = candidates_for(workload, "throughput", machine, [], ranks=2)
    assert not {c.remedies[0].name for c in quiet} & {cls.name for cls in DDP_REMEDIES}


def test_the_configs_and_the_scaling_result_load_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pinchpoint.remedies as r, pinchpoint.trials.scale, "
        "pinchpoint.renderers.terminal, pinchpoint.trials.distributed\n"
        "r.DDPBuckets(); r.GradCompression('bf16'); r.NoSyncAccumulation(); r.PerRankBatch()\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_the_loss_of_a_run_is_the_mean_over_its_ranks() -> None:
    def rank(losses: list[float]) -> Profile:
        steps = [
            Step(index=i, wall_s=1.0, phases={"other": 1.0}, samples=4, loss=v)
            for i, v in enumerate(losses)
        ]
        return Profile(name="r", mode="train", device="cpu", steps=steps)

    zero = rank([4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    one = rank([6.0, 5.0, 4.0, 3.0, 3.0, 3.0, 5.0])
    merged = Profile(name="r", mode="train", device="cpu", steps=zero.steps, ranks=[zero, one])
    windows = run_windows(merged, 1, 2)
    assert windows.losses == (5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 3.0)
    assert windows.final_loss == pytest.approx((3.0 + 2.0 + 2.0 + 2.0 + 3.0) / 5)

"""Every zoo workload records into a sound Profile in a short run."""

from __future__ import annotations

import pytest

import pinchpoint
from pinchpoint import zoo


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_workload_profiles(name: str) -> None:
    workload = zoo.get(name)
    profile = pinchpoint.profile(workload, steps=2, warmup=1, device="cpu")
    entry = next(e for e in zoo.entries() if e.name == name)
    assert profile.name == name and profile.mode == entry.mode
    assert len(profile.measured_steps) == 2
    for step in profile.steps:
        assert abs(sum(step.phases.values()) - step.wall_s) <= 0.02 * step.wall_s
        assert step.phases["forward"] > 0
        assert step.samples is not None and step.samples >= 1
        if entry.mode == "train":
            assert step.phases["backward"] > 0 and step.phases["optimizer"] > 0
            assert step.loss is not None
            # Only the profiled step goes without the recorder's own instruments.
            assert (step.grad_norm is None) == (step.sampled == "operators")
    assert profile.flops is not None and profile.flops.total > 0
    assert profile.flops.by_phase.get("forward", 0) > 0
    assert profile.operators, "the profiled step recorded operators"
    params = sum(p.numel() for p in workload.model.parameters())
    assert next(m for m in profile.modules if m.name == "").params == params
    assert profile.memory.parameters_bytes == sum(
        p.numel() * p.element_size() for p in workload.model.parameters()
    )
    # Compared as JSON: a workload planted to diverge (hot-init) holds NaN, never equal to itself.
    again = pinchpoint.Profile.from_json(profile.to_json())
    assert again.to_json() == profile.to_json()

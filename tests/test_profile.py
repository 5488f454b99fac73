"""The Profile data model: exact JSON round-trips, derived statistics, and bad files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinchpoint import PHASES, Profile, ProfileFormatError, Step
from pinchpoint._profile import (
    SCHEMA,
    Distributed,
    Environment,
    FlopCount,
    Machine,
    Memory,
    ModuleStat,
    Operator,
    phase_stats,
)

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
names = st.text(min_size=0, max_size=30)
counts = st.integers(min_value=0, max_value=2**62)

steps = st.builds(
    Step,
    index=st.integers(min_value=0, max_value=10**6),
    wall_s=finite,
    phases=st.dictionaries(st.sampled_from(PHASES), finite),
    warmup=st.booleans(),
    sampled=st.sampled_from([None, "flops", "operators"]),
    samples=st.none() | st.integers(min_value=1, max_value=4096),
    loss=st.none() | any_float,
    grad_norm=st.none() | any_float,
    comm_s=st.none() | finite,
)
operators = st.builds(
    Operator,
    name=names,
    count=st.integers(min_value=1, max_value=10**6),
    self_s=finite,
    total_s=finite,
    input_shapes=st.lists(
        st.lists(st.integers(min_value=0, max_value=4096), max_size=4), max_size=4
    ),
    input_dtypes=st.lists(st.sampled_from(["float", "c10::BFloat16", "long int", "Scalar", ""])),
    flops=st.none() | counts,
    bytes=st.none() | counts,
    work_s=st.none() | finite,
)
modules = st.builds(ModuleStat, name=names, type=names, params=counts, flops=counts)
memory = st.builds(
    Memory,
    parameters_bytes=st.none() | counts,
    activations_peak_bytes=st.none() | counts,
    source=st.sampled_from([None, "cuda", "cpu-profiler"]),
)
distributed = st.builds(
    Distributed,
    rank=st.integers(min_value=0, max_value=1023),
    world_size=st.integers(min_value=1, max_value=1024),
    backend=st.sampled_from(["gloo", "nccl", ""]),
    local_rank=st.none() | st.integers(min_value=0, max_value=7),
    node_rank=st.none() | st.integers(min_value=0, max_value=127),
    nodes=st.none() | st.integers(min_value=1, max_value=128),
    hostname=names,
    job=names,
    ddp=st.fixed_dictionaries(
        {},
        optional={
            "bucket_cap_mb": finite,
            "comm_hook": st.sampled_from([None, "fp16", "bf16"]),
            "static_graph": st.booleans(),
        },
    ),
    buckets_bytes=st.lists(counts, max_size=4),
    comm_measured=st.booleans(),
)
rank_profiles = st.builds(
    Profile,
    name=names,
    mode=st.sampled_from(["train", "infer"]),
    device=st.sampled_from(["cpu", "cuda:0"]),
    steps=st.lists(steps, max_size=8),
    operators=st.lists(operators, max_size=5),
    modules=st.lists(modules, max_size=5),
    flops=st.none()
    | st.builds(
        FlopCount,
        by_phase=st.dictionaries(st.sampled_from(PHASES), counts),
        uncounted=st.dictionaries(names, st.integers(min_value=1, max_value=100)),
    ),
    memory=memory,
    machine=st.builds(Machine, cpu_model=names, cpu_flags=st.lists(names, max_size=3)),
    environment=st.builds(Environment, python=names, packages=st.dictionaries(names, names)),
    # JSON numbers in the Profile are int64 at most (orjson, like most readers, stops there).
    settings=st.dictionaries(names, st.integers(-(2**63), 2**63 - 1) | names, max_size=3),
    distributed=st.none() | distributed,
    created=names,
)
#: Single Profiles, and merged multi-rank ones whose ranks are Profiles of their own.
profiles = rank_profiles | st.builds(
    lambda first, ranks: dataclasses.replace(first, ranks=ranks),
    rank_profiles,
    st.lists(rank_profiles, min_size=1, max_size=3),
)


def _same(a: Profile, b: Profile) -> bool:
    """Equality that treats NaN as equal to NaN (a diverged loss must survive a round-trip)."""
    return orjson.dumps(a.to_dict()) == orjson.dumps(b.to_dict())


@given(profiles)
@settings(max_examples=150, deadline=None)
def test_json_round_trip_is_exact(profile: Profile) -> None:
    again = Profile.from_json(profile.to_json())
    assert _same(again, profile)
    if not _has_nan(profile):
        assert again == profile


def test_an_operator_saved_before_work_times_loads_without_one() -> None:
    saved = {"name": "aten::mm", "count": 2, "self_s": 0.5, "total_s": 0.5, "flops": 8, "bytes": 4}
    op = Operator.from_dict(saved)
    assert op.work_s is None and op.flops == 8
    assert Operator.from_dict(op.to_dict()) == op


def _has_nan(profile: Profile) -> bool:
    values = [v for s in profile.steps for v in (s.loss, s.grad_norm) if v is not None]
    return any(math.isnan(v) for v in values) or any(_has_nan(r) for r in profile.ranks)


def test_non_finite_losses_survive_and_stay_valid_json() -> None:
    profile = Profile(
        name="diverging",
        mode="train",
        device="cpu",
        steps=[
            Step(0, 1.0, {"other": 1.0}, loss=float("nan"), grad_norm=float("inf")),
            Step(1, 1.0, {"other": 1.0}, loss=-float("inf")),
        ],
    )
    text = profile.to_json()
    assert b"NaN" in text and b'"Infinity"' in text
    import json

    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    again = Profile.from_json(text)
    assert math.isnan(again.steps[0].loss)
    assert again.steps[0].grad_norm == float("inf")
    assert again.steps[1].loss == -float("inf")


def _step(index: int, wall: float, **phases: float) -> Step:
    return Step(index=index, wall_s=wall, phases=phases)


def test_statistics_use_measured_steps_only() -> None:
    profile = Profile(
        name="x",
        mode="train",
        device="cpu",
        steps=[
            Step(0, 9.0, {"data": 9.0}, warmup=True),
            Step(1, 9.0, {"forward": 9.0}, sampled="flops"),
            _step(2, 1.0, data=0.5, forward=0.5),
            _step(3, 2.0, data=0.5, forward=1.5),
            _step(4, 3.0, data=0.5, forward=2.5),
        ],
    )
    assert [s.index for s in profile.measured_steps] == [2, 3, 4]
    assert profile.step_time_s == 2.0
    stats = profile.phase_stats()
    assert stats["data"].median_s == 0.5
    assert stats["forward"].median_s == 1.5
    assert stats["data"].share == pytest.approx(1.5 / 6.0)
    assert stats["forward"].share == pytest.approx(4.5 / 6.0)
    assert stats["forward"].p10_s == pytest.approx(0.7)
    assert stats["forward"].p90_s == pytest.approx(2.3)
    summary = profile.to_dict()["summary"]
    assert summary["measured_steps"] == 3
    assert summary["phases"]["forward"]["median_s"] == 1.5


@given(
    st.lists(st.dictionaries(st.sampled_from(PHASES), finite, min_size=1), min_size=1, max_size=20)
)
def test_phase_shares_sum_to_one(phase_sets: list[dict[str, float]]) -> None:
    steps = [Step(i, sum(p.values()), p) for i, p in enumerate(phase_sets)]
    stats = phase_stats(steps)
    if sum(s.wall_s for s in steps) > 0:
        assert sum(s.share for s in stats.values()) == pytest.approx(1.0)
    for s in stats.values():
        assert s.p10_s <= s.median_s <= s.p90_s


def test_throughput_needs_batch_sizes() -> None:
    with_sizes = Profile("x", "infer", "cpu", steps=[Step(0, 0.5, {"forward": 0.5}, samples=8)])
    assert with_sizes.throughput == 16.0
    without = Profile("x", "infer", "cpu", steps=[Step(0, 0.5, {"forward": 0.5})])
    assert without.throughput is None


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "run.json"
    Profile("first", "train", "cpu").save(path)
    assert Profile.load(path).name == "first"

    import pinchpoint._profile as module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module.orjson, "dumps", broken)
    with pytest.raises(RuntimeError):
        Profile("second", "train", "cpu").save(path)
    monkeypatch.undo()
    assert Profile.load(path).name == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"name": "x"}', "no schema field"),
        (b'{"schema": "pinchpoint.trace/1"}', "schema 'pinchpoint.trace/1'"),
        (orjson.dumps({"schema": SCHEMA, "name": "x"}), "broken pinchpoint profile"),
        (
            orjson.dumps(
                {
                    "schema": SCHEMA,
                    "name": "x",
                    "mode": "train",
                    "device": "cpu",
                    "steps": [{"index": 0}],
                }
            ),
            "broken pinchpoint profile",
        ),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ProfileFormatError, match=message) as info:
        Profile.load(path)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ProfileFormatError, match="no such file"):
        Profile.load("/nonexistent/run.json")


def test_a_trace_profile_with_its_device_timeline_round_trips() -> None:
    from pinchpoint.traces import load_trace

    trace = Path(__file__).parent / "data" / "traces" / "a100_nccl_rank0.json.gz"
    profile = load_trace(trace, workers=1).profile
    assert profile.device_timeline is not None
    assert profile.device_timeline.kernels == 2516
    again = Profile.from_json(profile.to_json())
    assert again == profile
    assert again.device_timeline == profile.device_timeline


def test_files_written_before_distributed_profiles_still_load() -> None:
    """A Profile file without communication, ranks or distributed facts (schema 1 as first
    written) loads, and a single process's file does not gain them."""
    old = {
        "schema": SCHEMA,
        "name": "old",
        "mode": "train",
        "device": "cpu",
        "steps": [
            {
                "index": 0,
                "wall_s": 1.0,
                "phases": {"forward": 0.4, "backward": 0.5, "optimizer": 0.1},
                "warmup": False,
                "sampled": None,
                "samples": 4,
                "loss": 1.5,
                "grad_norm": None,
            }
        ],
    }
    profile = Profile.from_dict(old)
    assert profile.distributed is None and profile.ranks == []
    assert profile.steps[0].comm_s is None and profile.communication_stats() is None
    written = profile.to_dict()
    assert "comm_s" not in written["steps"][0] and "communication" not in written["summary"]
    assert written["distributed"] is None and written["ranks"] == []


def test_communication_statistics_of_data_parallel_steps() -> None:
    steps = [
        Step(0, 1.0, {"backward": 0.5, "communication": 0.1, "other": 0.4}, comm_s=0.4),
        Step(1, 1.0, {"backward": 0.6, "communication": 0.3, "other": 0.1}, comm_s=0.6),
        Step(2, 2.0, {"other": 2.0}, warmup=True, comm_s=2.0),
    ]
    profile = Profile("dp", "train", "cpu", steps=steps)
    stats = profile.communication_stats()
    assert stats is not None and stats.steps == 2
    assert stats.allreduce_s == pytest.approx(1.0) and stats.exposed_s == pytest.approx(0.4)
    assert stats.exposed_share == pytest.approx(0.2) and stats.overlap == pytest.approx(0.6)
    assert stats.allreduce_median_s == pytest.approx(0.5)
    assert profile.busy_time_s == pytest.approx(0.8)
    assert profile.to_dict()["summary"]["communication"]["overlap"] == pytest.approx(0.6)

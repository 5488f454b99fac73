"""``thread_oversubscription``: the recorded evidence, the analyzer's rule, the planted case
(``oversubscribed``) found first on seeds 0-2 and absent on healthy controls, and the remedy
(``threads``) verified by a trial.

Timings are real and the machine may be shared, so nothing asserts an absolute time; the planted
case's context switches (tens of thousands a second) and the controls' (hundreds at most) are
far apart on either side of the analyzer's threshold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import pinchpoint
from pinchpoint._profile import Machine, Profile, Step
from pinchpoint.analyzers import DEFAULT_ANALYZERS
from pinchpoint.analyzers import threads as threads_analyzer
from pinchpoint.errors import WorkloadError
from pinchpoint.optimizer import candidates_for
from pinchpoint.recorders import scheduling
from pinchpoint.recorders.scheduling import SchedulingMeter, usable_cores
from pinchpoint.remedies import Threads
from pinchpoint.remedies.runtime import threads_for_findings
from pinchpoint.zoo import get, names
from pinchpoint.zoo.threads import PLANTED_THREADS, THREADS_PER_CORE

KIND = "thread_oversubscription"


def _profile(**scheduling: Any) -> Profile:
    facts = {
        "intra_op_threads": 8,
        "usable_cores": 2,
        "steps": 10,
        "wall_s": 0.1,
        "cpu_s": 0.1,
        "voluntary_switches": 5000,
        "involuntary_switches": 500,
        "cores_busy_s": 0.1,
        **scheduling,
    }
    return Profile(
        name="synthetic",
        mode="train",
        device="cpu",
        steps=[Step(index=0, wall_s=0.01, phases={"other": 0.01})],
        machine=Machine(cores_logical=2),
        settings={"scheduling": facts},
    )


# --- the analyzer's rule, on synthetic profiles ----------------------------------------------


def test_rule_fires_on_threads_above_cores_with_stalls() -> None:
    (found,) = threads_analyzer.analyze(_profile())
    assert found.kind == KIND
    assert found.evidence["context_switches_per_s"] == pytest.approx(55_000)
    # 0.1 s of CPU in 0.1 s of wall on 2 cores: half their time idle.
    assert found.saving_share == pytest.approx(0.5)
    assert found.evidence["suggested_threads"] == 2
    assert [r.name for r in found.remedies] == ["fewer_threads"]


def test_rule_needs_both_conditions() -> None:
    assert threads_analyzer.analyze(_profile(intra_op_threads=2)) == []
    assert threads_analyzer.analyze(_profile(voluntary_switches=50, involuntary_switches=10)) == []


def test_suggested_count_leaves_a_busy_neighbours_core_alone() -> None:
    # Other processes took 0.09 s of the 2 cores in 0.1 s: about one core.
    (found,) = threads_analyzer.analyze(_profile(cores_busy_s=0.19))
    assert found.evidence["other_busy_cores"] == pytest.approx(0.9)
    assert found.evidence["suggested_threads"] == 1
    assert threads_for_findings([found]) == [Threads(1), Threads(2)]


def test_missing_or_broken_evidence_gives_nothing() -> None:
    empty = Profile(name="empty", mode="train", device="cpu")
    assert threads_analyzer.analyze(empty) == []
    assert threads_analyzer.analyze(_profile(wall_s=0.0)) == []
    assert threads_analyzer.analyze(_profile(cpu_s="fast")) == []
    assert threads_analyzer.analyze in DEFAULT_ANALYZERS


def test_evidence_round_trips_through_the_profile(tmp_path: Path) -> None:
    profile = _profile()
    loaded = Profile.load(profile.save(tmp_path / "p.json"))
    assert loaded.settings["scheduling"] == profile.settings["scheduling"]
    assert threads_analyzer.analyze(loaded) == threads_analyzer.analyze(profile)


def test_meter_sums_measured_steps_only() -> None:
    meter = SchedulingMeter()
    assert meter.settings() == {}
    meter.begin()
    meter.end(0.5, measured=False)
    assert meter.result() is None
    meter.begin()
    sum(i * i for i in range(20_000))
    meter.end(0.25, measured=True)
    result = meter.result()
    assert result is not None
    assert result["steps"] == 1 and result["wall_s"] == 0.25
    assert result["cpu_s"] >= 0 and result["voluntary_switches"] >= 0
    assert result["usable_cores"] == usable_cores()
    assert (usable_cores() or 0) >= 1


def test_cgroup_quota_and_proc_stat_are_read(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert scheduling._cgroup_cores(quota) == 1.5
    quota.write_text("max 100000\n")
    assert scheduling._cgroup_cores(quota) is None
    assert scheduling._cgroup_cores(tmp_path / "missing") is None
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    stat.write_text(
        "cpu  9 9 9 9 9 9 9 9 0 0\n"
        "cpu0 100 0 50 1000 7 0 0 0 0 0\n"
        "cpu1 300 0 100 1000 7 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    tick = os.sysconf("SC_CLK_TCK")
    assert scheduling._cores_busy_s(frozenset({0}), stat) == pytest.approx(150 / tick)
    assert scheduling._cores_busy_s(frozenset({0, 1}), stat) == pytest.approx(550 / tick)
    assert scheduling._cores_busy_s(frozenset({0}), tmp_path / "missing") is None


# --- the planted case and the controls ---------------------------------------------------------


def test_planted_case_is_registered_with_its_kind() -> None:
    assert "oversubscribed" in names()
    assert PLANTED_THREADS == {"oversubscribed": KIND}
    workload = get("oversubscribed")
    assert workload.threads == THREADS_PER_CORE * (usable_cores() or 1)
    assert get("oversubscribed", threads=3).threads == 3


def test_planted_case_rejects_bad_options() -> None:
    with pytest.raises(WorkloadError, match="threads must be a positive integer"):
        get("oversubscribed", threads=0)
    with pytest.raises(WorkloadError, match="batch_size must be a positive integer"):
        get("oversubscribed", batch_size="64")
    with pytest.raises(ValueError, match="threads count must be an integer >= 1"):
        Threads(0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_case_is_found_first(seed: int) -> None:
    diagnosis = pinchpoint.diagnose(get("oversubscribed", seed=seed), device="cpu")
    scheduling = diagnosis.profile.settings["scheduling"]
    assert scheduling["intra_op_threads"] > scheduling["usable_cores"]
    top = diagnosis.findings[0]
    assert top.kind == KIND, [(f.kind, round(f.saving_share, 2)) for f in diagnosis.findings]
    assert top.evidence["context_switches_per_s"] >= 5 * threads_analyzer.SWITCH_RATE
    assert top.saving_share > 0.1


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["digits-cnn", "tiny-gpt", "tiny-layers", "slow-collate"])
def test_absent_on_healthy_controls(name: str) -> None:
    diagnosis = pinchpoint.diagnose(get(name), steps=10, device="cpu")
    assert KIND not in [f.kind for f in diagnosis.findings]


def test_absent_with_one_thread_per_core() -> None:
    cores = usable_cores() or 1
    workload = get("oversubscribed", threads=cores)
    diagnosis = pinchpoint.diagnose(workload, steps=10, device="cpu")
    assert KIND not in [f.kind for f in diagnosis.findings]


# --- the remedy, verified by a trial ---------------------------------------------------------


def test_suggested_thread_count_is_verified_by_a_trial() -> None:
    from pinchpoint.trials import trial

    workload = get("oversubscribed")
    diagnosis = pinchpoint.diagnose(workload, device="cpu")
    configs = threads_for_findings(diagnosis.findings)
    assert configs and configs[0].count == diagnosis.findings[0].evidence["suggested_threads"]
    # What optimize tries first for this diagnosis: the thread counts, one per free core first.
    queue = candidates_for(workload, "throughput", diagnosis.profile.machine, diagnosis.findings)
    assert [c.remedies for c in queue[: len(configs)]] == [(c,) for c in configs]
    assert all(c.gate is None for c in queue[: len(configs)])
    # As optimize does, the counts are tried in turn until a trial accepts one: a neighbour that
    # starts between recording and trial can make 2 spinning threads on 2 cores slow.
    results = []
    for config in configs:
        results.append(trial(workload, pinchpoint.apply(workload, config), objective="throughput"))
        if results[-1].accepted:
            break
    result = results[-1]
    assert result.accepted, [r.why for r in results]
    assert result.speedup > 1.2
    assert result.quality == pytest.approx(result.quality_baseline, abs=0.01)

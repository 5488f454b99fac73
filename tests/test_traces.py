"""Trace analysis on real profiler traces: numbers checked against HTA and against the events.

Every figure asserted here was measured on the conformance corpus (``tests/data/traces``, see its
README) or follows from how a synthetic trace was built, so each test fails when the analysis
drifts.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pinchpoint
from helpers import run_cli
from pinchpoint import Profile
from pinchpoint.results import load_result
from pinchpoint.stragglers import StragglerReport
from pinchpoint.traces import SCHEMA, TraceAnalysis, analyze_file, combine, load_trace
from pinchpoint.traces._format import rank_row
from pinchpoint.traces._parse import EventTable, parse_trace_bytes, read_trace
from pinchpoint.traces._rank import summarize_rank

TRACES = Path(__file__).parent / "data" / "traces"
TWO_RANKS = TRACES / "two_ranks_a"
A100_NCCL = TRACES / "a100_nccl_rank0.json.gz"
V100 = TRACES / "v100_single_rank.json.gz"

CORPUS = [*sorted(p.name for p in TRACES.glob("*.json.gz")), "two_ranks_a"]
SHARES = ("idle_share", "compute_share", "non_compute_share", "comm_comp_overlap")


@pytest.fixture(scope="module")
def two_ranks() -> TraceAnalysis:
    return load_trace(TWO_RANKS, workers=1)


@pytest.fixture(scope="module")
def a100() -> TraceAnalysis:
    return load_trace(A100_NCCL, workers=1)


def percent(gpu: dict[str, Any]) -> list[float]:
    return [100 * gpu[k] for k in SHARES]


# --- 1. conformance: every file of the corpus -----------------------------------------------------


def test_the_corpus_is_what_the_readme_lists() -> None:
    assert len(CORPUS) == 10
    assert sorted(p.name for p in TWO_RANKS.iterdir()) == ["rank-0.json.gz", "rank-1.json.gz"]


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_trace_loads_and_analyses(name: str) -> None:
    analysis = load_trace(TRACES / name, workers=1)
    assert analysis.ranks, name
    assert all(r.trace is not None and r.trace.file for r in analysis.ranks)
    assert analysis.issues == []  # nothing was skipped or repaired at the job level
    data = analysis.to_dict()
    assert data["schema"] == SCHEMA
    orjson.dumps(data)  # plain JSON types only
    for row in data["ranks"]:
        assert row["events"] > 0
        gpu = row["gpu"]
        if gpu is not None:
            assert gpu["span_s"] > 0
            total = gpu["idle_share"] + gpu["compute_share"] + gpu["non_compute_share"]
            assert total == pytest.approx(1.0, abs=1e-9)
        for step in row["steps"]:
            assert sum(step["phases"].values()) == pytest.approx(step["wall_s"], rel=1e-9)


@pytest.mark.parametrize(
    ("name", "rank", "steps"),
    [("cpu_only_rank34.json.gz", 34, [551]), ("cpu_ops_only.json.gz", 0, [1009])],
)
def test_cpu_only_traces_have_steps_and_phases_but_no_gpu(
    name: str, rank: int, steps: list[int]
) -> None:
    data = load_trace(TRACES / name, workers=1).to_dict()
    (row,) = data["ranks"]
    assert row["rank"] == rank and row["rank_source"] == "distributedInfo"
    assert row["gpu"] is None
    assert row["device"]["kind"] == "cpu"
    assert [s["index"] for s in row["steps"]] == steps
    assert row["phases"] and "forward" in row["phases"]
    assert row["step_time_s"] == pytest.approx(row["steps"][0]["wall_s"])


def test_cpu_ops_only_step_is_split_into_every_training_phase() -> None:
    (row,) = load_trace(TRACES / "cpu_ops_only.json.gz", workers=1).to_dict()["ranks"]
    (step,) = row["steps"]
    assert step["wall_s"] == pytest.approx(0.075473, abs=1e-9)
    expected = {
        "data": 0.001171,
        "optimizer": 0.002906,
        "backward": 0.03416,
        "forward": 0.019324,
        "other": 0.017912,
    }
    assert step["phases"] == pytest.approx(expected, abs=1e-9)


def test_cpu_only_rank_34_comes_from_distributed_info() -> None:
    (row,) = load_trace(TRACES / "cpu_only_rank34.json.gz", workers=1).ranks
    assert row.rank == 34 and row.trace is not None
    assert row.trace.world_size == 300 and row.trace.rank_source == "distributedInfo"
    assert row.steps[0].wall_s == pytest.approx(0.210109162, abs=1e-9)


def test_old_category_names_still_give_a_gpu_breakdown() -> None:
    (row,) = load_trace(TRACES / "inference_old_categories.json.gz", workers=1).to_dict()["ranks"]
    gpu = row["gpu"]
    assert gpu is not None and row["device"]["kind"] == "cuda"
    assert gpu["kernels"]["count"] > 0
    assert gpu["window"] == "whole trace"  # no ProfilerStep spans
    assert gpu["idle_share"] == pytest.approx(0.98158, abs=1e-4)
    assert gpu["compute_share"] == pytest.approx(0.01842, abs=1e-4)


# --- 2. parity with Holistic Trace Analysis 0.5.0 -------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "hta"),
    [(0, [53.56, 17.71, 28.74, 11.81]), (1, [54.72, 22.57, 22.72, 20.05])],
)
def test_two_ranks_match_hta_within_a_tenth_of_a_point(
    two_ranks: TraceAnalysis, rank: int, hta: list[float]
) -> None:
    (row,) = [r for r in two_ranks.to_dict()["ranks"] if r["rank"] == rank]
    assert row["gpu"]["window"] == "all profiler steps but the last"
    assert percent(row["gpu"]) == pytest.approx(hta, abs=0.1)


# --- 3. why ns-resolution traces differ from HTA: HTA rounds to whole microseconds ----------------


def _hta_rounded(table: EventTable) -> EventTable:
    """Every event rounded inward to whole microseconds: start up, end down (as HTA does)."""
    start = -(-table.ts_ns // 1000) * 1000
    end = ((table.ts_ns + table.dur_ns) // 1000) * 1000
    return dataclasses.replace(table, ts_ns=start, dur_ns=np.maximum(end - start, 0))


def test_hta_rounding_explains_the_difference_on_a_ns_resolution_trace() -> None:
    table = read_trace(A100_NCCL)
    # The trace has nanosecond resolution: rounding to microseconds changes almost every event.
    assert np.count_nonzero(table.ts_ns % 1000) > 0.99 * len(table)
    ours = rank_row(summarize_rank(table, A100_NCCL))["gpu"]
    hta = rank_row(summarize_rank(_hta_rounded(table), A100_NCCL))["gpu"]
    assert percent(hta) == pytest.approx([77.78, 17.26, 4.97, 14.31], abs=0.01)
    assert percent(ours) == pytest.approx([77.23, 17.66, 5.10, 14.76], abs=0.01)
    # The two differ by far more than the tolerance: the rounding is the whole story.
    assert abs(percent(hta)[0] - percent(ours)[0]) > 0.5


# --- 4. properties on synthetic traces ------------------------------------------------------------

HOST_OPS = (
    "aten::mm",
    "aten::add_",
    "Optimizer.step#SGD.step",
    "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
    "autograd::engine::evaluate_function: MmBackward0",
    "nn.Module: Linear",
    "nccl:all_reduce",
)
DEVICE_WORK = (
    ("kernel", "sm80_xmma_gemm"),
    ("kernel", "ncclKernel_AllReduce_RING_LL_Sum_float"),
    ("kernel", "vectorized_elementwise_kernel"),
    ("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)"),
    ("gpu_memset", "Memset (Device)"),
)
US = 1000  # ns per µs


@st.composite
def synthetic_traces(draw: st.DrawFn) -> dict[str, Any]:
    """A small Kineto-like trace: steps with host ops, launches and the device work they start.

    Times are drawn in nanoseconds and written in microseconds with three decimals, as Kineto
    does.
    """
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "main"}},
    ]

    def x(cat: str, name: str, pid: int, tid: int, ts: int, dur: int, **args: int) -> None:
        event: dict[str, Any] = {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid}
        event.update(ts=ts / US, dur=dur / US)
        if args:
            event["args"] = args
        events.append(event)

    n_steps = draw(st.integers(0, 3))
    t = 1_000_000 * US
    correlation = 1
    for step in range(max(n_steps, 1)):
        wall = draw(st.integers(20, 400)) * US + draw(st.integers(0, 999))
        if n_steps:
            x("user_annotation", f"ProfilerStep#{10 + step}", 1, 1, t, wall)
        for _ in range(draw(st.integers(0, 4))):
            start = t + draw(st.integers(0, wall))
            x("cpu_op", draw(st.sampled_from(HOST_OPS)), 1, 1, start, draw(st.integers(0, wall)))
        for _ in range(draw(st.integers(1, 5))):
            launch = t + draw(st.integers(0, wall - 3 * US))
            x("cuda_runtime", "cudaLaunchKernel", 1, 1, launch, 3 * US, correlation=correlation)
            cat, name = draw(st.sampled_from(DEVICE_WORK))
            stream = draw(st.sampled_from((7, 7, 20)))
            delay = draw(st.integers(1, 50 * US))
            dur = draw(st.integers(1, 80 * US))
            x(cat, name, 0, stream, launch + delay, dur, stream=stream, correlation=correlation)
            correlation += 1
        t += wall + draw(st.integers(0, 10 * US))
    return {"distributedInfo": {"rank": 0, "world_size": 1}, "traceEvents": events}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return rank_row(summarize_rank(parse_trace_bytes(orjson.dumps(doc)), "rank-0.json"))


@settings(max_examples=60, deadline=None)
@given(synthetic_traces())
def test_shares_add_up_and_the_union_fits_the_span(doc: dict[str, Any]) -> None:
    summary = _summary(doc)
    for issue in summary["issues"]:  # the only two things a well-formed trace can lack
        assert issue.startswith(("no ProfilerStep spans", "no device work was launched"))
    gpu = summary["gpu"]
    if gpu is None:  # only when no device work was launched before the last step
        assert len(summary["steps"]) >= 2
        return
    total = gpu["idle_share"] + gpu["compute_share"] + gpu["non_compute_share"]
    assert total == pytest.approx(1.0, abs=1e-9)
    for key in ("idle_share", "compute_share", "non_compute_share"):
        assert 0.0 <= gpu[key] <= 1.0
    assert gpu["busy_s"] <= gpu["span_s"] + 1e-15
    assert gpu["compute_s"] + gpu["non_compute_s"] == pytest.approx(gpu["busy_s"], abs=1e-15)
    assert gpu["communication_s"] - gpu["exposed_communication_s"] >= -1e-15
    if gpu["comm_comp_overlap"] is not None:
        assert 0.0 <= gpu["comm_comp_overlap"] <= 1.0


@settings(max_examples=60, deadline=None)
@given(synthetic_traces())
def test_step_phases_add_up_to_the_step(doc: dict[str, Any]) -> None:
    steps = _summary(doc)["steps"]
    annotations = [e for e in doc["traceEvents"] if e["name"].startswith("ProfilerStep#")]
    assert len(steps) == len(annotations)
    for step, span in zip(steps, annotations, strict=True):
        assert step["wall_s"] == pytest.approx(span["dur"] / 1e6, abs=1e-12)
        assert all(v >= 0 for v in step["phases"].values())
        assert sum(step["phases"].values()) == pytest.approx(step["wall_s"], rel=1e-9, abs=1e-15)


def _canonical(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with its ranked lists in a total order (ties by name)."""
    out = copy.deepcopy(summary)
    out["operators"].sort(key=lambda r: (-r["self_s"], r["name"]))
    if out["gpu"] is not None:
        out["gpu"]["kernels"]["top"].sort(key=lambda r: (-r["time_s"], r["name"]))
    return out


@settings(max_examples=60, deadline=None)
@given(synthetic_traces(), st.randoms(use_true_random=False))
def test_event_order_does_not_change_the_summary(doc: dict[str, Any], rnd: Any) -> None:
    shuffled = dict(doc, traceEvents=list(doc["traceEvents"]))
    rnd.shuffle(shuffled["traceEvents"])
    assert _canonical(_summary(shuffled)) == _canonical(_summary(doc))


def _tied_trace() -> dict[str, Any]:
    """Two operators with equal self time and two kernels with equal time."""
    events: list[dict[str, Any]] = []
    for corr, (op, kernel) in enumerate([("aten::b_op", "b_kernel"), ("aten::a_op", "a_kernel")]):
        ts = 100 + 50 * corr
        host = {"ph": "X", "pid": 1, "tid": 1, "dur": 10}
        events.append(host | {"cat": "cpu_op", "name": op, "ts": ts})
        events.append(
            host
            | {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": ts + 20, "dur": 2}
            | {"args": {"correlation": corr + 1}}
        )
        events.append(
            {"ph": "X", "cat": "kernel", "name": kernel, "pid": 0, "tid": 7}
            | {"ts": ts + 25, "dur": 5, "args": {"stream": 7, "correlation": corr + 1}}
        )
    return {"traceEvents": events}


def test_ties_are_ranked_the_same_whatever_the_event_order() -> None:
    doc = _tied_trace()
    forward = _summary(doc)
    backward = _summary(dict(doc, traceEvents=doc["traceEvents"][::-1]))
    assert _canonical(forward) == _canonical(backward)  # the same numbers either way
    assert [o["name"] for o in forward["operators"]] == [o["name"] for o in backward["operators"]]
    top = [k["name"] for k in forward["gpu"]["kernels"]["top"]]
    assert top == [k["name"] for k in backward["gpu"]["kernels"]["top"]]


def test_a_hand_built_timeline_gives_its_exact_shares() -> None:
    """Two kernels and an all-reduce: every share worked out by hand."""
    doc: dict[str, Any] = {"traceEvents": []}
    ev = doc["traceEvents"]
    for corr, (name, stream, ts, dur) in enumerate(
        [("gemm", 7, 100, 40), ("ncclKernel_AllReduce", 20, 120, 40), ("Memcpy DtoD", 7, 180, 20)],
        start=1,
    ):
        ev.append(
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1}
            | {"ts": ts - 5, "dur": 2, "args": {"correlation": corr}}
        )
        ev.append(
            {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": stream}
            | {"ts": ts, "dur": dur, "args": {"stream": stream, "correlation": corr}}
        )
    gpu = _summary(doc)["gpu"]
    # span 100..200 = 100 µs; busy 100..160 and 180..200 = 80; compute 100..140 = 40;
    # communication 120..160 = 40, of which 20 overlap computation.
    assert gpu["span_s"] == pytest.approx(100e-6)
    assert gpu["idle_share"] == pytest.approx(0.2)
    assert gpu["compute_share"] == pytest.approx(0.4)
    assert gpu["non_compute_share"] == pytest.approx(0.4)
    assert gpu["comm_comp_overlap"] == pytest.approx(0.5)
    assert gpu["exposed_communication_share"] == pytest.approx(0.2)


# --- 5. steps and phases --------------------------------------------------------------------------


def test_v100_has_five_steps_whose_phases_add_up() -> None:
    (row,) = load_trace(V100, workers=1).to_dict()["ranks"]
    steps = row["steps"]
    assert [s["index"] for s in steps] == [101, 102, 103, 104, 105]
    walls = [0.035116, 0.072077, 0.095697, 0.095551, 0.095699]
    assert [s["wall_s"] for s in steps] == pytest.approx(walls, abs=1e-6)
    for step in steps:
        assert sum(step["phases"].values()) == pytest.approx(step["wall_s"], rel=1e-9)
        assert step["backward"] is True
        assert step["phases"]["backward"] > step["phases"]["optimizer"] > 0
    assert row["gpu"]["compute_share"] == pytest.approx(0.97427, abs=1e-4)


def test_two_ranks_rank_0_waits_for_data_and_runs_the_optimizer(two_ranks: TraceAnalysis) -> None:
    row = two_ranks.to_dict()["ranks"][0]
    assert row["rank"] == 0
    for step in row["steps"]:
        assert step["phases"]["data"] > 0
        assert step["phases"]["optimizer"] > 0.1  # seconds: a third of a 0.6 s step
    assert [s["phases"]["data"] for s in row["steps"]] == pytest.approx([0.003872, 0.003756])
    phases = two_ranks.to_dict()["ranks"][0]["phases"]
    assert phases["data"]["median_s"] == pytest.approx(0.003814)
    assert phases["optimizer"]["share"] == pytest.approx(0.33906, abs=1e-4)


# --- 6. stragglers --------------------------------------------------------------------------------


def test_eight_copies_of_one_rank_have_no_straggler(tmp_path: Path) -> None:
    doc = orjson.loads(gzip.decompress((TWO_RANKS / "rank-0.json.gz").read_bytes()))
    for rank in range(8):
        doc["distributedInfo"]["rank"] = rank
        raw = gzip.compress(orjson.dumps(doc), compresslevel=1)
        (tmp_path / f"rank-{rank}.json.gz").write_bytes(raw)
    analysis = load_trace(tmp_path, workers=1)
    assert [r.rank for r in analysis.ranks] == list(range(8))
    assert analysis.issues == []
    report = analysis.stragglers
    assert isinstance(report, StragglerReport)
    assert report.ranks == 8 and report.steps == 2
    assert report.stragglers == []
    assert all(v["excess_s"] == 0.0 for v in report.per_rank.values())
    assert "straggler" not in [f.kind for f in analysis.findings]


def _cpu_rank(rank: int, compute_ms: list[float], wall_ms: list[float]) -> dict[str, Any]:
    """A host-only rank: each step is its own work, then a wait inside an all-reduce."""
    pid = 100 + rank
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "python"}}
    ]
    t = 5_000_000.0  # µs
    for i, (compute, wall) in enumerate(zip(compute_ms, wall_ms, strict=True)):
        c, w = compute * 1000, wall * 1000
        base = {"ph": "X", "pid": pid, "tid": 1}
        events += [
            base | {"cat": "user_annotation", "name": f"ProfilerStep#{i}", "ts": t, "dur": w},
            base | {"cat": "cpu_op", "name": "aten::addmm", "ts": t + 1, "dur": c - 2},
            base | {"cat": "cpu_op", "name": "nccl:all_reduce", "ts": t + c, "dur": w - c},
        ]
        t += w + 50
    return {
        "distributedInfo": {"rank": rank, "world_size": 8, "backend": "nccl"},
        "traceEvents": events,
    }


def _cpu_job(folder: Path, slow_rank: int | None) -> Path:
    """8 ranks, 10 steps: compute 100 ms (130 ms on the slow rank) plus ±0.5 ms jitter."""
    folder.mkdir()
    compute = 100.0 + np.random.default_rng(20240607).normal(0.0, 0.5, (8, 10))
    if slow_rank is not None:
        compute[slow_rank] += 30.0
    wall = np.maximum(compute.max(axis=0) + 0.2, 130.0)  # everyone waits for the slowest
    for rank in range(8):
        doc = _cpu_rank(rank, compute[rank].round(3).tolist(), wall.round(3).tolist())
        (folder / f"rank{rank}.json.gz").write_bytes(gzip.compress(orjson.dumps(doc)))
    return folder


def test_a_planted_slow_rank_is_the_only_straggler(tmp_path: Path) -> None:
    analysis = load_trace(_cpu_job(tmp_path / "job", slow_rank=5), workers=1)
    assert analysis.confidence == "full"
    walls = {round(s.wall_s, 4) for r in analysis.ranks for s in r.steps}
    assert all(0.130 <= w < 0.132 for w in walls)  # the walls tell nothing: all alike
    # busy = wall - wait in the collective: ~100 ms, ~130 ms on rank 5
    busy = {r.rank: np.median([s.own_s for s in r.steps]) for r in analysis.ranks}
    assert busy[5] == pytest.approx(0.130, abs=0.002)
    assert all(busy[r] == pytest.approx(0.100, abs=0.002) for r in busy if r != 5)
    stragglers = [f for f in analysis.findings if f.kind == "straggler"]
    assert [f.evidence["rank"] for f in stragglers] == [5]
    (finding,) = stragglers
    assert finding.evidence["confidence"] >= 0.99
    assert finding.evidence["slowest_steps"] == 10 and finding.evidence["steps"] == 10
    assert finding.evidence["excess_share"] == pytest.approx(30 / 130.2, abs=0.01)
    assert finding.severity == "medium"
    assert [s.rank for s in analysis.stragglers.stragglers] == [5]
    assert analysis.to_dict()["stragglers"][0]["rank"] == 5


def test_ranks_that_differ_only_by_jitter_have_no_straggler(tmp_path: Path) -> None:
    analysis = load_trace(_cpu_job(tmp_path / "job", slow_rank=None), workers=1)
    report = analysis.stragglers
    assert report is not None and report.ranks == 8 and report.steps == 10
    assert report.power == "ok"  # the test could have named a rank, and named none
    assert report.stragglers == []
    assert "straggler" not in [f.kind for f in analysis.findings]
    assert max(v["excess_share"] for v in report.per_rank.values()) < 0.02


# --- 7. device findings ---------------------------------------------------------------------------


def test_a100_nccl_is_overhead_bound(a100: TraceAnalysis) -> None:
    principal = a100.principal
    assert principal is not None
    assert principal.kind == "overhead_bound" and principal.severity == "high"
    assert principal.evidence["device_idle_host_share"] == pytest.approx(0.6958, abs=1e-3)
    assert principal.evidence["device_idle_share"] == pytest.approx(0.7723, abs=1e-3)
    assert principal.saving_share == pytest.approx(0.7 * principal.share)
    assert [f.kind for f in a100.findings] == ["overhead_bound"]
    diagnosis = pinchpoint.diagnose(a100)
    assert diagnosis.principal is not None and diagnosis.principal.kind == "overhead_bound"
    assert not diagnosis.healthy


def test_two_ranks_are_communication_bound_with_rank_0s_overlap(two_ranks: TraceAnalysis) -> None:
    by_kind = {f.kind: f for f in two_ranks.findings}
    assert set(by_kind) == {"overhead_bound", "communication_bound", "optimizer_bound"}
    comm = by_kind["communication_bound"]
    # Both ranks have one; the merged finding keeps the larger saving: rank 0's.
    assert comm.evidence["ranks"] == [0, 1] and comm.evidence["ranks_total"] == 2
    assert comm.evidence["comm_comp_overlap"] == pytest.approx(0.1181, abs=5e-4)
    timeline = two_ranks.ranks[0].device_timeline
    assert timeline is not None and comm.evidence["comm_comp_overlap"] == timeline.comm_comp_overlap
    assert comm.share == pytest.approx(0.2871, abs=5e-4)
    assert comm.severity == "medium"


# --- 8. the JSON contract -------------------------------------------------------------------------

TOP_KEYS = {
    "schema",
    "source",
    "confidence",
    "issues",
    "ranks",
    "stragglers",
    "straggler_test",
    "findings",
}
RANK_KEYS = {"rank", "rank_source", "file", "world_size", "device", "events", "steps", "gpu"}
RANK_KEYS |= {"launches", "sync", "operators", "issues", "phases", "step_time_s"}
GPU_KEYS = {"window", "span_s", "idle_share", "compute_share", "non_compute_share"}
GPU_KEYS |= {"comm_comp_overlap", "idle_breakdown", "idle_causes", "kernels", "streams"}
FINDING_KEYS = {"kind", "severity", "share", "saving_share", "summary", "evidence", "remedies"}
FINDING_KEYS |= {"rank_reason"}


def test_to_dict_follows_the_contract_and_save_round_trips(
    two_ranks: TraceAnalysis, tmp_path: Path
) -> None:
    data = two_ranks.to_dict()
    assert set(data) == TOP_KEYS
    assert data["schema"] == "pinchpoint.trace/1"
    assert data["source"] == str(TWO_RANKS)
    assert data["confidence"] == "full" and data["issues"] == []
    assert [r["rank"] for r in data["ranks"]] == [0, 1]
    for row in data["ranks"]:
        assert set(row) >= RANK_KEYS
        assert set(row["gpu"]) >= GPU_KEYS
        assert {"host_wait_share", "kernel_wait_share", "other_share"} <= set(
            row["gpu"]["idle_breakdown"]
        )
        assert {"count", "time_s", "by_kind", "top"} <= set(row["gpu"]["kernels"])
        assert [s["index"] for s in row["steps"]] == [551, 552]
        assert set(row["phases"]["forward"]) == {"median_s", "p10_s", "p90_s", "mean_s", "share"}
    assert data["stragglers"] == []
    assert data["straggler_test"]["ranks"] == 2 and data["straggler_test"]["power"] == "low"
    for finding in data["findings"]:
        assert set(finding) == FINDING_KEYS
    out = two_ranks.save(tmp_path / "sub" / "trace.json")
    assert orjson.loads(out.read_bytes()) == orjson.loads(orjson.dumps(data))
    assert [p.name for p in out.parent.iterdir()] == ["trace.json"]  # no temporary left


# --- 9. the command line --------------------------------------------------------------------------


def test_cli_trace_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "two.json"
    result = run_cli("trace", str(TWO_RANKS), "--json", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "2 ranks" in result.stdout and "communication_bound" in result.stdout
    assert "trace analysis written to" in result.stderr
    data = orjson.loads(out.read_bytes())
    assert data["schema"] == SCHEMA and [r["rank"] for r in data["ranks"]] == [0, 1]
    assert data["ranks"][0]["gpu"]["idle_share"] == pytest.approx(0.5356, abs=1e-4)


def test_cli_diagnoses_a_trace() -> None:
    result = run_cli("diagnose", str(A100_NCCL))
    assert result.returncode == 0, result.stderr
    assert "Principal bottleneck: overhead_bound" in result.stdout
    assert "Traceback" not in result.stderr


# --- 10. map/reduce -------------------------------------------------------------------------------


def test_map_then_reduce_is_load_trace(two_ranks: TraceAnalysis) -> None:
    files = sorted(TWO_RANKS.iterdir())
    summaries = [analyze_file(f, i) for i, f in enumerate(files)]
    assert [s.rank for s in summaries if isinstance(s, Profile)] == [0, 1]
    # The map's output crosses machines as a saved Profile and comes back equal.
    for s in summaries:
        assert isinstance(s, Profile) and Profile.from_json(s.to_json()) == s
        assert pickle.loads(pickle.dumps(s)) == s
    reduced = combine(summaries, source=str(TWO_RANKS))
    assert reduced.to_dict() == two_ranks.to_dict()
    # The reduce does not care in which order the summaries come back.
    assert combine(summaries[::-1], source=str(TWO_RANKS)).to_dict() == two_ranks.to_dict()


def test_a_saved_analysis_loads_into_the_same_profiles(
    two_ranks: TraceAnalysis, tmp_path: Path
) -> None:
    data = two_ranks.to_dict()
    again = load_result(two_ranks.save(tmp_path / "trace.json"))
    assert isinstance(again, TraceAnalysis)
    assert again.ranks == two_ranks.ranks  # every rank's Profile, field for field
    assert again.stragglers == two_ranks.stragglers and again.findings == two_ranks.findings
    assert again.to_dict() == data
    tl = again.ranks[1].device_timeline
    assert tl is not None and tl.kernel_totals and tl.idle_share == pytest.approx(0.5472, abs=1e-4)
    assert again.profile.matched_steps().keys() == {551, 552}


def test_two_worker_processes_give_the_same_analysis(two_ranks: TraceAnalysis) -> None:
    assert load_trace(TWO_RANKS, workers=2).to_dict() == two_ranks.to_dict()


@pytest.mark.parametrize("name", sorted(p.name for p in TRACES.glob("*.json.gz")))
def test_the_corpus_is_read_as_a_stream_in_one_chunked_pass(name: str) -> None:
    # The careful reader (every event sliced, then decoded) is for damaged files only; an
    # intact trace going there would still be right, only slower and bigger.
    from pinchpoint.traces import _parse

    raw = gzip.decompress((TRACES / name).read_bytes())
    in_memory = _parse._parse_chunked(_parse._pieces(raw), [])
    streamed = _parse._stream_file(TRACES / name)
    assert len(streamed) == len(in_memory) == len(_parse.parse_trace_bytes(raw)) > 0
    assert streamed.distributed == in_memory.distributed


def test_a_trace_file_saved_by_an_earlier_version_loads_into_the_same_profiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pinchpoint.trace/1`` as the version before one model wrote it (rank rows of plain
    data): it reads back into the Profiles a fresh analysis has, and is written back as it was."""
    saved = Path(__file__).parent / "data" / "golden" / "a100-nccl.trace.json"
    monkeypatch.chdir(TRACES)  # the file names its trace relatively, from this folder
    old = load_result(saved)
    assert isinstance(old, TraceAnalysis)
    fresh = load_trace("a100_nccl_rank0.json.gz", workers=1)
    assert old.ranks == fresh.ranks and old.findings == fresh.findings
    assert old.to_dict() == orjson.loads(saved.read_bytes())
    (rank,) = old.ranks
    assert rank.device_timeline is not None and rank.device_timeline.kernels == 2516
    assert rank.trace is not None and rank.trace.launches.count > 0

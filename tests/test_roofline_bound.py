"""No roofline point sits above its roof: FLOPs and their time on the same operator, and a
memory roof per cache level.

The unit tests build the cases by hand (a convolution whose FLOPs the counter credits to
``aten::convolution`` while its time is spent in its child ``aten::mkldnn_convolution``; work
that fits in a cache). The conformance test profiles the zoo's cheap workloads and places
every operator and module against peaks measured in this process, not a cached calibration
that a busier or quieter moment of a shared machine produced.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch

import pinchpoint
from pinchpoint import Workload, zoo
from pinchpoint._events import HostEvent, fold_events
from pinchpoint._profile import Machine, Operator, Profile, Step
from pinchpoint.machine.calibrate import Peaks, calibrate, load_or_calibrate
from pinchpoint.roofline import RooflinePoint, bandwidth_for_bytes, module_points, operator_points
from pinchpoint.traces import analyze_file, find_trace_files

TRACES = Path(__file__).parent / "data" / "traces"

PEAKS = {
    "flops_float32": 100e9,
    "bandwidth_bytes_per_s": 10e9,
    "dispatch_s": 2e-6,
    "cache_l2_bytes": 2**20,
    "bandwidth_l2_bytes_per_s": 20e9,  # held back by its cost per call: below L3's
    "cache_l3_bytes": 32 * 2**20,
    "bandwidth_l3_bytes_per_s": 50e9,
}

#: How far above its roof a point may sit: measurement noise, not a wrong placement. The peaks
#: are the best of many samples, the operators one profiled step, and a quiet moment can favour
#: either. On a 2-core machine shared with other jobs, calibrations minutes apart gave fp32
#: peaks from 134 to 203 GFLOP/s (1.5x); with peaks measured in the same process, the worst
#: point over 20 zoo workloads was 0.99 of its roof (tiny-gpt's matmuls at the fp32 peak), and
#: a re-measurement below covers a calibration that a busy stretch held down. The misplacements
#: this guards against were 5 to 33 times (FLOPs over self time) and 1.5 to 6 times (cached
#: and in-place operators under a roof measured by copies from main memory).
TOLERANCE = 1.25

#: Zoo workloads that record in a second or two; the distributed ones start processes and
#: bert-base takes a minute.
SKIP = {"bert-base", "ddp-balanced", "ddp-comm-heavy", "ddp-slow-rank"}


def _profile(operators: list[Operator], peaks: dict[str, float] = PEAKS) -> Profile:
    steps = [Step(index=0, wall_s=1.0, phases={"forward": 1.0})]
    profile = Profile(name="hand", mode="train", device="cpu", steps=steps, operators=operators)
    profile.machine = Machine(peaks=dict(peaks))
    return profile


# ---------------------------------------------------------------------------------------------
# FLOPs and time on the same operator


def test_the_convolution_is_placed_at_its_childs_time() -> None:
    # aten::convolution carries the FLOPs; aten::_convolution and aten::mkldnn_convolution are
    # its implementation below the dispatcher the FLOP counter hooks, and hold the time.
    us = 1000  # ns
    events = [
        HostEvent("aten::conv2d", 1, 0, 1000 * us, [[4, 8, 10, 10]]),
        HostEvent("aten::convolution", 1, 10 * us, 980 * us, [[4, 8, 10, 10]]),
        HostEvent("aten::_convolution", 1, 12 * us, 975 * us, [[4, 8, 10, 10]]),
        HostEvent("aten::mkldnn_convolution", 1, 14 * us, 970 * us, [[4, 8, 10, 10]]),
        HostEvent("aten::empty", 1, 20 * us, 5 * us, [[]]),
    ]
    counted = {"aten::convolution", "aten::empty"}
    rows = {r.name: r for r in fold_events(events, counted.__contains__)}
    conv = rows["aten::convolution"]
    assert conv.self_ns == 5 * us and conv.work_ns == 980 * us and conv.work_count == 1
    # Below a counted operator nothing owns work of its own, counted name or not.
    for name in ("aten::_convolution", "aten::mkldnn_convolution", "aten::empty"):
        assert rows[name].work_ns == 0 and rows[name].work_count == 0
    assert rows["aten::conv2d"].work_ns == 0  # a composite above: its parts hold the work

    ops = [
        Operator(
            r.name,
            r.count,
            self_s=r.self_ns / 1e9,
            total_s=r.total_ns / 1e9,
            flops=(37_748_736 if r.name == "aten::convolution" else 0),
            bytes=(1_000_000 if r.name == "aten::convolution" else 0),
            work_s=None if r.work_ns is None else r.work_ns / 1e9,
        )
        for r in rows.values()
    ]
    (point,) = operator_points(_profile(ops))
    assert point.name == "aten::convolution"
    assert point.seconds == pytest.approx(980e-6)
    assert point.achieved_flops_per_s == pytest.approx(37_748_736 / 980e-6)
    # At its self time (5 µs) it would claim 7.5 TFLOP/s, 75 times the 100 GFLOP/s roof.
    assert 0.3 < point.fraction < 1.0


def test_a_profile_without_work_times_falls_back_to_self_time() -> None:
    # Trace files and profiles saved before work times existed.
    op = Operator("aten::add", 2, self_s=0.01, total_s=0.02, flops=1000, bytes=12_000_000)
    (point,) = operator_points(_profile([op]))
    assert point.seconds == 0.01
    loaded = Operator.from_dict({k: v for k, v in op.to_dict().items() if k != "work_s"})
    assert loaded == op and loaded.work_s is None


def test_an_operator_only_nested_in_counted_ones_owns_no_time() -> None:
    op = Operator("aten::add_", 4, self_s=0.01, total_s=0.01, flops=0, bytes=0, work_s=0.0)
    assert operator_points(_profile([op])) == []


def test_a_recorded_convolution_is_placed_at_its_whole_time() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(8, 16, 3, bias=False).eval()
    profile = pinchpoint.profile(
        Workload(model=model, data=torch.randn(4, 8, 32, 32)), steps=1, warmup=1, device="cpu"
    )
    by_name = {o.name: o for o in profile.operators}
    conv = by_name["aten::convolution"]
    assert conv.flops == 2 * (4 * 16 * 30 * 30) * 8 * 3 * 3
    assert conv.work_s == pytest.approx(conv.total_s)
    assert conv.work_s > conv.self_s
    for child in ("aten::_convolution", "aten::mkldnn_convolution"):
        if child in by_name:
            assert by_name[child].work_s == 0.0 and not by_name[child].flops
    profile.machine = dataclasses.replace(profile.machine, peaks=dict(PEAKS))
    (point,) = [p for p in operator_points(profile) if p.name == "aten::convolution"]
    assert point.seconds == conv.work_s


# ---------------------------------------------------------------------------------------------
# The memory roof per cache level


def test_the_memory_roof_follows_the_bytes_per_call() -> None:
    assert bandwidth_for_bytes(PEAKS, 64_000) == (50e9, "l2")  # fits in L3 too: its rate holds
    assert bandwidth_for_bytes(PEAKS, 2**20) == (50e9, "l2")
    assert bandwidth_for_bytes(PEAKS, 2**20 + 1) == (pytest.approx(50e9), "l3")
    # 64 MiB: 32 MiB from the caches at 50 GB/s, 32 MiB from main memory at 10 GB/s.
    mib = 2**20
    blend = 64 * mib / (32 * mib / 50e9 + 32 * mib / 10e9)
    assert bandwidth_for_bytes(PEAKS, 64 * mib) == (pytest.approx(blend), "dram")
    # It falls towards main memory's as the bytes outgrow the caches, never rising.
    roofs = [bandwidth_for_bytes(PEAKS, 2**k)[0] for k in range(10, 40)]
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in itertools.pairwise(roofs))
    assert roofs[-1] == pytest.approx(10e9, rel=1e-3)
    # A calibration from before cache roofs: main memory for everything.
    old = {k: v for k, v in PEAKS.items() if "l2" not in k and "l3" not in k}
    assert bandwidth_for_bytes(old, 64_000) == (10e9, "dram")
    # A cache level never lowers the roof below main memory's.
    slow = {**PEAKS, "bandwidth_l3_bytes_per_s": 5e9, "bandwidth_l2_bytes_per_s": 5e9}
    assert bandwidth_for_bytes(slow, 64_000) == (10e9, "l2")


def test_a_small_operator_comes_under_the_cache_roof() -> None:
    # 4 calls of 48 KB each in 4 µs: 48 GB/s, above main memory's 10 GB/s and under L3's 50.
    relu = Operator(
        "aten::relu", 4, self_s=4e-6, total_s=4e-6, flops=16_000, bytes=192_000, work_s=4e-6
    )
    (point,) = operator_points(_profile([relu]))
    assert point.memory_level == "l2"
    assert point.bandwidth_bytes_per_s == pytest.approx(50e9)
    assert point.bound == "memory"
    assert point.fraction == pytest.approx((16_000 / 4e-6) / (16_000 / 192_000 * 50e9))
    assert point.fraction < 1
    assert point.to_dict()["memory_level"] == "l2"
    big = dataclasses.replace(relu, bytes=4 * 2**30, flops=4 * 2**28, work_s=0.5)
    (point,) = operator_points(_profile([big]))
    assert point.memory_level == "dram"
    assert point.bandwidth_bytes_per_s == pytest.approx(10e9, rel=0.03)  # 32 MiB of 1 GiB cached


# ---------------------------------------------------------------------------------------------
# Conformance: the zoo and the trace corpus


@pytest.fixture(scope="module")
def peaks(tmp_path_factory: pytest.TempPathFactory) -> Peaks:
    """This machine's peaks, measured now in a fresh cache folder."""
    measured, from_cache = load_or_calibrate("cpu", cache_dir=tmp_path_factory.mktemp("cal"))
    assert not from_cache
    return measured


def _over(profile: Profile, flat: dict[str, float]) -> list[tuple[str, RooflinePoint]]:
    profile = dataclasses.replace(profile, machine=dataclasses.replace(profile.machine, peaks=flat))
    points = [("operator", p) for p in operator_points(profile)]
    points += [("module", p) for p in module_points(profile)]
    return [(kind, p) for kind, p in points if p.fraction > TOLERANCE]


@pytest.mark.slow
def test_no_zoo_point_sits_above_its_roof(peaks: Peaks) -> None:
    # About 30 s on 2 cores (20 workloads, two profiled steps each), plus the calibration.
    flat = peaks.as_machine_peaks()
    profiles = {}
    placed = 0
    for name in zoo.names():
        if name in SKIP:
            continue
        profile = pinchpoint.profile(zoo.get(name), steps=2, warmup=1, device="cpu")
        profiles[name] = profile
        placed += len(operator_points(dataclasses.replace(profile, machine=Machine(peaks=flat))))
    assert {"digits-cnn", "tiny-gpt"} <= set(profiles) and placed > 500
    over = {name: _over(p, flat) for name, p in profiles.items()}
    if any(over.values()):
        # A peak is the best rate the machine ever showed; a calibration taken while another
        # job held a core shows less. Measure once more and keep each peak's better reading.
        again = calibrate("cpu").as_machine_peaks()
        flat = {k: max(v, again.get(k, v)) for k, v in flat.items()}
        over = {name: _over(p, flat) for name, p in profiles.items()}
    report = {
        name: [(kind, p.name, round(p.fraction, 2), p.memory_level) for kind, p in points]
        for name, points in over.items()
        if points
    }
    assert not report, f"points above {TOLERANCE}x their roof: {report}"


def test_no_trace_point_sits_above_its_roof(peaks: Peaks) -> None:
    # The corpus's traces carry no FLOP counts today, so they place no points; any that do (a
    # trace recorded with_flops) must stay under the roof with self time standing in.
    flat = peaks.as_machine_peaks()
    files = sorted(TRACES.glob("*.json.gz")) + find_trace_files(TRACES / "two_ranks_a")
    assert len(files) >= 10
    for path in files:
        profile = analyze_file(path)
        assert isinstance(profile, Profile)
        assert all(op.work_s is None for op in profile.operators)
        assert _over(profile, flat) == []


def test_the_report_draws_the_cache_roof_its_points_sit_under() -> None:
    from pinchpoint.report.profile import _roofline_section

    point = {"name": "aten::relu", "intensity_flops_per_byte": 0.1, "achieved_flops_per_s": 3e9}
    summary = {"peak_flops_per_s": 100e9, "bandwidth_bytes_per_s": 10e9, "modules": []}
    cached = _roofline_section({**summary, "operators": [{**point, "bandwidth_bytes_per_s": 50e9}]})
    assert cached is not None and cached.charts[0] is not None
    roofs = {s.name: s for s in cached.charts[0].series if s.style == "line"}
    assert roofs["roof (data in cache)"].y[0] == pytest.approx(roofs["roof"].x[0] * 50e9)
    # Points without a memory roof of their own (older diagnoses): the one roof only.
    plain = _roofline_section({**summary, "operators": [point]})
    assert plain is not None and plain.charts[0] is not None
    assert [s.name for s in plain.charts[0].series if s.style == "line"] == ["roof"]


def test_a_lookup_counts_the_rows_it_reads_not_its_whole_table() -> None:
    from pinchpoint.recorders.flops import op_bytes

    table, ids = torch.randn(30_000, 64), torch.randint(0, 30_000, (8, 16))
    embedding = torch.ops.aten.embedding.default
    out = embedding(table, ids)
    # The ids, the 128 rows read and the 128 rows written; not the 7.7 MB table.
    assert op_bytes(embedding, (table, ids), {}, out) == 8 * 128 + 2 * 4 * 128 * 64
    add = torch.ops.aten.add.Tensor
    assert op_bytes(add, (table, table), {}, add(table, table)) == 3 * 4 * table.numel()

"""Comparisons of real runs: the corpus's trace pairs, live zoo profiles, and the CI gate.

The trace numbers are exact (the files are fixed). The live comparisons plant a realistic
slowdown (the per-pixel Python ``collate_fn`` of ``zoo:slow-collate`` on ``zoo:digits-cnn``'s
data), large enough that a shared 2-core machine cannot hide it; only its direction and where
it lands are asserted, never a duration.
"""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import pinchpoint
from helpers import run_cli
from pinchpoint.comparison import (
    DEFAULT_FAIL_ABOVE,
    SCHEMA,
    Comparison,
    compare,
    parse_fail_above,
)
from pinchpoint.errors import ProfileFormatError

TRACES = Path(__file__).parent / "data" / "traces"
BASE = TRACES / "tiny_compare_base.json.gz"
TEST = TRACES / "tiny_compare_test.json.gz"
A100 = TRACES / "a100_nccl_rank0.json.gz"
TWO_RANKS = TRACES / "two_ranks_a"
V100 = TRACES / "v100_single_rank.json.gz"
DIAGNOSIS = Path(__file__).parent / "data" / "golden" / "slow-collate.diagnosis.json"


@pytest.fixture(scope="module")
def tiny() -> Comparison:
    return compare(BASE, TEST)


# --- 1. the tiny pair: what really changed between the two traces ------------------------------


def test_tiny_pair_step_time_is_unchanged_and_too_short_for_a_noise_test(tiny: Comparison) -> None:
    step = tiny.step_time
    # Both traces hold the same two profiler steps, 100.298 ms and 122.149 ms.
    assert step.a_times_s == step.b_times_s == (0.100298, 0.122149)
    assert step.a_s == step.b_s == pytest.approx(0.1112235)
    assert step.change == 0.0
    assert step.ratio_ci is None and step.beyond_noise is None  # 2 against 2 steps
    assert tiny.verdict == "ok" and not tiny.regression
    assert "2 and 2 steps" in tiny.why and "medians alone decide" in tiny.why
    assert [(p.name, p.a_s, p.b_s) for p in tiny.phases] == [
        ("forward", pytest.approx(0.1112235), pytest.approx(0.1112235))
    ]


def test_tiny_pair_operators_three_added_and_one_collective_halved(tiny: Comparison) -> None:
    ops = tiny.operators
    assert ops is not None and ops.a_steps == ops.b_steps == 2
    rows = {r.name: r for r in ops.rows}
    assert {r.name for r in ops.with_status("added")} == {
        "All2All_Pooled_Req",
        "AddmmBackward0",
        "CatBackward0",
    }
    assert ops.with_status("gone") == []
    # Per step: the test trace's extra host operators, each called once in its two steps.
    assert rows["All2All_Pooled_Req"].b_s == pytest.approx(311e-6 / 2)
    assert rows["AddmmBackward0"].b_s == pytest.approx(207e-6 / 2)
    assert rows["CatBackward0"].b_s == pytest.approx(11e-6 / 2)
    assert rows["All2All_Pooled_Req"].b_calls == 0.5
    # The second nccl:all_reduce annotation is gone: 1 call per step becomes 0.5.
    nccl = rows["nccl:all_reduce"]
    assert nccl.status == "changed"
    assert (nccl.a_calls, nccl.b_calls) == (1.0, 0.5)
    assert (nccl.a_s, nccl.b_s) == (pytest.approx(133e-6 / 2), pytest.approx(66e-6 / 2))
    # Largest change first.
    assert [r.name for r in ops.rows] == [
        "All2All_Pooled_Req",
        "AddmmBackward0",
        "nccl:all_reduce",
        "CatBackward0",
    ]
    assert ops.unchanged == 4  # cudaEventQuery, cudaLaunchKernel, aten::empty, aten::as_strided


def test_tiny_pair_device_kernel_gone_only_from_the_last_step(tiny: Comparison) -> None:
    # The test trace lacks the add<int> kernel launched in the last profiler step: the device
    # window (which, as HTA's, leaves the last step out) is the same, so kernel totals agree,
    # but the per-step device busy time shows it: 4 µs in both steps, then 4 µs and 0.
    kernels = tiny.kernels
    assert kernels is not None and kernels.rows == [] and kernels.unchanged == 1
    assert kernels.a_steps == kernels.b_steps == 1
    assert tiny.gpu is not None
    gpu = {d.name: d for d in tiny.gpu}
    assert (gpu["busy_per_step_s"].a, gpu["busy_per_step_s"].b) == (
        pytest.approx(4e-6),
        pytest.approx(2e-6),
    )
    for name in ("idle_share", "compute_share", "non_compute_share"):
        assert gpu[name].delta == 0.0
    assert gpu["compute_share"].a == 1.0
    assert gpu["comm_comp_overlap"].a is None and gpu["comm_comp_overlap"].delta is None
    assert tiny.findings == [] and tiny.notes == []
    assert tiny.compared == ["step_time", "phases", "gpu", "operators", "kernels", "findings"]


def test_tiny_pair_reversed_turns_added_into_gone() -> None:
    back = compare(TEST, BASE)
    assert back.operators is not None
    assert {r.name for r in back.operators.with_status("gone")} == {
        "All2All_Pooled_Req",
        "AddmmBackward0",
        "CatBackward0",
    }
    assert back.operators.with_status("added") == []


# --- 2. a trace against itself -----------------------------------------------------------------


@pytest.mark.parametrize("path", [BASE, V100, TWO_RANKS], ids=lambda p: p.name)
def test_a_trace_against_itself_has_zero_deltas(path: Path) -> None:
    same = compare(path, path)
    assert same.verdict == "ok" and same.step_time.change == 0.0
    assert all(p.delta_s == 0 for p in same.phases)
    assert all(d.delta in (0.0, None) for d in same.gpu or [])
    assert same.operators is not None and same.operators.rows == []
    assert same.kernels is not None and same.kernels.rows == []
    assert same.findings is not None and all(f.status == "same" for f in same.findings)


def test_v100_against_itself_has_a_noise_interval_that_holds_one() -> None:
    same = compare(V100, V100)
    # Five steps each are enough for a 95 % interval (the exact ranks allow 5 against 5).
    assert len(same.step_time.a_times_s) == 5
    ci = same.step_time.ratio_ci
    assert ci is not None and ci[0] < 1 < ci[1]
    assert same.step_time.beyond_noise is False
    assert same.step_time.a_s == pytest.approx(0.095551087)


# --- 3. two different real jobs ----------------------------------------------------------------


def test_two_real_jobs_the_slower_one_is_a_regression() -> None:
    result = compare(A100, TWO_RANKS, fail_above="5%")
    step = result.step_time
    assert step.a_times_s == (0.222442191, 0.219726905, 0.224936243)
    # Two ranks: each step is the slower rank's (607.904 ms and 630.639 ms).
    assert step.b_times_s == (0.607904, 0.630639)
    assert step.change == pytest.approx(0.6192715 / 0.222442191 - 1)
    assert result.verdict == "regression" and result.regression
    assert result.step_time.ratio_ci is None  # 3 against 2 steps: too few for an interval
    status = {f.kind: f.status for f in result.findings or []}
    assert status == {
        "communication_bound": "added",
        "optimizer_bound": "added",
        "overhead_bound": "better",  # high on the A100 trace, medium on the two ranks
    }
    gpu = {d.name: d for d in result.gpu or []}
    assert gpu["idle_share"].a == pytest.approx(0.77234, abs=1e-5)
    assert gpu["idle_share"].b == pytest.approx((0.5356 + 0.5472) / 2, abs=1e-4)
    assert result.kernels is not None
    top = result.kernels.rows[0]
    assert top.name.startswith("ncclKernel_SendRecv") and top.status == "added"
    assert top.kind == "communication"
    # The other way round it is an improvement, and a loose enough threshold lets it pass.
    assert compare(TWO_RANKS, A100).verdict == "improved"
    assert compare(A100, TWO_RANKS, fail_above="200%").verdict == "ok"


# --- 4. the JSON contract ------------------------------------------------------------------------


def test_json_round_trips_and_saves_atomically(tiny: Comparison, tmp_path: Path) -> None:
    data = tiny.to_dict()
    assert data["schema"] == SCHEMA and data["verdict"] == "ok"
    assert data["fail_above"] == DEFAULT_FAIL_ABOVE
    assert data["operators"]["added"] == 3 and data["operators"]["changed"] == 1
    assert Comparison.from_dict(orjson.loads(orjson.dumps(data))).to_dict() == data
    out = tiny.save(tmp_path / "sub" / "compare.json")
    assert [p.name for p in out.parent.iterdir()] == ["compare.json"]
    assert Comparison.load(out).to_dict() == data
    two = compare(A100, TWO_RANKS)
    assert Comparison.from_dict(orjson.loads(two.to_json())).to_dict() == two.to_dict()
    with pytest.raises(ProfileFormatError, match="not a pinchpoint comparison"):
        Comparison.from_dict({"schema": "pinchpoint.trace/1"})


def test_a_saved_trace_analysis_compares_like_the_trace(tmp_path: Path) -> None:
    saved = pinchpoint.load_trace(TEST, workers=1).save(tmp_path / "test.trace.json")
    direct = compare(BASE, TEST).to_dict()
    via_json = compare(BASE, saved).to_dict()
    for key in ("step_time", "phases", "gpu", "operators", "kernels", "findings", "verdict"):
        assert via_json[key] == direct[key]
    assert compare(saved, TEST).operators.rows == []  # type: ignore[union-attr]


# --- 5. profiles and diagnoses -------------------------------------------------------------------


def test_a_diagnosis_against_its_own_profile(tmp_path: Path) -> None:
    diagnosis = pinchpoint.Diagnosis.from_dict(orjson.loads(DIAGNOSIS.read_bytes()))
    profile_path = diagnosis.profile.save(tmp_path / "profile.json")
    result = compare(DIAGNOSIS, profile_path)
    assert (result.a.kind, result.b.kind) == ("diagnosis", "profile")
    assert result.step_time.change == 0.0 and result.step_time.beyond_noise is False
    assert result.verdict == "ok"
    assert result.operators is not None and result.operators.rows == []
    assert result.operators.unchanged == len({o.name for o in diagnosis.profile.operators})
    assert result.findings is None and result.gpu is None and result.kernels is None
    assert any("B: a profile without a diagnosis" in n for n in result.notes)
    assert [p.name for p in result.phases][:2] == ["data", "forward"]


def test_a_trace_against_a_live_profile_compares_step_time_and_phases_only() -> None:
    diagnosis = pinchpoint.Diagnosis.from_dict(orjson.loads(DIAGNOSIS.read_bytes()))
    result = compare(V100, diagnosis)
    assert result.compared == ["step_time", "phases"]
    assert any("only step time and phases compare" in n for n in result.notes)
    phases = {p.name: p for p in result.phases}
    assert phases["data"].a_s == 0 and phases["data"].b_s > 0  # the trace has no data phase
    assert result.step_time.a_s == pytest.approx(0.095551087)


def _digits(slow: bool) -> Any:
    """``zoo:digits-cnn`` on one thread; with ``slow``, fed by slow-collate's Python collate."""
    pytest.importorskip("sklearn")
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from pinchpoint import zoo
    from pinchpoint.zoo.planted import jitter_collate

    workload = dataclasses.replace(zoo.get("digits-cnn", seed=0), threads=1)
    if slow:
        workload.data = DataLoader(
            workload.data.dataset,
            batch_size=64,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(0),
            collate_fn=jitter_collate(random.Random(0)),
        )
    return workload


@pytest.fixture(scope="module")
def live() -> tuple[pinchpoint.Profile, pinchpoint.Profile]:
    fast = pinchpoint.profile(_digits(False), steps=12, warmup=2, device="cpu")
    slow = pinchpoint.profile(_digits(True), steps=12, warmup=2, device="cpu")
    return fast, slow


def test_a_planted_input_slowdown_is_a_regression_in_the_data_phase(
    live: tuple[pinchpoint.Profile, pinchpoint.Profile],
) -> None:
    fast, slow = live
    result = compare(fast, slow, fail_above=0.05)
    assert result.verdict == "regression", result.why
    ci = result.step_time.ratio_ci
    assert ci is not None and ci[0] > 1 and result.step_time.beyond_noise
    assert "beyond noise" in result.why
    biggest = max(result.phases, key=lambda p: p.delta_s)
    assert biggest.name == "data"
    assert biggest.b_share > biggest.a_share
    # Same model, same operators in the profiled step (the collate runs before it): the
    # table pairs every name, and only times differ.
    assert result.operators is not None and result.operators.rows
    assert result.operators.with_status("added") == result.operators.with_status("gone") == []
    assert "aten::convolution_backward" in {r.name for r in result.operators.rows}
    # Its fix compares as an improvement.
    assert compare(slow, fast).verdict == "improved"


def test_diagnoses_of_the_planted_slowdown_show_input_bound_grow(
    live: tuple[pinchpoint.Profile, pinchpoint.Profile],
) -> None:
    fast, slow = live
    result = compare(pinchpoint.diagnose(fast), pinchpoint.diagnose(slow))
    assert result.findings is not None
    change = {f.kind: f for f in result.findings}["input_bound"]
    assert change.status in ("added", "worse")
    assert change.b is not None and change.b.severity == "high"
    assert change.b.share > (change.a.share if change.a is not None else 0.0)


def test_a_live_profile_against_itself(live: tuple[pinchpoint.Profile, pinchpoint.Profile]) -> None:
    fast, _ = live
    same = compare(fast, fast)
    assert same.verdict == "ok" and same.step_time.change == 0.0
    assert same.step_time.beyond_noise is False  # 12 against 12: an interval around 1
    assert same.step_time.a_median_ci is not None
    assert same.operators is not None and same.operators.rows == []


# --- 6. the threshold and bad input -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("5%", 0.05), ("0.05", 0.05), (0.05, 0.05), ("150%", 1.5), (" 2.5 % ", 0.025), (None, 0.05)],
)
def test_fail_above_reads_percentages_and_fractions(text: Any, value: float) -> None:
    assert parse_fail_above(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "reads as 500%: write 5% for 5 percent"),
        ("-1%", "cannot read"),
        ("fast", "cannot read"),
        (math.inf, "finite"),
        (True, "fraction or a percentage"),
    ],
)
def test_fail_above_refuses_what_it_cannot_read(text: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fail_above(text)


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileFormatError, match="A: no such file or folder"):
        compare(tmp_path / "missing.json", BASE)
    with pytest.raises(ProfileFormatError, match="B: zoo:digits-cnn is a workload"):
        compare(BASE, "zoo:digits-cnn")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "pinchpoint.optimize/1"}')
    with pytest.raises(ProfileFormatError, match=r"is a pinchpoint\.optimize/1 file"):
        compare(other, BASE)
    empty = pinchpoint.Profile(name="empty", mode="train", device="cpu")
    with pytest.raises(ProfileFormatError, match=r"B \(empty\) has no measured steps"):
        compare(BASE, empty)
    with pytest.raises(TypeError, match="not int"):
        compare(1, BASE)


# --- 8. the command line and lean imports --------------------------------------------------------


def test_cli_compare_writes_json_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = run_cli("compare", str(BASE), str(TEST), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "All2All_Pooled_Req" in result.stdout
    assert "comparison written to" in result.stderr
    assert orjson.loads(out.read_bytes())["schema"] == SCHEMA


def test_cli_compare_gates_a_regression() -> None:
    result = run_cli("compare", str(A100), str(TWO_RANKS), "--fail-above", "5%")
    assert result.returncode == 1, result.stderr
    assert "REGRESSION" in result.stdout
    loose = run_cli("compare", str(A100), str(TWO_RANKS), "--fail-above", "2")
    assert loose.returncode == 2 and loose.stderr.startswith("error: --fail-above")
    assert run_cli("compare", str(A100), str(TWO_RANKS), "--fail-above", "3.0").returncode == 2
    assert run_cli("compare", str(A100), str(TWO_RANKS), "--fail-above", "200%").returncode == 0


@pytest.mark.parametrize(
    "args",
    [("missing.json", "x.json"), ("zoo:digits-cnn", "zoo:digits-cnn")],
)
def test_cli_compare_bad_input_is_one_line(args: tuple[str, str], tmp_path: Path) -> None:
    result = run_cli("compare", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_comparing_traces_does_not_import_torch() -> None:
    code = (
        "import sys, pinchpoint\n"
        f"c = pinchpoint.compare({str(BASE)!r}, {str(TEST)!r})\n"
        "c.to_json()\n"
        "from pinchpoint.renderers.terminal import render_comparison\n"
        "render_comparison(c)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compare_is_the_function_even_after_its_module_is_imported() -> None:
    import pinchpoint.comparison

    assert pinchpoint.compare is pinchpoint.comparison.compare
    assert pinchpoint.Comparison is Comparison


def test_a_trace_compares_equal_to_its_own_profile_and_its_diagnosis() -> None:
    """One model: a trace's job Profile, or a diagnosis of the trace, compares to the trace
    itself with every number unchanged (operators per profiled step on both sides)."""
    job = pinchpoint.load_trace(TRACES / "two_ranks_a", workers=1)
    as_profile = compare(job, job.profile)
    assert as_profile.a.ranks == as_profile.b.ranks == 2
    slowest = [max(s.wall_s for s in row) for row in job.profile.matched_steps().values()]
    assert list(as_profile.step_time.a_times_s) == list(as_profile.step_time.b_times_s) == slowest
    assert as_profile.operators is not None and as_profile.operators.rows == []
    assert as_profile.kernels is not None and as_profile.kernels.rows == []
    single = pinchpoint.load_trace(TRACES / "v100_single_rank.json.gz", workers=1)
    diagnosed = compare(single, pinchpoint.diagnose(single))
    assert diagnosed.b.from_trace and diagnosed.b.ranks == 1
    assert diagnosed.operators is not None and diagnosed.operators.unchanged > 10
    assert diagnosed.operators.rows == []  # totals over 10 steps were once read as per step

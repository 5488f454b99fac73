"""Scaling efficiency and distributed optimize, with real torchrun runs on gloo.

The launches are few (start-up, about 10 s each on two cores, dominates them): one scaling
measurement through the command line (1 and 2 processes, one run each), whose JSON output the
other tests read, and one optimize run on ``zoo:ddp-comm-heavy`` with one run per arm.
"""

from __future__ import annotations

import math
import os
import statistics
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from helpers import run_cli
from pinchpoint.renderers.terminal import render_scale
from pinchpoint.stats import median_interval
from pinchpoint.trials.scale import ScaleResult, parse_nprocs, scale

STEPS = 8
BATCH = 16

_WORKLOAD = f"""
import pinchpoint, torch

def workload():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    x = torch.randn(512, 32)
    y = torch.randint(0, 4, (512,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size={BATCH}, shuffle=True)
    return pinchpoint.Workload(
        model=model, data=loader,
        loss=lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05), name="scale-mlp")
"""


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScaleResult, str, Path]:
    """``pinchpoint scale FILE --nproc 1,2`` run once: the result it saved, stdout, the file."""
    folder = tmp_path_factory.mktemp("scale")
    target = folder / "mlp.py"
    target.write_text(textwrap.dedent(_WORKLOAD))
    out = folder / "scale.json"
    result = run_cli(
        "scale",
        str(target),
        "--nproc",
        "2,1",
        "--steps",
        str(STEPS),
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return ScaleResult.load(out), result.stdout, out


@pytest.mark.slow
def test_scale_measures_both_counts_from_real_runs(
    scaled: tuple[ScaleResult, str, Path],
) -> None:
    result, _, _ = scaled
    assert [p.nproc for p in result.points] == [1, 2]
    one, two = result.points
    # Each count ran once, in the order given to the runs (1 first), with every measured step.
    assert [(r.nproc, r.position) for p in result.points for r in p.runs] == [(1, 0), (2, 1)]
    assert all(len(r.step_times_s) == STEPS for p in result.points for r in p.runs)
    # Every rank of every count had the same threads: the cores over the largest count.
    given = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(given) if given.isdigit() else max(1, (os.cpu_count() or 1) // 2)
    assert result.threads == threads == result.machine.threads
    # The global batch: every rank's recorded batch, summed.
    assert one.global_batch == BATCH and two.global_batch == 2 * BATCH
    # Two ranks all-reduce their gradients: some of each step waits on it.
    assert two.communication_share is not None and 0 < two.communication_share < 1


@pytest.mark.slow
def test_efficiency_is_computed_from_the_measured_steps(
    scaled: tuple[ScaleResult, str, Path],
) -> None:
    result, _, _ = scaled
    one, two = result.points
    times_1, times_2 = one.runs[0].step_times_s, two.runs[0].step_times_s
    throughput_1 = BATCH / statistics.median(times_1)
    throughput_2 = 2 * BATCH / statistics.median(times_2)
    assert one.throughput_per_s == pytest.approx(throughput_1, rel=1e-12)
    assert two.throughput_per_s == pytest.approx(throughput_2, rel=1e-12)
    assert two.speedup == pytest.approx(throughput_2 / throughput_1, rel=1e-12)
    assert two.efficiency == pytest.approx(throughput_2 / (2 * throughput_1), rel=1e-12)
    assert one.speedup == 1.0 and one.efficiency == 1.0
    # The interval: steps paired in order, per-sample time ratios, their median's interval.
    ratios = [(a / BATCH) / (b / (2 * BATCH)) for a, b in zip(times_1, times_2, strict=True)]
    low, high = median_interval(ratios)
    assert two.speedup_ci == pytest.approx((low, high), rel=1e-12)
    assert two.efficiency_ci == pytest.approx((low / 2, high / 2), rel=1e-12)
    assert all(math.isfinite(v) and v > 0 for v in (*two.speedup_ci, *two.efficiency_ci))
    assert f"{two.speedup:.2f}x the throughput of 1" in result.verdict
    assert f"{two.efficiency:.0%} of linear" in result.verdict


@pytest.mark.slow
def test_scale_json_round_trips_and_renders(scaled: tuple[ScaleResult, str, Path]) -> None:
    import orjson

    result, stdout, path = scaled
    on_disk = orjson.loads(path.read_bytes())
    assert on_disk["schema"] == "pinchpoint.scale/1"
    assert on_disk == result.to_dict()
    assert ScaleResult.from_dict(on_disk).to_dict() == on_disk
    assert result.verdict in " ".join(stdout.split())
    console = Console(width=80, record=True, color_system=None)
    console.print(render_scale(result))
    text = console.export_text()
    assert "efficiency" in text and f"{result.points[1].speedup:.2f}×" in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 1"),
        ("a,b", "'a' in 'a,b' is not a whole number"),
        ("1", "at least two process counts"),
        ("1,1", "appears twice"),
        ("1,,2", "is not a list of process counts"),
        ("-1,2", "is not a whole number"),
    ],
)
def test_bad_nproc_values_are_one_line_errors(value: str, message: str) -> None:
    result = run_cli("scale", "zoo:ddp-comm-heavy", "--nproc", value)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert result.stderr.startswith("error: --nproc: ")
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_an_unknown_target_is_a_one_line_error() -> None:
    result = run_cli("scale", "zoo:no-such-thing", "--nproc", "1,2")
    assert result.returncode == 2
    assert "no zoo workload named 'no-such-thing'" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_parse_nprocs_sorts_and_the_api_checks_its_settings() -> None:
    assert parse_nprocs("4, 1,2") == (1, 2, 4)
    assert parse_nprocs([2, 1]) == (1, 2)
    with pytest.raises(ValueError, match="must be an integer"):
        parse_nprocs([1, 2.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        scale("zoo:ddp-comm-heavy", "1,2", steps=0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        scale("zoo:ddp-comm-heavy", (1, 2), repeats=0)


# ----------------------------------------------------------------------------- optimize --nproc


@pytest.mark.slow
def test_optimize_on_two_processes_tries_each_ddp_remedy(tmp_path: Path) -> None:
    import orjson

    from pinchpoint import zoo
    from pinchpoint.optimizer import optimize

    result = optimize(
        zoo.get("ddp-comm-heavy"),
        target="zoo:ddp-comm-heavy",
        nproc=2,
        objective="throughput",
        max_drop="5%",
        combine=False,
        time_budget="15m",
        out=tmp_path,
        trial_options={"steps": 6, "warmup": 1, "repeats": 1},
    )
    assert result.diagnosis is not None
    assert "communication_bound" in result.diagnosis["findings"]
    names = [r.candidate.remedies[0].name for r in result.records]
    assert names == ["no_sync_accumulation", "per_rank_batch", "ddp_buckets", "grad_compression"]
    for record in result.records:
        trial = record.trial
        assert trial is not None, record.error
        assert trial.speed.rounds >= 6
        assert all(math.isfinite(r) and r > 0 for r in trial.speed.ratios)
        assert trial.speedup == pytest.approx(statistics.median(trial.speed.ratios), rel=1e-12)
        assert all(math.isfinite(v) and v > 0 for v in trial.speedup_ci)
        assert trial.quality_metric == "loss"
        assert math.isfinite(trial.quality) and math.isfinite(trial.quality_baseline)
        assert trial.accepted == (
            trial.speedup_ci[0] > 1 and trial.budget.allows(trial.quality_drop)
        )
        assert "ran on 2 processes" in trial.notes[0]
    units = {r.candidate.remedies[0].name: r.trial.unit for r in result.records if r.trial}
    # A larger batch is compared per sample; accumulation per step, over whole 4-step cycles.
    assert units["per_rank_batch"] == "sample"
    assert units["no_sync_accumulation"] == "step"
    saved = orjson.loads((tmp_path / "optimize.json").read_bytes())
    assert saved["nproc"] == 2 and len(saved["trials"]) == 4
    assert [t["labels"][0].split("(")[0] for t in saved["trials"]] == names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--nproc", "2", "--objective", "size"), "--nproc trials measure speed"),
        (("--nproc", "0"), "0"),
    ],
)
def test_optimize_nproc_needs_a_speed_objective_and_a_positive_count(
    args: tuple[str, ...], message: str
) -> None:
    result = run_cli("optimize", "zoo:ddp-comm-heavy", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr

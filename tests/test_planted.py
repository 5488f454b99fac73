"""Tests of the planted-bottleneck zoo: each workload shows the measured evidence of its kind.

Every planted workload is recorded with ``pinchpoint.profile(steps=3, warmup=1)`` and its Profile
is checked for the evidence the taxonomy names for the planted kind: phase shares, operator
counts and times, the share of matmuls or of low-intensity operators, achieved FLOP/s against a
``torch.mm`` rate measured here, peak memory against the budget. Only shares and ratios are
asserted, never absolute times, with margins wide enough for a shared 2-core machine.

The evidence tests run torch with one intra-op thread. On a machine whose other core is busy
with someone else's work, every OpenMP parallel region waits milliseconds for its second thread
to be scheduled, which turns a 5 µs operator into a 5 ms one at random and buries any share;
with one thread a busy neighbour only slows the whole step evenly.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import pytest

import pinchpoint
from pinchpoint import zoo
from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Workload

torch = pytest.importorskip("torch")

from pinchpoint.zoo.planted import PLANTED  # noqa: E402  (needs torch, checked just above)

KINDS = {
    "slow-collate": "input_bound",
    "tiny-layers": "overhead_bound",
    "wide-mlp": "compute_bound",
    "unfused-activations": "memory_bound",
    "many-small-params": "optimizer_bound",
    "activation-hog": "memory_capacity",
}
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def _get(name: str, **options: Any) -> Workload:
    """Build a zoo workload, skipping where it needs scikit-learn and that is missing."""
    if name == "slow-collate":
        pytest.importorskip("sklearn")
    return zoo.get(name, **options)


def _record(name: str) -> tuple[Workload, pinchpoint.Profile]:
    workload = _get(name)
    # A full collection of the test session's heap takes ~100 ms; start with none pending so
    # that one is less likely to land inside a 20 ms step.
    gc.collect()
    return workload, pinchpoint.profile(workload, steps=3, warmup=1, device="cpu")


def _median_share(profile: pinchpoint.Profile, *phases: str) -> float:
    """The median seconds of ``phases`` over the median step time: one spiked step moves it not."""
    stats = profile.phase_stats()
    step = profile.step_time_s
    assert step
    return sum(stats[phase].median_s for phase in phases) / step


def _self_time(profile: pinchpoint.Profile) -> float:
    return sum(op.self_s for op in profile.operators)


def _calls(profile: pinchpoint.Profile) -> int:
    return sum(op.count for op in profile.operators)


def _median_call_s(profile: pinchpoint.Profile) -> float:
    """The median self time of one operator call, over every call of the profiled step."""
    # A row sums the calls of one operator with one set of shapes: spread its mean over them.
    rows = sorted((op.self_s / op.count, op.count) for op in profile.operators if op.count)
    middle, seen = _calls(profile) / 2, 0
    for per_call, count in rows:
        seen += count
        if seen >= middle:
            return per_call
    raise AssertionError("the profile has no operators")


def _mm_rate() -> float:
    """FLOP/s of a 2048 x 2048 fp32 ``torch.mm`` on this machine now, the best of five."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


def _low_intensity(op: Any) -> bool:
    """Whether an operator does under one FLOP per byte it moves (pointwise, reductions)."""
    return op.flops is not None and bool(op.bytes) and op.flops / op.bytes < 1


def _tensors(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


# --- the registry -------------------------------------------------------------------------------


def test_planted_maps_the_six_workloads_to_their_kinds_and_all_are_registered() -> None:
    assert PLANTED == KINDS
    entries = {entry.name: entry for entry in zoo.entries()}
    for name, kind in PLANTED.items():
        assert name in zoo.names()
        entry = entries[name]
        assert entry.target.startswith("pinchpoint.zoo.planted:")
        assert entry.summary.endswith(f"(planted: {kind})") and "\n" not in entry.summary
        expected_mode = "infer" if name == "unfused-activations" else "train"
        assert entry.mode == expected_mode


@pytest.mark.parametrize(
    ("name", "option"),
    [("tiny-layers", "depth"), ("wide-mlp", "width"), ("many-small-params", "features")],
)
def test_a_bad_option_is_a_workload_error(name: str, option: str) -> None:
    with pytest.raises(WorkloadError, match=option):
        zoo.get(name, **{option: 0})
    with pytest.raises(WorkloadError, match="batch_size"):
        zoo.get(name, batch_size=-1)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_planted_workload_is_described_and_leaves_the_callers_rng_alone(name: str) -> None:
    # Seeds fixing data and weights: test_zoo's determinism test covers every zoo workload.
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    first = _get(name)
    # Building draws from generators of its own: the caller's random state is left alone.
    assert torch.equal(torch.rand(4), expected)
    assert first.name == name
    assert first.description and "\n" not in first.description
    assert first.mode == ("infer" if name == "unfused-activations" else "train")


# --- quality ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "steps"), [("slow-collate", 60), ("tiny-layers", 60), ("many-small-params", 60)]
)
def test_a_planted_workload_still_learns(name: str, steps: int, one_thread: None) -> None:
    workload = _get(name)
    assert workload.metric == "accuracy" and workload.greater_is_better
    assert workload.evaluate is not None
    before = workload.evaluate(workload.model)
    batches = workload.batches()
    for _ in range(steps):
        workload.optimizer.zero_grad()
        workload.loss(workload.model, next(batches)).backward()
        workload.optimizer.step()
    assert workload.evaluate(workload.model) > before + 0.1


def test_unfused_activations_match_the_fused_operators_until_perturbed() -> None:
    workload = zoo.get("unfused-activations", batch_size=2, tokens=64)
    assert workload.evaluate is not None and workload.metric == "cosine"
    assert workload.evaluate(workload.model) > 0.99999
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in workload.model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    assert workload.evaluate(workload.model) < 0.999


# --- the measured evidence of each kind ---------------------------------------------------------


@pytest.mark.slow
def test_slow_collate_spends_most_of_each_step_waiting_for_data(one_thread: None) -> None:
    _, profile = _record("slow-collate")
    assert _median_share(profile, "data") >= 0.7
    assert profile.phase_stats()["data"].share >= 0.5
    # The model's own work is a small part: the collate_fn is the bottleneck, not the MLP.
    assert _median_share(profile, "forward", "backward", "optimizer") <= 0.25


@pytest.mark.slow
def test_tiny_layers_run_thousands_of_microsecond_operators(one_thread: None) -> None:
    _, profile = _record("tiny-layers")
    assert _calls(profile) >= 2000
    assert _median_call_s(profile) < 20e-6
    assert profile.flops is not None
    assert profile.flops.total / _calls(profile) < 10_000
    achieved = profile.achieved_flops_per_s
    assert achieved is not None and achieved < 0.01 * _mm_rate()
    # Forward and backward, not data or the optimizer, hold the operators' time.
    assert _median_share(profile, "forward", "backward") >= 0.6


@pytest.mark.slow
def test_wide_mlp_is_matmuls_near_the_machines_matmul_rate(one_thread: None) -> None:
    peak = _mm_rate()
    _, profile = _record("wide-mlp")
    peak = max(peak, _mm_rate())
    matmul_s = sum(op.self_s for op in profile.operators if op.name in MATMULS)
    assert matmul_s / _self_time(profile) >= 0.75
    achieved = profile.achieved_flops_per_s
    assert achieved is not None and achieved >= 0.35 * peak
    assert _median_share(profile, "data") < 0.05


@pytest.mark.slow
def test_unfused_activations_are_low_intensity_passes_over_large_tensors(
    one_thread: None,
) -> None:
    _, profile = _record("unfused-activations")
    total = _self_time(profile)
    low = [op for op in profile.operators if _low_intensity(op)]
    assert sum(op.self_s for op in low) / total >= 0.7
    matmul_s = sum(op.self_s for op in profile.operators if op.name in MATMULS)
    assert matmul_s / total <= 0.25
    # The passes that take the time each move several MiB, far more than a core's 2 MiB L2.
    heaviest = sorted(low, key=lambda op: op.self_s, reverse=True)[:5]
    assert all(op.bytes is not None and op.bytes / op.count >= 8 << 20 for op in heaviest)


@pytest.mark.slow
def test_many_small_params_spend_most_of_each_step_in_the_optimizer(one_thread: None) -> None:
    workload, profile = _record("many-small-params")
    assert len(list(workload.model.parameters())) >= 300
    assert not workload.optimizer.defaults["foreach"]
    assert _median_share(profile, "optimizer") >= 0.5
    others = ("data", "forward", "backward", "other")
    assert all(_median_share(profile, p) < _median_share(profile, "optimizer") for p in others)


@pytest.mark.slow
def test_activation_hog_peaks_well_above_its_memory_budget(one_thread: None) -> None:
    workload, profile = _record("activation-hog")
    budget = workload.memory_budget_bytes
    assert budget is not None and budget % (1 << 20) == 0
    assert profile.settings["memory_budget_bytes"] == budget
    memory = profile.memory
    assert memory.activations_peak_bytes is not None and memory.parameters_bytes is not None
    state = memory.parameters_bytes + (memory.optimizer_state_bytes or 0)
    peak = state + memory.activations_peak_bytes
    assert peak >= 2.5 * budget
    # Activations, not weights, are what does not fit: the model alone fits many times over.
    assert memory.activations_peak_bytes >= 2 * budget
    assert state <= budget / 8
    # Micro-batches of a quarter fit: the remedy a diagnosis will offer does work here.
    smaller = pinchpoint.profile(
        zoo.get("activation-hog", batch_size=512), steps=1, warmup=0, device="cpu"
    ).memory
    assert smaller.activations_peak_bytes is not None and smaller.parameters_bytes is not None
    assert smaller.activations_peak_bytes + state < budget

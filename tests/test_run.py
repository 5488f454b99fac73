"""``pinchpoint run``: unmodified scripts, run as python runs them, their steps found and recorded.

The scripts in ``tests/scripts`` hold no pinchpoint code; each test runs the real command in a
fresh process and reads the diagnosis it writes. The StepFinder's own cases (accumulation,
GradScaler, closures, clipping, inference) run in-process on small loops.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.helpers import run_cli

from pinchpoint.recorders import autostep
from pinchpoint.recorders.autostep import StepFinder, Stopped

SCRIPTS = Path(__file__).parent / "scripts"
#: --steps 4 --warmup 1: one warm-up step, the two sampled steps, four measured steps.
SHORT = ("--steps", "4", "--warmup", "1")
RECORDED = 1 + 2 + 4


def diagnosis(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def steps_of(path: Path) -> list[dict[str, Any]]:
    return diagnosis(path)["profile"]["steps"]


def assert_phases_tile(steps: list[dict[str, Any]]) -> None:
    for step in steps:
        assert math.isclose(sum(step["phases"].values()), step["wall_s"], rel_tol=1e-9)
        assert step["wall_s"] > 0


# --------------------------------------------------------------------------- the command


def test_argparse_script_runs_as_main_with_its_arguments(tmp_path: Path) -> None:
    log, out, page = tmp_path / "log.json", tmp_path / "d.json", tmp_path / "d.html"
    script = SCRIPTS / "plain_train.py"
    result = run_cli(
        "run", *SHORT, "--json", str(out), "--html", str(page),
        str(script), "--lr", "0.1", "--log", str(log),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained 24 steps" in result.stdout  # the script ran to its end, as without pinchpoint
    own = json.loads(log.read_text())
    assert own["argv"] == [str(script), "--lr", "0.1", "--log", str(log)]
    assert own["name"] == "__main__"
    steps = steps_of(out)
    assert len(steps) == RECORDED
    assert [s["warmup"] for s in steps] == [True] + [False] * (RECORDED - 1)
    assert [s["sampled"] for s in steps[1:3]] == ["flops", "operators"]
    assert_phases_tile(steps)
    # Step 0 of the script is the finder's own; recorded step i is the script's step i + 1.
    assert [s["loss"] for s in steps] == pytest.approx(own["losses"][1 : 1 + RECORDED], rel=1e-6)
    assert all(s["samples"] == 64 for s in steps)
    for step in steps:
        assert step["phases"]["forward"] > 0 and step["phases"]["backward"] > 0
        assert step["phases"]["optimizer"] > 0
    found = diagnosis(out)
    assert found["profile"]["mode"] == "train"
    assert found["profile"]["optimizer"]["type"] == "SGD"
    assert found["profile"]["health"]["layers"]  # per-layer gradient norms were recorded
    assert "train step(s) recorded" in result.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "plain_train" in html


def test_slow_collate_is_input_bound_with_no_change_to_the_script(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = run_cli("run", *SHORT, "--json", str(out), str(SCRIPTS / "plain_train.py"), "--slow")
    assert result.returncode == 0, result.stderr
    found = diagnosis(out)
    assert found["findings"][0]["kind"] == "input_bound"
    steps = found["profile"]["steps"]
    # Each batch waits for the collate's 20 ms sleep, and that wait is the step's data phase.
    assert all(s["phases"]["data"] >= 0.02 for s in steps)
    assert found["findings"][0]["evidence"]["data_share"] > 0.5
    assert "input_bound" in result.stdout


def test_same_finding_as_diagnose_on_the_equivalent_workload(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    ran = run_cli("run", *SHORT, "--json", str(out), str(SCRIPTS / "zoo_loop.py"))
    assert ran.returncode == 0, ran.stderr
    reference = tmp_path / "diagnose.json"
    diagnosed = run_cli("diagnose", "zoo:slow-collate", *SHORT, "--json", str(reference))
    assert diagnosed.returncode == 0, diagnosed.stderr
    assert diagnosis(out)["findings"][0]["kind"] == diagnosis(reference)["findings"][0]["kind"]
    assert diagnosis(out)["findings"][0]["kind"] == "input_bound"


def test_loader_with_worker_processes(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    script = str(SCRIPTS / "plain_train.py")
    result = run_cli("run", *SHORT, "--json", str(out), script, "--workers", "2", "--slow")
    assert result.returncode == 0, result.stderr
    steps = steps_of(out)
    assert len(steps) == RECORDED
    assert_phases_tile(steps)
    # Two workers collate in parallel: the wait per batch is under the 20 ms of one collate.
    waits = sorted(s["phases"]["data"] for s in steps[3:])
    assert waits[len(waits) // 2] < 0.02


def test_crash_at_step_7_keeps_its_profile_traceback_and_status(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    script = SCRIPTS / "plain_train.py"
    result = run_cli("run", *SHORT, "--json", str(out), str(script), "--crash-at", "7")
    assert result.returncode == 1
    assert "RuntimeError: boom at step 7" in result.stderr
    assert f'File "{script}"' in result.stderr
    assert "recorders/script.py" not in result.stderr  # the traceback starts at the script
    steps = steps_of(out)
    assert len(steps) == 6  # steps 1 to 6; step 0 is the finder's, step 7 never ran
    assert_phases_tile(steps)
    assert "raised RuntimeError" in result.stderr


#: How long the signal test waits for the script to get going, then for it to end once signalled.
SIGNAL_WAIT_S = 60


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """Start a child here and it can be interrupted, however this test run was started.

    A shell without job control starts a command put in the background (``pytest ... &``)
    with SIGINT ignored, and a child inherits that; Python then installs no KeyboardInterrupt
    handler, so a SIGINT would do nothing, with or without pinchpoint. A handler (unlike
    SIG_IGN) is reset to the default in a child, so one is set while the child starts.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    ("signum", "message"), [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupted")]
)
def test_interrupted_script_leaves_a_complete_profile(
    tmp_path: Path, signum: int, message: str
) -> None:
    out, ready = tmp_path / "d.json", tmp_path / "ready"
    command = [sys.executable, "-m", "pinchpoint", "run", "--steps", "1000", "--json", str(out)]
    with _sigint_not_ignored():
        process = subprocess.Popen(
            [*command, str(SCRIPTS / "endless.py"), str(ready)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "100"},
        )
    # However the test ends, the process is killed, reaped and its pipes closed (the with).
    with process:
        try:
            deadline = time.monotonic() + SIGNAL_WAIT_S
            while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if not ready.exists():
                process.kill()
                pytest.fail(f"the script never got to step 30: {process.communicate()[1]}")
            process.send_signal(signum)
            try:
                stdout, stderr = process.communicate(timeout=SIGNAL_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                stderr = process.communicate()[1]
                pytest.fail(f"still running {SIGNAL_WAIT_S} s after signal {signum}: {stderr}")
        finally:
            process.kill()  # nothing once it has ended
    assert process.returncode == -signum  # it ends by the signal, as it would have bare
    assert "the script's finally ran" in stdout
    assert message in stderr
    steps = steps_of(out)
    assert len(steps) >= 29
    assert_phases_tile(steps)


def test_exit_status_and_inference_steps(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = run_cli("run", *SHORT, "--json", str(out), str(SCRIPTS / "plain_infer.py"))
    assert result.returncode == 3  # the script's sys.exit(3)
    found = diagnosis(out)
    assert found["profile"]["mode"] == "infer"
    steps = found["profile"]["steps"]
    assert len(steps) == RECORDED
    assert_phases_tile(steps)
    # The model is the larger module (128*512+512 + 512*10+10 parameters), not the helper.
    assert found["profile"]["modules"][0]["params"] == 128 * 512 + 512 + 512 * 10 + 10
    assert all(s["phases"]["forward"] > 0 for s in steps)
    assert "exited with status 3" in result.stderr


def test_module_form(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = run_cli("run", *SHORT, "--json", str(out), "-m", "plain_train", cwd=SCRIPTS)
    assert result.returncode == 0, result.stderr
    assert len(steps_of(out)) == RECORDED


def test_stop_ends_the_script_once_recorded(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    script = str(SCRIPTS / "plain_train.py")
    result = run_cli("run", "--steps", "2", "--warmup", "0", "--stop", "--json", str(out), script)
    assert result.returncode == 0, result.stderr
    assert "trained" not in result.stdout  # stopped before its end
    assert len(steps_of(out)) == 4
    assert "--stop" in result.stderr


def test_no_torch_work_says_so_in_one_line() -> None:
    result = run_cli("run", str(SCRIPTS / "no_torch.py"))
    assert result.returncode == 0
    assert result.stdout.strip() == "45"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ran no torch training or inference" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing.py",), "can't open file"),
        (("--workers", "2", "x.py"), "no such option: --workers"),
        (("-m", "no_such_module_here"), "no module named"),
        (("--json", "/no/such/folder/d.json", "x.py"), "does not exist"),
    ],
)
def test_bad_input_is_one_line(args: tuple[str, ...], message: str) -> None:
    result = run_cli("run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the finder itself


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def _loader(batches: int = 40) -> torch.utils.data.DataLoader[Any]:
    x = torch.randn(batches * 8, 16)
    y = torch.randint(0, 4, (batches * 8,))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _finder(**options: Any) -> StepFinder:
    return StepFinder(steps=3, warmup=1, sample=False, **options).install()


def test_accumulation_steps_are_optimizer_steps(one_thread: None) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    backward, fetch = (
        torch.Tensor.backward,
        torch.utils.data.dataloader._BaseDataLoaderIter.__next__,
    )
    finder = _finder()
    assert torch.Tensor.backward is not backward
    try:
        for index, (x, y) in enumerate(_loader()):
            loss = torch.nn.functional.cross_entropy(model(x), y) / 2
            loss.backward()
            if index % 2 == 1:
                optimizer.step()
                optimizer.zero_grad()
    finally:
        profile = finder.finish()
    assert profile is not None and profile.mode == "train"
    assert len(profile.steps) == 4
    for step in profile.steps:
        assert step.samples == 16  # two micro-batches of 8
        assert math.isclose(sum(step.phases.values()), step.wall_s, rel_tol=1e-9)
        assert step.phases["data"] > 0
    # Finished: every patch is undone.
    assert torch.Tensor.backward is backward
    assert torch.utils.data.dataloader._BaseDataLoaderIter.__next__ is fetch
    assert finder.recorder is None and finder.done


def test_gradscaler_skipped_steps_still_end(one_thread: None) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # A scale of 2**127 overflows the fp32 gradients: the first steps are skipped (and the scale
    # halved), but each still ends the recorded step.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    finder = _finder()
    losses = []
    try:
        for x, y in _loader():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
    finally:
        profile = finder.finish()
    assert profile is not None
    assert len(profile.steps) == 4
    # The loss recorded is the loss before scaling.
    assert [s.loss for s in profile.steps] == pytest.approx(losses[1:5], rel=1e-6)


def test_closure_optimizer_times_its_update_and_norm(
    one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autostep, "INSTRUMENT_BUDGET", None)  # gradient norms on every step
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finder = _finder()
    try:
        for x, y in _loader():

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            optimizer.step(closure)
    finally:
        profile = finder.finish()
    assert profile is not None and len(profile.steps) == 4
    for step in profile.steps:
        assert step.phases["forward"] > 0 and step.phases["backward"] > 0
        assert step.phases["optimizer"] > 0
        assert step.grad_norm is not None and step.grad_norm > 0


def test_clipping_gives_the_norm_before_clipping(one_thread: None) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    norms = []
    finder = _finder()
    try:
        for x, y in _loader():
            loss = torch.nn.functional.cross_entropy(model(x), y) * 100
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)))
            optimizer.step()
    finally:
        profile = finder.finish()
    assert profile is not None
    assert [s.grad_norm for s in profile.steps] == pytest.approx(norms[1:5], rel=1e-5)
    assert all(n > 0.01 for n in norms[1:5])  # above the clip: the recorder's own would read 0.01


def test_evaluation_before_training_is_not_taken_for_inference(one_thread: None) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = _loader()
    finder = _finder()
    try:
        with torch.no_grad():
            for x, _ in list(loader)[:5]:
                model(x)
        assert finder.found == "infer"
        for x, y in loader:
            _train_step(model, optimizer, x, y)
    finally:
        profile = finder.finish()
    assert profile is not None and profile.mode == "train"
    assert len(profile.steps) == 4


def test_stop_raises_once_recorded(one_thread: None) -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finder = _finder(stop=True)
    ran = 0
    with pytest.raises(Stopped):
        for x, y in _loader():
            _train_step(model, optimizer, x, y)
            ran += 1
    assert ran == 4  # the finder's step, then 4 recorded; the 5th optimizer.step() raised
    assert finder.result is not None and len(finder.result.steps) == 4


def test_gradient_instruments_are_paced_within_their_budget(one_thread: None) -> None:
    """On a step of a few hundred µs one pass over the gradients is several percent of it: the
    norms are spaced so that they cost at most INSTRUMENT_BUDGET of the steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 512), torch.nn.ReLU(), torch.nn.Linear(512, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    finder = StepFinder(steps=30, warmup=1, sample=False).install()
    try:
        for x, y in _loader(60):
            _train_step(model, optimizer, x, y)
    finally:
        profile = finder.finish()
    assert profile is not None and profile.health is not None
    normed = [s.index for s in profile.steps if s.grad_norm is not None]
    assert normed[0] == 0 and len(normed) < len(profile.steps)
    assert max(b - a for a, b in itertools.pairwise(normed)) > 1
    # Per-layer norms come on the same steps as the global one.
    assert profile.health.grad_steps == normed

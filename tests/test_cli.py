"""The command line, run as a user runs it: real processes, exit codes, and what they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli as run
from pinchpoint import Profile


def test_help_explains_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("profile", "zoo", "demo"):
        assert command in result.stdout
    for command in ("profile", "zoo", "demo"):
        sub = run(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout


def test_profile_a_workload_file(workload_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "run.json"
    result = run("profile", str(workload_file), "--steps", "4", "--warmup", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "file-mlp" in result.stdout and "train on cpu" in result.stdout
    assert "Where a step's time goes" in result.stdout
    assert "forward" in result.stdout and "backward" in result.stdout
    assert "Traceback" not in result.stderr and "USDT" not in result.stderr
    profile = Profile.load(out)
    assert profile.name == "file-mlp" and len(profile.measured_steps) == 4
    assert profile.operators and profile.flops is not None


def test_profile_a_named_function(workload_file: Path) -> None:
    result = run("profile", f"{workload_file}:inference", "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert "file-infer" in result.stdout and "infer on cpu" in result.stdout


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("nope.py", "no such file: "),
        ("my_workload.py:missing", "has no function 'missing' (it defines: "),
        ("my_workload.py:raises", "raises() raised ValueError: the dataset path is wrong"),
        ("my_workload.py:empty", "workload 'empty': its data is empty"),
        ("my_workload.py:not_a_workload", "returned int, not a pinchpoint.Workload"),
        (
            "my_workload.py:fails_in_step",
            "failed at step 0: RuntimeError: shape mismatch in my loss",
        ),
    ],
)
def test_bad_targets_fail_with_one_line(workload_file: Path, suffix: str, message: str) -> None:
    target = str(workload_file.parent / suffix)
    result = run("profile", target, "--steps", "1")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_bad_device_and_unknown_zoo_name(workload_file: Path) -> None:
    result = run("profile", str(workload_file), "--device", "tpu")
    assert result.returncode == 2 and "unknown device 'tpu'" in result.stderr
    result = run("profile", "zoo:nothing")
    assert result.returncode == 2 and "no zoo workload named 'nothing'" in result.stderr
    assert "digits-cnn" in result.stderr


def test_debug_shows_the_traceback(workload_file: Path) -> None:
    result = run("profile", f"{workload_file}:raises", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "the dataset path is wrong" in result.stderr


def test_syntax_error_in_workload_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def workload(:\n")
    result = run("profile", str(bad))
    assert result.returncode == 2 and "syntax error" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_run_leaves_existing_json_untouched(workload_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.json"
    out.write_text("precious")
    result = run("profile", f"{workload_file}:fails_in_step", "--json", str(out))
    assert result.returncode == 2
    assert out.read_text() == "precious"


def test_zoo_lists_every_workload() -> None:
    result = run("zoo")
    assert result.returncode == 0
    for name in ("digits-cnn", "minilm", "bert-base", "tiny-gpt"):
        assert f"zoo:{name}" in result.stdout


def test_calibrate_prints_peaks_and_reuses_the_cache(tmp_path: Path) -> None:
    env = {**os.environ, "PINCHPOINT_CACHE_DIR": str(tmp_path)}
    first = subprocess.run(
        [sys.executable, "-m", "pinchpoint", "calibrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    assert "matmul float32" in first.stdout and "memory bandwidth" in first.stdout
    assert "measured in" in first.stderr and str(tmp_path) in first.stderr
    second = subprocess.run(
        [sys.executable, "-m", "pinchpoint", "calibrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert second.returncode == 0 and "cached result" in second.stderr
    assert second.stdout == first.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [("{broken", "is not valid JSON"), ('{"schema": "other/1"}', "not a pinchpoint profile")],
)
def test_diagnose_a_bad_json_file_fails_with_one_line(
    tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "run.json"
    bad.write_text(content)
    result = run("diagnose", str(bad))
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_lr_find_suggests_a_rate_and_refuses_inference(workload_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr.json"
    result = run("lr-find", str(workload_file), "--steps", "30", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "LR range test" in result.stdout
    assert "suggested learning rate" in result.stdout or "no learning rate" in result.stdout
    assert out.exists()
    refused = run("lr-find", f"{workload_file}:inference")
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")


_WITH_SHUTDOWN_MARK = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('interpreter shutdown ran', flush=True))\n"
    "from pinchpoint.cli import main\n"
    "sys.argv = ['pinchpoint', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.parametrize(
    ("args", "code", "shutdown"),
    [
        # A file command leaves at once, its output flushed and its file written...
        (["trace", "{trace}", "--json", "{out}"], 0, False),
        # ...and with its own exit code (2: bad input)...
        (["trace", "{missing}"], 2, False),
        # ...but not under --debug, nor in a command that runs the user's code.
        (["trace", "{trace}", "--json", "{out}", "--debug"], 0, True),
        (["zoo"], 0, True),
    ],
)
def test_file_commands_skip_the_interpreter_shutdown(
    args: list[str], code: int, shutdown: bool, tmp_path: Path
) -> None:
    places = {
        "trace": str(Path(__file__).parent / "data" / "traces" / "tiny_compare_base.json.gz"),
        "out": str(tmp_path / "out.json"),
        "missing": str(tmp_path / "missing.json"),
    }
    argv = [a.format(**places) for a in args]
    result = subprocess.run(
        [sys.executable, "-c", _WITH_SHUTDOWN_MARK, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    assert ("interpreter shutdown ran" in result.stdout) == shutdown
    if code == 0 and args[0] == "trace":
        assert "Principal bottleneck" in result.stdout or "trace ·" in result.stdout
        assert Path(places["out"]).is_file()
    if code == 2:
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


_FAULTS_PER_READ = """
import resource, sys
from pinchpoint.cli import entry
from pinchpoint.traces._parse import read_trace
if sys.argv[1] == "tuned":
    entry._reuse_freed_memory()
for _ in range(2):
    read_trace(sys.argv[2])  # the heap grows to what a read needs
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    read_trace(sys.argv[2])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_file_commands_reuse_the_memory_they_free() -> None:
    # Reading a trace frees and allocates buffers and columns chunk after chunk; under glibc's
    # defaults each read touches fresh pages (about 2,900 page faults for this 7.9 MB trace).
    # The file commands' malloc settings keep freed memory for the next chunk.
    trace = str(Path(__file__).parent / "data" / "traces" / "a100_nccl_rank0.json.gz")
    faults = {}
    for mode in ("default", "tuned"):
        result = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_READ, mode, trace],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        faults[mode] = int(result.stdout)
    assert faults["default"] > 1000, faults
    assert faults["tuned"] < 200, faults

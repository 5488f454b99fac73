"""Every benchmark runs: each script in ``benchmarks/`` in its quick mode, in a fresh process.

A benchmark's figures are never asserted (they are timings of a shared machine); what is checked
is that the script runs end to end and prints them. Each ``benchmarks/*.py`` runs with
``--quick`` (tiny sizes, seconds), each ``benchmarks/*.sh`` with no arguments, from the
repository root with this test's interpreter. Temporary files go to the test's own folder
(``TMPDIR``) and the calibration cache to the session's (``PINCHPOINT_CACHE_DIR``, set in
conftest), never the repository or the user's cache.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted([*BENCHMARKS.glob("*.py"), *BENCHMARKS.glob("*.sh")])
# The heaviest quick run (optimize_bert: building BERT-base, a diagnosis, two trials) takes 15-30 s
# on the 2-core development machine; the limit leaves room for a busy moment. A shell script is a
# device check: without a GPU it exits at once, with one it runs its whole check (minutes), within
# pytest's own limit of 600 s.
TIMEOUT_S = {".py": 180, ".sh": 570}


def test_benchmarks_are_found() -> None:
    assert any(p.suffix == ".py" for p in SCRIPTS), f"no benchmarks found in {BENCHMARKS}"


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".py"], ids=lambda p: p.name)
def test_every_benchmark_has_a_quick_mode(script: Path) -> None:
    """A ``--quick`` flag, and a docstring that says what it does."""
    source = script.read_text()
    assert '"--quick"' in source, f"{script.name} has no --quick flag"
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert "--quick" in docstring, f"{script.name}'s docstring does not mention --quick"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_runs_quick(script: Path, tmp_path: Path) -> None:
    if script.suffix == ".py":
        command = [sys.executable, str(script), "--quick"]
    else:
        command = ["bash", str(script)]
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        # A shell script's `python` is this test's interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S[script.suffix],
        check=False,
    )
    output = f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{script.name} exited with {done.returncode}\n{output}"
    assert done.stdout.strip(), f"{script.name} printed nothing\n{output}"

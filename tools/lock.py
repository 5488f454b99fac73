"""Refresh ``requirements.lock``, the dependency tree that ``make demo`` and ``make test`` install.

The lock is made by ``uv pip compile`` from ``pyproject.toml`` (every extra: the demo and the test
suite use them all) under ``constraints.txt`` (torch 2.13.0, the CPU build that lies on the
development machines in ``/opt/wheels``; an unpinned torch pulls gigabytes of CUDA packages), for
Python 3.11 on this platform. By default the pins already in the lock are kept where
``pyproject.toml`` still allows them, so adding a dependency adds it and what it needs, nothing
else; ``--upgrade`` takes the newest version of everything allowed.

It prints what changed (added, removed, and ``old -> new`` versions) and replaces the lock in one
step (a failed resolution leaves the old lock as it was).

    .venv/bin/python tools/lock.py [--upgrade]      # what `make lock` and `make lock UPGRADE=1` run
    .venv/bin/python tools/lock.py --against .venv-latest/bin/python   # what differs from the lock

``--against PYTHON`` changes nothing: it lists how the packages installed for that interpreter
differ from the lock (``make test-latest`` prints it before its tests, so a failure there can be
read against the versions that moved).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
WHEELS = Path("/opt/wheels")  # where the CPU build of torch lies on the development machines
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def pins(text: str) -> dict[str, str]:
    """The ``name==version`` lines of a requirements file, by normalised name."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per package that the new lock adds, removes or moves to another version."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is None:
            lines.append(f"  added    {name}=={after}")
        elif after is None:
            lines.append(f"  removed  {name}=={before}")
        elif before != after:
            lines.append(f"  changed  {name} {before} -> {after}")
    return lines


def installed(python: str) -> dict[str, str]:
    """The versions of the packages installed for the interpreter ``python``, by normalised name."""
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return pins(listing)


def compile_lock(out: Path, upgrade: bool) -> None:
    """Run ``uv pip compile`` into ``out`` (which may hold the current lock, as preferences)."""
    command = [
        sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml",
        "--all-extras", "--constraint", "constraints.txt",
        "--python-version", "3.11",
        "--custom-compile-command", "make lock",
        "--quiet", "--output-file", str(out),
    ]  # fmt: skip
    if WHEELS.is_dir():
        command += ["--find-links", str(WHEELS)]
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="take the newest allowed versions")
    parser.add_argument("--against", metavar="PYTHON", help="list how PYTHON's packages differ")
    args = parser.parse_args()
    old_text = LOCK.read_text() if LOCK.exists() else ""
    if args.against:
        # pip and the build tools a venv starts with are not part of the lock.
        ours = {k: v for k, v in installed(args.against).items() if k not in ("pip", "wheel")}
        lines = changes(pins(old_text), ours)
        print(f"{args.against} against {LOCK.name}: " + ("differs:" if lines else "the same"))
        for line in lines:
            print(line)
        return 0
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        draft = Path(tmp) / LOCK.name
        if old_text:
            shutil.copyfile(LOCK, draft)  # uv keeps the pins of the file it writes over
        try:
            compile_lock(draft, args.upgrade)
        except subprocess.CalledProcessError as exc:
            print(f"error: uv could not resolve the dependencies (exit {exc.returncode})")
            return 1
        new_text = draft.read_text()
        lines = changes(pins(old_text), pins(new_text))
        if "torch" not in pins(new_text) or "+cpu" not in pins(new_text)["torch"]:
            print("error: the resolution did not take the CPU build of torch; lock left as it was")
            return 1
        os.replace(draft, LOCK)
    print(f"{LOCK.name}: {len(pins(new_text))} packages, " + ("changed:" if lines else "no change"))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

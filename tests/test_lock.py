"""The lock: requirements.lock pins every dependency pyproject.toml names, at versions it allows.

``make demo`` and ``make test`` install the lock and nothing else (``pip install --no-deps``), so a
dependency added to pyproject.toml without ``make lock`` would be missing from a fresh machine's
set-up; these tests catch it before CI does.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def load_tool() -> object:
    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock_tool = load_tool()


def locked() -> dict[str, str]:
    pins: dict[str, str] = lock_tool.pins(LOCK.read_text())  # type: ignore[attr-defined]
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        names += extra
    return [Requirement(name) for name in names]


def problems(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """What the lock lacks: each requirement not pinned, or pinned at a version it rules out."""
    found = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{name} is in pyproject.toml but not in {LOCK.name}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(f"{LOCK.name} pins {name}=={pins[name]}, outside '{requirement}'")
    return found


def test_every_dependency_in_pyproject_is_locked_at_a_version_it_allows() -> None:
    requirements = declared()
    assert len(requirements) >= 20  # the parse found the whole list
    assert problems(requirements, locked()) == [], "run make lock"


def test_a_dependency_missing_from_the_lock_or_outside_its_range_is_caught() -> None:
    pins = locked()
    del pins["msgspec"]
    pins["numpy"] = "1.0"
    assert problems(declared(), pins) == [
        "msgspec is in pyproject.toml but not in requirements.lock",
        "requirements.lock pins numpy==1.0, outside 'numpy>=1.24'",
    ]


def test_torch_is_locked_at_the_cpu_build_of_the_constraints() -> None:
    constraints = lock_tool.pins((ROOT / "constraints.txt").read_text())  # type: ignore[attr-defined]
    assert locked()["torch"] == f"{constraints['torch']}+cpu"
    assert not [name for name in locked() if name.startswith("nvidia")]


def test_changes_say_what_was_added_removed_and_moved() -> None:
    old = lock_tool.pins("a==1\nb==2\n    # via x\nc==3\n")  # type: ignore[attr-defined]
    new = lock_tool.pins("A==1\nc==4\nd_e==5\n")  # type: ignore[attr-defined]
    assert lock_tool.changes(old, new) == [  # type: ignore[attr-defined]
        "  removed  b==2",
        "  changed  c 3 -> 4",
        "  added    d-e==5",
    ]


@pytest.mark.skipif(
    os.environ.get("PINCHPOINT_TEST_LATEST") == "1",
    reason="make test-latest installs the newest versions on purpose",
)
def test_the_installed_versions_are_the_locked_ones() -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("not in a virtual environment: nothing was installed from the lock")
    pins = locked()
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: installed, but not at the lock's pin"

"""A small fixed draw of the diagnosis matrix: each planted variant's kind comes top-1.

``benchmarks/diagnosis_matrix.py`` draws each kind's case from a family of variants (depth,
width, optimizer, rate, batch, seed); this runs its seed-0 draw, one variant of one seed per
kind, with the benchmark's default step counts. Left out: ``input_bound``, whose per-pixel
collate takes seconds a step. A healthy variant is right when it has no high finding.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _matrix() -> ModuleType:
    path = ROOT / "benchmarks" / "diagnosis_matrix.py"
    spec = importlib.util.spec_from_file_location("diagnosis_matrix", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def matrix() -> ModuleType:
    return _matrix()


def test_the_draw_is_fixed_by_the_seed(matrix: ModuleType) -> None:
    first = matrix.draw("lr_too_high", random.Random("0:lr_too_high"), 5, 3)
    again = matrix.draw("lr_too_high", random.Random("0:lr_too_high"), 5, 3)
    other = matrix.draw("lr_too_high", random.Random("1:lr_too_high"), 5, 3)
    assert first == again
    assert first != other
    assert len(first) == 15
    for variant in first:
        low, high = matrix.FAMILIES["lr_too_high"].lr[variant.optimizer]
        assert low <= variant.lr <= high


@pytest.mark.parametrize("kind", [k for k in _matrix().FAMILIES if k != "input_bound"])
def test_a_drawn_variant_is_diagnosed_as_its_kind(
    matrix: ModuleType, kind: str, one_thread: None
) -> None:
    steps = {"training": matrix.TRAINING_STEPS, "runtime": matrix.RUNTIME_STEPS}
    (outcome,) = matrix.run_matrix([kind], 0, 1, 1, steps)
    assert outcome.correct, (outcome.variant.describe(), outcome.label, outcome.top3)
    if kind != "healthy":
        assert outcome.label == kind

"""Turning a target string into a Workload: zoo names, files and functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinchpoint import Workload, WorkloadError
from pinchpoint.targets import load_workload, split_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("w.py", ("w.py", "workload")),
        ("w.py:build", ("w.py", "build")),
        ("dir/w.py:build_2", ("dir/w.py", "build_2")),
        ("C:\\jobs\\w.py", ("C:\\jobs\\w.py", "workload")),
        ("C:\\jobs\\w.py:fn", ("C:\\jobs\\w.py", "fn")),
        ("w.py:not-a-name", ("w.py:not-a-name", "workload")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


def test_file_can_import_its_neighbours(workload_file: Path) -> None:
    workload = load_workload(str(workload_file))
    assert isinstance(workload, Workload)
    assert workload.name == "file-mlp" and workload.mode == "train"
    assert workload.model[0].out_features == 16  # HIDDEN from the neighbour module


def test_a_directory_is_not_a_workload(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="not a file"):
        load_workload(str(tmp_path))


def test_workload_validates_loss_and_optimizer_together() -> None:
    import torch

    model = torch.nn.Linear(1, 1)
    # A loss alone is an inference workload that remedies may fine-tune with.
    assert Workload(model=model, data=[], loss=lambda m, b: m(b).sum()).mode == "infer"
    with pytest.raises(WorkloadError, match="has an optimizer but no loss"):
        Workload(model=model, data=[], optimizer=torch.optim.SGD(model.parameters(), lr=1))
    with pytest.raises(WorkloadError, match="model must be callable"):
        Workload(model=3, data=[])
    assert Workload(model=model, data=[]).mode == "infer"

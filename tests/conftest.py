"""Shared fixtures: tiny models, a planted-time model for the fake clock, and workload files."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time: a red build must be reproducible, not a lucky draw.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session", autouse=True)
def _calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One calibration per test session, in a folder of its own (never the user's cache)."""
    os.environ["PINCHPOINT_CACHE_DIR"] = str(tmp_path_factory.mktemp("pinchpoint-cache"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` where torch sees no CUDA device."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test with torch on one intra-op thread, then give back the previous setting.

    The zoo's models are tiny: on a small machine whose other core is busy, a second OpenMP
    thread only makes each operator wait for it, turning millisecond steps into tens of ms.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def workload_file(tmp_path: Path) -> Path:
    """A workload file with a neighbour module it imports, and functions for bad-input cases."""
    (tmp_path / "sizes.py").write_text("HIDDEN = 16\n")
    path = tmp_path / "my_workload.py"
    path.write_text(
        textwrap.dedent(
            """
            import pinchpoint, torch
            from sizes import HIDDEN

            def _model():
                torch.manual_seed(0)
                return torch.nn.Sequential(
                    torch.nn.Linear(8, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 3))

            def workload():
                model = _model()
                x = torch.randn(64, 8)
                y = torch.randint(0, 3, (64,))
                loader = torch.utils.data.DataLoader(
                    torch.utils.data.TensorDataset(x, y), batch_size=16)
                return pinchpoint.Workload(
                    model=model, data=loader,
                    loss=lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1), name="file-mlp")

            def inference():
                data = [torch.randn(4, 8)]
                return pinchpoint.Workload(model=_model(), data=data, name="file-infer")

            def raises():
                raise ValueError("the dataset path is wrong")

            def empty():
                return pinchpoint.Workload(model=_model(), data=[], name="empty")

            def not_a_workload():
                return 42

            def fails_in_step():
                def loss(model, batch):
                    raise RuntimeError("shape mismatch in my loss")
                model = _model()
                return pinchpoint.Workload(
                    model=model, data=[torch.randn(4, 8)], loss=loss,
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1), name="bad-loss")
            """
        )
    )
    return path

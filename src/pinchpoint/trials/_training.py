"""The training half of a trial: two arms stepping in lockstep from the same start.

For each seed both arms get a fresh copy of their workload (model and optimizer), the candidate
loaded with the baseline's initial weights when their structures match, and the same random
state: Python's, numpy's, torch's (and the GPU's) and the generators the data shuffles with
are seeded alike, then saved and restored around every step of each arm, so the two arms draw
the same data order and the same dropout masks although their steps alternate. Steps alternate
A B, B A... so that a pair of step times is taken seconds apart, not a whole run apart, and the
machine's drift cancels as it does in :func:`~pinchpoint.trials.timing.compare_speed`.

Each step is the recorder's own (``pinchpoint.recorders.run``): accumulation, autocast,
clipping and the learning-rate schedule run as they do when the workload is profiled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinchpoint._threads import torch_threads
from pinchpoint.trials._inference import close_batches, synchronizer
from pinchpoint.workload import Workload, first_batch_size

if TYPE_CHECKING:
    import torch

__all__ = [
    "FINAL_LOSS_STEPS",
    "TrainRun",
    "matching_state",
    "memory_arm",
    "paired_steps",
    "random_state_kept",
    "seed_all",
    "train_in_lockstep",
]

#: Training steps whose mean loss is the loss an arm reached.
FINAL_LOSS_STEPS = 5


@dataclass
class TrainRun:
    """What one arm did in one seed's run: each step's seconds and batch size, and the outcome."""

    times_s: list[float] = field(default_factory=list)
    batch_sizes: list[int | None] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    quality: float | None = None

    @property
    def final_loss(self) -> float:
        """The mean loss of the last :data:`FINAL_LOSS_STEPS` steps."""
        last = self.losses[-FINAL_LOSS_STEPS:]
        return sum(last) / len(last) if last else float("nan")


def train_in_lockstep(
    baseline: Workload,
    candidate: Workload,
    *,
    start: Mapping[str, Any] | None,
    evaluates: tuple[Callable[[Any], float] | None, Callable[[Any], float] | None],
    seed: int,
    steps: int,
    device: torch.device,
    generators: Sequence[Any],
) -> tuple[TrainRun, TrainRun]:
    """Train fresh copies of both workloads for ``steps`` steps each under ``seed``.

    ``start`` is the state the candidate's copy loads (None: it keeps its own weights); each
    copy is evaluated afterwards with its entry of ``evaluates``. When both arms iterate one
    DataLoader with persistent workers, which cannot serve two iterations at once, the arms
    run one after the other instead of alternating.
    """
    arms = (
        _Arm(baseline, None, device, seed, generators),
        _Arm(candidate, start, device, seed, generators),
    )
    together = not _shares_persistent_loader(baseline, candidate)
    try:
        with contextlib.ExitStack() as stack:
            for arm in arms:
                stack.enter_context(arm.installed())
            if together:
                for step in range(steps):
                    order = (0, 1) if (step + seed) % 2 == 0 else (1, 0)
                    for index in order:
                        arms[index].step()
            else:
                for index in (0, 1) if seed % 2 == 0 else (1, 0):
                    for _ in range(steps):
                        arms[index].step()
                    arms[index].close()
    finally:
        for arm in arms:
            arm.close()
    return arms[0].result(evaluates[0]), arms[1].result(evaluates[1])


def memory_arm(
    workload: Workload,
    start: Mapping[str, Any] | None,
    steps: int,
    device: torch.device,
    generators: Sequence[Any],
) -> Callable[[], tuple[Any, Callable[[], None]]]:
    """A factory of ``(model, run)`` for :func:`~pinchpoint.trials.memory.peak_memories`.

    Each call makes a fresh copy (no gradients or optimizer state yet); ``run`` trains it for
    ``steps`` steps.
    """

    def prepare() -> tuple[Any, Callable[[], None]]:
        arm = _Arm(workload, start, device, 0, generators)

        def run() -> None:
            try:
                with arm.installed():
                    for _ in range(steps):
                        arm.step()
            finally:
                arm.close()

        return arm.workload.model, run

    return prepare


class _Arm:
    """A fresh copy of one workload, training one step at a time with its own random state."""

    def __init__(
        self,
        workload: Workload,
        start: Mapping[str, Any] | None,
        device: torch.device,
        seed: int,
        generators: Sequence[Any],
    ) -> None:
        from pinchpoint.recorders import run as recorded
        from pinchpoint.recorders.run import move_model
        from pinchpoint.remedies._base import clone_workload

        self.workload = clone_workload(workload)
        model = self.workload.model
        if start is not None:
            model.load_state_dict(start)
        move_model(self.workload.name, model, device)
        model.train(True)
        self.device = device
        # The recorder's own loop, so that accumulation, autocast, clipping and schedules run
        # exactly as when the workload is profiled; a loss sink takes the Recorder's place.
        self.loop = recorded.TrainingLoop(self.workload, model, device)
        self.random = _RandomState(seed, generators, device)
        self.source: Iterator[Any] | None = None
        self.losses: list[Any] = []
        self.run = TrainRun()
        self._sync = synchronizer(device)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The training loop's optimizer hooks (clipping, schedule) for the block."""
        from pinchpoint.recorders import run as recorded

        with recorded.installed(self.loop):
            yield

    def step(self) -> None:
        """One training step, timed from fetching the batch to the end of the optimizer step."""
        from pinchpoint.recorders.recorder import move_to_device

        with self.random.active(), torch_threads(self.workload.threads):
            if self.source is None:
                self.source = self.workload.batches()
            self._sync()
            begin = time.perf_counter()
            batch = move_to_device(next(self.source), self.device)
            # Only record_loss and logging of the Recorder are used.
            self.loop.step(batch, self)  # type: ignore[arg-type]
            self._sync()
            self.run.times_s.append(time.perf_counter() - begin)
        self.run.batch_sizes.append(first_batch_size(batch))

    def record_loss(self, loss: Any) -> None:
        """Keep a step's loss, detached; read once the run is over (no sync mid-run)."""
        self.losses.append(loss.detach())

    def logging(self) -> contextlib.AbstractContextManager[None]:
        """The Recorder's logging block: here the workload's log runs, timed with the step."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Stop the batch generator (and a DataLoader's workers with it)."""
        if self.source is not None:
            close_batches(self.source)
            self.source = None

    def result(self, evaluate: Callable[[Any], float] | None) -> TrainRun:
        """The run's losses read, and its model evaluated."""
        self.run.losses = [float(loss) for loss in self.losses]
        if evaluate is not None:
            self.run.quality = float(evaluate(self.workload.model))
        return self.run


class _RandomState:
    """One arm's random state: seeded at the start, swapped in around each of its steps."""

    def __init__(self, seed: int, generators: Sequence[Any], device: torch.device) -> None:
        self.generators = list(generators)
        self.cuda = device if device.type == "cuda" else None
        seed_all(seed, self.generators)
        self.saved = self._capture()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._restore(self.saved)
        try:
            yield
        finally:
            self.saved = self._capture()

    def _capture(self) -> tuple[Any, ...]:
        import random

        import numpy as np
        import torch

        cuda = torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None
        return (
            random.getstate(),
            np.random.get_state(),
            torch.get_rng_state(),
            cuda,
            [g.get_state() for g in self.generators],
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        import random

        import numpy as np
        import torch

        python, numpy_state, cpu, cuda, generators = saved
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None and self.cuda is not None:
            torch.cuda.set_rng_state(cuda, self.cuda)
        for generator, state in zip(self.generators, generators, strict=True):
            generator.set_state(state)


def _shares_persistent_loader(baseline: Workload, candidate: Workload) -> bool:
    data = baseline.data
    return (
        data is candidate.data
        and bool(getattr(data, "persistent_workers", False))
        and int(getattr(data, "num_workers", 0) or 0) > 0
    )


def matching_state(baseline_model: Any, candidate_model: Any) -> dict[str, Any] | None:
    """The baseline's state dict keyed for the candidate, or None when the structures differ.

    Same names and shapes load as they are; the same shapes in the same order under other names
    (a wrapper that prefixes them, as ``torch.compile`` does) load by position.
    """
    base = baseline_model.state_dict()
    cand = candidate_model.state_dict()
    if len(base) != len(cand):
        return None
    shapes_b = [_shape(v) for v in base.values()]
    shapes_c = [_shape(v) for v in cand.values()]
    if shapes_b != shapes_c or None in shapes_b:
        return None
    if list(base) == list(cand):
        return dict(base)
    return dict(zip(cand, base.values(), strict=True))


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


@contextlib.contextmanager
def random_state_kept(data: Sequence[Any], device: torch.device) -> Iterator[list[Any]]:
    """Keep Python's, numpy's and torch's random states and the data's generators for a block.

    Yields the torch generators the data objects draw their order from (a DataLoader's
    ``generator`` and its sampler's), so each arm can be given the same order.
    """
    import random

    import numpy as np
    import torch

    generators: dict[int, Any] = {}
    for item in data:
        for generator in _data_generators(item):
            generators.setdefault(id(generator), generator)
    kept = [(g, g.get_state()) for g in generators.values()]
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    # torch.manual_seed seeds every GPU torch has started on, so every one is kept.
    devices: list[int] = []
    if device.type == "cuda" or (torch.cuda.is_available() and torch.cuda.is_initialized()):
        devices = list(range(torch.cuda.device_count()))
    try:
        with torch.random.fork_rng(devices=devices):
            yield list(generators.values())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for generator, state in kept:
            generator.set_state(state)


def _data_generators(data: Any) -> list[Any]:
    """The torch generators a DataLoader-like object shuffles with."""
    import torch

    found = []
    sampler = getattr(data, "sampler", None)
    batch_sampler = getattr(data, "batch_sampler", None)
    for owner in (data, sampler, getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found.append(generator)
    return found


def seed_all(seed: int, generators: Sequence[Any]) -> None:
    """Seed Python, numpy, torch and the data's generators, for the same order in each arm."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for generator in generators:
        generator.manual_seed(seed)


def paired_steps(
    runs: tuple[list[TrainRun], list[TrainRun]], warmup: int
) -> tuple[list[float], list[float], str]:
    """Step times paired across the arms (same seed, same step), per step or per sample."""
    known = all(None not in r.batch_sizes for r in [*runs[0], *runs[1]])
    per_sample = known and any(b.batch_sizes != c.batch_sizes for b, c in zip(*runs, strict=True))
    base: list[float] = []
    cand: list[float] = []
    for b, c in zip(runs[0], runs[1], strict=True):
        for k in range(warmup, len(b.times_s)):
            if per_sample:
                base.append(b.times_s[k] / (b.batch_sizes[k] or 1))
                cand.append(c.times_s[k] / (c.batch_sizes[k] or 1))
            else:
                base.append(b.times_s[k])
                cand.append(c.times_s[k])
    return base, cand, "sample" if per_sample else "step"

"""The live recorder: time each step's phases in a training or inference loop.

One file over 700 lines because it is one class: the hooks that find each phase (model,
gradient, optimizer, communication, logging) share the Recorder's state for the step being
recorded (its open marks, its phases, the sampled instruments), so they are its methods.

One :class:`Recorder` serves both ways in: a user's own loop (``rec.data``, ``rec.step``) and a
Workload, which :func:`pinchpoint.profile` runs through the very same calls.

How phases are found without touching the user's code:

- **data**: ``rec.data(loader)`` times each ``next()``; the wait belongs to the step that follows.
- **transfer**: ``rec.to_device(batch)`` marks the copy to the device.
- **forward**: a forward pre-hook on the model opens it. It lasts until backward starts, so the
  loss computed from the model's output counts as forward; without a backward it ends when the
  model returns.
- **backward**: a gradient hook on the model's outputs opens it; the last parameter whose
  gradient is accumulated closes it (found on the first training step; only its hook stays).
- **communication** (a DistributedDataParallel model): from the last local gradient to the
  completion of the last gradient bucket's all-reduce, timed by a communication hook (see
  :mod:`pinchpoint.recorders.comm`), which also gives each step's all-reduce time.
- **optimizer**: the optimizer's step pre- and post-hooks.
- **log**: the user's logging, inside ``with rec.logging():`` (a Workload's ``log`` runs there);
  the phase appears in a run's steps from the first one that logs.
- **other**: the rest of the step (zero_grad, unmarked logging, the recorder's own bookkeeping).

Phases are intervals between *marks* of a :class:`~pinchpoint.recorders.clock.Clock`: host time
on a CPU, CUDA events on a GPU, where the host synchronises once, at the end of each step. The
phases of a step always add up to its wall time.

Heavier instruments run on a few sampled steps right after warm-up, which are then left out of
statistics: one step under :class:`~pinchpoint.recorders.flops.OpCounter` (FLOPs and bytes), then
one under ``torch.profiler`` whose operators, times and memory events are kept (on a GPU after a
profiler warm-up step; see :mod:`pinchpoint.recorders.sampling`).

Every step also records what ``torch.compile`` did in it (graphs compiled, compile seconds,
graph breaks; :mod:`pinchpoint.recorders.compilation`). On a compiled model the FLOP-counting
step runs eagerly (a dispatch mode would make dynamo skip the model's code for good) and the
profiled step goes without the per-module timer, whose global hooks would break its graphs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from pinchpoint._profile import PHASES, FlopCount, ModuleStat, Operator, Profile, Step
from pinchpoint.machine.facts import describe_environment, describe_machine
from pinchpoint.recorders.clock import Clock, CudaClock, PerfClock
from pinchpoint.recorders.comm import describe_distributed, timer_for
from pinchpoint.recorders.compilation import CompileMeter, batch_shapes, is_compiled
from pinchpoint.recorders.flops import OpCounter
from pinchpoint.recorders.health import HealthMonitor
from pinchpoint.recorders.memory import memory_probe, tensor_bytes
from pinchpoint.recorders.sampling import StderrFilter, fold_profiled_step, sample_plan
from pinchpoint.recorders.scheduling import SchedulingMeter
from pinchpoint.workload import first_batch_size

__all__ = ["Recorder", "move_to_device"]

#: torch's warning when a compiled module is called with global module hooks in place.
_GLOBAL_HOOKS_WARNING = r"Using `torch.compile\(module\)` when there are global hooks"
#: Output tensors per forward call that get a hook to detect the start of backward.
_MAX_OUTPUT_HOOKS = 8


def move_to_device(batch: Any, device: torch.device) -> Any:
    """A copy of ``batch`` with every tensor moved to ``device`` (tuples, lists, dicts followed)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
    if isinstance(batch, list):
        return [move_to_device(v, device) for v in batch]
    return batch


class Recorder:
    """Records where each step's time goes in a loop, with no change to the model's code.

    Use it around your own loop::

        rec = pinchpoint.Recorder(model, optimizer)
        for batch in rec.data(loader):
            with rec.step():
                ...                       # forward, backward, optimizer.step()
                with rec.logging():       # optional: the step's logging, its own phase
                    print(loss.item())
        profile = rec.profile()

    In a data-parallel script, give it the DistributedDataParallel model before its first
    backward: it registers a communication hook that times each gradient bucket's all-reduce
    (see :mod:`pinchpoint.recorders.comm`), and the Profile carries the rank's facts; save one
    per rank and join them with :func:`pinchpoint.recorders.job.merge`.

    Args:
        model: the module being trained or run; hooks on it find forward and backward.
        optimizer: the optimizer, whose step hooks find the optimizer phase; None for inference.
        warmup: the first steps, recorded but left out of statistics.
        sample: run the FLOP counter and torch.profiler on the steps after warm-up.
        device: where the model runs; CUDA devices are timed with CUDA events.
        clock: a clock to use instead of the device's (tests pass a FakeClock).
        name: the name the Profile carries.
        on_step: called with each :class:`Step` once it is recorded (progress bars).
        health: record per-layer gradient norms every step, update ratios every 10th step and
            activation statistics every ``activation_every`` steps (see
            :mod:`pinchpoint.recorders.health`).
        instrument_budget: on a CPU, the share of a step that the gradient instruments (the
            gradient norms, per layer and global, and the update ratios: passes over every
            parameter) may cost. Their measured host time sets how many steps apart they run
            (steps in between record no gradient norm, unless the loop's own clipping gave
            one). None: every step, whatever it costs (a GPU always runs them every step).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        warmup: int = 2,
        sample: bool = True,
        device: torch.device | str | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        on_step: Callable[[Step], None] | None = None,
        health: bool = True,
        activation_every: int = 20,
        instrument_budget: float | None = None,
    ) -> None:
        if instrument_budget is not None and not 0 < instrument_budget <= 1:
            raise ValueError(f"instrument_budget must be in (0, 1], got {instrument_budget}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.model = model
        self.optimizer = optimizer
        self.warmup = warmup
        self.name = name or type(model).__name__
        self.on_step = on_step
        if device is None:
            first = next(model.parameters(), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        if clock is None:
            clock = CudaClock(self.device) if self.device.type == "cuda" else PerfClock()
        self._clock = clock
        # A DDP model's all-reduces are timed by a communication hook (None otherwise).
        self._comm = timer_for(model, clock)
        plan = sample_plan(self.device) if sample else ()
        self._plan = {warmup + i: what for i, what in enumerate(plan)}

        self.steps: list[Step] = []
        self._in_step = False
        self._marks: list[tuple[Any, str]] = []
        self._phase = "other"
        self._pending_forward_end: Any = None
        self._backward_end: Any = None
        self._data_wait = 0.0
        self._inner_wait = 0.0
        self._lead = 0.0
        self._body = 0.0
        self._samples: int | None = None
        self._loss: Any = None
        self._grad_norm: Any = None
        self._loop_grad_norm: Any = None
        self._lr: float | None = None
        self._saw_backward = False
        self._logs = False
        self._step_start = 0.0
        self._scheduling = SchedulingMeter()
        # Gradient instruments: every `_norm_every` steps, paced by their cost under a budget.
        self._budget = instrument_budget if self.device.type == "cpu" else None
        self._norm_every = 1
        self._norm_s = 0.0

        self._counter: OpCounter | None = None
        self._flops: FlopCount | None = None
        self._module_flops: dict[str, tuple[int, int]] = {}
        self._module_bytes: dict[str, int] = {}
        self._module_times: dict[str, float] = {}
        self._module_timer: _ModuleTimer | None = None
        self._op_tallies: dict[Any, Any] = {}
        self._profiler: Any = None
        self._profiler_scheduled = False
        self._stderr = StderrFilter()
        # torch.compile's graphs, compile time and graph breaks per step; the counter's and the
        # module timer's hooks are kept off a compiled model (see recorders.compilation).
        self._compile = CompileMeter()
        self._shapes = ""
        self._compiled = is_compiled(model)
        self._eager = contextlib.ExitStack()
        self._operators: list[Operator] = []
        self._coverage: dict[str, float] | None = None
        self._activation_peak: int | None = None
        self._gradients_bytes: int | None = None
        self._cuda_start_allocated = 0

        if activation_every < 1:
            raise ValueError(f"activation_every must be >= 1, got {activation_every}")
        self._health = HealthMonitor(model, activation_every) if health else None
        self._handles: list[Any] = [
            model.register_forward_pre_hook(self._on_forward_pre),
            model.register_forward_hook(self._on_forward_post),
        ]
        self._grad_handles: dict[int, Any] = {}
        self._grad_order: list[int] | None = []
        self._params = list(model.parameters())
        for param in self._params:
            if param.requires_grad:
                self._grad_handles[id(param)] = param.register_post_accumulate_grad_hook(
                    self._on_grad_accumulated
                )
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._on_optimizer_pre))
            self._handles.append(optimizer.register_step_post_hook(self._on_optimizer_post))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    # ----------------------------------------------------------------- the user's entry points

    def data(self, iterable: Iterable[Any], steps: int | None = None) -> Iterator[Any]:
        """Yield the batches of ``iterable`` (at most ``steps``), timing the wait for each."""
        iterator = iter(iterable)
        produced = 0
        while steps is None or produced < steps:
            start = self._clock.now()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waited(self._clock.now() - start, batch)
            produced += 1
            yield batch

    def waited(self, seconds: float, batch: Any) -> None:
        """Count ``seconds`` of waiting for ``batch`` as data time.

        Between steps the wait belongs to the step that follows; inside one (a step of several
        micro-batches) it is taken out of the step's ``other`` time, where the fetch ran.
        ``rec.data`` calls it; a loop whose batches come from elsewhere calls it itself.
        """
        samples = first_batch_size(batch)
        if self._in_step:
            self._inner_wait += seconds
            if samples is not None:
                self._samples = (self._samples or 0) + samples
            return
        self._data_wait += seconds
        self._samples = samples
        self._shapes = batch_shapes(batch)

    @contextlib.contextmanager
    def step(self) -> Iterator[Recorder]:
        """Time one step: everything inside the ``with`` block, plus the wait for its batch."""
        self.begin_step()
        try:
            yield self
        except BaseException:
            self.abandon_step()
            raise
        self.end_step()

    def begin_step(self, *, lead: float = 0.0) -> None:
        """Open a step by hand, for loops whose step boundaries come from hooks, not a ``with``
        block (``pinchpoint run``, the trainer callbacks). ``lead`` is host time the step had
        already spent before this call, outside any data wait (it counts as ``other``)."""
        if self._in_step:
            raise RuntimeError("Recorder.step() blocks cannot be nested")
        self._lead = max(0.0, lead)
        self._begin_step()

    def end_step(self) -> Step:
        """Close the step :meth:`begin_step` opened and return it, as recorded."""
        if not self._in_step:
            raise RuntimeError("Recorder.end_step() without an open step")
        self._end_step()
        return self.steps[-1]

    def abandon_step(self) -> None:
        """Drop the open step, if any (its loop raised or stopped), and its instruments."""
        if self._in_step or self._counter is not None or self._profiler is not None:
            self._abort_step()
        self._data_wait = self._inner_wait = self._lead = 0.0

    @property
    def in_step(self) -> bool:
        """Whether a step is open (False, too, inside its ``logging()`` block)."""
        return self._in_step

    def to_device(self, batch: Any) -> Any:
        """Move ``batch`` to the recorder's device, timed as the transfer phase."""
        if self.device.type == "cpu":
            return batch
        self._mark("transfer")
        moved = move_to_device(batch, self.device)
        self._mark("other")
        return moved

    def record_loss(self, loss: Any) -> None:
        """Keep this step's loss (read at the step's end, so it never forces a sync mid-step)."""
        self._loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        if self._health is not None and isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._health.check_loss(self._loss)

    def record_grad_norm(self, norm: Any) -> None:
        """Keep the global gradient norm the loop itself computed this step (what
        ``clip_grad_norm_`` returns: the norm before clipping), in place of the recorder's own,
        which the optimizer hook reads after any clipping."""
        if self._in_step:
            self._loop_grad_norm = norm.detach() if isinstance(norm, torch.Tensor) else norm

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Time the block as the step's ``log`` phase: the loop's per-step logging.

        Wrap what a step does to report on itself (``loss.item()``, metrics, ``print``) so the
        time it holds the step shows as its own phase, which the ``host_sync_bound`` analyzer
        reads. A forward call inside the block (an accuracy check) counts as logging too.
        Outside a step the block runs untimed.
        """
        if not self._in_step:
            yield
            return
        self._logs = True
        self._mark("log")
        # Hooks are blind while logging, so the block's own forward calls stay in the phase.
        self._in_step = False
        try:
            yield
        finally:
            self._in_step = True
            self._mark("other")

    @property
    def step_index(self) -> int:
        """The index of the step being recorded (or the next one, between steps)."""
        return len(self.steps)

    @property
    def sampled_steps(self) -> int:
        """How many steps after warm-up carry the heavier instruments."""
        return len(self._plan)

    def steps_for(self, measured: int) -> int:
        """How many steps to run in all for ``measured`` of them to count in statistics."""
        total = count = 0
        while count < measured:
            if total >= self.warmup and self._sampled_label(total, self._plan.get(total)) is None:
                count += 1
            total += 1
        return total

    def close(self) -> None:
        """Remove every hook from the model and optimizer and stop a running profiler."""
        for handle in [*self._handles, *self._grad_handles.values()]:
            handle.remove()
        self._handles.clear()
        self._grad_handles.clear()
        self._stop_instruments()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- marking

    def _mark(self, phase: str) -> None:
        """Start ``phase`` now, first closing a forward or backward that already ended."""
        if not self._in_step:
            return
        if self._pending_forward_end is not None and phase != "backward":
            self._marks.append((self._pending_forward_end, "other"))
        self._pending_forward_end = None
        if self._backward_end is not None:
            comm_end = self._comm.last_end() if self._comm is not None else None
            if comm_end is not None:
                # DDP's backward returned after its last all-reduce completed: the time from
                # the last local gradient until then is the exposed communication.
                self._marks.append((self._backward_end, "communication"))
                self._marks.append((comm_end, "other"))
            else:
                self._marks.append((self._backward_end, "other"))
            self._backward_end = None
        self._marks.append((self._clock.mark(), phase))
        self._phase = phase

    def _current_phase(self) -> str:
        return "other" if self._pending_forward_end is not None else self._phase

    def _on_forward_pre(self, module: Any, args: Any) -> None:
        self._mark("forward")

    def _on_forward_post(self, module: Any, args: Any, output: Any) -> None:
        if not self._in_step:
            return
        self._pending_forward_end = self._clock.mark()
        if torch.is_grad_enabled():
            for tensor in self._output_tensors(output):
                tensor.register_hook(self._on_backward_start)

    def _output_tensors(self, output: Any) -> list[torch.Tensor]:
        found: list[torch.Tensor] = []
        stack = [output]
        while stack and len(found) < _MAX_OUTPUT_HOOKS:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                if item.requires_grad:
                    found.append(item)
            elif isinstance(item, Mapping):
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
        return found

    def _on_backward_start(self, grad: Any) -> None:
        if self._in_step and self._phase != "backward":
            self._mark("backward")
            self._saw_backward = True

    def _on_grad_accumulated(self, param: torch.Tensor) -> None:
        if not self._in_step:
            return
        # Where the output had no hookable tensor (a custom loss path), backward starts here.
        self._on_backward_start(None)
        self._backward_end = self._clock.mark()
        if self._grad_order is not None:
            self._grad_order.append(id(param))

    def _on_optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> Any:
        closure = kwargs.get("closure", args[0] if args else None)
        if self._in_step and callable(closure):
            # A closure (Lightning's, LBFGS's) runs forward and backward inside step(): the
            # gradients exist, and the update starts, only once it has returned.
            def closure_then_update() -> Any:
                result = closure()
                self._before_update(optimizer)
                return result

            if "closure" in kwargs:
                return args, {**kwargs, "closure": closure_then_update}
            return (closure_then_update, *args[1:]), kwargs
        self._before_update(optimizer)
        return None

    def _before_update(self, optimizer: Any) -> None:
        """The gradients are final: read the rate and the norms, then start the update."""
        if self._in_step:
            self._lr = _rate(optimizer)
        if self._in_step and self._gradients_due():
            start = time.perf_counter()
            with self._uncounted():
                self._grad_norm = self._global_grad_norm()
                if self._health is not None:
                    self._health.before_optimizer(self.step_index)
            self._norm_s += time.perf_counter() - start
        self._mark("optimizer")

    def _on_optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._mark("other")
        if self._in_step and self._health is not None and self._gradients_due():
            start = time.perf_counter()
            with self._uncounted():
                self._health.after_optimizer()
            self._norm_s += time.perf_counter() - start

    def _gradients_due(self) -> bool:
        """Whether this step runs the gradient instruments (see ``instrument_budget``)."""
        return self._instrumented() and self.step_index % self._norm_every == 0

    def _pace(self, wall: float, sample: str | None) -> None:
        """Space the gradient instruments so that their cost stays within the budget: from
        their host time in a step without other instruments, never closer than before."""
        cost, self._norm_s = self._norm_s, 0.0
        if self._budget is None or cost <= 0 or sample is not None or wall <= 0:
            return
        self._norm_every = max(self._norm_every, math.ceil(cost / (self._budget * wall)))

    def _instrumented(self) -> bool:
        """Whether this step carries the training instruments: not the profiler's steps, whose
        operator table must show the user's work only."""
        return self._plan.get(self.step_index) not in ("profiler-warmup", "operators")

    @contextlib.contextmanager
    def _uncounted(self) -> Iterator[None]:
        """The recorder's own tensor work: kept out of the FLOP counter's tallies and autograd."""
        if self._counter is not None:
            self._counter.paused = True
        try:
            with torch.no_grad():
                yield
        finally:
            if self._counter is not None:
                self._counter.paused = False

    def _global_grad_norm(self) -> Any:
        """The global gradient norm (a tensor); per-layer norms go to the health monitor."""
        if self._health is not None:
            return self._health.grad_norms()
        grads = [p.grad for p in self._params if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads, 2.0) if grads else None

    # ------------------------------------------------------------------------- step handling

    def _begin_step(self) -> None:
        sample = self._plan.get(self.step_index)
        if sample == "flops":
            if self._compiled:
                # Under a dispatch mode dynamo skips a frame for good: count the eager ops. The
                # counter's global module hooks make torch warn on each compiled call.
                self._eager.enter_context(torch.compiler.set_stance("force_eager"))
                self._eager.enter_context(warnings.catch_warnings())
                warnings.filterwarnings("ignore", message=_GLOBAL_HOOKS_WARNING)
            self._counter = OpCounter(self._current_phase, self.model)
            self._counter.start()
        elif sample in ("profiler-warmup", "operators") and self._profiler is None:
            self._start_profiler(warmup=sample == "profiler-warmup")
        if sample == "operators" and self.device.type == "cpu" and not self._compiled:
            # Host time is the module's time only where work is synchronous: the CPU.
            self._module_timer = _ModuleTimer(self.model)
        if self.device.type == "cuda":
            self._cuda_start_allocated = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self._health is not None:
            self._health.begin_step(self.step_index, self._samples_activations(self.step_index))
        self._in_step = True
        self._marks = []
        self._phase = "other"
        self._pending_forward_end = None
        self._backward_end = None
        self._loss = None
        self._grad_norm = None
        self._loop_grad_norm = None
        self._lr = None
        if self._comm is not None:
            self._comm.begin()
        self._scheduling.begin()
        self._compile.begin()
        self._step_start = self._clock.now()
        self._marks.append((self._clock.mark(), "other"))

    def _abort_step(self) -> None:
        """Leave a step that raised: drop the instruments so the error reaches the user intact."""
        self._in_step = False
        if self._counter is not None:
            self._counter.stop()
            self._counter = None
        self._eager.close()
        self._stop_instruments()

    def _stop_instruments(self) -> None:
        if self._profiler is not None:
            self._profiler.stop()
            self._profiler = None
        if self._module_timer is not None:
            self._module_timer.close()
            self._module_timer = None
        self._stderr.stop()

    def _end_step(self) -> None:
        if (
            self._grad_norm is None
            and self.optimizer is None
            and self._saw_backward
            and self._gradients_due()
        ):
            with self._uncounted():
                self._grad_norm = self._global_grad_norm()
        self._mark("end")
        self._in_step = False
        self._clock.wait()
        body = self._clock.now() - self._step_start
        index = self.step_index
        wall = self._lead + self._data_wait + body
        self._body = body
        phases = self._split(wall)
        comm_s = self._comm.seconds(self._marks[0][0]) if self._comm is not None else None
        sample = self._plan.get(index)
        step = Step(
            index=index,
            wall_s=wall,
            phases=phases,
            warmup=index < self.warmup,
            sampled=self._sampled_label(index, sample),
            samples=self._samples,
            loss=_to_float(self._loss),
            grad_norm=_to_float(
                self._grad_norm if self._loop_grad_norm is None else self._loop_grad_norm
            ),
            comm_s=comm_s,
            lr=self._lr,
        )
        self.steps.append(step)
        self._compile.end(self._shapes)
        self._shapes = ""
        self._scheduling.end(body, step.measured)
        if self._health is not None:
            self._health.end_step(index, step.loss, step.grad_norm)
        self._data_wait = self._inner_wait = self._lead = 0.0
        self._pace(wall, sample)
        self._keep_only_last_grad_hook()
        self._after_step(sample)
        if self.on_step is not None:
            self.on_step(step)

    def _samples_activations(self, index: int) -> bool:
        every = self._health.activation_every if self._health is not None else 0
        return bool(every) and index % every == 0 and index not in self._plan

    def _sampled_label(self, index: int, sample: str | None) -> str | None:
        if sample == "flops":
            return "flops"
        if sample is not None:
            return "operators"
        return "activations" if self._samples_activations(index) else None

    def _split(self, wall: float) -> dict[str, float]:
        """Phase seconds from the marks; ``other`` takes what the named phases leave of ``wall``."""
        named = dict.fromkeys(PHASES, 0.0)
        if self._comm is None:
            del named["communication"]
        if not self._logs:
            del named["log"]
        named["data"] = self._data_wait + self._inner_wait
        for (start, phase), (end, _) in zip(self._marks, self._marks[1:], strict=False):
            if phase not in ("other", "end"):
                named[phase] += max(0.0, self._clock.seconds(start, end))
        used = sum(v for k, v in named.items() if k != "other")
        if used > wall > 0:
            # Device time can exceed the host's span by a few microseconds; keep the sum exact.
            named = {k: v * wall / used for k, v in named.items()}
            used = wall
        named["other"] = max(0.0, wall - used)
        return named

    def _keep_only_last_grad_hook(self) -> None:
        """After the first backward, keep the hook of the parameter whose gradient comes last."""
        if not self._grad_order:
            return
        last = self._grad_order[-1]
        for key in [k for k in self._grad_handles if k != last]:
            self._grad_handles.pop(key).remove()
        self._grad_order = None

    def _after_step(self, sample: str | None) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) - self._cuda_start_allocated
            if self.steps[-1].measured or sample is None:
                self._activation_peak = max(self._activation_peak or 0, peak)
        if self._saw_backward and (self._gradients_bytes is None or sample is not None):
            # Gradient sizes change only when parameters are frozen or thawed: measure them on
            # the first backward step and on the sampled ones, not on every step.
            grads = tensor_bytes(p.grad for p in self._params if p.grad is not None)
            self._gradients_bytes = max(self._gradients_bytes or 0, grads)
        if self._module_timer is not None and sample == "operators":
            self._module_times = self._module_timer.close()
            self._module_timer = None
        if sample == "flops" and self._counter is not None:
            self._counter.stop()
            self._eager.close()
            self._collect_flops(self._counter)
            self._counter = None
        elif sample in ("profiler-warmup", "operators") and self._profiler is not None:
            if self._profiler_scheduled:
                self._profiler.step()
            if sample == "operators":
                self._profiler.stop()
                self._stderr.stop()
                self._collect_operators(self._profiler)
                self._profiler = None

    # -------------------------------------------------------------------------- instruments

    def _start_profiler(self, warmup: bool) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(
            activities=activities,
            # With a warm-up step the profiler needs a schedule; without one it records at once.
            schedule=schedule(wait=0, warmup=1, active=1, repeat=1) if warmup else None,
            record_shapes=True,
            profile_memory=True,
        )
        self._profiler_scheduled = warmup
        self._stderr.start()
        self._profiler.start()

    def _collect_flops(self, counter: OpCounter) -> None:
        self._op_tallies = dict(counter.ops)
        self._flops = FlopCount(
            by_phase={k: int(v) for k, v in counter.by_phase.items()},
            uncounted=dict(sorted(counter.uncounted.items())),
        )
        forward, backward = counter.modules_forward, counter.modules_backward
        self._module_flops = {
            name: (int(forward.get(name, 0)), int(backward.get(name, 0)))
            for name in set(forward) | set(backward)
        }
        self._module_bytes = {k: int(v) for k, v in counter.modules_bytes_forward.items()}

    def _collect_operators(self, prof: Any) -> None:
        """Fold the profiled step into operators (:func:`~.sampling.fold_profiled_step`)."""
        sample = fold_profiled_step(
            prof, self._op_tallies, self._body, cuda=self.device.type == "cuda"
        )
        self._operators, self._coverage = sample.operators, sample.coverage
        if sample.activation_peak is not None:
            self._activation_peak = sample.activation_peak

    # ------------------------------------------------------------------------------ result

    def _modules(self) -> list[ModuleStat]:
        stats = []
        for name, module in self.model.named_modules():
            forward, backward = self._module_flops.get(name, (0, 0))
            stats.append(
                ModuleStat(
                    name=name,
                    type=type(module).__name__,
                    params=sum(p.numel() for p in module.parameters()),
                    flops=forward + backward,
                    flops_forward=forward,
                    flops_backward=backward,
                    bytes_forward=self._module_bytes.get(name, 0),
                    forward_s=self._module_times.get(name),
                )
            )
        return stats

    def profile(self) -> Profile:
        """Everything recorded so far as a :class:`~pinchpoint.profile.Profile`."""
        training = self.optimizer is not None or self._saw_backward
        return Profile(
            name=self.name,
            mode="train" if training else "infer",
            device=str(self.device),
            steps=list(self.steps),
            operators=list(self._operators),
            modules=self._modules(),
            flops=self._flops,
            memory=memory_probe(
                self._params,
                self.optimizer,
                self.device,
                gradients_bytes=self._gradients_bytes,
                activation_peak=self._activation_peak,
            ),
            machine=describe_machine(),
            environment=describe_environment(),
            optimizer=_optimizer_facts(self.optimizer),
            health=self._health.result() if self._health is not None and training else None,
            operator_coverage=self._coverage,
            compilation=self._compile.result(),
            distributed=describe_distributed(self.model, self._comm),
            settings={
                "warmup": self.warmup,
                "sampled_steps": {str(k): v for k, v in sorted(self._plan.items())},
                "clock": type(self._clock).__name__,
                # How the threads shared the cores (thread_oversubscription reads it).
                **self._scheduling.settings(),
            },
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )


class _ModuleTimer:
    """Times every module's forward calls (children included) through global module hooks."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._names = {id(m): name for name, m in model.named_modules()}
        self._open: dict[int, list[float]] = {}
        self.seconds: dict[str, float] = {}
        hooks = torch.nn.modules.module
        self._handles = [
            hooks.register_module_forward_pre_hook(self._pre),
            hooks.register_module_forward_hook(self._post),
        ]

    def _pre(self, module: Any, args: Any) -> None:
        if id(module) in self._names:
            self._open.setdefault(id(module), []).append(time.perf_counter())

    def _post(self, module: Any, args: Any, output: Any) -> None:
        starts = self._open.get(id(module))
        if starts:
            name = self._names[id(module)]
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - starts.pop()

    def close(self) -> dict[str, float]:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.seconds


def _optimizer_facts(optimizer: Any) -> dict[str, Any] | None:
    """What kind of optimizer runs, over how many tensors, and with which implementation."""
    if optimizer is None:
        return None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    defaults = getattr(optimizer, "defaults", {})
    lr = defaults.get("lr")
    return {
        "type": type(optimizer).__name__,
        "param_tensors": len(params),
        "params": sum(p.numel() for p in params),
        "foreach": defaults.get("foreach"),
        "fused": defaults.get("fused"),
        "lr": float(lr) if isinstance(lr, (int, float)) else None,
    }


def _rate(optimizer: Any) -> float | None:
    """The learning rate the optimizer's first parameter group steps with, as a float; None
    when it has none or keeps it in a device tensor (reading that back would sync the step)."""
    groups = getattr(optimizer, "param_groups", None)
    rate = groups[0].get("lr") if groups else None
    if isinstance(rate, torch.Tensor):
        return float(rate.item()) if rate.device.type == "cpu" and rate.numel() == 1 else None
    return float(rate) if isinstance(rate, (int, float)) else None


def _to_float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item()) if value.numel() == 1 else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None

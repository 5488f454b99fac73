"""Find the steps of a loop pinchpoint did not write, and record them with a :class:`Recorder`.

``pinchpoint run`` and the trainer callbacks give the user's code no ``rec.step()`` block: the
:class:`StepFinder` installs process-wide hooks and finds the loop's shape from what it does.

- **The optimizer and the model.** Until the first step, global module hooks note every module
  whose forward is called at the top (not from inside another module's forward). A training
  script's first ``optimizer.step()`` (any torch optimizer: accelerate's wrapper and
  ``GradScaler.step`` call the torch one inside) names the optimizer; the model is the top-level
  module holding most of its parameters. A script that never steps an optimizer but calls a
  top-level module with gradients off twice is inference; the model is the largest such module
  (an optimizer step before those steps are all recorded makes it a training run after all:
  the inference steps are dropped and the search starts again).
  That first step is the finder's own warm-up, never recorded; then the module hooks go (they
  would cost every module call) and a Recorder is attached to the model and the optimizer.
- **Steps.** A training step ends when the optimizer's ``step()`` returns (or when
  ``GradScaler.step`` returns having skipped it for inf gradients); an inference step is one
  top-level forward of the model. A step opens at the model's first forward after the last one
  closed; the time since then, less the data waits, counts as its ``other`` (zero_grad, a
  scheduler, logging), so steps tile the loop. In a training run a forward with gradients off
  before the step opens (an evaluation) opens nothing, and its batches are not the step's.
- **Data.** Every DataLoader iterator's ``__next__`` is timed; waits before a step opens are its
  data phase, waits inside it (micro-batches) are taken out of its ``other`` time.
- **Loss.** ``Tensor.backward()`` on a scalar inside a step is the step's loss (through
  ``GradScaler.scale``, the loss before scaling).
- **Gradient norm.** Where the loop clips (``torch.nn.utils.clip_grad_norm_``, or
  ``clip_grads_with_norm_`` as accelerate does), the norm before clipping is the step's; else
  the Recorder's own, read in the optimizer's pre-hook (after any clipping).

After ``steps`` measured steps the Recorder is closed, every hook removed and the patches undone,
so the rest of the script runs at full speed; with ``stop`` the finder raises :class:`Stopped`
(a BaseException, which ``except Exception`` in the script does not swallow) to end it there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from pinchpoint._profile import Profile, Step
from pinchpoint.recorders.recorder import Recorder

__all__ = ["INSTRUMENT_BUDGET", "StepFinder", "Stopped", "check_counts"]

#: The share of a step the gradient instruments may cost on a CPU (the Recorder's
#: ``instrument_budget``): a script's steps may be a few milliseconds, where one pass over the
#: weights for the gradient norms is several percent of the step.
INSTRUMENT_BUDGET = 0.02


def check_counts(steps: int, warmup: int) -> None:
    """A ValueError unless ``steps >= 1`` and ``warmup >= 0``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")


class Stopped(BaseException):
    """Raised from a hook once the steps asked for are recorded and the run is to stop there."""


class StepFinder:
    """Process-wide hooks that find a loop's steps and record them (see the module docstring).

    Args:
        steps: measured steps to record after ``warmup`` (and the sampled steps).
        warmup: recorded steps left out of statistics, after the finder's own first step.
        stop: raise :class:`Stopped` once the steps are recorded.
        sample: run the FLOP counter and torch.profiler on the steps after warm-up.
        name: the name the Profile carries.
        model, optimizer: known in advance (a trainer callback): the search is skipped for what
            is given, and the recording starts at the first step.
        on_step: called with each recorded Step.
    """

    def __init__(
        self,
        *,
        steps: int = 20,
        warmup: int = 2,
        stop: bool = False,
        sample: bool = True,
        name: str | None = None,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        check_counts(steps, warmup)
        self.steps = steps
        self.warmup = warmup
        self.stop = stop
        self.sample = sample
        self.name = name
        self.on_step = on_step
        self.recorder: Recorder | None = None
        self.result: Profile | None = None
        self._given_model = model
        self._optimizer = _unwrapped(optimizer)
        self._model: torch.nn.Module | None = None
        self._training = optimizer is not None
        self._finished = False
        self._total = 0
        # Top-level modules seen while searching: id -> (module, calls with gradients off).
        self._seen: dict[int, tuple[torch.nn.Module, int]] = {}
        self._depth = 0
        self._last_end = time.perf_counter()
        self._waits = 0.0
        self._batch: Any = None
        self._scaled: tuple[int, torch.Tensor] | None = None
        self._ended_in_call = False
        self._handles: list[Any] = []
        self._module_handles: list[Any] = []
        self._model_handles: list[Any] = []
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------------------ installing

    def install(self) -> StepFinder:
        """Install the hooks and patches; returns self."""
        if self._given_model is not None and self._optimizer is not None:
            self._attach(self._given_model, self._optimizer)
        else:
            self._search()
        from torch.optim import optimizer as optim

        self._handles = [
            optim.register_optimizer_step_pre_hook(self._on_optimizer_pre),
            optim.register_optimizer_step_post_hook(self._on_optimizer_post),
        ]
        self._patch(torch.utils.data.dataloader._BaseDataLoaderIter, "__next__", self._timed_next)
        self._patch(torch.Tensor, "backward", self._backward)
        self._patch(torch.amp.GradScaler, "scale", self._scale)
        self._patch(torch.amp.GradScaler, "step", self._scaler_step)
        self._patch(torch.nn.utils, "clip_grad_norm_", self._clip)
        self._patch(torch.nn.utils, "clip_grads_with_norm_", self._clip_with_norm)
        return self

    def _search(self) -> None:
        hooks = torch.nn.modules.module
        self._module_handles = [
            hooks.register_module_forward_pre_hook(self._on_any_forward_pre),
            hooks.register_module_forward_hook(self._on_any_forward_post, always_call=True),
        ]

    def uninstall(self) -> None:
        """Remove every hook and undo every patch (safe to call more than once)."""
        for handle in [*self._handles, *self._module_handles, *self._model_handles]:
            handle.remove()
        self._handles, self._module_handles, self._model_handles = [], [], []
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__.get(name)
        if original is None:  # an older torch without it (clip_grads_with_norm_ is 2.6's)
            return
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    # ------------------------------------------------------------------------ the result

    @property
    def found(self) -> str | None:
        """``"train"`` or ``"infer"`` once the loop's kind is known, else None."""
        if self._model is None:
            return None
        return "train" if self._training else "infer"

    @property
    def done(self) -> bool:
        """Whether the recording is over (every step asked for, or :meth:`finish`)."""
        return self._finished

    def finish(self) -> Profile | None:
        """End the recording now: drop a step left open, remove every hook, and return the
        Profile of the steps recorded (None if not one step was)."""
        if self.result is None and self.recorder is not None:
            self.recorder.abandon_step()
            self.recorder.close()
            if self.recorder.steps:
                self.result = self.recorder.profile()
                self.result.settings.update({"steps": self.steps, "found_steps": self.found})
        self.recorder = None
        self._finished = True
        self.uninstall()
        return self.result

    # ------------------------------------------------------------------------ searching

    def _on_any_forward_pre(self, module: Any, args: Any) -> None:
        self._depth += 1
        if self._depth != 1 or self._model is not None or self._finished:
            return
        if not any(True for _ in module.parameters()) or len(self._seen) >= 1024:
            return
        grad_off = not torch.is_grad_enabled()
        _, calls = self._seen.get(id(module), (module, 0))
        self._seen[id(module)] = (module, calls + grad_off)
        if grad_off and not self._training and calls >= 1:
            # A second forward with gradients off and no optimizer step yet: inference. The
            # forward running now is the finder's own; the steps start with the next one.
            self._attach(_largest(m for m, c in self._seen.values() if c), None)

    def _on_any_forward_post(self, module: Any, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def _on_optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._finished:
            return
        if self._model is not None and not self._training:
            # An optimizer steps after all: the forwards were a training script's evaluation.
            self._restart()
        if self._model is None:
            if self._optimizer is None or optimizer is self._optimizer:
                self._optimizer, self._training = optimizer, True
            return
        if optimizer is self._optimizer and self.recorder is not None:
            # A closure (Lightning's) runs the step's forward inside step(): it opens here, so
            # the Recorder's own hook, which runs next, sees the step and wraps the closure.
            self._open()

    def _on_optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self._optimizer or self._finished:
            return
        if self._model is None:
            # The finder's own first step is over: the recording starts with the next one.
            model = self._given_model or _owner(self._seen.values(), optimizer)
            if model is not None:
                self._attach(model, optimizer)
            return
        self._ended_in_call = True
        self._end()

    def _restart(self) -> None:
        """Back to searching, the inference model kept as a candidate for the training one."""
        assert self.recorder is not None and self._model is not None
        self.recorder.abandon_step()
        self.recorder.close()
        self._detach_model()
        self._seen = {id(self._model): (self._model, 0)}
        self.recorder, self._model = None, None
        self._search()

    def _attach(self, model: torch.nn.Module, optimizer: Any) -> None:
        for handle in self._module_handles:
            handle.remove()
        self._module_handles = []
        self._depth = 0
        self._seen.clear()
        self._model = model
        self.recorder = Recorder(
            model,
            optimizer,
            warmup=self.warmup,
            sample=self.sample,
            name=self.name or type(model).__name__,
            on_step=self.on_step,
            instrument_budget=INSTRUMENT_BUDGET,
        )
        self._total = self.recorder.steps_for(self.steps)
        self._model_handles = [
            model.register_forward_pre_hook(self._on_model_pre, prepend=True),
            model.register_forward_hook(self._on_model_post),
        ]
        self._last_end = time.perf_counter()
        self._waits, self._batch = 0.0, None

    def _detach_model(self) -> None:
        for handle in self._model_handles:
            handle.remove()
        self._model_handles = []

    # ------------------------------------------------------------------------ recording

    def _on_model_pre(self, module: Any, args: Any) -> None:
        grad_on = torch.is_grad_enabled()
        if self._training and not grad_on:
            # An evaluation between training steps: its time and batches stay outside them.
            if self.recorder is not None and not self.recorder.in_step:
                self._waits, self._batch = 0.0, None
            return
        if not self._training and grad_on:
            # Not an inference step: a training step may follow (an optimizer step switches).
            return
        self._open()

    def _on_model_post(self, module: Any, args: Any, output: Any) -> None:
        if self._training or self.recorder is None:
            return
        if self.recorder.in_step:
            self._end()
        else:
            # The forward that told the finder it is inference: steps tile from its end.
            self._last_end = time.perf_counter()

    def _open(self) -> None:
        recorder = self.recorder
        if recorder is None or recorder.in_step or self._finished:
            return
        now = time.perf_counter()
        if self._batch is not None:
            recorder.waited(self._waits, self._batch)
        recorder.begin_step(lead=now - self._last_end - self._waits)
        self._waits, self._batch = 0.0, None

    def _end(self) -> None:
        recorder = self.recorder
        assert recorder is not None
        if not recorder.in_step:
            return
        recorder.end_step()
        self._last_end = time.perf_counter()
        if len(recorder.steps) >= self._total:
            self.finish()
            if self.stop:
                raise Stopped

    # ------------------------------------------------------------------------ patches

    def _timed_next(self, original: Any) -> Any:
        finder = self

        def __next__(iterator: Any) -> Any:
            start = time.perf_counter()
            batch = original(iterator)
            seconds = time.perf_counter() - start
            recorder = finder.recorder
            if recorder is not None:
                if recorder.in_step:
                    recorder.waited(seconds, batch)
                else:
                    finder._waits += seconds
                    finder._batch = batch
            return batch

        return __next__

    def _backward(self, original: Any) -> Any:
        finder = self

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            recorder = finder.recorder
            if recorder is not None and recorder.in_step and tensor.numel() == 1:
                scaled = finder._scaled
                loss = scaled[1] if scaled is not None and scaled[0] == id(tensor) else tensor
                recorder.record_loss(loss)
            return original(tensor, *args, **kwargs)

        return backward

    def _clip(self, original: Any) -> Any:
        finder = self

        def clip_grad_norm_(*args: Any, **kwargs: Any) -> Any:
            norm = original(*args, **kwargs)
            if finder.recorder is not None:
                finder.recorder.record_grad_norm(norm)
            return norm

        return clip_grad_norm_

    def _clip_with_norm(self, original: Any) -> Any:
        finder = self

        def clip_grads_with_norm_(*args: Any, **kwargs: Any) -> Any:
            norm = kwargs["total_norm"] if "total_norm" in kwargs else args[2]
            if finder.recorder is not None:
                finder.recorder.record_grad_norm(norm)
            return original(*args, **kwargs)

        return clip_grads_with_norm_

    def _scale(self, original: Any) -> Any:
        finder = self

        def scale(scaler: Any, outputs: Any) -> Any:
            result = original(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
                finder._scaled = (id(result), outputs.detach())
            return result

        return scale

    def _scaler_step(self, original: Any) -> Any:
        finder = self

        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            finder._ended_in_call = False
            result = original(scaler, optimizer, *args, **kwargs)
            inner = _unwrapped(optimizer)
            if (
                not finder._ended_in_call
                and finder._training
                and inner is finder._optimizer
                and finder.recorder is not None
            ):
                # Inf or NaN gradients: the scaler skipped optimizer.step(), the step ends here.
                finder._end()
            return result

        return step


def _unwrapped(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's or Lightning's wrapper (itself otherwise)."""
    for _ in range(4):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        optimizer = inner
    return optimizer


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _largest(modules: Any) -> torch.nn.Module:
    found: list[torch.nn.Module] = list(modules)
    return max(found, key=_params)


def _owner(seen: Any, optimizer: Any) -> torch.nn.Module | None:
    """The top-level module holding most of the optimizer's parameters (the largest one called
    if none holds any)."""
    modules: list[torch.nn.Module] = [module for module, _ in seen]
    if not modules:
        return None
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}

    def held(module: torch.nn.Module) -> tuple[int, int]:
        return sum(p.numel() for p in module.parameters() if id(p) in stepped), _params(module)

    return max(modules, key=held)

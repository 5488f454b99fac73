"""Run a Workload under the Recorder: the loop ``pinchpoint.profile`` drives.

The loop is the one a user would write (zero_grad, loss, backward, step; or a forward under
``torch.inference_mode``) and goes through the same :class:`Recorder` calls a user's own loop does,
so a Workload and a hand-written loop give the same Profile. A training workload's settings
(gradient accumulation, autocast, gradient clipping, a learning-rate schedule) are honoured the
way a user's loop would: each recorded step is one micro-batch, clipping and the schedule run in
optimizer step hooks, and the workload's ``log`` runs at the end of the steps it is due on,
inside the Recorder's ``logging()`` block (the step's ``log`` phase).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

import torch

from pinchpoint._profile import Profile, Step
from pinchpoint._threads import torch_threads
from pinchpoint.errors import DeviceError, PinchpointError, WorkloadError
from pinchpoint.recorders.recorder import Recorder
from pinchpoint.workload import Workload, call_model

__all__ = ["TrainingLoop", "installed", "move_model", "profile", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda[:N]"``."""
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}: use auto, cpu or cuda") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} was asked for, but this machine has no CUDA GPU")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise DeviceError(f"device {device!r} does not exist: this machine has {count} GPU(s)")
    elif resolved.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported: use auto, cpu or cuda")
    return resolved


def move_model(name: str, model: Any, target: torch.device) -> None:
    """Move ``model`` to ``target`` in place; a WorkloadError naming the workload if it cannot."""
    try:
        model.to(target)
    except Exception as exc:
        raise WorkloadError(f"workload {name!r}: cannot move the model to {target}: {exc}") from exc


def profile(
    workload: Workload,
    *,
    steps: int = 20,
    warmup: int = 3,
    device: str | torch.device = "auto",
    sample: bool = True,
    on_step: Callable[[Step], None] | None = None,
) -> Profile:
    """Record a Workload into a Profile.

    Runs ``warmup`` steps, then the sampled steps that count FLOPs and profile operators (when
    ``sample``), then ``steps`` measured steps. The model is moved to ``device`` in place and put
    in train or eval mode according to the workload's mode.

    Raises:
        WorkloadError: the workload failed while running (the message names the step).
        DeviceError: the device does not exist here.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    target = resolve_device(device)
    model = workload.model
    training = workload.mode == "train"
    move_model(workload.name, model, target)
    model.train(training)
    recorder = Recorder(
        model,
        workload.optimizer if training else None,
        warmup=warmup,
        sample=sample,
        device=target,
        name=workload.name,
        on_step=on_step,
    )
    total = recorder.steps_for(steps)
    loop = TrainingLoop(workload, model, target) if training else None
    # A full collection must not land in a measured step, sweeping the heap that loading the
    # workload left: the heap is frozen out of the collector's sight for the run instead
    # (collecting it up front cost 140 ms with torch loaded, more than recording 50 steps).
    thawed = gc.get_freeze_count() == 0  # a caller's own frozen heap (a forking server's) stays so
    gc.freeze()
    try:
        with torch_threads(workload.threads), installed(loop):
            for batch in recorder.data(workload.batches(), steps=total):
                with recorder.step():
                    batch = recorder.to_device(batch)
                    if loop is not None:
                        loop.step(batch, recorder)
                    else:
                        with torch.inference_mode():
                            call_model(model, batch)
    except PinchpointError:
        raise
    except Exception as exc:
        at = recorder.step_index
        raise WorkloadError(
            f"workload {workload.name!r} failed at step {at}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        recorder.close()
        if thawed:
            gc.unfreeze()
    result = recorder.profile()
    result.settings.update({"steps": steps, "device_requested": str(device)})
    if workload.memory_budget_bytes is not None:
        result.settings["memory_budget_bytes"] = workload.memory_budget_bytes
    if training and workload.log is not None:
        result.settings["log_every"] = workload.log_every
    return result


@contextlib.contextmanager
def installed(loop: TrainingLoop | None) -> Iterator[None]:
    """The training loop's optimizer hooks for the block (nothing for inference)."""
    if loop is None:
        yield
        return
    loop.install()
    try:
        yield
    finally:
        loop.remove()


class TrainingLoop:
    """One micro-batch per recorded step, with the workload's training settings.

    Gradients are zeroed at the first micro-batch of each accumulation cycle and the optimizer
    steps at its last; a DistributedDataParallel model runs the micro-batches before the last
    under ``no_sync()``, so only the last all-reduces the accumulated gradients. Clipping and
    the learning-rate schedule are optimizer step hooks added after the Recorder's own, so the
    recorded gradient norm is the one before clipping and the clipping counts as optimizer
    time. The workload's ``log`` is called after the micro-batch's backward (and optimizer
    step), on the micro-batches whose index in this loop is a multiple of ``log_every``,
    inside ``recorder.logging()``.
    """

    def __init__(self, workload: Workload, model: Any, device: torch.device) -> None:
        assert workload.loss is not None  # mode == "train" guarantees it
        self.workload = workload
        self.model = model
        self.loss = workload.loss
        self.optimizer = workload.optimizer
        self.accumulate = workload.accumulate
        self.micro = 0
        self.device_type = device.type
        self.dtype = _AUTOCAST_DTYPES[workload.autocast] if workload.autocast else None
        # fp16 gradients underflow without loss scaling; bf16 keeps fp32's exponent range.
        self.scaler = (
            torch.amp.GradScaler(device.type)
            if self.dtype is torch.float16 and device.type == "cuda"
            else None
        )
        self._handles: list[Any] = []

    def install(self) -> None:
        if self.workload.max_grad_norm is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._clip))
        if self.workload.lr_schedule is not None:
            for group in self.optimizer.param_groups:
                group.setdefault("initial_lr", float(group["lr"]))
                group.setdefault("scheduled_steps", 0)
                self._set_lr(group)
            self._handles.append(self.optimizer.register_step_post_hook(self._advance_schedule))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def step(self, batch: Any, recorder: Recorder) -> None:
        first = self.micro % self.accumulate == 0
        last = self.micro % self.accumulate == self.accumulate - 1
        self.micro += 1
        if first:
            self.optimizer.zero_grad(set_to_none=True)
        # Under DistributedDataParallel the micro-batches before the last of an optimizer step
        # skip the all-reduce: forward and backward both run inside no_sync().
        quiet = not last and hasattr(self.model, "no_sync")
        with self.model.no_sync() if quiet else contextlib.nullcontext():
            loss = self._forward_backward(batch, recorder, last)
        index = self.micro - 1
        log = self.workload.log
        if log is not None and index % self.workload.log_every == 0:
            with recorder.logging():
                log(index, self.model, loss)

    def _forward_backward(self, batch: Any, recorder: Recorder, last: bool) -> Any:
        """Run the micro-batch's forward and backward (and the optimizer step at the last one);
        return its loss, before division for accumulation."""
        autocast = (
            torch.autocast(self.device_type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            loss = self.loss(self.model, batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise WorkloadError(
                f"workload {self.workload.name!r}: loss(model, batch) must return a scalar "
                f"tensor, got {type(loss).__name__}"
            )
        recorder.record_loss(loss)
        full = loss
        if self.accumulate > 1:
            # The mean over the cycle's micro-batches, so the summed gradient is the big batch's.
            loss = loss / self.accumulate
        if self.scaler is None:
            loss.backward()
            if last:
                self.optimizer.step()
            return full
        self.scaler.scale(loss).backward()
        if last:
            if self.workload.max_grad_norm is not None:
                # Clipping needs true gradients; a fused optimizer would otherwise see them scaled.
                self.scaler.unscale_(self.optimizer)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return full

    def _clip(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        max_norm = self.workload.max_grad_norm
        assert max_norm is not None  # install() registers it only then
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(
            [p for p in params if p.grad is not None],
            max_norm,
            norm_type=self.workload.grad_norm_type,
        )

    def _advance_schedule(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            group["scheduled_steps"] = group.get("scheduled_steps", 0) + 1
            self._set_lr(group)

    def _set_lr(self, group: dict[str, Any]) -> None:
        assert self.workload.lr_schedule is not None  # install() registers it only then
        lr = group["initial_lr"] * float(self.workload.lr_schedule(group["scheduled_steps"]))
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

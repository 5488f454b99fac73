"""Run a Workload under the Recorder: the loop ``pinchpoint.profile`` drives.

The loop is the one a user would write (zero_grad, loss, backward, step; or a forward under
``torch.inference_mode``) and goes through the same :class:`Recorder` calls a user's own loop does,
so a Workload and a hand-written loop give the same Profile.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from pinchpoint._profile import Profile, Step
from pinchpoint.errors import DeviceError, PinchpointError, WorkloadError
from pinchpoint.recorders.recorder import Recorder
from pinchpoint.workload import Workload, call_model

__all__ = ["move_model", "profile", "resolve_device"]


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
    # Start from a collected heap: a full collection of garbage left by loading the workload
    # would otherwise land in one of the measured steps.
    gc.collect()
    try:
        for batch in recorder.data(workload.batches(), steps=total):
            with recorder.step():
                batch = recorder.to_device(batch)
                if training:
                    _train_step(workload, model, batch, recorder)
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
    result = recorder.profile()
    result.settings.update({"steps": steps, "device_requested": str(device)})
    if workload.memory_budget_bytes is not None:
        result.settings["memory_budget_bytes"] = workload.memory_budget_bytes
    return result


def _train_step(workload: Workload, model: Any, batch: Any, recorder: Recorder) -> None:
    optimizer = workload.optimizer
    assert workload.loss is not None  # mode == "train" guarantees it
    optimizer.zero_grad(set_to_none=True)
    loss = workload.loss(model, batch)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise WorkloadError(
            f"workload {workload.name!r}: loss(model, batch) must return a scalar tensor, "
            f"got {type(loss).__name__}"
        )
    recorder.record_loss(loss)
    loss.backward()
    optimizer.step()

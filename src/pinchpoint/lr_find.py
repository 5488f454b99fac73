"""The learning-rate range test: sweep the rate up, watch the loss, suggest a rate to train at.

The method is Leslie Smith's "LR range test" (L. N. Smith, *Cyclical Learning Rates for Training
Neural Networks*, WACV 2017, section 3.3), in the form fastai popularised (``lr_find``): train for
a short while with a learning rate that grows exponentially from ``start_lr`` to ``end_lr``, one
batch per step, and record the loss of each batch. While the rate is too small the loss barely
moves; over a band of good rates it falls fast; past that band training becomes unstable and the
loss climbs, then explodes.

Choices made here, and why:

- **A copy, not the user's model.** The sweep trains a deep copy of the model with a fresh
  optimizer of the same class and the same per-group hyper-parameters, and restores the global and
  data-loader random states afterwards, so that calling it leaves the workload as it was.
- **Exponential sweep.** Good rates span orders of magnitude, so steps are evenly spaced in
  log(lr): ``lr_i = start_lr * (end_lr / start_lr) ** (i / (steps - 1))``.
- **Smoothing.** Single-batch losses are noisy; the curve is an exponential moving average with
  factor ``smoothing`` (0.98, as in fastai), divided by ``1 - smoothing ** (i + 1)`` (the bias
  correction of Adam, Kingma & Ba 2015) so the first points are not pulled towards zero.
- **Stopping.** The sweep stops once the smoothed loss exceeds ``diverge_factor`` (4) times its
  minimum (a test that needs a positive loss), or a loss is not finite, which is left out of the
  curve: training has diverged and further points only cost time.
- **Suggestion.** The moving average lags the raw loss by tens of steps (about
  ``smoothing / (1 - smoothing)`` = 49 at 0.98), which shifts the features of the curve towards
  larger rates: on ``zoo:digits-cnn`` its minimum sits at lr 0.1-0.2 while the raw loss bottoms
  out at 0.02-0.05, so "minimum / 10" read from it lands at 0.01-0.02, past the 3e-3 to 1e-2
  where that workload trains best in 300 steps. The suggestion is therefore read from a curve
  that does not lag: the raw losses averaged over a centred window of +/- 0.2 decade of rate. On
  it, the rate at the steepest descent against log(lr) (the most negative slope, up to the
  curve's minimum) is where the loss falls fastest per unit of rate, Smith's lower end of the
  good band; it is capped at one tenth of the rate at the minimum, fastai's "minimum / 10" rule,
  because the minimum is already on the verge of instability. When the curve never falls at least
  1 % below where it started, no rate is suggested. ``smoothed`` remains the curve to plot and the
  one divergence is judged on, where lag is harmless and noise is not.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any

from pinchpoint import codec
from pinchpoint.errors import PinchpointError, ProfileFormatError, WorkloadError
from pinchpoint.workload import Workload

__all__ = ["SCHEMA", "LRFindResult", "lr_find", "suggest"]

#: The ``schema`` field of a saved range test.
SCHEMA = "pinchpoint.lr_find/1"

#: The keys of a saved range test, in the order files have them.
_KEYS = "schema optimizer suggestion reason stopped_early lrs losses smoothed"
#: The smoothed loss must fall at least this fraction below its first value for a rate to be
#: suggested; a smaller dip is within the noise of a curve that is really flat or rising.
_MIN_RELATIVE_FALL = 0.01
#: The suggestion is at most the rate at the loss minimum divided by this (fastai's rule).
_MINIMUM_DIVISOR = 10.0
#: Half-width, in decades of learning rate, of the centred average the suggestion is read from.
_WINDOW_DECADES = 0.2


@dataclass(frozen=True)
class LRFindResult(codec.Saved):
    """An LR range test: the learning rates tried, the loss at each, and the suggested rate.

    Attributes:
        lrs: the learning rate of each step, in order.
        losses: the loss of each step's batch, computed before the step's update.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the suggested learning rate; None when no rate made the loss fall.
        reason: one sentence on how the suggestion was read from the curve.
        stopped_early: True when the loss diverged before the end of the sweep.
        optimizer: the class name of the optimizer swept (``"AdamW"``...).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    reason: str
    stopped_early: bool
    optimizer: str

    saved_as = codec.Document(SCHEMA, "LR range test")

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, _KEYS)  # the verdict before the series, for readers

    @classmethod
    def from_dict(cls, data: Any) -> LRFindResult:
        """Read :meth:`to_dict` output back; ProfileFormatError if it is not a range test."""
        result = codec.decode(cls, data)
        if not len(result.lrs) == len(result.losses) == len(result.smoothed):
            raise ProfileFormatError(
                "broken pinchpoint LR range test: lrs, losses and smoothed differ in length"
            )
        return result


def lr_find(
    workload: Workload,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    device: str = "cpu",
) -> LRFindResult:
    """Run the LR range test on a copy of a training workload and suggest a learning rate.

    Each of up to ``steps`` steps takes the next batch of ``workload.batches()``, computes the
    loss, and updates the copy at a rate growing exponentially from ``start_lr`` to ``end_lr``.
    The workload's model, optimizer and random states are left as they were. When the optimizer
    has several parameter groups, the swept rate is that of the group with the largest rate and
    the others keep their ratio to it.

    Raises:
        WorkloadError: the workload does not train (no loss or optimizer), an argument is out of
            range, or the workload fails while it runs (the message names the step).
        DeviceError: the device does not exist here.
    """
    _check_arguments(workload, start_lr, end_lr, steps, smoothing, diverge_factor)

    import torch

    from pinchpoint.recorders.recorder import move_to_device
    from pinchpoint.recorders.run import resolve_device

    target = resolve_device(device)
    original = workload.optimizer
    if not isinstance(original, torch.optim.Optimizer):
        raise WorkloadError(
            f"workload {workload.name!r}: the LR range test needs a torch.optim.Optimizer, "
            f"got {type(original).__name__}"
        )
    fork_devices = [target.index or 0] if target.type == "cuda" else []
    generator = getattr(workload.data, "generator", None)
    data_state = generator.get_state() if isinstance(generator, torch.Generator) else None
    # fork_rng restores the global random state (dropout, a shuffling sampler without its own
    # generator) and the loader's generator is reset below: the user's next run sees the batches
    # and random draws it would have seen without the sweep.
    try:
        with torch.random.fork_rng(devices=fork_devices):
            model, optimizer, ratios = _copy_for_sweep(workload, original, target)
            lrs, losses, smoothed, stopped = _sweep(
                workload,
                model,
                optimizer,
                ratios,
                move_to_device=lambda batch: move_to_device(batch, target),
                start_lr=start_lr,
                end_lr=end_lr,
                steps=steps,
                smoothing=smoothing,
                diverge_factor=diverge_factor,
            )
    finally:
        if data_state is not None and isinstance(generator, torch.Generator):
            generator.set_state(data_state)
    suggestion, reason = suggest(lrs, losses)
    return LRFindResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        suggestion=suggestion,
        reason=reason,
        stopped_early=stopped,
        optimizer=type(original).__name__,
    )


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, str]:
    """The suggested rate read from a range-test curve, and one sentence saying how.

    The raw ``losses`` are averaged over a centred window of +/- 0.2 decade of rate (at least one
    step each side); on that curve the rate of steepest descent against log(lr), up to the
    curve's minimum, is taken and capped at the rate at the minimum divided by 10. None when the
    curve never falls at least 1 % below its first value.
    """
    if len(lrs) != len(losses):
        raise ValueError("lrs and losses must have the same length")
    if len(lrs) < 3:
        return None, f"the sweep stopped after {len(lrs)} step(s), too few to read a slope from"
    logs = [math.log(lr) for lr in lrs]
    decades_per_step = (logs[1] - logs[0]) / math.log(10)
    half = max(1, round(_WINDOW_DECADES / decades_per_step)) if decades_per_step > 0 else 1
    curve = _centred_mean(losses, half)
    first = curve[0]
    low = min(range(len(curve)), key=curve.__getitem__)
    lowest = curve[low]
    if low < 2 or not lowest < first - _MIN_RELATIVE_FALL * abs(first):
        return None, (
            f"the loss never fell meaningfully below its first value ({first:.4g}; lowest "
            f"{lowest:.4g} at lr {lrs[low]:.3g}), so no rate in the sweep made training progress"
        )
    # Central differences inside the curve, one-sided at its start, as numpy.gradient does.
    slopes = [(curve[1] - curve[0]) / (logs[1] - logs[0])]
    slopes += [(curve[i + 1] - curve[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, low)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    steep_lr = lrs[steepest]
    ceiling = lrs[low] / _MINIMUM_DIVISOR
    window = f"the loss averaged over {2 * half + 1} neighbouring steps"
    if steep_lr <= ceiling:
        return steep_lr, (
            f"the steepest descent of {window} is at lr {steep_lr:.3g} (slope "
            f"{slopes[steepest]:.3g} per unit of ln lr), below a tenth of the rate at the "
            f"loss minimum ({lrs[low]:.3g}, loss {lowest:.4g})"
        )
    return ceiling, (
        f"a tenth of the rate at the minimum of {window} ({lrs[low]:.3g}, loss {lowest:.4g}), "
        f"which caps its steepest descent at lr {steep_lr:.3g} (slope {slopes[steepest]:.3g} per "
        "unit of ln lr), so training stays clear of the unstable rates near the minimum"
    )


def _centred_mean(values: list[float], half: int) -> list[float]:
    """Each value averaged with up to ``half`` neighbours on each side (fewer at the ends)."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half) : i + half + 1]
        out.append(sum(window) / len(window))
    return out


def _check_arguments(
    workload: Workload,
    start_lr: float,
    end_lr: float,
    steps: int,
    smoothing: float,
    diverge_factor: float,
) -> None:
    """Raise WorkloadError, on one line, for a workload or argument the test cannot run with."""
    if workload.mode != "train":
        raise WorkloadError(
            f"workload {workload.name!r} runs inference (no loss or optimizer): "
            "the LR range test needs a training workload"
        )
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise WorkloadError(f"lr-find: start_lr must be a positive number, not {start_lr!r}")
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        raise WorkloadError(
            f"lr-find: end_lr ({end_lr!r}) must be a finite number above start_lr ({start_lr!r})"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise WorkloadError(f"lr-find: steps must be an integer of at least 10, not {steps!r}")
    if not 0 <= smoothing < 1:
        raise WorkloadError(f"lr-find: smoothing must be in [0, 1), not {smoothing!r}")
    if not diverge_factor > 1:
        raise WorkloadError(f"lr-find: diverge_factor must be above 1, not {diverge_factor!r}")


def _copy_for_sweep(workload: Workload, original: Any, target: Any) -> tuple[Any, Any, list[float]]:
    """A deep copy of the model on ``target``, a fresh optimizer over it, and each group's lr ratio.

    The new optimizer has the original's class, defaults and per-group hyper-parameters but none
    of its state (moments, step counts): the test starts from the model's current weights with
    an optimizer as the user's training would start.
    """
    try:
        model = copy.deepcopy(workload.model)
    except Exception as exc:
        raise WorkloadError(
            f"workload {workload.name!r}: cannot copy the model for the LR range test: {exc}"
        ) from exc
    # deepcopy keeps the order of parameters (and which ones are shared), so zip pairs them.
    twin = {id(p): q for p, q in zip(workload.model.parameters(), model.parameters(), strict=True)}
    from pinchpoint.recorders.run import move_model

    move_model(workload.name, model, target)
    model.train(True)
    groups = []
    for group in original.param_groups:
        missing = [p for p in group["params"] if id(p) not in twin]
        if missing:
            raise WorkloadError(
                f"workload {workload.name!r}: its optimizer holds {len(missing)} parameter(s) "
                "that are not the model's, so the LR range test cannot copy it"
            )
        settings = {k: v for k, v in group.items() if k != "params"}
        groups.append({**settings, "params": [twin[id(p)] for p in group["params"]]})
    try:
        optimizer = type(original)(groups, **_constructor_defaults(original))
    except Exception as exc:
        raise WorkloadError(
            f"workload {workload.name!r}: cannot build a fresh {type(original).__name__} for the "
            f"LR range test: {exc}"
        ) from exc
    rates = [float(g["lr"]) for g in original.param_groups]
    top = max(rates)
    ratios = [rate / top for rate in rates] if top > 0 else [1.0] * len(rates)
    return model, optimizer, ratios


def _constructor_defaults(optimizer: Any) -> dict[str, Any]:
    """The optimizer's defaults that its constructor accepts as keyword arguments.

    ``defaults`` can hold entries the constructor does not take (AdamW records
    ``decoupled_weight_decay``, fixed by its class), so passing them all back would fail; each
    group already carries its full settings, so those entries are not lost.
    """
    try:
        parameters = inspect.signature(type(optimizer)).parameters
    except (TypeError, ValueError):
        return dict(optimizer.defaults)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(optimizer.defaults)
    return {k: v for k, v in optimizer.defaults.items() if k in parameters and k != "params"}


def _sweep(
    workload: Workload,
    model: Any,
    optimizer: Any,
    ratios: list[float],
    *,
    move_to_device: Any,
    start_lr: float,
    end_lr: float,
    steps: int,
    smoothing: float,
    diverge_factor: float,
) -> tuple[list[float], list[float], list[float], bool]:
    """Train ``model`` one batch per rate of the sweep; the curve, and whether it stopped early.

    A step's loss is that of its batch before the update at its rate, as in Smith's and fastai's
    tests. A non-finite loss ends the sweep without being recorded; a diverging smoothed loss
    ends it after being recorded, so the curve shows the climb.
    """
    import torch

    assert workload.loss is not None  # _check_arguments ensured a training workload
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    best = math.inf
    ratio = end_lr / start_lr
    batches = workload.batches()
    step = 0
    try:
        for step in range(steps):
            lr = start_lr * ratio ** (step / (steps - 1))
            for group, share in zip(optimizer.param_groups, ratios, strict=True):
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr * share)
                else:
                    group["lr"] = lr * share
            batch = move_to_device(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss = workload.loss(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise WorkloadError(
                    f"workload {workload.name!r}: loss(model, batch) must return a scalar tensor, "
                    f"got {type(loss).__name__}"
                )
            value = loss.detach().item()
            if not math.isfinite(value):
                return lrs, losses, smoothed, True
            average = smoothing * average + (1 - smoothing) * value
            current = average / (1 - smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(current)
            best = min(best, current)
            # The ratio test only means something for a positive loss (cross-entropy, MSE...).
            if best > 0 and current > diverge_factor * best:
                return lrs, losses, smoothed, step < steps - 1
            loss.backward()
            optimizer.step()
    except PinchpointError:
        raise
    except Exception as exc:
        raise WorkloadError(
            f"workload {workload.name!r} failed at step {step} of the LR range test: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return lrs, losses, smoothed, False

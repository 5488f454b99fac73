"""The root-cause zoo: workloads with a cause and its symptoms, or a time sink and a mild stall.

Each planted workload here shows more than one finding, and the ranking must put the right one
first (docs/taxonomy.md, "Ranking"). :data:`ROOT_CAUSE_PLANTED` maps each zoo name to the kind
that must be the principal finding; :data:`ROOT_CAUSE_CONTROLS` maps each control, the same
workload without the mistake, to the planted workload it mirrors.

========================  =======================  ==============================================
zoo name                  principal kind           the mistake, and what else it shows
========================  =======================  ==============================================
``hot-init``              ``exploding_gradients``  8 hidden ReLU layers drawn at 4x the Kaiming
                                                   scale, SGD at a sensible lr 0.05: updates
                                                   blow up, then NaNs (symptoms, not the cause)
``looped-adam``           ``optimizer_bound``      2048 one-element Parameters under Adam with
                                                   foreach=False, on labels 40 % noisy: a large
                                                   time saving next to a mild loss plateau
``warmup-overshoot``      ``lr_too_high``          the digits MLP under SGD with momentum 0.9
                                                   and a linear warm-up to a peak rate of 2:
                                                   the loss falls until the rate passes ~1,
                                                   then leaps; the units it knocks out are
                                                   its symptom
``hot-init-control``      healthy control          ``hot-init`` drawn at the Kaiming scale
``looped-adam-control``   healthy control          ``looped-adam`` with one vector Parameter per
                                                   role and a foreach Adam
``warmup-control``        healthy control          ``warmup-overshoot`` warmed up to a peak of
                                                   0.1
========================  =======================  ==============================================

Like the other zoo families, every builder follows ``build(*, seed=0, batch_size=None)``, is
deterministic for a seed and leaves the caller's random state alone; the data is bundled
(scikit-learn's digits) or synthetic and seeded, so nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from pinchpoint.remedies.training import LRSchedule
from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import batches, classifier, seeded, stacked_mlp
from pinchpoint.zoo.health import digits_mlp, digits_workload
from pinchpoint.zoo.planted import PerFeatureAffine, teacher_data

__all__ = [
    "HOT_INIT_SCALE",
    "ROOT_CAUSE_CONTROLS",
    "ROOT_CAUSE_PLANTED",
    "hot_init",
    "hot_init_control",
    "looped_adam",
    "looped_adam_control",
    "warmup_control",
    "warmup_overshoot",
]

#: The root-cause workloads: zoo name to the kind that must be the principal finding.
ROOT_CAUSE_PLANTED: dict[str, str] = {
    "hot-init": "exploding_gradients",
    "looped-adam": "optimizer_bound",
    "warmup-overshoot": "lr_too_high",
}

#: Each control, the planted workload without its mistake, to the planted workload it mirrors.
ROOT_CAUSE_CONTROLS: dict[str, str] = {
    "hot-init-control": "hot-init",
    "looped-adam-control": "looped-adam",
    "warmup-control": "warmup-overshoot",
}

#: How many times the Kaiming standard deviation ``hot-init`` draws its weights at.
HOT_INIT_SCALE = 4.0
_HOT_INIT_DEPTH = 8
_HOT_INIT_WIDTH = 64
#: A learning rate that trains the Kaiming-initialized MLP well with plain SGD.
_HOT_INIT_LR = 0.05

#: ``warmup-overshoot``'s peak learning rate under SGD with momentum 0.9, and its control's: the
#: loss falls until the warm-up passes about 1.
WARMUP_PEAK = 2.0
_WARMUP_CONTROL_PEAK = 0.1
_WARMUP_STEPS = 20
_WARMUP_MOMENTUM = 0.9

_LOOPED_FEATURES = 1024
_LOOPED_BATCH = 16
_LOOPED_TRAIN, _LOOPED_TEST = 2048, 512
#: The share of labels flipped: the loss can only fall slowly, the mild plateau.
_LOOPED_NOISE = 0.4


# --- hot-init: exploding_gradients, with lr_too_high-like updates and NaNs as symptoms ----------


def _kaiming_scaled_mlp(scale: float) -> nn.Sequential:
    """The deep digits MLP with every Linear weight drawn from N(0, (scale * sqrt(2/fan_in))²)."""
    model = stacked_mlp(64, (_HOT_INIT_WIDTH,) * _HOT_INIT_DEPTH, 10, nn.ReLU)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=scale * math.sqrt(2.0 / module.in_features))
    return model


def _hot_init_workload(name: str, seed: int, batch_size: int | None, scale: float) -> Workload:
    return digits_workload(
        name,
        seed,
        batch_size,
        lambda: _kaiming_scaled_mlp(scale),
        lambda model: torch.optim.SGD(model.parameters(), lr=_HOT_INIT_LR),
        f"digits MLP, {_HOT_INIT_DEPTH} hidden ReLU layers {_HOT_INIT_WIDTH} wide with Linear "
        f"weights at {scale:g}x the Kaiming scale, SGD lr {_HOT_INIT_LR}; "
        "quality = held-out accuracy",
    )


def hot_init(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``hot-init`` workload: a deep ReLU MLP initialized 4x too large, SGD at a sane rate.

    Each of the nine layers multiplies the signal, forward and backward, by about 4, so the
    loss is in the hundred thousands and the gradient norms in the tens of thousands at the
    very first step, before any update. SGD at 0.05, a rate that trains the same network
    initialized at the Kaiming scale (:func:`hot_init_control`), turns that gradient into an
    update as large as the weights themselves, and the next step overflows. A lower rate only
    delays it: the cause is the initialization.

    Args:
        seed: initializes the weights and shuffles the batches.
        batch_size: images per batch (default 64).
    """
    return _hot_init_workload("hot-init", seed, batch_size, HOT_INIT_SCALE)


def hot_init_control(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``hot-init-control`` workload: :func:`hot_init` drawn at the Kaiming scale."""
    return _hot_init_workload("hot-init-control", seed, batch_size, 1.0)


# --- looped-adam: optimizer_bound, with a mild loss_plateau beside it ---------------------------


class _VectorAffine(nn.Module):
    """A learned scale and shift per input feature, each role one vector Parameter."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features))
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each column of (batch, features) ``x``."""
        return x * self.scale + self.shift


def _looped_workload(name: str, seed: int, batch_size: int | None, mistake: bool) -> Workload:
    batch_size = positive_int(name, "batch_size", batch_size, _LOOPED_BATCH)
    features = _LOOPED_FEATURES
    generator = torch.Generator().manual_seed(seed)
    x, y = teacher_data(generator, _LOOPED_TRAIN + _LOOPED_TEST, features, 2)
    # Noisy labels (a crowd-sourced set, say): the loss can fall only slowly, a mild plateau.
    flipped = torch.rand(len(y), generator=generator) < _LOOPED_NOISE
    y = torch.where(flipped, 1 - y, y)
    affine: type[nn.Module] = PerFeatureAffine if mistake else _VectorAffine
    model = seeded(
        seed,
        lambda: nn.Sequential(
            affine(features), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 2)
        ),
    )
    # The mistake: a Parameter per feature and role, stepped one tensor at a time.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=not mistake)
    tensors = sum(1 for _ in model.parameters())
    return classifier(
        name,
        model,
        batches(x[:_LOOPED_TRAIN], y[:_LOOPED_TRAIN], batch_size, generator),
        optimizer,
        (x[_LOOPED_TRAIN:], y[_LOOPED_TRAIN:]),
        f"tabular MLP on {features} features with {_LOOPED_NOISE:.0%} noisy labels, "
        f"{tensors} parameter tensors, Adam(foreach={not mistake}); "
        "quality = held-out accuracy",
    )


def looped_adam(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``looped-adam`` workload: 2048 scalar Parameters under a for-loop Adam, noisy labels.

    The optimizer step loops over 2052 tensors, most of one element, and takes about 60 % of
    the step: most of that is a measured, large saving (foreach=True, or one vector per role).
    With 40 % of the labels flipped the loss falls only slowly, so over a short run it looks
    flat: a mild plateau that must not outrank the saving.

    Args:
        seed: initializes the weights, draws the data and flips the labels.
        batch_size: samples per batch (default 16).
    """
    return _looped_workload("looped-adam", seed, batch_size, mistake=True)


def looped_adam_control(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """``looped-adam-control``: :func:`looped_adam` with vector Parameters and a foreach Adam."""
    return _looped_workload("looped-adam-control", seed, batch_size, mistake=False)


# --- warmup-overshoot: lr_too_high from the schedule, with the units it kills as its symptom ---


def _warmup_workload(name: str, seed: int, batch_size: int | None, peak: float) -> Workload:
    workload = digits_workload(
        name,
        seed,
        batch_size,
        digits_mlp,
        lambda model: torch.optim.SGD(model.parameters(), lr=peak, momentum=_WARMUP_MOMENTUM),
        f"digits MLP 64-128-64-10, SGD momentum {_WARMUP_MOMENTUM} with a linear warm-up over "
        f"{_WARMUP_STEPS} steps to a peak lr of {peak:g}; quality = held-out accuracy",
    )
    # The warm-up pinchpoint's own LRSchedule applies: n / 20 of the peak at step n.
    warmup = LRSchedule(kind="constant", warmup_steps=_WARMUP_STEPS)
    return dataclasses.replace(workload, lr_schedule=warmup.factor)


def warmup_overshoot(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``warmup-overshoot`` workload: a warm-up that climbs past the rate the model takes.

    The healthy digits MLP under SGD with momentum 0.9, its rate warmed up linearly over 20
    steps to a peak of 2. At the first steps' rates (0 to about 1) the loss falls from
    log(10) towards 1.7-1.9; once the rate passes that it leaps to 24-1034 and knocks out
    units. The gradients of the first step are of normal size: the initialization is sound,
    the rate is not. :func:`warmup_control` warms up to 0.1 instead.

    Args:
        seed: initializes the weights and shuffles the batches.
        batch_size: images per batch (default 64).
    """
    return _warmup_workload("warmup-overshoot", seed, batch_size, WARMUP_PEAK)


def warmup_control(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``warmup-control`` workload: :func:`warmup_overshoot` warmed up to a peak of 0.1."""
    return _warmup_workload("warmup-control", seed, batch_size, _WARMUP_CONTROL_PEAK)

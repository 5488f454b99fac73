"""Training-method analyzers: why a model learns slowly or not at all.

They read the Profile's loss series and its :class:`~pinchpoint._profile.Health` series. Every
rule is relative, so it holds for SGD, momentum and Adam-family optimizers and across widths:

- **loss trend**: a least-squares line through the loss over the run; its slope is judged by its
  t-statistic against the loss's own noise. ``diverged`` when it becomes non-finite; ``unstable``
  when it peaks at 3× its start or more (the overshoot of a too-large step, even if it settles
  back) and at 3× its median over the run: a spike above both where it started and where it
  mostly sits (one batch's loss is noise: a first batch of 4 samples that scored 0.34 on a
  two-class task, half of ln 2, made the ordinary 1.07 of the next look like a spike, while the
  run's median was 0.6; a rate 100× too large leaps from 2.3 to 90-350 over a median of 3-4);
  ``falling`` when t ≤ -3, it ends below its start and the fitted line falls by at least 2 % of
  its mean over the run (a smaller decline, however significant, is a stall in practice: a
  network memorising 512 random labels fell 0.45 % in 30 steps at t = -3.05); ``rising`` when
  t ≥ 3 or it ends above twice its start; ``flat`` when, besides, the loss demonstrably did not
  fall: the upper 95 % bound of its decline over the run (slope plus two standard errors, times
  the points) is under 10 % of its mean; else ``noisy``, a loss that moves too much from batch
  to batch to tell a plateau from slow progress (a batch of 2 samples: a bound of 100 % and
  more, where the planted plateaus sit at 0.2-1.2 %).
- **update size**: the update-to-weight ratio ``‖Δw‖/‖w‖`` per layer and step, summarised by its
  geometric median. About 1e-3 is the healthy rule of thumb (Karpathy, "A Recipe for Training
  Neural Networks"; CS231n) whatever the optimizer, since it measures the step the optimizer
  actually took.
- **gradient depth profile**: each layer's median gradient norm; the ratio of the first layer's
  to the last's (layers in registration order, input to output).

The rules, with each finding's importance:

- ``lr_too_high`` (1.0): a loss that fell at the lower rates of a schedule and rose only after
  the rate grew (:func:`schedule_overshoot`, from the rate each step recorded: evidence
  ``cause: schedule``, the rates at the low and at the rise); or updates ≥ 3e-2 of the weights
  and the loss not falling; or an unstable or diverged loss (or non-finite values) with updates
  ≥ 1e-2. It outranks the dead units, the exploding gradients and the NaNs a too-large step
  leaves behind: root cause over symptom. It is not raised when the gradients already explode
  at the first step (below): then the large updates are the gradient's doing, not the rate's.
- ``nan_inf`` (1.0 alone): a non-finite loss, gradient or weight appeared. Following a cause
  found here it is that cause's symptom (evidence ``explained_by``) and ranks just below it:
  0.95 under ``lr_too_high`` or initialization-caused exploding gradients, 0.88 under exploding
  gradients that grew over the run.
- ``exploding_gradients`` (0.9; 1.0 when caused by the initialization): in most weight-matrix
  layers the gradient is ten times the weights it updates (``‖g‖/‖w‖ ≥ 10``; healthy training
  sits near 1e-2), or the gradient norm is ≥ 10 and either 10× larger at the first layer than
  at the last or grown 10× over the run; or, when the global gradient norm is already ≥ 10 at
  the first recorded step, the gradient is at least the weights in most weight-matrix layers
  (``‖g‖/‖w‖ ≥ 1``, 100× the healthy ratio) under an optimizer whose step is proportional to the
  gradient (SGD): a network that trains only at a rate far below the usual, whose updates
  therefore look normal. Adam-family optimizers divide the gradient's scale out, so for them a
  large but finite gradient is no finding by itself. When the global gradient norm is already
  ≥ 10 at the first recorded step, before any update, no learning rate can have caused it: evidence
  ``cause`` is ``initialization``, ``better_init`` is the first remedy and ``lr_too_high`` is
  dropped. Otherwise, beside ``lr_too_high``, it is that finding's symptom.
- ``dead_units`` (0.85): a ReLU layer with ≥ 50 % of its units outputting zero for the whole
  batch (median over the sampled steps). High severity from 75 %: too few units are left to
  carry the gradient. Below that the network still has units to learn with: medium, importance
  0.2; it only wastes capacity while the loss falls, and when the loss is flat something else
  stalls it, so the units are that plateau's symptom (evidence ``explained_by:
  loss_plateau``; a network given nothing it can learn turns its last hidden units off as it
  settles on the label prior) and the plateau is reported before them. Units that were alive
  at the first sampled step and died beside ``lr_too_high`` or initialization-caused exploding
  gradients are that finding's symptom (``explained_by``): its huge updates knocked them out.
  For the same reason only the units off at the first step can excuse a large first-step
  gradient from counting as exploding.
- ``saturated_activations`` (0.85): a sigmoid/tanh layer with ≥ 50 % of its outputs within 0.01
  of its limits; graded like ``dead_units``.
- ``vanishing_gradients`` (0.8): the first layer's gradient ≤ 1e-2 of the last's over ≥ 3
  layers, falling with depth, and not explained by dead or saturated units (root cause over
  symptom).
- ``lr_too_low`` (0.8): even the layer that moves most moves ≤ 1e-4 of its weights per step,
  a tenth of the healthy 1e-3, and the loss is not falling (vanishing gradients leave only the
  early layers still; their last layers move about 1e-3). The median layer of such a run sits
  lower still: SGD at 1.5e-4 on a one-hidden-layer MLP moved its output layer 4e-5 per step,
  its hidden layer 5e-6.
- ``loss_plateau`` (0.5): the loss flat although updates are of healthy size (3e-5 to 3e-2)
  and nothing above explains it (dead or saturated units below 75 % are then its symptom).

"Not learning" is only judged over at least 20 recorded steps: a shorter run cannot tell a
plateau from noise. ``lr_too_low``, ``loss_plateau`` and the large-update branch of ``lr_too_high``
need that many; a loss that diverges or spikes is plain at any length.

Importance takes the place of the runtime findings' saving share when ranking, within the tiers
of :func:`pinchpoint.finding.rank` (docs/taxonomy.md, "Ranking"): a high-severity finding here
means the run diverges or does not learn, which makes its speed moot, so it comes before any
runtime finding (an over-budget memory finding, which stops the run, ties with the first); a
medium one (a plateau, a minority of dead units) slows learning without stopping it and comes
after the large time savings, before the small ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics

from pinchpoint._profile import Health, Profile
from pinchpoint.analyzers._loss import LossTrend, loss_trend, schedule_overshoot
from pinchpoint.finding import Finding, Remedy

__all__ = ["LossTrend", "analyze", "loss_trend", "schedule_overshoot"]

GRADIENT_TO_WEIGHT = 10.0
#: With a first-step gradient norm of EXPLODING_NORM or more, the gradient-to-weight ratio that
#: marks exploding gradients from the initialization: 100x the healthy 1e-2.
INIT_GRADIENT_TO_WEIGHT = 1.0
#: Optimizers whose step is proportional to the gradient (not divided by its running scale).
PROPORTIONAL_OPTIMIZERS = frozenset({"SGD", "ASGD"})
HIGH_UPDATE = 3e-2
LOW_UPDATE = 3e-5
#: The update size under which even the layer that moves most is still: a tenth of 1e-3.
LOW_FASTEST_UPDATE = 1e-4
EXPLODING_NORM = 10.0
EXPLODING_RATIO = 10.0
VANISHING_RATIO = 1e-2
DEAD_SHARE = 0.5
#: From this share of dead or saturated units (or whenever the loss is not falling) they are of
#: high severity; below it a network that still learns only wastes capacity (medium).
SEVERE_SHARE = 0.75
#: Loss points needed before a flat loss is called a plateau or a too-small learning rate.
MIN_TREND_POINTS = 20
SATURATED_SHARE = 0.5


def _overshoot_summary(overshoot: dict[str, float | int]) -> str:
    """The sentence of an ``lr_too_high`` finding read off the schedule."""
    best, rise = overshoot["lr_at_best"], overshoot["lr_at_rise"]
    head = f"The loss fell from {overshoot['loss_start']:.3g} to {overshoot['loss_at_best']:.3g} "
    if best < rise:
        head += f"while the learning rate was {best:.2g} and rose after it grew to {rise:.2g}"
    else:
        head += f"while the learning rate grew to {rise:.2g} and rose once it stayed there"
    return head + f" (step {overshoot['rise_step']}): the schedule's peak rate is too high."


def _overshoot_remedy(overshoot: dict[str, float | int]) -> str:
    """Why a lower peak helps, with the rate to aim for."""
    best, rise = overshoot["lr_at_best"], overshoot["lr_at_rise"]
    if best < rise:
        where = f"cap the schedule's peak near {best:.2g}, where the loss still fell"
    else:
        where = f"lower the schedule's peak below {rise:.2g}, which the loss did not stand"
    return where + "; pinchpoint lr-find measures where the loss stops falling"


def _geometric_median(rows: list[list[float | None]]) -> float | None:
    logs = sorted(math.log10(v) for row in rows for v in row if v is not None and v > 0)
    return 10 ** statistics.median(logs) if logs else None


def _layer_medians(rows: list[list[float | None]], columns: int) -> list[float | None]:
    out: list[float | None] = []
    for j in range(columns):
        values = [row[j] for row in rows if j < len(row) and row[j] is not None]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        out.append(statistics.median(finite) if finite else None)
    return out


def _worst(health: Health, matrix: list[list[float | None]], kind: str) -> tuple[str, float] | None:
    medians = _layer_medians(matrix, len(health.activation_layers))
    candidates = [
        (name, m)
        for name, family, m in zip(
            health.activation_layers, health.activation_kinds, medians, strict=True
        )
        if m is not None and family in kind
    ]
    return max(candidates, key=lambda c: c[1]) if candidates else None


def _first_value(health: Health, matrix: list[list[float | None]], layer: str) -> float | None:
    """``layer``'s first recorded value in an activation series (its share at the first step
    sampled, before or soon after the first update)."""
    j = health.activation_layers.index(layer)
    return next((row[j] for row in matrix if j < len(row) and row[j] is not None), None)


def _units_cause(
    cause: str | None, first_share: float | None, threshold: float, plateau: bool
) -> str | None:
    """What dead or saturated units are the symptom of: the ``cause`` of large updates (a
    too-large rate, gradients exploding from the initialization) when the units were not off
    at the first sampled step (those updates knocked them out), else a plateau on a flat loss,
    else nothing (they are a cause of their own)."""
    if cause is not None and first_share is not None and first_share < threshold:
        return cause
    return "loss_plateau" if plateau else None


def _first_worst(health: Health, matrix: list[list[float | None]], kind: str) -> float:
    """The largest share among ``kind``'s activation layers at the first step sampled (0 when
    none was)."""
    values = [
        _first_value(health, matrix, layer)
        for layer, family in zip(health.activation_layers, health.activation_kinds, strict=True)
        if family in kind
    ]
    return max((v for v in values if v is not None), default=0.0)


def _finding(
    kind: str,
    importance: float,
    summary: str,
    evidence: dict[str, object],
    remedies: list[tuple[str, str]],
    severity: str = "high",
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,  # type: ignore[arg-type]
        share=importance,
        saving_share=importance,
        summary=summary,
        evidence=evidence,
        remedies=[Remedy(name, why) for name, why in remedies],
    )


def _exploding_remedies(at_init: bool) -> list[tuple[str, str]]:
    """The remedies for exploding gradients; the initialization first when it is the cause."""
    clip = ("grad_clipping", "clip the global gradient norm (e.g. to 1.0)")
    init = (
        "better_init",
        "Kaiming/Xavier initialisation keeps activations and gradients at unit scale through depth",
    )
    if at_init:
        init = (
            "better_init",
            "the gradients are already exploding at the first step, before any update: draw "
            "the weights at the Kaiming/Xavier scale (torch's default) instead",
        )
    rest = [
        ("normalization", "normalization layers rescale each layer's activations"),
        ("lower_lr", "a smaller step keeps a large gradient from diverging"),
    ]
    return [init, clip, *rest] if at_init else [clip, init, *rest]


def _exploding_summary(
    median_norm: float,
    to_weight: float | None,
    depth_ratio: float,
    first_norm: float | None,
    at_init: bool,
) -> str:
    """The one sentence of an exploding-gradients finding."""
    if at_init and first_norm is not None:
        head = (
            f"Gradients explode from the first step: their norm is {first_norm:.3g} before any "
            f"update (median {median_norm:.3g}), so the initialization, not the learning rate, "
            "made them large"
        )
    else:
        head = f"Gradients explode: their norm ({median_norm:.3g}) is "
        head += f"{to_weight:.3g}x that of the weights they update" if to_weight else "large"
    return f"{head}, and the first layer's is {depth_ratio:.3g}x the last's."


def _explained(findings: list[Finding], at_init: bool) -> list[Finding]:
    """The findings once exploding gradients are found: root cause before symptom.

    Gradients that explode from the first step point to the initialization: the large updates
    that made ``lr_too_high`` fire follow from them (the rate multiplies a gradient that is
    already wrong), so that finding is dropped and the non-finite values are marked as their
    symptom. Gradients that grew under a too-large rate are its symptom instead.
    """
    lr_high = any(f.kind == "lr_too_high" for f in findings) and not at_init
    cause = "lr_too_high" if lr_high else "exploding_gradients"
    out: list[Finding] = []
    for f in findings:
        if f.kind == "lr_too_high" and at_init:
            continue
        if f.kind == "nan_inf" or (f.kind == "exploding_gradients" and lr_high):
            # Just below its cause: lr_too_high is 1.0, exploding_gradients 0.9 (1.0 from init).
            importance = 0.95 if cause == "lr_too_high" or at_init else 0.88
            if f.kind == "exploding_gradients":
                importance = 0.9
            remedies = f.remedies
            if f.kind == "nan_inf" and at_init:
                # A lower rate only delays the overflow of a gradient that starts out huge.
                remedies = [
                    Remedy(
                        "better_init",
                        "the overflow follows gradients that explode from the "
                        "first step: draw the weights at the Kaiming/Xavier scale",
                    ),
                    *(r for r in f.remedies if r.name != "lower_lr"),
                ]
            f = dataclasses.replace(
                f,
                share=importance,
                saving_share=importance,
                evidence={**f.evidence, "explained_by": cause},
                remedies=remedies,
            )
        out.append(f)
    return out


def analyze(profile: Profile) -> list[Finding]:
    """Training-method findings for a training run (none for inference)."""
    health = profile.health
    losses = [s.loss for s in profile.steps if s.loss is not None]
    if profile.mode != "train" or health is None or not losses:
        return []
    trend = loss_trend(losses)
    update = _geometric_median(health.update_ratio)
    # The layer that moves most: a too-small learning rate leaves even that one still, while
    # vanishing gradients leave only the early layers still.
    per_layer = [
        _geometric_median([[row[j]] for row in health.update_ratio if j < len(row)])
        for j in range(len(health.layers))
    ]
    fastest = max((u for u in per_layer if u is not None), default=None)
    lr = (profile.optimizer or {}).get("lr")
    learning = trend is not None and trend.kind == "falling"
    long_enough = trend is not None and trend.points >= MIN_TREND_POINTS
    base = {
        "loss_trend": trend.kind if trend else None,
        "loss_trend_t": trend.t_statistic if trend else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "update_ratio": update,
        "lr": lr,
    }
    findings: list[Finding] = []

    nonfinite = health.nonfinite
    unstable = trend is not None and trend.kind in ("unstable", "diverged")
    lr_high = update is not None and (
        (update >= HIGH_UPDATE and not learning and long_enough)
        or (unstable and update >= HIGH_UPDATE / 3)
    )
    overshoot = schedule_overshoot(profile.steps)
    if overshoot is not None:
        findings.append(
            _finding(
                "lr_too_high",
                1.0,
                _overshoot_summary(overshoot),
                {
                    **base,
                    **overshoot,
                    "cause": "schedule",
                    "update_ratio": update,
                    "nonfinite_step": nonfinite["step"] if nonfinite else None,
                },
                [
                    ("lower_lr", _overshoot_remedy(overshoot)),
                    ("warmup", "a longer warm-up reaches the peak once the weights have settled"),
                    ("grad_clipping", "clipping the gradient norm bounds each update"),
                ],
            )
        )
    elif lr_high or (nonfinite is not None and update is not None and update >= HIGH_UPDATE / 3):
        findings.append(
            _finding(
                "lr_too_high",
                1.0,
                f"The learning rate overshoots: updates are {update:.1e} of the weights per step "
                f"(healthy is about 1e-3) and the loss is {base['loss_trend']}.",
                {
                    **base,
                    "threshold_update_ratio": HIGH_UPDATE,
                    "nonfinite_step": nonfinite["step"] if nonfinite else None,
                },
                [
                    (
                        "lower_lr",
                        "divide the learning rate by 10 and compare; an LR range test "
                        "(pinchpoint lr-find) suggests a value",
                    ),
                    ("warmup", "a linear warm-up keeps the first, largest updates small"),
                    ("grad_clipping", "clipping the gradient norm bounds each update"),
                ],
            )
        )
    if nonfinite is not None:
        where = nonfinite.get("tensor") or nonfinite.get("first_nonfinite_output") or "the loss"
        findings.append(
            _finding(
                "nan_inf",
                0.95 if findings else 1.0,
                f"Non-finite values appeared at step {nonfinite['step']} in the "
                f"{nonfinite['in']} ({where}).",
                {
                    **base,
                    **{f"nonfinite_{k}": v for k, v in nonfinite.items()},
                    "explained_by": "lr_too_high" if findings else None,
                },
                [
                    ("lower_lr", "an overflow after a too-large update is the common cause"),
                    ("grad_clipping", "bounds the update that overflows"),
                    (
                        "loss_scaling",
                        "with fp16, dynamic loss scaling avoids overflow and underflow",
                    ),
                ],
            )
        )

    medians = _layer_medians(health.grad_norm, len(health.layers))
    present = [(name, m) for name, m in zip(health.layers, medians, strict=True) if m is not None]
    norms = [
        s.grad_norm for s in profile.steps if s.grad_norm is not None and math.isfinite(s.grad_norm)
    ]
    weights = [
        math.sqrt(sum(w * w for w in row if w is not None and math.isfinite(w)))
        for row in health.weight_norm
    ]
    first_norm = next((s.grad_norm for s in profile.steps if s.grad_norm is not None), None)
    if first_norm is not None and not math.isfinite(first_norm):
        first_norm = None
    if len(present) >= 2 and norms:
        first, last = present[0][1], present[-1][1]
        depth_ratio = first / last if last > 0 else math.inf
        growth = norms[-1] / norms[0] if norms[0] > 0 else math.inf
        median_norm = statistics.median(norms)
        weight = statistics.median(weights) if weights else 0.0
        to_weight = median_norm / weight if weight > 0 else None
        layer_weights = _layer_medians(health.weight_norm, len(health.layers))
        ndims = health.layer_ndim or [2] * len(health.layers)
        # Weight matrices only: a bias or scale that starts near zero has a meaningless ratio.
        layer_ratios = [
            g / w
            for g, w, ndim in zip(medians, layer_weights, ndims, strict=True)
            if g is not None and w is not None and w > 0 and ndim >= 2
        ]
        # Most layers, not one: a single huge first-layer gradient is the mark of unscaled
        # inputs (see saturated_activations), a network-wide one that of the initialisation.
        large = bool(layer_ratios) and sum(r >= GRADIENT_TO_WEIGHT for r in layer_ratios) > (
            len(layer_ratios) / 2
        )
        dead = _worst(health, health.dead_share, "relu")
        saturated = _worst(health, health.saturated_share, "sigmoid tanh")
        # Dead or saturated units make the surviving layers' gradients look large or lopsided;
        # then only a network-wide gradient-to-weight excess counts as exploding.
        units_explain = (dead is not None and dead[1] >= DEAD_SHARE) or (
            saturated is not None and saturated[1] >= SATURATED_SHARE
        )
        # The first step's gradient can only be distorted by the units off at that step; units
        # that die later, under the huge updates it causes, are its symptom.
        units_at_start = _first_worst(health, health.dead_share, "relu") >= DEAD_SHARE or (
            _first_worst(health, health.saturated_share, "sigmoid tanh") >= SATURATED_SHARE
        )
        # The first step's gradient comes before any update: the learning rate cannot have made
        # it large, the initialization (with the data) did.
        at_init = first_norm is not None and first_norm >= EXPLODING_NORM
        # From the first step, gradients 100x the healthy ratio in most layers under a step
        # proportional to the gradient: the network only trains at a rate far below the usual,
        # which hides them from the update size. Adaptive optimizers divide the gradient's
        # scale out, so a large but finite gradient alone does not harm them.
        proportional = (profile.optimizer or {}).get("type") in PROPORTIONAL_OPTIMIZERS
        large_from_init = (
            at_init
            and proportional
            and not units_at_start
            and bool(layer_ratios)
            and sum(r >= INIT_GRADIENT_TO_WEIGHT for r in layer_ratios) > len(layer_ratios) / 2
        )
        if (
            large
            or large_from_init
            or (
                not units_explain
                and median_norm >= EXPLODING_NORM
                and (depth_ratio >= EXPLODING_RATIO or growth >= EXPLODING_RATIO)
            )
        ):
            findings.append(
                _finding(
                    "exploding_gradients",
                    1.0 if at_init else 0.9,
                    _exploding_summary(median_norm, to_weight, depth_ratio, first_norm, at_init),
                    {
                        **base,
                        "grad_norm_median": median_norm,
                        "grad_to_weight_ratio": to_weight,
                        "first_last_ratio": depth_ratio,
                        "growth_over_run": growth,
                        "first_layer": present[0][0],
                        "last_layer": present[-1][0],
                        "threshold_grad_to_weight": GRADIENT_TO_WEIGHT,
                        "threshold_norm": EXPLODING_NORM,
                        "first_step_grad_norm": first_norm,
                        "cause": "initialization" if at_init else None,
                    },
                    _exploding_remedies(at_init),
                )
            )
            findings = _explained(findings, at_init)

        # The units' cause, when they were fine at the first sampled step and a cause of large
        # updates is found: a too-large rate, or gradients that explode from the start.
        units_cause = next(
            (
                f.kind
                for f in findings
                if f.kind == "lr_too_high"
                or (f.kind == "exploding_gradients" and f.evidence.get("cause"))
            ),
            None,
        )
        if dead is not None and dead[1] >= DEAD_SHARE:
            severe = dead[1] >= SEVERE_SHARE
            symptom = not severe and trend is not None and trend.kind == "flat"
            first_dead = _first_value(health, health.dead_share, dead[0])
            findings.append(
                _finding(
                    "dead_units",
                    0.85 if severe else 0.2,
                    f"{dead[1]:.0%} of the units of {dead[0]} output zero for every sample: they "
                    "never learn.",
                    {
                        **base,
                        "layer": dead[0],
                        "dead_share": dead[1],
                        "first_dead_share": first_dead,
                        "threshold_share": DEAD_SHARE,
                        "explained_by": _units_cause(units_cause, first_dead, DEAD_SHARE, symptom),
                    },
                    [
                        (
                            "leaky_activation",
                            "LeakyReLU or GELU keep a gradient for negative inputs",
                        ),
                        (
                            "better_init",
                            "zero or small positive biases and Kaiming initialisation "
                            "start units in their active range",
                        ),
                        ("lower_lr", "large updates can push units into the dead zone"),
                    ],
                    severity="high" if severe else "medium",
                )
            )
        if saturated is not None and saturated[1] >= SATURATED_SHARE:
            severe = saturated[1] >= SEVERE_SHARE
            symptom = not severe and trend is not None and trend.kind == "flat"
            first_saturated = _first_value(health, health.saturated_share, saturated[0])
            findings.append(
                _finding(
                    "saturated_activations",
                    0.85 if severe else 0.2,
                    f"{saturated[1]:.0%} of the outputs of {saturated[0]} sit at their limits, "
                    "where "
                    "their derivative is near zero.",
                    {
                        **base,
                        "layer": saturated[0],
                        "saturated_share": saturated[1],
                        "first_saturated_share": first_saturated,
                        "threshold_share": SATURATED_SHARE,
                        "explained_by": _units_cause(
                            units_cause, first_saturated, SATURATED_SHARE, symptom
                        ),
                    },
                    [
                        ("normalization", "normalize inputs and pre-activations to unit scale"),
                        (
                            "relu_activations",
                            "ReLU-family activations do not saturate for positive inputs",
                        ),
                        (
                            "input_scaling",
                            "scale the inputs (e.g. to [0, 1] or zero mean, unit variance)",
                        ),
                    ],
                    severity="high" if severe else "medium",
                )
            )
        explained = any(f.kind in ("dead_units", "saturated_activations") for f in findings)
        ordered = sum(1 for (_, a), (_, b) in itertools.pairwise(present) if a <= b)
        falls_with_depth = ordered >= 0.6 * (len(present) - 1)
        if (
            len(present) >= 3
            and depth_ratio <= VANISHING_RATIO
            and falls_with_depth
            and not explained
        ):
            findings.append(
                _finding(
                    "vanishing_gradients",
                    0.8,
                    f"Gradients vanish towards the input: the first layer's norm is "
                    f"{depth_ratio:.1e} of the last's across {len(present)} layers.",
                    {
                        **base,
                        "first_last_ratio": depth_ratio,
                        "layers": len(present),
                        "first_layer": present[0][0],
                        "last_layer": present[-1][0],
                        "threshold_ratio": VANISHING_RATIO,
                    },
                    [
                        ("residual_connections", "skip connections carry the gradient past layers"),
                        ("normalization", "normalization layers keep each layer's scale"),
                        (
                            "relu_activations",
                            "ReLU-family derivatives are 1, sigmoid's at most 0.25",
                        ),
                        ("better_init", "Kaiming/Xavier initialisation preserves gradient scale"),
                    ],
                    severity="high" if depth_ratio <= VANISHING_RATIO / 10 else "medium",
                )
            )

    if (
        fastest is not None
        and fastest <= LOW_FASTEST_UPDATE
        and not learning
        and long_enough
        and not any(f.kind == "lr_too_high" for f in findings)
    ):
        findings.append(
            _finding(
                "lr_too_low",
                0.8,
                f"The learning rate is too small to move the weights: updates are {update:.1e} of "
                "them per step (healthy is about 1e-3) and the loss is not falling.",
                {
                    **base,
                    "fastest_layer_update_ratio": fastest,
                    "threshold_update_ratio": LOW_FASTEST_UPDATE,
                },
                [
                    (
                        "higher_lr",
                        "multiply the learning rate by 10 or more; pinchpoint lr-find "
                        "suggests a value",
                    ),
                    ("lr_schedule", "a schedule with warm-up to a larger peak rate"),
                ],
            )
        )
    # Units that went dead or saturated on a loss that never fell are the plateau's symptom,
    # not its cause: they do not keep it from being reported.
    unexplained = [f for f in findings if f.evidence.get("explained_by") != "loss_plateau"]
    if (
        not unexplained
        and long_enough
        and trend is not None
        and trend.kind == "flat"
        and update is not None
        and LOW_UPDATE < update < HIGH_UPDATE
    ):
        findings.append(
            _finding(
                "loss_plateau",
                0.5,
                f"The loss is flat ({trend.first:.4g} to {trend.last:.4g}) although the weights "
                f"move by {update:.1e} per step: learning has stalled for another reason.",
                {**base},
                [
                    ("lr_schedule", "decay or restart the learning rate"),
                    ("other_optimizer", "Adam-family optimizers escape flat regions SGD stalls in"),
                    ("more_capacity", "a larger model can fit what a small one cannot"),
                    ("check_data", "labels that do not depend on the inputs cannot be learned"),
                ],
                severity="medium",
            )
        )
    return findings

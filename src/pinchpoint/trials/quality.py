"""Quality of a candidate against its baseline: the accuracy budget and output fidelity.

Two ways to judge quality. A workload with an ``evaluate`` is scored on its held-out data and
the drop from the baseline's score is checked against a :class:`Budget`, absolute or relative
(:func:`quality_drop`). A workload without one is judged by :func:`fidelity`: how closely the
candidate's outputs follow the baseline's on the same batches (cosine similarity per sample,
top-1 agreement for logits, the largest absolute difference).

torch is imported inside the functions that run models; the budget arithmetic needs none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pinchpoint import codec
from pinchpoint.workload import call_model

if TYPE_CHECKING:
    import torch

__all__ = ["Budget", "Fidelity", "fidelity", "output_tensor", "quality_drop"]

# A number, then an optional unit: % (relative), pt / pp (percentage points, absolute).
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(%|pt|pp)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget(codec.Saved):
    """How much quality a candidate may lose: an absolute drop, or one relative to the baseline.

    Attributes:
        max_drop: the largest drop allowed, a fraction (0.01 is one hundredth of the metric when
            absolute, 1 % of the baseline's score when relative).
        relative: whether ``max_drop`` is a share of the baseline's score rather than a
            difference in the metric's own units.
    """

    max_drop: float
    relative: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)):
            raise ValueError(f"max_drop must be a number, got {self.max_drop!r}")
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ValueError(f"max_drop must be a finite number >= 0, got {self.max_drop!r}")

    @classmethod
    def parse(cls, text: str | float | Budget) -> Budget:
        """The budget that ``text`` writes, as ``--max-drop`` takes it.

        - ``"1%"``: a *relative* drop of 1 % of the baseline's score (accuracy 0.90 may fall to
          0.891; a validation loss of 2.0, lower being better, may rise to 2.02).
        - ``"0.01"`` (a bare number, or a float): an *absolute* drop of 0.01 in the metric's
          own units (accuracy 0.90 may fall to 0.89).
        - ``"0.5pt"`` or ``"0.5pp"``: an absolute drop of 0.5 percentage points, i.e. 0.005, for
          metrics in [0, 1] such as accuracy.

        Raises:
            ValueError: the text is none of these, or negative.
        """
        if isinstance(text, Budget):
            return text
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls(float(text))
        if not isinstance(text, str):
            raise ValueError(f"a budget is a string like '1%', '0.01' or '0.5pt', not {text!r}")
        match = _BUDGET.match(text)
        if match is None:
            raise ValueError(
                f"cannot read the quality budget {text!r}: write '1%' (relative), "
                "'0.01' (absolute) or '0.5pt' (percentage points)"
            )
        value, unit = float(match.group(1)), (match.group(2) or "").lower()
        if unit == "%":
            return cls(value / 100, relative=True)
        if unit in ("pt", "pp"):
            return cls(value / 100)
        return cls(value)

    def drop(self, baseline: float, candidate: float, greater_is_better: bool) -> float:
        """The candidate's drop from ``baseline`` in this budget's terms (:func:`quality_drop`)."""
        return quality_drop(baseline, candidate, greater_is_better, self.relative)

    def allows(self, drop: float) -> bool:
        """Whether a drop (from :meth:`drop`) is within the budget; NaN never is."""
        return drop <= self.max_drop

    def __str__(self) -> str:
        return f"{self.max_drop * 100:g}%" if self.relative else f"{self.max_drop:g}"


def quality_drop(
    baseline: float, candidate: float, greater_is_better: bool, relative: bool
) -> float:
    """How much worse ``candidate`` scores than ``baseline``: positive is worse, negative better.

    The absolute drop is ``baseline - candidate`` for a metric where greater is better, and
    ``candidate - baseline`` where lower is better (a loss). The relative drop divides it by
    ``abs(baseline)``; with a baseline of 0 it is 0 for no change and ±inf otherwise. A score
    that is NaN gives ``inf``: a quality that cannot be read cannot be within budget.
    """
    if math.isnan(baseline) or math.isnan(candidate):
        return math.inf
    drop = baseline - candidate if greater_is_better else candidate - baseline
    if not relative:
        return drop
    if baseline == 0:
        return 0.0 if drop == 0 else math.copysign(math.inf, drop)
    return drop / abs(baseline)


@dataclass(frozen=True)
class Fidelity(codec.Saved):
    """How closely a candidate's outputs follow its baseline's on the same inputs.

    Attributes:
        cosine_mean: the mean over samples of the cosine similarity of the flattened outputs.
        cosine_min: the smallest of those similarities.
        top1_agreement: the share of positions (samples, or tokens of a sequence) where the
            two outputs' largest entry is the same; None when the outputs are not logits.
        max_abs_diff: the largest absolute difference between corresponding output entries.
        samples: how many samples were compared.
    """

    cosine_mean: float
    cosine_min: float
    top1_agreement: float | None
    max_abs_diff: float
    samples: int


def fidelity(baseline_model: Any, candidate_model: Any, batches: Iterable[Any]) -> Fidelity:
    """Compare two models' outputs on the same ``batches``.

    Both models are called through :func:`pinchpoint.workload.call_model` under
    ``torch.inference_mode``, in eval mode (each model's mode is restored afterwards). Each batch
    is moved to the device of a model's parameters, and its floating-point tensors are cast to
    the dtype of the model's first floating-point parameter, so a model converted to half
    precision still takes the baseline's inputs. Outputs go through :func:`output_tensor` and are
    compared in float32: a row per sample (the first dimension), flattened.

    Top-1 agreement is computed when the outputs look like logits: a tensor (not a
    ``last_hidden_state``) of at least two dimensions whose last dimension is above 1.

    Raises:
        ValueError: no batches, or the two outputs of a batch differ in shape.
    """
    import torch

    cosines: list[torch.Tensor] = []
    agree = positions = 0
    logits = True
    max_diff = 0.0
    with eval_mode(baseline_model), eval_mode(candidate_model), torch.inference_mode():
        for batch in batches:
            base, is_hidden = _run(baseline_model, batch)
            cand, _ = _run(candidate_model, batch)
            if base.shape != cand.shape:
                raise ValueError(
                    f"the candidate's output has shape {tuple(cand.shape)}, "
                    f"the baseline's {tuple(base.shape)}: they cannot be compared"
                )
            rows_b, rows_c = _rows(base), _rows(cand)
            cosines.append(_cosine(rows_b, rows_c))
            if rows_b.numel():
                max_diff = max(max_diff, float((rows_b - rows_c).abs().max()))
            logits = logits and not is_hidden and base.dim() >= 2 and base.shape[-1] > 1
            if logits:
                agree += int((base.argmax(dim=-1) == cand.argmax(dim=-1)).sum())
                positions += base.argmax(dim=-1).numel()
    if not cosines:
        raise ValueError("fidelity needs at least one batch")
    every = torch.cat(cosines)
    return Fidelity(
        cosine_mean=float(every.mean()),
        cosine_min=float(every.min()),
        top1_agreement=agree / positions if logits and positions else None,
        max_abs_diff=max_diff,
        samples=int(every.numel()),
    )


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor that stands for a model's output, as float32 on the CPU.

    A tensor is itself; a transformers ``ModelOutput`` or a dict gives its ``last_hidden_state``,
    else its ``logits``, else its first tensor; a tuple or list gives its first tensor (searched
    depth first).

    Raises:
        TypeError: the output holds no tensor.
    """
    found = _find_tensor(output)
    if found is None:
        raise TypeError(f"the model's output holds no tensor: {type(output).__name__}")
    return found[0].detach().float().cpu()


def _find_tensor(output: Any) -> tuple[torch.Tensor, bool] | None:
    """The output's tensor and whether it is a ``last_hidden_state``; None without a tensor."""
    import torch

    if isinstance(output, torch.Tensor):
        return output, False
    for name in ("last_hidden_state", "logits"):
        value = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value, name == "last_hidden_state"
    if isinstance(output, Mapping):
        items: Iterable[Any] = output.values()
    elif isinstance(output, (tuple, list)):
        items = output
    else:
        return None
    for item in items:
        found = _find_tensor(item)
        if found is not None:
            return found
    return None


def _run(model: Any, batch: Any) -> tuple[torch.Tensor, bool]:
    """The model's output tensor on ``batch`` (float32, CPU) and whether it is hidden states."""
    found = _find_tensor(call_model(model, _fit_to(model, batch)))
    if found is None:
        raise TypeError(f"the output of {type(model).__name__} holds no tensor")
    return found[0].detach().float().cpu(), found[1]


def _fit_to(model: Any, batch: Any) -> Any:
    """``batch`` on the model's device, floating-point tensors in the model's floating dtype."""
    import torch

    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return batch
    floating = next((p for p in parameters() if p.is_floating_point()), None)
    if floating is None:
        return batch

    def fit(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            dtype = floating.dtype if value.is_floating_point() else value.dtype
            return value.to(floating.device, dtype)
        if isinstance(value, Mapping):
            return type(value)({k: fit(v) for k, v in value.items()})  # type: ignore[call-arg]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(fit(v) for v in value)
        if isinstance(value, list):
            return [fit(v) for v in value]
        return value

    return fit(batch)


def _rows(output: torch.Tensor) -> torch.Tensor:
    """One flattened row per sample (a 0-d output is one sample)."""
    return output.reshape(1, -1) if output.dim() == 0 else output.reshape(output.shape[0], -1)


def _cosine(rows_b: torch.Tensor, rows_c: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per row; exactly 1 where the two rows are equal (zeros included)."""
    import torch

    dot = (rows_b * rows_c).sum(dim=1)
    norms = rows_b.norm(dim=1) * rows_c.norm(dim=1)
    cosine = (dot / norms.clamp(min=torch.finfo(torch.float32).tiny)).clamp(-1.0, 1.0)
    # Equal rows score exactly 1: an unchanged model must not lose to float rounding, and a
    # zero row equal to its counterpart has no direction to differ in.
    equal = (rows_b == rows_c).all(dim=1)
    return torch.where(equal, torch.ones_like(cosine), cosine)


class eval_mode:
    """Put a module in eval mode for a block and restore its mode afterwards."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.training: bool | None = getattr(model, "training", None)

    def __enter__(self) -> None:
        if self.training is not None and hasattr(self.model, "eval"):
            self.model.eval()

    def __exit__(self, *exc: object) -> None:
        if self.training is not None and hasattr(self.model, "train"):
            self.model.train(self.training)

"""The distillation remedy: train a smaller student of the same family to mimic the model.

:class:`Distill` is the config. Its handler builds the student from a deep copy of the teacher,
cut with the structured surgery of ``_surgery`` (so it starts from the teacher's most important
channels, heads and FFN units rather than from scratch), keeps some of a transformer's layers,
then trains it against the teacher on the workload's own data. The teacher runs in eval mode
without gradients, and the caller's model is never changed (its train/eval flags are restored).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import RemedyConfig, clone_workload, finite, handler, whole
from pinchpoint.workload import Mode, Workload, call_model

if TYPE_CHECKING:
    import torch

__all__ = ["Distill", "build_student", "distillation_loss"]


@dataclass(frozen=True)
class Distill(RemedyConfig):
    """Knowledge distillation into a smaller student of the same family.

    The student is the teacher with its widths multiplied by ``width``: conv channels and hidden
    Linear widths (structured ``channels`` surgery) for plain models; attention heads and FFN
    hidden units for BERT-style transformers, whose hidden size stays so their outputs compare
    token by token. With ``layers`` it also keeps that many evenly spaced layers of the layer
    stack (the last one included). It is trained for ``steps`` steps on:

    - a workload with a loss (training): Hinton's loss,
      ``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * loss``,
      where ``loss`` is the workload's own (for a classifier, cross-entropy on the batch's
      labels) and the KL term is over the last dimension of the model's logits;
    - an inference workload (no loss, no labels): the outputs themselves. A ``logits`` output
      gets the KL term alone; hidden states (``last_hidden_state``, or a plain tensor) get
      ``MSE(student, teacher) + (1 - cosine(student, teacher))`` per token, over the tokens the
      batch's ``attention_mask`` marks as real. ``alpha`` does not apply (there is no task
      loss), nor does ``temperature`` to hidden states.

    The student trains in train mode (its dropout on) and is returned in the teacher's mode.

    Args:
        width: the fraction of each shrinkable width the student keeps, in (0, 1].
        layers: the number of layers the student keeps (None: all).
        temperature: the softening temperature T of the KL term.
        alpha: the weight of the KL term against the task loss, in [0, 1].
        steps: optimizer steps of training.
        lr: the student's learning rate (the workload optimizer's class and other settings are
            kept; AdamW for an inference workload).
        seed: seeds the global random state while the student trains.
    """

    name: ClassVar[str] = "distill"
    modes: ClassVar[tuple[Mode, ...]] = ("infer", "train")
    addresses: ClassVar[tuple[str, ...]] = ("distill",)

    width: float = 0.5
    layers: int | None = None
    temperature: float = 4.0
    alpha: float = 0.7
    steps: int = 300
    lr: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        if not finite(self.width) or not 0 < self.width <= 1:
            raise ValueError(f"distill width must be in (0, 1], not {self.width!r}")
        if self.layers is not None and not whole(self.layers, 1):
            raise ValueError(
                f"distill layers must be a whole number >= 1 or None, not {self.layers!r}"
            )
        if self.width == 1 and self.layers is None:
            raise ValueError("distill with width=1 and no layers would train a copy of the teacher")
        if not finite(self.temperature) or not self.temperature > 0:
            raise ValueError(f"distill temperature must be positive, not {self.temperature!r}")
        if not finite(self.alpha) or not 0 <= self.alpha <= 1:
            raise ValueError(f"distill alpha must be in [0, 1], not {self.alpha!r}")
        if not whole(self.steps, 1):
            raise ValueError(f"distill steps must be a whole number >= 1, not {self.steps!r}")
        if not finite(self.lr) or not self.lr > 0:
            raise ValueError(f"distill lr must be positive, not {self.lr!r}")
        if not whole(self.seed, 0):
            raise ValueError(f"distill seed must be a whole number >= 0, not {self.seed!r}")


def build_student(teacher: Any, width: float, layers: int | None) -> Any:
    """A smaller copy of ``teacher``: widths times ``width``, ``layers`` layers kept.

    The kept units are the teacher's of largest l1 weight norm, with their weights.

    Raises:
        WorkloadError: the model has nothing to shrink (no BERT-style attention or FFN, and fx
            finds no prunable layer), or no layer stack while ``layers`` is given.
    """
    from pinchpoint.remedies import _surgery

    student = copy.deepcopy(teacher)
    if layers is not None:
        _surgery.keep_layers(student, layers)
    if width < 1:
        amount = 1.0 - width
        if _surgery.attention_blocks(student) or _surgery.ffn_blocks(student):
            _surgery.prune_heads(student, amount, "l1")
            _surgery.prune_ffns(student, amount, "l1")
        else:
            _surgery.prune_channels(student, amount, "l1")
    return student


def distillation_loss(
    student: Any,
    teacher: Any,
    temperature: float,
    *,
    hidden: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The distillation term between one student output and the teacher's.

    A ``logits`` field, or a plain tensor (or a tuple's first item) unless ``hidden``, is taken
    as logits: ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over every row of the
    last dimension. A ``last_hidden_state`` field, or a plain tensor with ``hidden``, gives the
    mean of per-token ``MSE + (1 - cosine)`` over the positions ``mask`` marks (all without one).
    """
    import torch
    from torch.nn import functional

    s_logits, t_logits = getattr(student, "logits", None), getattr(teacher, "logits", None)
    if isinstance(s_logits, torch.Tensor) and isinstance(t_logits, torch.Tensor):
        return _kl(s_logits, t_logits, temperature)
    s_out, t_out = _first_tensor(student), _first_tensor(teacher)
    if s_out.shape != t_out.shape:
        raise WorkloadError(
            f"the student's output {tuple(s_out.shape)} does not match the teacher's "
            f"{tuple(t_out.shape)}"
        )
    if not hidden and not hasattr(student, "last_hidden_state"):
        return _kl(s_out, t_out, temperature)
    t_out = t_out.to(s_out.dtype)
    per_token = (
        (s_out - t_out).pow(2).mean(dim=-1) + 1 - functional.cosine_similarity(s_out, t_out, dim=-1)
    )
    if mask is None or mask.shape != per_token.shape:
        return per_token.mean()
    weights = mask.to(per_token.device, per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp(min=1.0)


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    from torch.nn import functional

    classes = student.shape[-1]
    s = functional.log_softmax(student.reshape(-1, classes).float() / temperature, dim=-1)
    t = functional.log_softmax(teacher.reshape(-1, classes).float() / temperature, dim=-1)
    kl = functional.kl_div(s, t, log_target=True, reduction="batchmean")
    return kl * temperature**2


def _first_tensor(output: Any) -> torch.Tensor:
    import torch

    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None and isinstance(output, (tuple, list)):
        hidden = output[0]
    if hidden is None:
        hidden = output
    if not isinstance(hidden, torch.Tensor):
        raise WorkloadError(f"cannot distill a model whose output is {type(output).__name__}")
    return hidden


def _tap(student: Any, teacher: Any) -> Any:
    """A module that runs ``student`` and records, with each call, the teacher's output too.

    The workload's loss calls it as it would call the model, so the teacher sees exactly the
    student's inputs whatever the batch looks like.
    """
    import torch
    from torch import nn

    class Tap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.calls: list[tuple[Any, Any, Any]] = []

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            out = self.student(*args, **kwargs)
            with torch.no_grad():
                reference = teacher(*args, **kwargs)
            self.calls.append((out, reference, kwargs.get("attention_mask")))
            return out

    return Tap()


@handler(Distill)
def _distill(workload: Workload, config: Distill) -> Workload:
    import torch

    from pinchpoint.remedies._base import rebind_optimizer

    teacher = workload.model
    student = build_student(teacher, config.width, config.layers)
    if workload.optimizer is not None:
        optimizer = rebind_optimizer(workload.optimizer, teacher, student, lr=config.lr)
    else:
        optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    train_student(student, teacher, workload, optimizer, config)
    # clone_workload rebinds the workload's optimizer (if any) to the student, with no state.
    return clone_workload(workload, model=student)


def train_student(
    student: Any, teacher: Any, workload: Workload, optimizer: Any, config: Distill
) -> None:
    """Train ``student`` in place for ``config.steps`` steps to match ``teacher`` on the data.

    The teacher runs in eval mode without gradients; both models' train/eval modes are
    restored, and the global random state too (the steps are seeded with ``config.seed``).
    Pruning's fine-tuning uses it as well, with the unpruned model as the teacher, when the
    workload has no loss (and so no labels).
    """
    import torch

    from pinchpoint._threads import torch_threads

    modes = {module: module.training for module in [*teacher.modules(), *student.modules()]}
    tap = _tap(student, teacher)
    batches = workload.batches()
    with torch_threads(workload.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        teacher.eval()
        student.train()
        try:
            for _ in range(config.steps):
                optimizer.zero_grad(set_to_none=True)
                loss = _step_loss(tap, workload, next(batches), config)
                loss.backward()
                optimizer.step()
        finally:
            for module, training in modes.items():
                module.training = training


def _step_loss(tap: Any, workload: Workload, batch: Any, config: Distill) -> torch.Tensor:
    """One step's loss: the KD term blended with the workload's loss, or the KD term alone."""
    tap.calls.clear()
    task = workload.loss(tap, batch) if workload.loss is not None else None
    if task is None:
        call_model(tap, batch)
    if not tap.calls:
        raise WorkloadError(f"workload {workload.name!r}: its loss never called the model")
    # Without a loss there are no labels, and nothing says the outputs are logits: match them.
    hidden = workload.loss is None
    terms = [
        distillation_loss(s, t, config.temperature, hidden=hidden, mask=m) for s, t, m in tap.calls
    ]
    kd: torch.Tensor = sum(terms[1:], terms[0]) / len(terms)
    if task is None:
        return kd
    blended: torch.Tensor = config.alpha * kd + (1 - config.alpha) * task
    return blended

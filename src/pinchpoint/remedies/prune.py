"""The pruning remedy: remove the least important weights, channels, heads or FFN units.

:class:`Prune` is the config; its handler deep-copies the model, cuts it (see ``_surgery`` for
the structured methods), optionally fine-tunes the cut copy on the workload's own data and loss,
and returns a new workload. Only the structured methods (``channels``, ``heads``, ``mlp``) make
the dense model smaller and faster; ``magnitude`` only makes zeros.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.remedies._base import (
    RemedyConfig,
    clone_workload,
    finite,
    handler,
    rebind_optimizer,
    whole,
)
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = ["FINETUNE_SEED", "METHODS", "Prune", "finetune"]

#: The pruning methods, see :class:`Prune`.
METHODS = ("magnitude", "channels", "heads", "mlp")
#: The random seed fine-tuning runs under, so a trial is reproducible.
FINETUNE_SEED = 0


@dataclass(frozen=True)
class Prune(RemedyConfig):
    """Pruning: remove the fraction ``amount`` of a model's least important weights or units.

    Methods:
        ``"magnitude"``: unstructured, global magnitude pruning of every Linear and Conv weight
            (``torch.nn.utils.prune``, made permanent). The zeros are real, but dense kernels
            still multiply them: the model is no faster and no smaller in memory, only smaller
            once compressed (or on a sparse kernel). ``importance`` does not apply (it is |w|).
        ``"channels"``: structured pruning that removes output channels of Conv1d/Conv2d/Linear
            layers and the matching inputs of the layers consuming them (through BatchNorm,
            activations, pooling and a flatten into a Linear). The dataflow comes from
            ``torch.fx`` or an ``nn.Sequential``'s chain; layers whose output reaches the model's
            output, an addition or a reshape keep their width, so the classifier keeps its
            classes. Removing a fraction a of the channels of two consecutive layers removes
            about 1 - (1 - a)^2 of the weights between them.
        ``"heads"``: the least important attention heads of each layer of a BERT-style
            transformer (transformers' ``BertModel``): the query/key/value outputs and the
            attention output's inputs shrink. A layer always keeps one head.
        ``"mlp"``: the hidden width of transformer FFNs (``intermediate.dense`` outputs and
            ``output.dense`` inputs) or, in a model without them, of the hidden Linear layers of
            plain MLPs (Linear -> activation -> Linear).

    Args:
        method: one of :data:`METHODS`.
        amount: the fraction removed, strictly between 0 and 1 (of weights for ``magnitude``,
            of each layer's channels, heads or hidden units otherwise).
        finetune_steps: optimizer steps of fine-tuning on the workload's data after cutting,
            with the seed :data:`FINETUNE_SEED` (0: none): on the workload's loss when it has
            one, else (no labels) on matching the unpruned model's outputs, as distillation
            does.
        lr: the fine-tuning learning rate (None: the workload optimizer's).
        importance: ``"l1"`` or ``"l2"``, the norm a unit's weights are scored by.
    """

    name: ClassVar[str] = "prune"
    modes: ClassVar[tuple[Mode, ...]] = ("infer", "train")
    addresses: ClassVar[tuple[str, ...]] = ("prune_structured",)

    method: str = "channels"
    amount: float = 0.5
    finetune_steps: int = 0
    lr: float | None = None
    importance: str = "l1"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"prune method must be one of {', '.join(METHODS)}, not {self.method!r}"
            )
        if not finite(self.amount) or not 0 < self.amount < 1:
            raise ValueError(f"prune amount must be between 0 and 1 (exclusive), not {self.amount}")
        if not whole(self.finetune_steps, 0):
            raise ValueError(
                f"prune finetune_steps must be a whole number >= 0, not {self.finetune_steps!r}"
            )
        if self.lr is not None and (not finite(self.lr) or not self.lr > 0):
            raise ValueError(f"prune lr must be a positive number or None, not {self.lr!r}")
        from pinchpoint.remedies._surgery import NORMS

        if self.importance not in NORMS:
            raise ValueError(
                f"prune importance must be one of {', '.join(NORMS)}, not {self.importance!r}"
            )

    def gate(self, machine: Machine) -> str | None:
        if self.method == "magnitude":
            return (
                "unstructured zeros do not shrink dense compute: the pruned model runs as fast as "
                "the original (it is smaller only once compressed)"
            )
        return None


@handler(Prune)
def _prune(workload: Workload, config: Prune) -> Workload:
    import torch

    from pinchpoint._threads import torch_threads
    from pinchpoint.remedies import _surgery

    model = copy.deepcopy(workload.model)
    with torch_threads(workload.threads):
        if config.method == "magnitude":
            masked = _magnitude_masks(model, config.amount)
        elif config.method == "channels":
            _surgery.prune_channels(model, config.amount, config.importance)
        elif config.method == "heads":
            _surgery.prune_heads(model, config.amount, config.importance)
        elif _surgery.prune_ffns(model, config.amount, config.importance) == 0:
            _surgery.prune_channels(model, config.amount, config.importance, linear_only=True)
        if config.finetune_steps and workload.loss is not None:
            finetune(model, workload, config.finetune_steps, config.lr)
        elif config.finetune_steps:
            # No loss, so no labels: recover by matching the unpruned model's outputs.
            _finetune_from_original(model, workload, config)
        if config.method == "magnitude":
            # The mask stays on during fine-tuning, so the pruned weights stay zero; removing it
            # afterwards folds the zeros into plain weights.
            with torch.no_grad():
                for module in masked:
                    torch.nn.utils.prune.remove(module, "weight")
    return clone_workload(workload, model=model)


def _finetune_from_original(model: Any, workload: Workload, config: Prune) -> None:
    import torch

    from pinchpoint.remedies.distill import Distill, train_student

    settings = Distill(steps=config.finetune_steps, lr=config.lr or 1e-3, seed=FINETUNE_SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    train_student(model, workload.model, workload, optimizer, settings)


def _magnitude_masks(model: Any, amount: float) -> list[Any]:
    """Mask the fraction ``amount`` of smallest-magnitude Linear/Conv weights, model-wide."""
    from torch import nn
    from torch.nn.utils import prune

    from pinchpoint.errors import WorkloadError

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    modules = [m for m in model.modules() if isinstance(m, kinds)]
    if not modules:
        raise WorkloadError(f"{type(model).__name__} has no Linear or Conv layer to prune")
    prune.global_unstructured(
        [(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=amount
    )
    return modules


def finetune(model: Any, workload: Workload, steps: int, lr: float | None) -> None:
    """Train ``model`` in place for ``steps`` steps on ``workload``'s data and loss.

    The optimizer is of the workload optimizer's class and settings (AdamW at lr 1e-3 for a
    workload without one), with ``lr`` when given; the global random state is seeded with
    :data:`FINETUNE_SEED` and restored afterwards. The model's train/eval mode is restored.
    """
    import torch

    if workload.loss is None:
        raise ValueError(f"workload {workload.name!r} has no loss to fine-tune with")
    if workload.optimizer is not None:
        optimizer = rebind_optimizer(
            workload.optimizer, workload.model, model, **({} if lr is None else {"lr": lr})
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3 if lr is None else lr)
    was_training = model.training
    batches = workload.batches()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FINETUNE_SEED)
        model.train()
        try:
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = workload.loss(model, next(batches))
                loss.backward()
                optimizer.step()
        finally:
            model.train(was_training)

"""Training remedies: how batches load, how the optimizer runs, and how each step is computed.

Three kinds of change, one config class each:

- **Rebuilt objects**: :class:`DataLoaderSettings` rebuilds the workload's DataLoader (same
  dataset, batches and order, new worker and memory settings); :class:`OptimizerSettings`
  rebuilds the optimizer with its ``foreach``/``fused`` implementation chosen.
- **Step settings**: :class:`MixedPrecision`, :class:`GradClip`, :class:`LRSchedule` and
  :class:`GradAccumulation` set the :class:`~pinchpoint.Workload`'s training fields
  (``autocast``, ``max_grad_norm``, ``lr_schedule``, ``accumulate``), which pinchpoint's training
  loop honours. Being fields of the workload rather than hooks on one optimizer object, they
  survive later remedies that rebuild the optimizer.
- **Model change**: :class:`ActivationCheckpointing` makes the model's repeated blocks recompute
  their activations in backward instead of keeping them.

Every handler works on a copy (:func:`~pinchpoint.remedies.clone_workload`): the caller's model,
optimizer and DataLoader are never changed. torch is imported inside the handlers only.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.remedies._base import (
    RemedyConfig,
    bool_setting,
    capability_number,
    clone_workload,
    handler,
    int_setting,
    rebind_optimizer,
)
from pinchpoint.workload import AUTOCAST_DTYPES, Mode, Workload

if TYPE_CHECKING:
    from torch import nn

    from pinchpoint._profile import Machine

__all__ = [
    "LR_SCHEDULES",
    "ActivationCheckpointing",
    "DataLoaderSettings",
    "GradAccumulation",
    "GradClip",
    "LRSchedule",
    "MixedPrecision",
    "OptimizerSettings",
    "checkpoint_blocks",
]

#: The learning-rate schedule kinds :class:`LRSchedule` knows.
LR_SCHEDULES = ("cosine", "exponential", "constant")


# ---------------------------------------------------------------------------------------------
# Checks the configs share


def _number(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{owner}: {name} must be a number, not {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# DataLoader


@dataclass(frozen=True)
class DataLoaderSettings(RemedyConfig):
    """DataLoader settings: worker processes, prefetching and pinned memory.

    The workload's DataLoader is rebuilt with the same dataset, batch size, sampler (its random
    generator copied, so the batches come in the same order), collate function and
    ``drop_last``. A setting left None keeps the loader's own; with no workers, prefetching and
    persistent workers are off.

    Args:
        num_workers: worker processes loading batches (0: the training process loads them).
        pin_memory: collate batches into pinned host memory (helps copies to a CUDA device).
        prefetch_factor: batches each worker loads ahead (needs workers).
        persistent_workers: keep the workers alive between passes over the data (needs
            workers).
    """

    name: ClassVar[str] = "dataloader"
    modes: ClassVar[tuple[Mode, ...]] = ("infer", "train")
    addresses: ClassVar[tuple[str, ...]] = ("dataloader_workers", "prefetch", "pin_memory")

    num_workers: int | None = None
    pin_memory: bool | None = None
    prefetch_factor: int | None = None
    persistent_workers: bool | None = None

    def validate(self) -> None:
        owner = "DataLoaderSettings"
        if all(v is None for v in self.settings().values()):
            raise ValueError(
                f"{owner} changes nothing: set num_workers, pin_memory, prefetch_factor "
                "or persistent_workers"
            )
        if self.num_workers is not None:
            int_setting(owner, "num_workers", self.num_workers, 0)
        if self.prefetch_factor is not None:
            int_setting(owner, "prefetch_factor", self.prefetch_factor, 1)
        bool_setting(owner, "pin_memory", self.pin_memory)
        bool_setting(owner, "persistent_workers", self.persistent_workers)
        if self.num_workers == 0 and self.prefetch_factor is not None:
            raise ValueError(f"{owner}: prefetch_factor needs workers, and num_workers is 0")
        if self.num_workers == 0 and self.persistent_workers:
            raise ValueError(f"{owner}: persistent_workers needs workers, and num_workers is 0")

    def gate(self, machine: Machine) -> str | None:
        if self.pin_memory and not machine.gpu:
            return "pinned memory only speeds up copies to a CUDA device, and this machine has none"
        cores = machine.cores_logical
        if self.num_workers and cores and self.num_workers >= cores:
            return (
                f"{self.num_workers} workers would compete with the training process for "
                f"this machine's {cores} logical cores"
            )
        return None


@handler(DataLoaderSettings)
def _dataloader(workload: Workload, config: DataLoaderSettings) -> Workload:
    from torch.utils.data import DataLoader

    loader = workload.data
    if not isinstance(loader, DataLoader):
        kind = type(loader)
        name = (
            kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        )
        raise ValueError(
            f"{config.label()} needs a torch DataLoader, and the data of workload "
            f"{workload.name!r} is a {name}"
        )
    return clone_workload(workload, data=_rebuilt_loader(workload.name, loader, config))


def _rebuilt_loader(name: str, loader: Any, config: DataLoaderSettings) -> Any:
    """A DataLoader like ``loader`` with ``config``'s settings, sharing no random state."""
    changes = {k: v for k, v in config.settings().items() if v is not None}
    if changes.get("num_workers", loader.num_workers) == 0:
        if config.prefetch_factor is not None or config.persistent_workers:
            raise ValueError(
                f"{config.label()}: the DataLoader of workload {name!r} has no workers "
                "(num_workers=0), so prefetch_factor and persistent_workers need num_workers too"
            )
        changes.update(prefetch_factor=None, persistent_workers=False)
    return loader_like(loader, **changes)


def loader_like(loader: Any, batch_size: int | None = None, **changes: Any) -> Any:
    """A DataLoader over ``loader``'s dataset with its settings but ``changes`` (and
    ``batch_size`` where given), sharing no random state with it."""
    from torch.utils.data import DataLoader, IterableDataset

    # The copies take clones of the loader's generators, so iterating the new loader neither
    # advances the caller's nor draws different batches from the ones the caller's would.
    generators: dict[int, Any] = {}
    size = loader.batch_size if batch_size is None else batch_size
    batching: dict[str, Any]
    if isinstance(loader.dataset, IterableDataset):
        batching = {"batch_size": size, "drop_last": loader.drop_last}
    elif loader.batch_size is not None:
        batching = {
            "batch_size": size,
            "drop_last": loader.drop_last,
            "sampler": copied_sampler(loader.sampler, generators),
        }
    elif loader.batch_sampler is not None:
        batching = {"batch_sampler": copied_sampler(loader.batch_sampler, generators)}
    else:
        batching = {"batch_size": None, "sampler": copied_sampler(loader.sampler, generators)}
    settings = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": cloned_generator(loader.generator, generators),
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": loader.persistent_workers,
        "pin_memory_device": loader.pin_memory_device,
        "in_order": loader.in_order,
    }
    return DataLoader(loader.dataset, **batching, **{**settings, **changes})


def cloned_generator(generator: Any, clones: dict[int, Any]) -> Any:
    """A torch.Generator in ``generator``'s state; one clone per original, so sharing stays."""
    import torch

    if not isinstance(generator, torch.Generator):
        return generator
    if id(generator) not in clones:
        clone = torch.Generator(device=generator.device)
        clone.set_state(generator.get_state())
        clones[id(generator)] = clone
    return clones[id(generator)]


def copied_sampler(sampler: Any, generators: dict[int, Any]) -> Any:
    """A shallow copy of ``sampler`` with its generators cloned and inner samplers copied."""
    import torch

    copied = copy.copy(sampler)
    for attr, value in getattr(sampler, "__dict__", {}).items():
        if isinstance(value, torch.Generator):
            setattr(copied, attr, cloned_generator(value, generators))
        elif attr in ("sampler", "batch_sampler") and value is not None:
            setattr(copied, attr, copied_sampler(value, generators))
    return copied


# ---------------------------------------------------------------------------------------------
# Optimizer implementation


@dataclass(frozen=True)
class OptimizerSettings(RemedyConfig):
    """The optimizer's implementation: ``foreach`` (batched over tensors) or ``fused`` kernels.

    The optimizer is rebuilt with the same class, groups and hyper-parameters. The two are
    exclusive: turning one on turns the other off where the optimizer had it on.

    Args:
        foreach: use the multi-tensor (``torch._foreach_*``) implementation (None: keep).
        fused: use the fused kernel (None: keep).
    """

    name: ClassVar[str] = "optimizer"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("foreach_optimizer", "fewer_param_tensors")

    foreach: bool | None = None
    fused: bool | None = None

    def validate(self) -> None:
        bool_setting("OptimizerSettings", "foreach", self.foreach)
        bool_setting("OptimizerSettings", "fused", self.fused)
        if self.foreach is None and self.fused is None:
            raise ValueError("OptimizerSettings changes nothing: set foreach or fused")
        if self.foreach and self.fused:
            raise ValueError("OptimizerSettings: foreach and fused cannot both be True")


@handler(OptimizerSettings)
def _optimizer_settings(workload: Workload, config: OptimizerSettings) -> Workload:
    optimizer = workload.optimizer
    kind = type(optimizer)
    accepted = inspect.signature(kind.__init__).parameters
    overrides: dict[str, bool] = {}
    for flag, other in (("foreach", "fused"), ("fused", "foreach")):
        value = getattr(config, flag)
        if value is None:
            continue
        if flag not in accepted:
            raise ValueError(f"{kind.__name__} does not accept {flag}={value}")
        overrides[flag] = value
        if value and getattr(config, other) is None and _any_group(optimizer, other):
            overrides[other] = False
    model = copy.deepcopy(workload.model)
    try:
        rebuilt = rebind_optimizer(optimizer, workload.model, model, **overrides)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{kind.__name__} cannot run with {config.label()}: {exc}") from exc
    return clone_workload(workload, model=model, optimizer=rebuilt)


def _any_group(optimizer: Any, key: str) -> bool:
    return any(group.get(key) for group in optimizer.param_groups)


# ---------------------------------------------------------------------------------------------
# Mixed precision


@dataclass(frozen=True)
class MixedPrecision(RemedyConfig):
    """Run the forward pass and the loss under ``torch.autocast`` in bf16 or fp16.

    Weights, gradients and optimizer state stay in their own dtype; matmuls and convolutions
    run in ``dtype``. fp16 on a CUDA device trains with a gradient scaler, since its narrow
    exponent range would flush small gradients to zero.

    Args:
        dtype: ``"bf16"`` or ``"fp16"``.
    """

    name: ClassVar[str] = "mixed_precision"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("mixed_precision",)

    dtype: str = "bf16"

    def validate(self) -> None:
        if self.dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"MixedPrecision: dtype must be 'bf16' or 'fp16', not {self.dtype!r}")

    def gate(self, machine: Machine) -> str | None:
        capability = capability_number(machine)
        if self.dtype == "fp16":
            if capability is None:
                return "fp16 is fast only on a GPU with tensor cores, and this machine has none"
            if capability < 7.0:
                return f"fp16 tensor cores need compute capability 7.0; this GPU has {capability}"
            return None
        if capability is not None:
            if capability < 8.0:
                return f"bf16 runs natively from compute capability 8.0; this GPU has {capability}"
            return None
        if not {"avx512_bf16", "amx_bf16"} & set(machine.cpu_flags):
            return "this CPU has neither avx512_bf16 nor amx_bf16, so bf16 math is emulated"
        return None


@handler(MixedPrecision)
def _mixed_precision(workload: Workload, config: MixedPrecision) -> Workload:
    return clone_workload(workload, autocast=config.dtype)


# ---------------------------------------------------------------------------------------------
# Gradient clipping


@dataclass(frozen=True)
class GradClip(RemedyConfig):
    """Clip the global gradient norm before every optimizer step.

    Args:
        max_norm: the largest gradient norm an optimizer step sees.
        norm_type: the p of the p-norm (2.0; ``inf`` for the largest absolute value).
    """

    name: ClassVar[str] = "grad_clip"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("grad_clip",)

    max_norm: float = 1.0
    norm_type: float = 2.0

    def validate(self) -> None:
        max_norm = _number("GradClip", "max_norm", self.max_norm)
        if not 0 < max_norm < math.inf:
            raise ValueError(f"GradClip: max_norm must be positive and finite, not {max_norm}")
        if not _number("GradClip", "norm_type", self.norm_type) > 0:
            raise ValueError(f"GradClip: norm_type must be positive, not {self.norm_type}")


@handler(GradClip)
def _grad_clip(workload: Workload, config: GradClip) -> Workload:
    return clone_workload(
        workload, max_grad_norm=float(config.max_norm), grad_norm_type=float(config.norm_type)
    )


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


@dataclass(frozen=True)
class LRSchedule(RemedyConfig):
    """A learning-rate schedule over optimizer steps, with an optional linear warm-up.

    Step ``n``'s rate is each group's base rate (its rate when the schedule was applied) times
    :meth:`factor`: during warm-up ``n / warmup_steps``, then for ``"cosine"`` a half cosine
    from 1 down to ``min_lr_ratio`` at ``total_steps``, for ``"exponential"``
    ``gamma ** (n - warmup_steps)`` (never below ``min_lr_ratio``), for ``"constant"`` 1. The
    schedule restarts at step 0 on the new workload and advances after every optimizer step
    (with gradient accumulation, once per accumulation cycle).

    Args:
        kind: ``"cosine"``, ``"exponential"`` or ``"constant"`` (warm-up only).
        warmup_steps: optimizer steps of linear warm-up from 0.
        total_steps: the step at which the cosine reaches ``min_lr_ratio``.
        gamma: the exponential decay per step, in (0, 1].
        min_lr_ratio: the smallest factor, in [0, 1].
    """

    name: ClassVar[str] = "lr_schedule"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("lr_schedule", "lr_warmup")

    kind: str = "cosine"
    warmup_steps: int = 0
    total_steps: int = 1000
    gamma: float = 0.99
    min_lr_ratio: float = 0.0

    def validate(self) -> None:
        owner = "LRSchedule"
        if self.kind not in LR_SCHEDULES:
            raise ValueError(f"{owner}: kind must be one of {', '.join(LR_SCHEDULES)}")
        int_setting(owner, "warmup_steps", self.warmup_steps, 0)
        int_setting(owner, "total_steps", self.total_steps, 1)
        if self.kind == "cosine" and self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"{owner}: warmup_steps ({self.warmup_steps}) must be fewer than total_steps "
                f"({self.total_steps}) for a cosine to follow"
            )
        if not 0 < _number(owner, "gamma", self.gamma) <= 1:
            raise ValueError(f"{owner}: gamma must be in (0, 1], not {self.gamma}")
        if not 0 <= _number(owner, "min_lr_ratio", self.min_lr_ratio) <= 1:
            raise ValueError(f"{owner}: min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")
        if self.kind == "constant" and self.warmup_steps == 0:
            raise ValueError(f"{owner}: a constant schedule without warm-up changes nothing")

    def factor(self, step: int) -> float:
        """The factor of the base learning rate at optimizer step ``step`` (from 0)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        after = step - self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "exponential":
            return float(max(self.min_lr_ratio, self.gamma**after))
        progress = min(1.0, after / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )


@handler(LRSchedule)
def _lr_schedule(workload: Workload, config: LRSchedule) -> Workload:
    result = clone_workload(workload, lr_schedule=config.factor)
    for group in result.optimizer.param_groups:
        # The training loop counts steps from here; the base rate it keeps in "initial_lr".
        group.pop("scheduled_steps", None)
    return result


# ---------------------------------------------------------------------------------------------
# Gradient accumulation


@dataclass(frozen=True)
class GradAccumulation(RemedyConfig):
    """Step the optimizer once every ``steps`` batches, on their mean gradient.

    Each batch is a micro-batch: its loss is divided by ``steps`` before backward and the
    gradients add up until the optimizer steps, so the step sees the gradient of one batch
    ``steps`` times larger. The batch size itself is unchanged (pair it with smaller batches
    to keep the effective batch and cut activation memory).

    Args:
        steps: micro-batches per optimizer step (at least 2).
    """

    name: ClassVar[str] = "grad_accumulation"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("grad_accumulation",)

    steps: int = 4

    def validate(self) -> None:
        int_setting("GradAccumulation", "steps", self.steps, 2)


@handler(GradAccumulation)
def _grad_accumulation(workload: Workload, config: GradAccumulation) -> Workload:
    return clone_workload(workload, accumulate=config.steps)


# ---------------------------------------------------------------------------------------------
# Activation checkpointing


@dataclass(frozen=True)
class ActivationCheckpointing(RemedyConfig):
    """Recompute the activations of the model's repeated blocks in backward instead of keeping
    them: less activation memory for one more forward pass of those blocks.

    Each block's forward runs under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``
    while gradients are on (inference and evaluation run it plainly). Gradients are unchanged:
    the random state is restored for the recomputation, so dropout draws the same masks.

    Args:
        modules: which blocks: ``"auto"`` (the children of the model's largest ``ModuleList``
            or ``Sequential`` of two or more blocks of one type, e.g. transformer layers), the
            dotted name of a module (a ``ModuleList``/``Sequential``: each of its children), or
            a module class name (every module of that class, outermost only).
    """

    name: ClassVar[str] = "activation_checkpointing"
    modes: ClassVar[tuple[Mode, ...]] = ("train",)
    addresses: ClassVar[tuple[str, ...]] = ("activation_checkpointing",)

    modules: str = "auto"

    def validate(self) -> None:
        if not isinstance(self.modules, str) or not self.modules.strip():
            raise ValueError(
                "ActivationCheckpointing: modules must be 'auto', a module name or a class name"
            )


@handler(ActivationCheckpointing)
def _activation_checkpointing(workload: Workload, config: ActivationCheckpointing) -> Workload:
    result = clone_workload(workload)
    checkpoint_blocks(result.model, config.modules)
    return result


def checkpoint_blocks(model: nn.Module, modules: str = "auto") -> list[str]:
    """Make the blocks ``modules`` picks (see :class:`ActivationCheckpointing`) checkpointed,
    in place; returns their names.

    Module names and the state dict are unchanged: each block's ``forward`` is replaced on the
    instance, not the block itself. A block already checkpointed is left as it is.

    Raises:
        ValueError: ``modules`` picks nothing in ``model``.
    """
    blocks = _pick_blocks(model, modules.strip())
    for _, block in blocks:
        if not _is_checkpointed(block):
            # Set on the instance, so nn.Module.__call__ (and every hook) goes through it.
            block.forward = functools.partial(_checkpointed_forward, block.forward)
    return [name for name, _ in blocks]


def _is_checkpointed(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return isinstance(forward, functools.partial) and forward.func is _checkpointed_forward


def _checkpointed_forward(forward: Any, *args: Any, **kwargs: Any) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def _pick_blocks(model: nn.Module, modules: str) -> list[tuple[str, nn.Module]]:
    from torch import nn

    def params(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    def kids(name: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(f"{name}.{k}" if name else k, child) for k, child in module.named_children()]

    if modules == "auto":
        best: tuple[int, str, nn.Module] | None = None
        for name, module in model.named_modules():
            children = list(module.children())
            if (
                isinstance(module, (nn.ModuleList, nn.Sequential))
                and len(children) >= 2
                and len({type(child) for child in children}) == 1
                and all(params(child) > 0 for child in children)
                and (best is None or params(module) > best[0])
            ):
                best = (params(module), name, module)
        if best is None:
            raise ValueError(
                f"{type(model).__name__} has no ModuleList or Sequential of repeated blocks "
                "to checkpoint: name the blocks with modules='<module name or class name>'"
            )
        return kids(best[1], best[2])
    named = dict(model.named_modules())
    if modules in named and modules:
        target = named[modules]
        if isinstance(target, (nn.ModuleList, nn.ModuleDict, nn.Sequential)):
            return kids(modules, target)
        return [(modules, target)]
    picked: list[tuple[str, nn.Module]] = []
    for name, module in named.items():
        inside = any(name.startswith(f"{outer}.") for outer, _ in picked)
        if type(module).__name__ == modules and name and not inside:
            picked.append((name, module))
    if not picked:
        raise ValueError(
            f"{type(model).__name__} has no module named {modules!r} and none of that class"
        )
    return picked

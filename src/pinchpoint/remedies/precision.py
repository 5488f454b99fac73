"""The ``precision`` remedy: run an inference model in bf16 or fp16.

Two ways: ``how="convert"`` casts a copy of the model's weights to the dtype and wraps it so
float32 inputs and outputs still work (every operator then runs in the low dtype, and weights
take half the bytes); ``how="autocast"`` keeps float32 weights and runs the forward under
``torch.autocast``, which computes matmuls and convolutions in the low dtype and keeps
precision-sensitive operators (softmax, norms, reductions) in float32.

This module also holds the machine checks the inference remedies share
(:func:`cpu_has_any`, :func:`gpu_capability`); it does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = ["DTYPES", "Precision", "cpu_has_any", "gpu_capability"]

#: The dtypes ``Precision`` runs in, with the CPU flags that give each native matmuls.
DTYPES: dict[str, tuple[str, ...]] = {
    "bf16": ("amx_bf16", "avx512_bf16"),
    "fp16": ("amx_fp16", "avx512_fp16"),
}
# The CUDA compute capability from which each dtype has tensor-core matmuls.
_GPU_CAPABILITY = {"bf16": (8, 0), "fp16": (7, 0)}
_HOWS = ("convert", "autocast")


def cpu_has_any(machine: Machine, *flags: str) -> bool:
    """Whether the machine's CPU has at least one of ``flags`` (``/proc/cpuinfo`` names)."""
    return any(flag in machine.cpu_flags for flag in flags)


def gpu_capability(machine: Machine) -> tuple[int, int] | None:
    """The GPU's CUDA compute capability ``(major, minor)``; None without a GPU or the fact."""
    if not machine.gpu:
        return None
    value = machine.gpu.get("capability", machine.gpu.get("compute_capability"))
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        if major.isdigit() and minor.isdigit():
            return int(major), int(minor)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


@dataclass(frozen=True)
class Precision(RemedyConfig):
    """Run the model in a lower float precision (bf16 or fp16) for inference.

    Args:
        dtype: ``"bf16"`` (float32's range, fewer mantissa bits; safe for most models) or
            ``"fp16"`` (more mantissa bits, a narrow range that large activations overflow).
        how: ``"convert"`` (a copy of the model with weights in ``dtype``, float32 in and out)
            or ``"autocast"`` (float32 weights, the forward under ``torch.autocast``).
    """

    name: ClassVar[str] = "precision"
    modes: ClassVar[tuple[Mode, ...]] = ("infer",)
    addresses: ClassVar[tuple[str, ...]] = ("mixed_precision", "lower_precision_activations")

    dtype: str = "bf16"
    how: str = "convert"

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(
                f"precision dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}"
            )
        if self.how not in _HOWS:
            raise ValueError(f"precision how must be one of {', '.join(_HOWS)}, not {self.how!r}")

    def gate(self, machine: Machine) -> str | None:
        """Why ``dtype`` matmuls are not native here: by compute capability on a GPU machine,
        by CPU flags otherwise."""
        capability = gpu_capability(machine)
        if capability is not None:
            needed = _GPU_CAPABILITY[self.dtype]
            if capability < needed:
                return (
                    f"{self.dtype} needs tensor cores of compute capability "
                    f"{needed[0]}.{needed[1]} or newer; this GPU is {capability[0]}.{capability[1]}"
                )
            return None
        flags = DTYPES[self.dtype]
        if not cpu_has_any(machine, *flags):
            return (
                f"this CPU has no native {self.dtype} matmuls ({' or '.join(flags)}): "
                f"{self.dtype} is emulated and usually slower than float32"
            )
        return None


@handler(Precision)
def _precision(workload: Workload, config: Precision) -> Workload:
    import torch

    from pinchpoint.remedies._precision_modules import AutocastModule, CastModule

    dtype = torch.bfloat16 if config.dtype == "bf16" else torch.float16
    copy = clone_workload(workload)
    wrapper = (CastModule if config.how == "convert" else AutocastModule)(copy.model, dtype)
    wrapper.train(copy.model.training)
    return dataclasses.replace(copy, model=wrapper)

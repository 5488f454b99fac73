"""The ``quantize`` remedy: integer weights (and, for two methods, integer matmuls) for inference.

Four methods, all on a copy of the model:

- ``dynamic-int8``: torch's dynamic quantization of every ``nn.Linear``: int8 weights, and
  activations quantized per batch on the fly, so the matmuls run in int8 (VNNI/AMX on CPU).
- ``static-int8``: post-training static quantization in torch.fx graph mode, calibrated on the
  workload's own batches; convolutions and linears run in int8 between fixed activation scales.
  It needs a model torch.fx can trace (the zoo's digits CNN can; transformers models cannot).
- ``weight-only-int8``: ``nn.Linear`` weights stored as int8 with one scale per output channel;
  activations stay float. It saves memory traffic, which is what small-batch inference of large
  layers waits on.
- ``weight-only-int4``: the same with 4-bit weights in groups of :data:`INT4_GROUP_SIZE` inputs,
  each group with its own scale and offset; a quarter of the float32 weight bytes per value.

The torch.ao quantization methods (the two first) run on the CPU only.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.remedies.precision import cpu_has_any, gpu_capability
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    from torch import nn

    from pinchpoint._profile import Machine

__all__ = ["INT4_GROUP_SIZE", "METHODS", "Quantize"]

#: The quantization methods ``Quantize`` knows.
METHODS = ("dynamic-int8", "static-int8", "weight-only-int8", "weight-only-int4")
#: Input weights per scale and offset in ``weight-only-int4``; a layer whose input size is not a
#: multiple of it keeps its float weights.
INT4_GROUP_SIZE = 32
# The CPU flags that give int8 dot-product instructions.
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class Quantize(RemedyConfig):
    """Quantize the model's weights (and activations, for the int8 methods) to integers.

    Args:
        method: one of :data:`METHODS` (see the module documentation).
        calibration_batches: how many of the workload's batches ``static-int8`` runs to record
            activation ranges (the other methods need none).
    """

    name: ClassVar[str] = "quantize"
    modes: ClassVar[tuple[Mode, ...]] = ("infer",)
    addresses: ClassVar[tuple[str, ...]] = ("quantize_int8",)

    method: str = "dynamic-int8"
    calibration_batches: int = 8

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"quantize method must be one of {', '.join(METHODS)}, not {self.method!r}"
            )
        count = self.calibration_batches
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"quantize calibration_batches must be an integer >= 1, not {count!r}")

    def gate(self, machine: Machine) -> str | None:
        """Why int8 will not be fast here: no int8 dot-product instructions on the CPU."""
        if self.method == "weight-only-int4":
            # Its CPU kernel unpacks the weights to float and multiplies in float.
            return None
        if cpu_has_any(machine, *_INT8_FLAGS):
            return None
        if self.method == "weight-only-int8" and gpu_capability(machine) is not None:
            return None
        return (
            f"this CPU has no int8 dot-product instructions ({', '.join(_INT8_FLAGS)}), so "
            f"{self.method} matmuls are not faster than float32"
            + (" (torch.ao int8 kernels run on the CPU only)" if machine.gpu else "")
        )


@handler(Quantize)
def _quantize(workload: Workload, config: Quantize) -> Workload:
    copy = clone_workload(workload)
    model = copy.model
    if config.method == "dynamic-int8":
        model = _dynamic_int8(model, workload.name)
    elif config.method == "static-int8":
        calibration = list(itertools.islice(workload.batches(), config.calibration_batches))
        model = _static_int8(model, calibration, workload.name)
    else:
        bits = 8 if config.method == "weight-only-int8" else 4
        replaced = _replace_linears(model, bits)
        if not replaced:
            raise WorkloadError(
                f"workload {workload.name!r}: {config.method} found no nn.Linear layer to "
                "quantize" + (f" with inputs a multiple of {INT4_GROUP_SIZE}" if bits == 4 else "")
            )
    return dataclasses.replace(copy, model=model)


def _dynamic_int8(model: nn.Module, name: str) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced by torch's dynamically quantized one."""
    import torch

    from pinchpoint.remedies._wrap import quiet_warnings

    if not any(isinstance(module, torch.nn.Linear) for module in model.modules()):
        raise WorkloadError(f"workload {name!r}: dynamic-int8 found no nn.Linear layer to quantize")
    # torch.ao.quantization and its quantized tensors warn that they move to torchao; they
    # still work in this torch.
    with quiet_warnings(DeprecationWarning, FutureWarning, UserWarning):
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return quantized


def _static_int8(model: nn.Module, calibration: list[Any], name: str) -> nn.Module:
    """``model`` quantized in torch.fx graph mode, with ranges from the calibration batches."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from pinchpoint.remedies._wrap import quiet_warnings
    from pinchpoint.workload import call_model

    example = calibration[0]
    if isinstance(example, dict):
        raise WorkloadError(
            f"workload {name!r}: static-int8 traces the model with positional inputs and its "
            "batches are dicts of keyword arguments; try dynamic-int8 or weight-only-int8"
        )
    example_inputs = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    model.eval()
    with quiet_warnings(DeprecationWarning, FutureWarning, UserWarning):
        try:
            prepared = prepare_fx(
                model, get_default_qconfig_mapping("x86"), example_inputs=example_inputs
            )
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise WorkloadError(
                f"workload {name!r}: static-int8 needs a model torch.fx can trace, and tracing "
                f"failed ({type(error).__name__}: {reason[:200]}); try dynamic-int8 or "
                "weight-only-int8"
            ) from error
        with torch.inference_mode():
            for batch in calibration:
                call_model(prepared, batch)
        return convert_fx(prepared)


def _replace_linears(model: nn.Module, bits: int) -> int:
    """Swap each plain ``nn.Linear`` in ``model`` for a weight-only quantized one; the count.

    Subclasses of ``nn.Linear`` are left alone: some owners read their ``weight`` directly
    (``nn.MultiheadAttention``'s output projection is one).
    """
    import torch

    from pinchpoint.remedies._quantize_modules import Int4WeightOnlyLinear, Int8WeightOnlyLinear

    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            layer: torch.nn.Module
            if bits == 8:
                layer = Int8WeightOnlyLinear(child)
            elif child.in_features % INT4_GROUP_SIZE == 0:
                layer = Int4WeightOnlyLinear(child, INT4_GROUP_SIZE)
            else:
                continue
            setattr(parent, child_name, layer)
            replaced += 1
    return replaced

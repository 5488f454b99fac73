"""The ``onnx_runtime`` remedy: export the model to ONNX and run it with ONNX Runtime on the CPU.

The model is exported with ``torch.onnx.export`` (the torch.export-based exporter, which needs
onnxscript) on the workload's first batch, with the batch axis dynamic where the model allows
it. ONNX Runtime then runs the graph with all its optimizations on: it fuses attention, GELU,
layer norms and bias additions into single kernels. With ``quantize="int8"`` the graph's matmul
weights are quantized to signed int8 (ONNX Runtime's dynamic quantization: activations are
quantized per call), which runs on VNNI/AMX int8 instructions where the CPU has them.

The result is a :class:`pinchpoint.remedies._onnx_modules.OnnxModule`: a torch module without
parameters that takes the arguments the model took and returns tensors in the same structure.
It offers ``save(path)`` and ``size_bytes()``. Models of 2 GB or more do not fit one ``.onnx``
file and are not supported. Needs ``pip install 'pinchpoint[optimize]'``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler, whole
from pinchpoint.remedies.precision import cpu_has_any
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    import torch

    from pinchpoint._profile import Machine

__all__ = ["OnnxRuntime"]

_QUANTIZE = ("int8",)
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
# The oldest opset the torch.export-based exporter writes.
_MIN_OPSET = 18
# How far the exported graph's output may stray from the model's before it is judged wrong,
# relative to the largest output magnitude (float32 reordering gives about 1e-6).
_EXPORT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class OnnxRuntime(RemedyConfig):
    """Run the model with ONNX Runtime (CPU), optionally with int8-quantized weights.

    Args:
        quantize: None (float32) or ``"int8"`` (signed int8 weights, dynamic activations).
        threads: ONNX Runtime's intra-op threads; default: the workload's ``threads``, else
            torch's current thread count.
        opset: the ONNX opset to export (at least 18); default: the exporter's.
    """

    name: ClassVar[str] = "onnx_runtime"
    modes: ClassVar[tuple[Mode, ...]] = ("infer",)
    addresses: ClassVar[tuple[str, ...]] = ("quantize_int8", "operator_fusion")

    quantize: str | None = None
    threads: int | None = None
    opset: int | None = None

    def validate(self) -> None:
        if self.quantize is not None and self.quantize not in _QUANTIZE:
            raise ValueError(
                f"onnx_runtime quantize must be None or one of {', '.join(_QUANTIZE)}, "
                f"not {self.quantize!r}"
            )
        for setting, low in (("threads", 1), ("opset", _MIN_OPSET)):
            value = getattr(self, setting)
            if value is not None and not whole(value, low):
                raise ValueError(
                    f"onnx_runtime {setting} must be None or an integer >= {low}, not {value!r}"
                )

    def gate(self, machine: Machine) -> str | None:
        """Why it will not be fast here: int8 without int8 dot products, or a GPU left idle."""
        if self.quantize == "int8" and not cpu_has_any(machine, *_INT8_FLAGS):
            return (
                f"this CPU has no int8 dot-product instructions ({', '.join(_INT8_FLAGS)}), so "
                "int8 matmuls are not faster than float32"
            )
        if machine.gpu:
            return "ONNX Runtime runs here on its CPU execution provider, not on the GPU"
        return None


@handler(OnnxRuntime)
def _onnx_runtime(workload: Workload, config: OnnxRuntime) -> Workload:
    import torch
    from torch.utils import _pytree

    from pinchpoint.remedies._onnx_modules import OnnxModule, PositionalCall
    from pinchpoint.workload import call_model

    for package in ("onnx", "onnxruntime", "onnxscript"):
        try:
            importlib.import_module(package)
        except ImportError as error:
            raise WorkloadError(
                f"onnx_runtime needs {package}: pip install 'pinchpoint[optimize]'"
            ) from error
    batch = next(workload.batches())
    kind, names, tensors = _inputs(batch, workload.name)
    model = clone_workload(workload).model
    model.eval()
    with torch.inference_mode():
        reference = call_model(model, batch)
    leaves, spec = _pytree.tree_flatten(reference)
    constants = {i: leaf for i, leaf in enumerate(leaves) if not isinstance(leaf, torch.Tensor)}
    expected = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    threads = config.threads or workload.threads or torch.get_num_threads()

    with tempfile.TemporaryDirectory(prefix="pinchpoint-export-") as folder:
        path = os.path.join(folder, "model.onnx")
        _export(PositionalCall(model, kind, names), tensors, names, path, config, workload.name)
        graph = functools.partial(
            OnnxModule,
            kind=kind,
            names=names,
            dtypes=[tensor.dtype for tensor in tensors],
            spec=spec,
            constants=constants,
            threads=threads,
        )
        module = graph(path)
        _check_export(module, batch, expected, workload.name)
        if config.quantize == "int8":
            quantized = os.path.join(folder, "model.int8.onnx")
            _quantize_int8(path, quantized)
            module = graph(quantized)
    module.train(False)
    return dataclasses.replace(workload, model=module)


def _inputs(batch: Any, name: str) -> tuple[str, list[str], list[torch.Tensor]]:
    """How a batch feeds the model: its kind, the ONNX input names and its tensors in order."""
    import torch

    if isinstance(batch, torch.Tensor):
        kind, names, values = "tensor", ["input"], [batch]
    elif isinstance(batch, Mapping):
        kind, names, values = "kwargs", [str(key) for key in batch], list(batch.values())
    elif isinstance(batch, (tuple, list)):
        kind = "args"
        names = [f"input_{i}" for i in range(len(batch))]
        values = list(batch)
    else:
        raise WorkloadError(
            f"workload {name!r}: onnx_runtime exports models fed a tensor, a tuple or a dict "
            f"of tensors, not {type(batch).__name__}"
        )
    if not all(isinstance(value, torch.Tensor) for value in values):
        raise WorkloadError(f"workload {name!r}: onnx_runtime needs batches made of tensors only")
    return kind, names, values


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's progress lines, its warnings and its logs, for the block only."""
    from pinchpoint.remedies._wrap import quiet_warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with quiet_warnings(), open(os.devnull, "w") as devnull, redirect_stdout(devnull):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export(
    model: Any,
    tensors: list[torch.Tensor],
    names: list[str],
    path: str,
    config: OnnxRuntime,
    name: str,
) -> None:
    """Export ``model`` to ``path``, with dynamic axes where the model allows them."""
    import torch

    batch = torch.export.Dim("batch")
    every_axis = tuple(
        {axis: torch.export.Dim.DYNAMIC for axis in range(tensor.dim())} for tensor in tensors
    )
    batch_axis = tuple({0: batch} if tensor.dim() > 0 else {} for tensor in tensors)
    errors = []
    # Every axis dynamic first (token batches vary in length too); a model that fixes a size (a
    # reshape to a constant, say) cannot export with it dynamic: then only the batch axis, then
    # the first batch's shapes.
    for shapes in (every_axis, batch_axis, None):
        try:
            with _quiet_export():
                torch.onnx.export(
                    model,
                    tuple(tensors),
                    path,
                    input_names=names,
                    opset_version=config.opset,
                    dynamo=True,
                    # The adapter takes its tensors as *args: one tuple of per-tensor shapes.
                    dynamic_shapes=None if shapes is None else (shapes,),
                    external_data=False,
                    verbose=False,
                )
            return
        except Exception as error:
            errors.append(error)
    last = errors[-1]
    reason = str(last).strip().splitlines()[0] if str(last).strip() else ""
    raise WorkloadError(
        f"workload {name!r}: torch.onnx.export failed ({type(last).__name__}: {reason[:300]})"
    ) from last


def _check_export(module: Any, batch: Any, expected: list[torch.Tensor], name: str) -> None:
    """Raise unless the exported graph gives the model's own output on ``batch``."""
    import torch
    from torch.utils import _pytree

    from pinchpoint.workload import call_model

    with torch.inference_mode():
        leaves = _pytree.tree_leaves(call_model(module, batch))
    got = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    if len(got) != len(expected) or any(
        a.shape != b.shape for a, b in zip(got, expected, strict=False)
    ):
        raise WorkloadError(
            f"workload {name!r}: the exported ONNX graph's outputs do not have the model's shapes"
        )
    for onnx_out, torch_out in zip(got, expected, strict=True):
        if not torch_out.is_floating_point():
            continue
        scale = max(1.0, float(torch_out.abs().max()))
        error = float((onnx_out.float() - torch_out.float()).abs().max())
        if error > _EXPORT_TOLERANCE * scale:
            raise WorkloadError(
                f"workload {name!r}: the exported ONNX graph computes something else than the "
                f"model (largest difference {error:.3g} on the first batch)"
            )


@functools.cache
def _saturates_u8s8() -> bool:
    """Whether this CPU is an x86-64 without VNNI, where ONNX Runtime's u8 x s8 products add in
    pairs into int16 and saturate: its documentation advises 7-bit weights (``reduce_range``)
    there. On an AVX2-only AMD EPYC, full-range int8 gave a 3-layer GELU MLP's outputs cosine
    0.986 to fp32's."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return not any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _quantize_int8(source: str, target: str) -> None:
    """ONNX Runtime's dynamic quantization of ``source`` with signed int8 weights."""
    quantization = importlib.import_module("onnxruntime.quantization")
    root = logging.getLogger()
    level = root.level
    # It logs a suggestion to pre-process the model through logging.warning at every call;
    # a handler of our own keeps that call from installing a stderr handler on the root
    # logger for good (logging.basicConfig), and the level drops the message.
    quiet = logging.NullHandler()
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        quantization.quantize_dynamic(
            source,
            target,
            weight_type=quantization.QuantType.QInt8,
            reduce_range=_saturates_u8s8(),
        )
    finally:
        root.setLevel(level)
        root.removeHandler(quiet)

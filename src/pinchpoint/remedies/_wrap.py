"""The torch modules the inference remedies wrap models in, and the helpers they share.

This module imports torch at its top, so the remedy modules import it inside their handlers
only (``import pinchpoint.remedies`` stays free of torch). Each wrapper is a ``torch.nn.Module``
that takes the arguments the wrapped model takes and returns the same nested structure:
tensors, tuples, lists, dicts and transformers ``ModelOutput`` objects.

- :class:`CastModule` runs a bf16/fp16 copy of a model on float32 inputs and outputs.
- :class:`AutocastModule` runs a model under ``torch.autocast``.
- :class:`CompiledModule` compiles a model with ``torch.compile`` on its first call.
- :class:`Int8WeightOnlyLinear` and :class:`Int4WeightOnlyLinear` replace ``nn.Linear`` with
  integer weights and float activations.
- :class:`OnnxModule` runs an exported ONNX model with ONNX Runtime; :class:`PositionalCall`
  adapts a model to the positional call the exporter traces.
"""

from __future__ import annotations

import itertools
import os
import shutil
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

__all__ = [
    "AutocastModule",
    "CastModule",
    "CompiledModule",
    "Int4WeightOnlyLinear",
    "Int8WeightOnlyLinear",
    "OnnxModule",
    "PositionalCall",
    "map_tensors",
    "model_device",
    "quiet_warnings",
]


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``obj`` rebuilt with ``fn`` applied to every tensor in it; other leaves stay as they are.

    Tuples (named ones too), lists, dicts and transformers ``ModelOutput`` objects keep their
    type: a ``ModelOutput`` is an ordered dict whose class takes its fields as keywords.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        items = {key: map_tensors(value, fn) for key, value in obj.items()}
        if type(obj) is dict:
            return items
        try:
            return type(obj)(**items)
        except TypeError:
            return items
    if isinstance(obj, tuple):
        mapped = [map_tensors(value, fn) for value in obj]
        # A named tuple takes its fields as positional arguments, a plain tuple one iterable.
        return type(obj)(*mapped) if hasattr(obj, "_fields") else tuple(mapped)
    if isinstance(obj, list):
        return [map_tensors(value, fn) for value in obj]
    return obj


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter or buffer; the CPU for a model without any."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device  # type: ignore[no-any-return]
    return torch.device("cpu")


@contextmanager
def quiet_warnings(*categories: type[Warning]) -> Iterator[None]:
    """Silence warnings of ``categories`` (all warnings without any) inside the block only."""
    with warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.is_floating_point() else tensor


class CastModule(nn.Module):
    """A model converted to a lower float dtype, fed and read in float32.

    Floating inputs are cast to ``dtype`` on the way in (integer ones, such as token ids, are
    left alone) and floating outputs come back as float32, so callers see the model they had.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        def cast(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        output = self.module(*map_tensors(args, cast), **map_tensors(kwargs, cast))
        return map_tensors(output, _to_float32)


class AutocastModule(nn.Module):
    """A model run under ``torch.autocast``: eligible operators compute in ``dtype``.

    Weights stay float32; autocast casts them per operator. Floating outputs come back as
    float32, as the unwrapped model's did.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device_type = model_device(self.module).type
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            output = self.module(*args, **kwargs)
        return map_tensors(output, _to_float32)


def _call_module(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    return module(*args, **kwargs)


_entries = itertools.count()


def _own_entry() -> Callable[..., Any]:
    """A function calling its first argument, with a code object of its own.

    torch._dynamo keeps compiled graphs per code object. Two compiled copies of one model class
    would otherwise share one cache: a graph compiled without freezing (which takes the weights
    as inputs) could then serve a copy that asked for freezing, and past the recompile limit
    every further copy would silently run eagerly.
    """
    code = _call_module.__code__.replace(co_name=f"pinchpoint_compiled_{next(_entries)}")
    return types.FunctionType(code, _call_module.__globals__, code.co_name)


class CompiledModule(nn.Module):
    """A model compiled by ``torch.compile`` on its first call, optionally with freezing.

    With ``freezing`` (or ``cpp_wrapper``), inductor's option of that name is switched on
    around each call only (it is read when a graph compiles, which can happen again on a new
    input shape) and restored after; with freezing the call runs without autograd, since
    frozen weights are constants. Each instance
    compiles through an entry function of its own, so its graphs are never shared with another
    compiled model. The compiled function is not copied with the module: a deep copy compiles
    again on its first call.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        mode: str,
        backend: str,
        dynamic: bool,
        freezing: bool,
        cpp_wrapper: bool = False,
    ) -> None:
        super().__init__()
        self.module = module
        self.mode = mode
        self.backend = backend
        self.dynamic = dynamic
        self.freezing = freezing
        self.cpp_wrapper = cpp_wrapper
        self._compiled: Callable[..., Any] | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self._compiled
        first_call = compiled is None
        if compiled is None:
            # "default" is torch.compile's own mode, spelled as None there.
            mode = None if self.mode == "default" else self.mode
            with quiet_warnings(DeprecationWarning, FutureWarning):
                compiled = torch.compile(
                    _own_entry(), mode=mode, backend=self.backend, dynamic=self.dynamic
                )
            self._compiled = compiled
        # The first call compiles, and inductor's modules warn about deprecations on import.
        quiet = quiet_warnings(DeprecationWarning, FutureWarning) if first_call else nullcontext()
        options = {"freezing": True} if self.freezing else {}
        if self.cpp_wrapper:
            options["cpp_wrapper"] = True
        import torch._dynamo.config as dynamo_config

        # A graph break inside a repeated block (a transformer layer) resumes in a frame whose
        # module differs per layer, and each is a recompile: past torch's limit of 8, the
        # remaining layers would silently run eagerly. Allow one per layer of a deep model.
        limit = dynamo_config.patch(recompile_limit=max(dynamo_config.recompile_limit, 64))
        if not options:
            with quiet, limit:
                return compiled(self.module, *args, **kwargs)
        import torch._inductor.config as inductor_config

        # Frozen weights are constants: the call needs no autograd, and freezing needs none.
        grad = torch.no_grad() if self.freezing and torch.is_grad_enabled() else nullcontext()
        with quiet, limit, inductor_config.patch(options), grad:
            return compiled(self.module, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_compiled"] = None
        return state


# torch's int8/int4 weight-only CPU kernels are vectorised for bf16 activations; float32 ones
# take a scalar path about 50x slower. On the CPU the layers therefore multiply in bf16.
_CPU_KERNEL_DTYPE = torch.bfloat16


class Int8WeightOnlyLinear(nn.Module):
    """A linear layer with int8 weights (one scale per output channel) and float activations.

    On the CPU it calls torch's ``_weight_int8pack_mm`` kernel, which reads the int8 weights
    directly and multiplies with bf16 activations (its fast path; the output is cast back to the
    input's dtype); elsewhere it dequantizes the weights on the fly. It saves weight bytes, so
    it pays where matmuls wait on memory (a few rows per call, as in token-by-token decoding);
    with a hundred rows or more per call, a plain bf16 matmul is faster.
    """

    weight_int8: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.on_cpu = linear.weight.device.type == "cpu"
        # Symmetric per-output-channel scales; -128 is left out so the range is symmetric.
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quantized.contiguous())
        dtype = _CPU_KERNEL_DTYPE if self.on_cpu else linear.weight.dtype
        self.register_buffer("scale", scale.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_cpu:
            flat = x.reshape(-1, self.in_features).to(_CPU_KERNEL_DTYPE).contiguous()
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale).to(x.dtype)
            out = out.reshape(*x.shape[:-1], self.out_features)
        else:
            out = nn.functional.linear(x, self.weight.to(x.dtype))
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weights, for code that reads ``layer.weight`` (such as
        ``nn.TransformerEncoderLayer``'s fast path); the CPU path never builds them."""
        return self.weight_int8.to(self.scale.dtype) * self.scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


class Int4WeightOnlyLinear(nn.Module):
    """A linear layer with 4-bit weights in groups along the input and float activations.

    Each group of ``group_size`` input weights of one output channel has its own scale and
    offset (asymmetric: ``w = (q - 8) * scale + zero`` for ``q`` in 0..15). On the CPU the
    weights are packed for torch's ``_weight_int4pack_mm_for_cpu`` kernel (two 4-bit values
    per byte), which multiplies with bf16 activations; the output channels are padded to a
    multiple of 16, which the kernel needs. Elsewhere the layer keeps two values per byte in its
    own order and dequantizes on the fly. Like int8 weight-only, it pays where matmuls wait on
    memory.
    """

    weight_int4: torch.Tensor
    scale_zero: torch.Tensor

    def __init__(self, linear: nn.Linear, group_size: int) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        if in_features % group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of {group_size}")
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        weight = linear.weight.detach().float()
        self.on_cpu = linear.weight.device.type == "cpu"
        padded = -(-out_features // 16) * 16 if self.on_cpu else out_features
        if padded != out_features:
            weight = torch.cat([weight, weight.new_zeros(padded - out_features, in_features)])
        groups = weight.reshape(padded, in_features // group_size, group_size)
        low = groups.amin(dim=-1)
        scale = (groups.amax(dim=-1) - low).clamp(min=1e-12) / 15.0
        zero = low + 8.0 * scale
        quantized = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
        quantized = quantized.to(torch.int32).reshape(padded, in_features)
        if self.on_cpu:
            packed = torch._convert_weight_to_int4pack_for_cpu(quantized, 1)
        else:
            pairs = quantized.to(torch.uint8).reshape(padded, in_features // 2, 2)
            packed = pairs[..., 0] | (pairs[..., 1] << 4)
        self.register_buffer("weight_int4", packed.contiguous())
        # [groups, out, 2]: the layout the CPU kernel reads (scale, zero) from.
        scale_zero = torch.stack([scale.t(), zero.t()], dim=-1).contiguous()
        dtype = _CPU_KERNEL_DTYPE if self.on_cpu else linear.weight.dtype
        self.register_buffer("scale_zero", scale_zero.to(dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.on_cpu:
            out = torch._weight_int4pack_mm_for_cpu(
                flat.to(_CPU_KERNEL_DTYPE).contiguous(),
                self.weight_int4,
                self.group_size,
                self.scale_zero,
            )
            out = out[:, : self.out_features].to(x.dtype)
        else:
            out = nn.functional.linear(flat, self._dequantized(self.scale_zero).to(x.dtype))
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weights, for code that reads ``layer.weight`` (such as
        ``nn.TransformerEncoderLayer``'s fast path); the CPU path never builds them."""
        if not self.on_cpu:
            return self._dequantized(self.scale_zero)
        # The packed CPU layout is the kernel's own: multiplying the identity unpacks it.
        identity = torch.eye(self.in_features, dtype=_CPU_KERNEL_DTYPE)
        columns = torch._weight_int4pack_mm_for_cpu(
            identity, self.weight_int4, self.group_size, self.scale_zero
        )
        return columns[:, : self.out_features].t().float().contiguous()

    def _dequantized(self, scale_zero: torch.Tensor) -> torch.Tensor:
        """The float weights of the non-CPU layout, ``[out_features, in_features]``."""
        low = (self.weight_int4 & 0x0F).to(scale_zero.dtype)
        high = (self.weight_int4 >> 4).to(scale_zero.dtype)
        values = torch.stack([low, high], dim=-1).reshape(self.out_features, -1, self.group_size)
        scale = scale_zero[..., 0].t()[..., None]
        zero = scale_zero[..., 1].t()[..., None]
        return ((values - 8.0) * scale + zero).reshape(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 weights in groups of {self.group_size}"
        )


class PositionalCall(nn.Module):
    """A model called with its batch's tensors as positional arguments, as exporters call it.

    ``kind`` says how the batch fed the model: ``"tensor"`` (one tensor), ``"args"`` (a tuple
    or list unpacked) or ``"kwargs"`` (a dict, its tensors passed by the keys in ``names``).
    """

    def __init__(self, module: nn.Module, kind: str, names: list[str]) -> None:
        super().__init__()
        self.module = module
        self.kind = kind
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> Any:
        if self.kind == "kwargs":
            return self.module(**dict(zip(self.names, tensors, strict=True)))
        return self.module(*tensors)


class _Shared:
    """A value that deep copies share instead of copying (a pytree spec, which is immutable
    and warns when torch's copy hooks walk it)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self


class OnnxModule(nn.Module):
    """An ONNX model run by ONNX Runtime on the CPU, called like the torch model it came from.

    It takes the arguments the original model took (positional, or keywords when its batches
    were dicts) and returns torch tensors in the original output's structure (``spec``, a
    pytree spec of it; ``constants`` fills the non-tensor leaves). The ``.onnx`` file lives in a
    temporary folder the module owns and removes when it is collected; a copy or an unpickled
    module writes its own. The module has no parameters: its weights are inside the file.
    """

    path: str
    _session: Any

    def __init__(
        self,
        path: str,
        *,
        kind: str,
        names: list[str],
        dtypes: list[torch.dtype],
        spec: Any,
        constants: dict[int, Any],
        threads: int,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.names = names
        self.dtypes = dtypes
        self._spec = _Shared(spec)
        self.constants = constants
        self.threads = threads
        with open(path, "rb") as file:
            self._open(file.read())

    def _open(self, onnx_bytes: bytes) -> None:
        """Write ``onnx_bytes`` into a folder of this module's own and start a session on it."""
        import importlib
        import tempfile

        onnxruntime = importlib.import_module("onnxruntime")
        folder = tempfile.mkdtemp(prefix="pinchpoint-onnx-")
        # The folder goes with the module: removed when the module is collected (or at exit).
        remove = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as file:
            file.write(onnx_bytes)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.__dict__.update(_remove=remove, path=path, _session=session)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "kwargs":
            bound = dict(zip(self.names, args, strict=False))
            bound.update(kwargs)
            missing = [name for name in self.names if name not in bound]
            if missing or len(bound) != len(self.names):
                raise TypeError(
                    f"the ONNX model takes {', '.join(self.names)}; got {', '.join(bound)}"
                )
            inputs = [bound[name] for name in self.names]
        else:
            if kwargs or len(args) != len(self.names):
                raise TypeError(f"the ONNX model takes {len(self.names)} positional tensor(s)")
            inputs = list(args)
        feed = {
            name: tensor.detach().to("cpu", dtype).contiguous().numpy()
            for name, tensor, dtype in zip(self.names, inputs, self.dtypes, strict=True)
        }
        outputs = iter(self._session.run(None, feed))
        leaves = [
            self.constants[i] if i in self.constants else torch.from_numpy(next(outputs))
            for i in range(self._spec.value.num_leaves)
        ]
        from torch.utils import _pytree

        return _pytree.tree_unflatten(leaves, self._spec.value)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.onnx`` file to ``path``."""
        shutil.copyfile(self.path, path)

    def size_bytes(self) -> int:
        """The size of the ``.onnx`` file, which holds the weights."""
        return os.path.getsize(self.path)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_remove", "_session")}
        with open(self.path, "rb") as file:
            state["onnx_bytes"] = file.read()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        onnx_bytes = state.pop("onnx_bytes")
        super().__setstate__(state)  # type: ignore[no-untyped-call]
        self._open(onnx_bytes)

"""The modules of the ONNX Runtime remedy (torch at import: loaded by the handler).

:class:`OnnxModule` runs an exported ONNX model with ONNX Runtime; :class:`PositionalCall`
adapts a model to the positional call the exporter traces.
"""

from __future__ import annotations

import os
import shutil
import weakref
from typing import Any

import torch
from torch import nn

__all__ = ["OnnxModule", "PositionalCall"]


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
            if set(bound) != set(self.names):
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

"""The ``compile`` remedy: ``torch.compile`` the model, for inference or training.

The model copy is wrapped in a module that compiles it on its first call (compiling takes
seconds to minutes; a trial's warm-up pays for it). Inductor fuses chains of elementwise
operators into single kernels and removes the Python and dispatch overhead between operators.

For inference, ``freezing`` turns inductor's freezing option on while the model compiles:
weights become constants that are folded into the graph, and on the CPU oneDNN prepacks them
into its own layout once instead of at every call. Frozen weights cannot train, so training
workloads ignore ``freezing`` (it defaults to on so that one config serves inference as is).

The ``dynamic_shapes`` remedy (:class:`DynamicShapes`) is for a model the user compiled
already and that recompiles for every new input shape (the ``recompilation`` finding): each
``torch.compile``d module in it is compiled again for symbolic sizes, either all of them
(``dynamic=True``) or only the dimensions named in ``dims`` (``torch._dynamo.mark_dynamic``).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = ["MODES", "Compile", "DynamicShapes", "recompilation_candidates"]

#: ``torch.compile`` modes.
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Compile(RemedyConfig):
    """Compile the model with ``torch.compile``.

    Args:
        mode: a ``torch.compile`` mode (:data:`MODES`); ``max-autotune`` benchmarks kernel
            choices while compiling (slow to compile), ``reduce-overhead`` uses CUDA graphs.
        backend: a ``torch._dynamo`` backend (``"inductor"`` generates fused kernels).
        freezing: for inference, fold the weights into the graph as constants (inductor's
            ``freezing``); ignored for training, whose weights change, and by backends other
            than inductor, which have no such option.
        dynamic: compile for symbolic shapes from the start instead of one graph per shape.
        cpp_wrapper: with inductor, call the compiled kernels from generated C++ instead of
            Python (inductor's ``cpp_wrapper``): a model of hundreds of kernels saves a few
            milliseconds per call, and compiling takes longer.
    """

    name: ClassVar[str] = "compile"
    addresses: ClassVar[tuple[str, ...]] = ("torch_compile", "operator_fusion", "fused_modules")

    mode: str = "default"
    backend: str = "inductor"
    freezing: bool = True
    dynamic: bool = False
    cpp_wrapper: bool = False

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"compile mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise ValueError(f"compile backend must be a backend name, not {self.backend!r}")
        for setting in ("freezing", "dynamic", "cpp_wrapper"):
            value = getattr(self, setting)
            if not isinstance(value, bool):
                raise ValueError(f"compile {setting} must be true or false, not {value!r}")
        if self.cpp_wrapper and self.backend != "inductor":
            raise ValueError(
                f"compile cpp_wrapper is an inductor option; backend {self.backend!r} has none"
            )

    def gate(self, machine: Machine) -> str | None:
        """Why compiling will not pay here: no C compiler for inductor's CPU kernels, or CUDA
        graphs asked for without a GPU."""
        if self.mode == "reduce-overhead" and not machine.gpu:
            return "reduce-overhead mode uses CUDA graphs, and this machine has no GPU"
        compilers = ("c++", "g++", "clang++")
        if self.backend == "inductor" and not machine.gpu and not any(map(shutil.which, compilers)):
            return "inductor compiles its CPU kernels with a C++ compiler, and none is on PATH"
        return None


def _check_backend(remedy: str, backend: str) -> None:
    """Raise ``ValueError`` unless ``backend`` is one of torch's compile backends."""
    import torch

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"{remedy} backend {backend!r} is not one of torch's: {', '.join(known)}")


@handler(Compile)
def _compile(workload: Workload, config: Compile) -> Workload:
    from pinchpoint.remedies._compile_modules import CompiledModule

    _check_backend("compile", config.backend)
    copy = clone_workload(workload)
    wrapper = CompiledModule(
        copy.model,
        mode=config.mode,
        backend=config.backend,
        dynamic=config.dynamic,
        # Frozen weights are constants: a training step could not update them.
        freezing=config.freezing and workload.mode == "infer" and config.backend == "inductor",
        cpp_wrapper=config.cpp_wrapper,
    )
    wrapper.train(copy.model.training)
    # The wrapper holds the copy's parameters themselves, so the optimizer that
    # clone_workload rebuilt over them keeps training the compiled model.
    return dataclasses.replace(copy, model=wrapper)


@dataclass(frozen=True)
class DynamicShapes(RemedyConfig):
    """Compile the model's compiled modules again for symbolic shapes.

    Every ``torch.compile``d module in the model (an ``OptimizedModule``: the model itself or
    any submodule) is replaced by its original module compiled anew, through a function of its
    own so that none of its graphs is shared with the original's. Its inputs are unchanged.

    Args:
        dims: None (the default) compiles with ``dynamic=True``: every size is symbolic, one
            graph serves all shapes. A tuple of dimensions compiles with ``dynamic=False`` and
            marks those dimensions of every input tensor that has them, with a size of 2 or
            more, dynamic (``torch._dynamo.mark_dynamic``): only they are symbolic (for text
            batches ``(1,)``, the sequence length).
        backend: the ``torch._dynamo`` backend; None keeps the one the model was compiled
            with (``inductor`` where it cannot be told).
    """

    name: ClassVar[str] = "dynamic_shapes"
    addresses: ClassVar[tuple[str, ...]] = ("dynamic_shapes", "mark_dynamic")

    dims: tuple[int, ...] | None = None
    backend: str | None = None

    def validate(self) -> None:
        if self.dims is not None:
            if not isinstance(self.dims, tuple) or not self.dims:
                raise ValueError(
                    f"dynamic_shapes dims must be None or a non-empty tuple, not {self.dims!r}"
                )
            for dim in self.dims:
                if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
                    raise ValueError(
                        f"dynamic_shapes dims must be non-negative integers, not {dim!r}"
                    )
        if self.backend is not None and (
            not isinstance(self.backend, str) or not self.backend.strip()
        ):
            raise ValueError(
                f"dynamic_shapes backend must be a backend name or None, not {self.backend!r}"
            )


def recompilation_candidates() -> list[RemedyConfig]:
    """The remedies the optimizer tries for a ``recompilation`` finding, most promising first:
    ``dynamic=True``, lengths padded to multiples of 64, the sequence dimension marked dynamic.
    """
    from pinchpoint.remedies.shapes import PadToBuckets

    return [DynamicShapes(), PadToBuckets(multiple=64, dim=1), DynamicShapes(dims=(1,))]


@handler(DynamicShapes)
def _dynamic_shapes(workload: Workload, config: DynamicShapes) -> Workload:
    from torch._dynamo.eval_frame import OptimizedModule

    if config.backend is not None:
        _check_backend("dynamic_shapes", config.backend)
    copy = clone_workload(workload)
    if isinstance(copy.model, OptimizedModule):
        # The new module holds the same parameters, so the rebuilt optimizer still steps them.
        return dataclasses.replace(copy, model=_recompiled(copy.model, config))
    if not _replace_compiled(copy.model, config, OptimizedModule):
        raise ValueError(
            f"workload {workload.name!r} has no torch.compile'd module to compile for dynamic "
            "shapes (the compile remedy compiles a model that is not compiled yet)"
        )
    return copy


def _replace_compiled(module: Any, config: DynamicShapes, compiled_type: type) -> bool:
    """Replace every compiled submodule of ``module`` in place; whether there was one."""
    found = False
    for name, child in list(module.named_children()):
        if isinstance(child, compiled_type):
            setattr(module, name, _recompiled(child, config))
            found = True
        else:
            found = _replace_compiled(child, config, compiled_type) or found
    return found


def _recompiled(optimized: Any, config: DynamicShapes) -> Any:
    """``optimized``'s original module compiled for symbolic shapes (and its dims marked)."""
    from pinchpoint.remedies._compile_modules import CompiledModule
    from pinchpoint.remedies._marking import MarkDynamic

    original = optimized._orig_mod
    compiled = CompiledModule(
        original,
        mode="default",
        backend=config.backend or _backend_of(optimized) or "inductor",
        dynamic=config.dims is None,
        freezing=False,
    )
    compiled.train(optimized.training)
    return compiled if config.dims is None else MarkDynamic(compiled, config.dims)


def _backend_of(optimized: Any) -> str | None:
    """The name of the backend an ``OptimizedModule`` compiles with, when it can be told."""
    try:
        backend = optimized.dynamo_ctx.callback._torchdynamo_orig_backend
        backend = getattr(backend, "_torchdynamo_orig_backend", backend)
    except AttributeError:
        return None
    # A backend given by name carries it as compiler_name; inductor's wrapper as _compiler_name.
    for attribute in ("compiler_name", "_compiler_name"):
        name = getattr(backend, attribute, None)
        if isinstance(name, str) and name:
            return name
    return None

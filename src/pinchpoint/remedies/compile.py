"""The ``compile`` remedy: ``torch.compile`` the model, for inference or training.

The model copy is wrapped in a module that compiles it on its first call (compiling takes
seconds to minutes; a trial's warm-up pays for it). Inductor fuses chains of elementwise
operators into single kernels and removes the Python and dispatch overhead between operators.

For inference, ``freezing`` turns inductor's freezing option on while the model compiles:
weights become constants that are folded into the graph, and on the CPU oneDNN prepacks them
into its own layout once instead of at every call. Frozen weights cannot train, so training
workloads ignore ``freezing`` (it defaults to on so that one config serves inference as is).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = ["MODES", "Compile"]

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
        if self.backend == "inductor" and not machine.gpu and not _c_compiler():
            return "inductor compiles its CPU kernels with a C++ compiler, and none is on PATH"
        return None


def _c_compiler() -> str | None:
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


@handler(Compile)
def _compile(workload: Workload, config: Compile) -> Workload:
    """A workload whose model copy compiles with ``config`` on its first call."""
    import torch

    from pinchpoint.remedies._wrap import CompiledModule

    known = torch._dynamo.list_backends(exclude_tags=())
    if config.backend not in known:
        raise ValueError(
            f"compile backend {config.backend!r} is not one of torch's: {', '.join(known)}"
        )
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

"""The module the compile remedy wraps a model in (torch at import: loaded by the handler)."""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from pinchpoint.remedies._wrap import quiet_warnings

__all__ = ["CompiledModule"]


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
        options = {name: True for name in ("freezing", "cpp_wrapper") if getattr(self, name)}
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

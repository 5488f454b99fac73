"""What the remedies' wrapping modules share, and the old home of the wrappers.

:func:`quiet_warnings` silences the warnings torch's compile, quantization and export APIs
print. Each remedy's torch modules live beside it in a private module of their own
(``_precision_modules``, ``_compile_modules``, ``_quantize_modules``, ``_onnx_modules``,
``_smooth_modules``, ``_marking``) that its handler imports, so ``import pinchpoint.remedies``
stays free of torch. A model pickled whole (``optimize``'s ``model.pt``) by an earlier version
names its wrappers by this module: :func:`__getattr__` resolves those names, so it still loads.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["quiet_warnings"]

# The wrappers' old names here -> the module that holds them now.
_MOVED = {
    "CastModule": "_precision_modules",
    "AutocastModule": "_precision_modules",
    "CompiledModule": "_compile_modules",
    "Int8WeightOnlyLinear": "_quantize_modules",
    "Int4WeightOnlyLinear": "_quantize_modules",
    "OnnxModule": "_onnx_modules",
    "PositionalCall": "_onnx_modules",
}


@contextmanager
def quiet_warnings(*categories: type[Warning]) -> Iterator[None]:
    """Silence warnings of ``categories`` (all warnings without any) inside the block only."""
    with warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield


def __getattr__(name: str) -> Any:
    """A wrapper by its old name, for unpickling models saved when it lived here."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"pinchpoint.remedies.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

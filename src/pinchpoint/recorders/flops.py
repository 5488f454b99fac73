"""Count FLOPs and bytes per operator, per module and per phase for one step.

:class:`OpCounter` is a ``TorchDispatchMode``: it sees every ATen operator after autograd, with
its real tensors, so it counts backward and optimizer operators too. For each call it decides
how the FLOPs are known:

- ``formula``: torch's own FLOP formulas (``torch.utils.flop_counter``: matmuls, convolutions,
  attention), forward and backward;
- ``pointwise``: operators tagged pointwise count one FLOP per output element (``_foreach_``
  operators per element of their first list);
- ``estimate``: reductions, normalisations, softmax, pooling and losses, a small fixed number of
  FLOPs per input element, listed in :data:`PER_ELEMENT`;
- ``none``: no arithmetic at all (views, copies, fills, gathers, random numbers);
- ``unknown``: none of the above. Such calls add nothing to the totals and are reported by name,
  so a total is never silently short.

Bytes are the sizes of the tensors an operator reads and writes; views move none. Module
attribution uses torch's ``ModuleTracker``, which follows modules through backward as well.
The counter runs on one sampled step only: a dispatch mode slows every operator down.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count
from torch.utils.module_tracker import ModuleTracker

__all__ = [
    "EXTRA_FORMULAS",
    "GATHERS",
    "NO_MATH",
    "PER_ELEMENT",
    "OpCounter",
    "OpTally",
    "bytes_from_shapes",
    "estimate_from_tallies",
    "flops_from_shapes",
    "has_formula",
    "op_bytes",
    "op_flops",
    "shapes_key",
]

#: Operators that move or create data without arithmetic.
NO_MATH: frozenset[str] = frozenset(
    """
    _to_copy copy_ clone contiguous detach alias lift_fresh lift_fresh_copy empty empty_like
    empty_strided new_empty new_empty_strided zeros zeros_like ones ones_like full full_like
    new_zeros new_ones new_full fill_ zero_ scalar_tensor arange linspace cat stack index_select
    gather embedding index index_put_ index_put scatter scatter_ slice_backward select_backward
    repeat constant_pad_nd _local_scalar_dense item random_ uniform_ normal_ bernoulli_ randperm
    randint rand randn rand_like randn_like masked_select nonzero _unsafe_index sort argsort
    topk set_ resize_ _pin_memory flip roll tril triu _reshape_alias copy _record_function_enter
    _record_function_enter_new _record_function_exit
    """.split()  # noqa: SIM905 (a word list reads better than a column of strings)
)

#: Estimated FLOPs per element of the first tensor input, for operators without a formula.
PER_ELEMENT: dict[str, float] = {
    "_softmax": 5.0,
    "_log_softmax": 5.0,
    "_softmax_backward_data": 3.0,
    "_log_softmax_backward_data": 3.0,
    "native_layer_norm": 5.0,
    "native_layer_norm_backward": 8.0,
    "native_batch_norm": 5.0,
    "_native_batch_norm_legit": 5.0,
    "_native_batch_norm_legit_no_training": 5.0,
    "_native_batch_norm_legit_functional": 5.0,
    "native_batch_norm_backward": 8.0,
    "native_group_norm": 5.0,
    "native_group_norm_backward": 8.0,
    "_fused_rms_norm": 4.0,
    "max_pool2d_with_indices": 1.0,
    "max_pool2d_with_indices_backward": 1.0,
    "avg_pool2d": 1.0,
    "avg_pool2d_backward": 1.0,
    "_adaptive_avg_pool2d": 1.0,
    "_adaptive_avg_pool2d_backward": 1.0,
    "embedding_dense_backward": 1.0,
    "cumsum": 1.0,
    "where": 1.0,
    "native_dropout": 2.0,
    "nll_loss_forward": 0.0,
    "nll_loss_backward": 0.0,
    "nll_loss2d_forward": 0.0,
    "nll_loss2d_backward": 0.0,
}


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in an argument or result, lists and tuples flattened."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def shapes_key(args: tuple[Any, ...]) -> tuple[tuple[int, ...], ...]:
    """The shapes of the tensor arguments with at least one dimension, as a hashable key.

    The profiler records ``[]`` both for scalars and for 0-d tensors, so both are left out; the
    key then matches the profiler's ``input_shapes`` with its empty entries dropped.
    """
    return tuple(tuple(t.shape) for a in args for t in _tensors(a) if t.dim() > 0)


def _cpu_flash_attention(args: tuple[Any, ...]) -> int:
    query, key, value = args[:3]
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


def _cpu_flash_attention_backward(args: tuple[Any, ...]) -> int:
    grad_out, query, key, value = args[:4]
    return int(sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape))


#: Formulas for operators torch's registry lacks (its attention formulas cover the GPU kernels).
EXTRA_FORMULAS: dict[str, Callable[[tuple[Any, ...]], int]] = {
    "_scaled_dot_product_flash_attention_for_cpu": _cpu_flash_attention,
    "_scaled_dot_product_flash_attention_for_cpu_backward": _cpu_flash_attention_backward,
}


def has_formula(func: Any) -> bool:
    """Whether an operator's FLOPs come from a formula (torch's registry or ours)."""
    return func._overloadpacket in flop_registry or func._overloadpacket.__name__ in EXTRA_FORMULAS


_COMPOSITE = torch._C.DispatchKey.CompositeImplicitAutograd


@functools.cache
def _decomposable(func: Any) -> bool:
    """Whether ``func`` is a composite without a formula, to be counted through its parts."""
    return not has_formula(func) and bool(func.has_kernel_for_dispatch_key(_COMPOSITE))


def op_flops(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, str]:
    """FLOPs of one operator call and how they are known (see the module docstring)."""
    packet = func._overloadpacket
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out)), "formula"
    name = packet.__name__
    if name in EXTRA_FORMULAS:
        return EXTRA_FORMULAS[name](args), "formula"
    if func.is_view or name in NO_MATH or func.namespace == "c10d":
        # Collectives (a DDP bucket's all-reduce) move data; their cost is communication.
        return 0, "none"
    if name.startswith("_foreach_"):
        first = args[0] if args else ()
        return sum(t.numel() for t in _tensors(first)), "pointwise"
    if torch.Tag.pointwise in func.tags:
        return sum(t.numel() for t in _tensors(out)), "pointwise"
    inputs = [t for a in args for t in _tensors(a)]
    if name in PER_ELEMENT:
        return int(PER_ELEMENT[name] * inputs[0].numel()) if inputs else 0, "estimate"
    if torch.Tag.reduction in func.tags:
        return (inputs[0].numel() if inputs else 0), "estimate"
    return 0, "unknown"


#: Lookups that read only the rows they select from their first input (a table), not all of it.
GATHERS: frozenset[str] = frozenset({"embedding", "index_select"})


def op_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """Bytes an operator call reads and writes, from the sizes of its tensors; views move none.

    A lookup (:data:`GATHERS`) reads as many bytes of its table as it writes out, not the whole
    table: counting a 47 MB word-embedding table for a batch's few thousand rows put the
    embedding far below its true intensity, and its roofline point above the roof.
    """
    if func.is_view:
        return 0
    inputs = [*_tensors(args), *_tensors(tuple(kwargs.values()))]
    outputs = list(_tensors(out))
    if func._overloadpacket.__name__ in GATHERS and inputs:
        inputs = inputs[1:] + outputs
    return sum(t.numel() * t.element_size() for t in [*inputs, *outputs])


@dataclass
class OpTally:
    """One operator with one input-shape key, summed over the counted step.

    ``first_numel`` sums the elements of each call's first tensor input: FLOPs and bytes per
    such element carry over to calls of the same operator on other shapes (see
    :func:`estimate_from_tallies`).
    """

    name: str
    count: int = 0
    flops: int = 0
    bytes: int = 0
    first_numel: int = 0
    method: str = ""
    dtypes: list[str] = field(default_factory=list)


#: Matmul-family operators whose FLOPs torch's formulas compute from input shapes alone, with how
#: many leading tensor shapes each formula takes.
_SHAPE_FORMULAS: dict[str, int] = {"mm": 2, "bmm": 2, "addmm": 3, "baddbmm": 3}


def flops_from_shapes(name: str, shapes: list[Any]) -> int | None:
    """FLOPs of one call of a matmul-family operator from its profiled input shapes, else None."""
    arity = _SHAPE_FORMULAS.get(name.removeprefix("aten::"))
    tensors = [s for s in shapes if isinstance(s, list) and s]
    if arity is None or len(tensors) < arity:
        return None
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"))
    try:
        return int(flop_registry[packet](*tensors[:arity]))
    except (AssertionError, IndexError, TypeError, ValueError):
        return None  # shapes that do not multiply: leave the call uncounted


#: Bytes per element of the dtypes the profiler names.
DTYPE_BYTES: dict[str, int] = {
    "float": 4,
    "double": 8,
    "c10::BFloat16": 2,
    "c10::Half": 2,
    "long int": 8,
    "int": 4,
    "short int": 2,
    "signed char": 1,
    "unsigned char": 1,
    "bool": 1,
}


def bytes_from_shapes(name: str, shapes: list[Any], dtypes: list[str]) -> int | None:
    """Bytes one matmul-family call reads and writes, from its profiled shapes, else None."""
    arity = _SHAPE_FORMULAS.get(name.removeprefix("aten::"))
    tensors = [(s, d) for s, d in zip(shapes, dtypes, strict=False) if isinstance(s, list) and s]
    if arity is None or len(tensors) < arity:
        return None
    size = DTYPE_BYTES.get(tensors[-1][1])
    if size is None:
        return None
    a, b = tensors[arity - 2][0], tensors[arity - 1][0]
    out: list[int] = [*a[:-1], b[-1]]
    return size * (sum(math.prod(shape) for shape, _ in tensors[:arity]) + math.prod(out))


def estimate_from_tallies(
    tallies: list[OpTally], shapes: list[Any], count: int
) -> tuple[int | None, int | None]:
    """FLOPs and bytes of ``count`` calls on ``shapes``, scaled from tallies of the same operator.

    The counted step's FLOPs and bytes per element of the first tensor input, times the elements
    of this call's first input. Exact when only that input's size changes (a batch or sequence
    dimension), as between batches padded to different lengths.
    """
    counted = [t for t in tallies if t.method != "unknown" and t.first_numel > 0]
    first = next((s for s in shapes if isinstance(s, list) and s), None)
    if not counted or first is None:
        return None, None
    elements = sum(t.first_numel for t in counted)
    scale = math.prod(first) * count / elements
    return (
        int(sum(t.flops for t in counted) * scale),
        int(sum(t.bytes for t in counted) * scale),
    )


class OpCounter(TorchDispatchMode):
    """A dispatch mode that tallies FLOPs and bytes per operator, module and phase.

    Use :meth:`counting` to enter it together with the module tracker. Composite operators that
    reach the mode whole (``linear``, ``conv2d``, ``matmul``… arrive undecomposed under
    ``torch.inference_mode``) are decomposed into the operators that have formulas.

    Args:
        phase: returns the recorder's current phase name at each call.
        root: the model, whose module names (as ``named_modules`` gives them) key ``modules``.
    """

    def __init__(self, phase: Callable[[], str], root: torch.nn.Module | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's mode is unannotated
        self._phase = phase
        self._root_name = type(root).__name__ if root is not None else None
        self.tracker = ModuleTracker()
        self.paused = False
        self.ops: dict[tuple[str, tuple[tuple[int, ...], ...]], OpTally] = {}
        self.by_phase: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()
        self.modules_forward: Counter[str] = Counter()
        self.modules_backward: Counter[str] = Counter()
        self.modules_bytes_forward: Counter[str] = Counter()

    def start(self) -> None:
        """Start counting: track modules and enter the mode."""
        self.tracker.__enter__()
        self.__enter__()  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """Stop counting."""
        self.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self.tracker.__exit__(None, None, None)

    def _module_name(self, tracked: str) -> str | None:
        """Turn ModuleTracker's ``Root.a.b`` into ``a.b`` (``""`` for the root); None if outside."""
        root = self._root_name
        if root is None or tracked == "Global":
            return None
        if tracked == root:
            return ""
        prefix = root + "."
        return tracked[len(prefix) :] if tracked.startswith(prefix) else None

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not self.paused and _decomposable(func):
            # Count a composite's parts; NotImplemented means it has a kernel of its own.
            with self:
                result = func.decompose(*args, **kwargs)
            if result is not NotImplemented:
                return result
        out = func(*args, **kwargs)
        if self.paused:
            return out
        flops, method = op_flops(func, args, kwargs, out)
        name = "aten::" + func._overloadpacket.__name__
        key = (name, shapes_key(args))
        tally = self.ops.get(key)
        if tally is None:
            dtypes = [str(t.dtype).removeprefix("torch.") for a in args for t in _tensors(a)]
            tally = self.ops[key] = OpTally(name=name, method=method, dtypes=dtypes)
        nbytes = op_bytes(func, args, kwargs, out)
        first = next(_tensors(args), None)
        tally.first_numel += first.numel() if first is not None else 0
        tally.count += 1
        tally.flops += flops
        tally.bytes += nbytes
        if method == "unknown":
            self.uncounted[name] += 1
        if flops:
            self.by_phase[self._phase()] += flops
        if flops or nbytes:
            backward = self.tracker.is_bw
            modules = self.modules_backward if backward else self.modules_forward
            for tracked in self.tracker.parents:
                module = self._module_name(tracked)
                if module is not None:
                    modules[module] += flops
                    if not backward:
                        self.modules_bytes_forward[module] += nbytes
        return out

"""Layer surgery the size remedies share: removing channels, heads, FFN units and whole layers.

Every function here changes the module it is given in place (the remedies hand it their own deep
copy) and keeps the model's output shape. Three kinds of structure are shrunk:

- **Channels** (:func:`prune_channels`): the output channels of a ``Conv1d``/``Conv2d``/``Linear``
  and, with them, the matching inputs of the layers that consume them. The model's dataflow comes
  from ``torch.fx`` (or, for an ``nn.Sequential`` fx cannot trace, from the chain of its
  children). A producer is shrunk only when every path from it runs through channel-preserving
  operations (activations, dropout, BatchNorm, pooling, a flatten) into convolutions or linear
  layers; a path into an addition, a concatenation, a reshape or the model's output leaves it
  whole, so residual streams and the final classifier keep their width.
- **Attention heads and FFN units** of BERT-style transformers (:func:`attention_blocks`,
  :func:`ffn_blocks`), found by their structure (``self.query/key/value`` beside
  ``output.dense``; ``intermediate.dense`` beside ``output.dense``).
- **Layers** of a layer stack (:func:`keep_layers`), the longest ``nn.ModuleList`` of one type.

Importance is the l1 or l2 norm of the weights a unit owns. torch is imported inside functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinchpoint.errors import WorkloadError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "NORMS",
    "attention_blocks",
    "ffn_blocks",
    "keep_layers",
    "prune_channels",
    "prune_ffns",
    "prune_heads",
]

#: The importance norms a unit's weights can be scored by.
NORMS = ("l1", "l2")


def kept_count(total: int, amount: float) -> int:
    """How many of ``total`` units stay when the fraction ``amount`` is removed (at least one)."""
    return max(1, min(total, round(total * (1.0 - amount))))


def unit_importance(weight: torch.Tensor, dim: int, norm: str) -> torch.Tensor:
    """The l1 or l2 norm of each slice of ``weight`` along ``dim``: one score per unit."""
    rows = weight.detach().float().movedim(dim, 0).reshape(weight.shape[dim], -1)
    return rows.abs().sum(dim=1) if norm == "l1" else rows.pow(2).sum(dim=1).sqrt()


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The indices of the ``keep`` largest scores, in ascending index order."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True)[:keep]
    return order.sort().values


# ---------------------------------------------------------------------------------------------
# Slicing one module


def _parameter(value: torch.Tensor, like: torch.Tensor) -> nn.Parameter:
    from torch import nn

    return nn.Parameter(value.detach().clone(), requires_grad=like.requires_grad)


def _is_conv(module: Any) -> bool:
    from torch import nn

    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))


def _slice(module: Any, index: torch.Tensor, dim: int) -> None:
    """Keep only the output (``dim`` 0) or input (``dim`` 1) units ``index`` of a convolution
    (groups 1) or linear layer."""
    weight = module.weight
    assert_tensor(weight)
    module.weight = _parameter(weight.index_select(dim, index.to(weight.device)), weight)
    bias = getattr(module, "bias", None)
    if dim == 0 and bias is not None:
        module.bias = _parameter(bias.index_select(0, index.to(bias.device)), bias)
    side = "out" if dim == 0 else "in"
    setattr(module, f"{side}_channels" if _is_conv(module) else f"{side}_features", len(index))


def _slice_batch_norm(module: Any, index: torch.Tensor) -> None:
    """Keep only the channels ``index`` of a BatchNorm: its affine weights and running stats."""
    for name in ("weight", "bias"):
        value = getattr(module, name, None)
        if value is not None:
            setattr(module, name, _parameter(value.index_select(0, index.to(value.device)), value))
    for name in ("running_mean", "running_var"):
        value = getattr(module, name, None)
        if value is not None:
            setattr(module, name, value.index_select(0, index.to(value.device)).clone())
    module.num_features = len(index)


def assert_tensor(value: Any) -> None:
    """Raise ``WorkloadError`` unless ``value`` is a tensor (a module's ``weight``)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise WorkloadError(f"expected a weight tensor, found {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Channels: dataflow through torch.fx


@dataclass
class _Plan:
    """One producer to shrink and what has to shrink with it."""

    producer: str
    channels: int
    norms: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    # Linear layers after a flatten: (name, spatial positions per channel).
    blocks: list[tuple[str, int]] = field(default_factory=list)


def _activation_modules() -> tuple[type, ...]:
    from torch import nn

    return (
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.GELU,
        nn.SiLU,
        nn.Tanh,
        nn.Sigmoid,
        nn.ELU,
        nn.SELU,
        nn.CELU,
        nn.Hardswish,
        nn.Hardsigmoid,
        nn.Hardtanh,
        nn.Mish,
        nn.Softplus,
        nn.Dropout,
        nn.Dropout1d,
        nn.Dropout2d,
        nn.Dropout3d,
        nn.AlphaDropout,
        nn.Identity,
    )


def _pool_modules() -> tuple[type, ...]:
    from torch import nn

    kinds = ("Max", "Avg", "AdaptiveAvg", "AdaptiveMax")
    return tuple(getattr(nn, f"{kind}Pool{d}d") for kind in kinds for d in (1, 2, 3))


def _activation_functions() -> set[Any]:
    import torch
    from torch.nn import functional

    return {
        functional.relu,
        functional.relu6,
        functional.leaky_relu,
        functional.gelu,
        functional.silu,
        functional.elu,
        functional.selu,
        functional.hardswish,
        functional.mish,
        functional.softplus,
        functional.dropout,
        functional.tanh,
        functional.sigmoid,
        torch.relu,
        torch.tanh,
        torch.sigmoid,
    }


def _pool_functions() -> set[Any]:
    from torch.nn import functional

    kinds = ("max", "_max", "avg", "adaptive_avg")
    names = [f"{kind}_pool{d}d" for kind in kinds for d in (1, 2, 3)]
    names += [f"{kind}_pool{d}d" for kind in ("adaptive_max", "_adaptive_max") for d in (1, 2)]
    found = (getattr(functional, name, None) for name in names)
    return {fn for fn in found if fn is not None}


_ELEMENTWISE_METHODS = frozenset({"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"})


def dataflow_graph(model: nn.Module) -> Any:
    """The ``torch.fx`` graph of ``model``; for an untraceable ``nn.Sequential``, its chain.

    Raises:
        WorkloadError: fx cannot trace the model and it is not an ``nn.Sequential``.
    """
    import torch
    from torch import fx, nn

    try:
        with torch.no_grad():
            return fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many kinds (TraceError, TypeError...) on dynamic code
        if not isinstance(model, nn.Sequential):
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise WorkloadError(
                f"cannot trace {type(model).__name__} with torch.fx ({reason}); structured "
                "channel pruning needs an fx-traceable model or an nn.Sequential"
            ) from None
    graph = fx.Graph()
    value = graph.placeholder("input")
    for name, _ in _sequential_leaves(model, ""):
        value = graph.call_module(name, (value,))
    graph.output(value)
    return graph


def _sequential_leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """The children of nested ``nn.Sequential`` modules in call order, with qualified names."""
    from torch import nn

    for name, child in module.named_children():
        qualified = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _sequential_leaves(child, f"{qualified}.")
        else:
            yield qualified, child


def _is_producer(module: Any, linear_only: bool) -> bool:
    from torch import nn

    if isinstance(module, nn.Linear):
        return True
    return (
        not linear_only
        and isinstance(module, (nn.Conv1d, nn.Conv2d))
        and module.groups == 1
        and not module.transposed
    )


def _only_input(node: Any, value: Any) -> bool:
    """Whether ``value`` is ``node``'s first argument and no other argument is a graph value."""
    from torch import fx

    if not node.args or node.args[0] is not value:
        return False
    others: list[Any] = []
    fx.node.map_arg((node.args[1:], node.kwargs), others.append)
    return not others


def _flatten_from_dim_one(node: Any) -> bool:
    """Whether a flatten / view node flattens every dimension from the second on."""
    import torch

    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return bool(start == 1 and end == -1)
    if node.op == "call_method" and node.target in ("view", "reshape"):
        # x.view(x.size(0), -1): the batch size, then everything else in one dimension.
        return len(node.args) == 3 and node.args[2] == -1 and not node.kwargs
    return False


def _is_batch_size_query(node: Any, value: Any) -> bool:
    """Whether ``node`` reads ``value``'s batch size (``x.size(0)``), which pruning keeps."""
    return (
        node.op == "call_method"
        and node.target == "size"
        and tuple(node.args) == (value, 0)
        and not node.kwargs
    )


def _follow(
    start: Any, layout: str, channels: int, modules: dict[str, Any], calls: dict[str, int]
) -> _Plan | None:
    """What must shrink with the producer at ``start``, or None when a path blocks it.

    ``layout`` is where the channels are: ``"first"`` (dimension 1 of a conv output),
    ``"last"`` (the feature dimension of a linear output) or ``"blocks"`` (flattened, each
    channel a run of spatial positions).
    """
    from torch import nn

    plan = _Plan(producer=str(start.target), channels=channels)
    activation_modules, pool_modules = _activation_modules(), _pool_modules()
    activation_functions, pool_functions = _activation_functions(), _pool_functions()
    pending: list[tuple[Any, str]] = [(start, layout)]
    while pending:
        value, where = pending.pop()
        users = list(value.users)
        size_queries = [u for u in users if _is_batch_size_query(u, value)]
        for user in users:
            if user in size_queries:
                continue
            if user.op == "call_module":
                module = modules.get(str(user.target))
                if module is None or calls[str(user.target)] > 1 or not _only_input(user, value):
                    return None
                if isinstance(module, activation_modules):
                    pending.append((user, where))
                elif isinstance(module, pool_modules) and where == "first":
                    if getattr(module, "return_indices", False):
                        return None
                    pending.append((user, where))
                elif (
                    isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
                    and where in ("first", "last")
                    and module.num_features == channels
                ):
                    plan.norms.append(str(user.target))
                    pending.append((user, where))
                elif isinstance(module, nn.Flatten) and where == "first":
                    if module.start_dim != 1 or module.end_dim != -1:
                        return None
                    pending.append((user, "blocks"))
                elif (
                    isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
                    and where == "first"
                    and module.groups == 1
                    and not module.transposed
                    and module.in_channels == channels
                ):
                    plan.inputs.append(str(user.target))
                elif isinstance(module, nn.Linear) and where == "last":
                    if module.in_features != channels:
                        return None
                    plan.inputs.append(str(user.target))
                elif isinstance(module, nn.Linear) and where == "blocks":
                    if module.in_features % channels:
                        return None
                    plan.blocks.append((str(user.target), module.in_features // channels))
                else:
                    return None
            elif user.op in ("call_function", "call_method"):
                if _flatten_from_dim_one(user) and where == "first" and user.args[0] is value:
                    pending.append((user, "blocks"))
                elif _only_input(user, value) and (
                    # Method targets are names, function targets functions: no set holds both.
                    user.target in _ELEMENTWISE_METHODS
                    or user.target in activation_functions
                    or (user.target in pool_functions and where == "first")
                ):
                    pending.append((user, where))
                else:
                    return None
            else:
                # The graph's output, or anything else: this producer's width is visible.
                return None
        if size_queries and not any(_flatten_from_dim_one(u) for u in users):
            return None
    return plan


def channel_plans(model: nn.Module, *, linear_only: bool = False) -> list[_Plan]:
    """The producers of ``model`` whose output channels can be removed, with what follows them."""
    from torch import nn

    graph = dataflow_graph(model)
    modules = dict(model.named_modules())
    calls = Counter(str(node.target) for node in graph.nodes if node.op == "call_module")
    plans = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        name = str(node.target)
        module = modules.get(name)
        if module is None or calls[name] > 1 or not _is_producer(module, linear_only):
            continue
        if isinstance(module, nn.Linear):
            layout, channels = "last", module.out_features
        else:
            layout, channels = "first", module.out_channels
        plan = _follow(node, layout, channels, modules, calls)
        if plan is not None and (plan.inputs or plan.blocks):
            plans.append(plan)
    return plans


def prune_channels(
    model: nn.Module, amount: float, norm: str, *, linear_only: bool = False
) -> list[str]:
    """Remove the fraction ``amount`` of the output channels of every prunable layer.

    Each producer keeps its channels of largest weight norm (scored before any layer is cut),
    and its BatchNorms and consumers lose the matching channels / inputs. Returns the names of
    the shrunk producers.

    Raises:
        WorkloadError: the model cannot be traced, or no layer can be shrunk.
    """
    import torch

    plans = channel_plans(model, linear_only=linear_only)
    modules = dict(model.named_modules())
    kept: list[tuple[_Plan, torch.Tensor]] = []
    for plan in plans:
        keep = kept_count(plan.channels, amount)
        if keep < plan.channels:
            weight = modules[plan.producer].weight
            kept.append((plan, _top(unit_importance(weight, 0, norm), keep)))
    if not kept:
        kind = "hidden Linear layer" if linear_only else "convolution or hidden Linear layer"
        raise WorkloadError(
            f"{type(model).__name__} has no {kind} whose outputs only feed other layers, "
            f"so there is nothing to prune at amount {amount:g}"
        )
    with torch.no_grad():
        for plan, index in kept:
            _slice(modules[plan.producer], index, 0)
            for name in plan.norms:
                _slice_batch_norm(modules[name], index)
            for name in plan.inputs:
                _slice(modules[name], index, 1)
            for name, positions in plan.blocks:
                # Channel c of a flattened (N, C, *spatial) map is the run c*S .. c*S + S - 1.
                offsets = torch.arange(positions, device=index.device)
                _slice(modules[name], (index[:, None] * positions + offsets).flatten(), 1)
    return [plan.producer for plan, _ in kept]


# ---------------------------------------------------------------------------------------------
# Transformers: attention heads, FFN units, layers


def attention_blocks(model: nn.Module) -> list[tuple[Any, Any]]:
    """The BERT-style attentions of ``model``: (self-attention, output projection) pairs.

    A self-attention has ``query``/``key``/``value`` linear layers and the attributes
    ``num_attention_heads``, ``attention_head_size`` and ``all_head_size``; its sibling
    ``output.dense`` takes the concatenated heads.
    """
    from torch import nn

    blocks = []
    for module in model.modules():
        attention = getattr(module, "self", None)
        output = getattr(getattr(module, "output", None), "dense", None)
        if (
            isinstance(attention, nn.Module)
            and isinstance(output, nn.Linear)
            and all(
                isinstance(getattr(attention, name, None), nn.Linear)
                for name in ("query", "key", "value")
            )
            and all(
                isinstance(getattr(attention, name, None), int)
                for name in ("num_attention_heads", "attention_head_size", "all_head_size")
            )
        ):
            blocks.append((attention, output))
    return blocks


def head_importance(attention: Any, output: Any, norm: str) -> torch.Tensor:
    """One score per head: the norm of its query, key, value rows and output-projection columns."""
    import torch

    heads = int(attention.num_attention_heads)
    size = int(attention.attention_head_size)
    parts = []
    for name in ("query", "key", "value"):
        weight = getattr(attention, name).weight.detach().float()
        parts.append(weight.reshape(heads, size * weight.shape[1]))
    out = output.weight.detach().float()
    parts.append(out.reshape(out.shape[0], heads, size).permute(1, 0, 2).reshape(heads, -1))
    return unit_importance(torch.cat(parts, dim=1), 0, norm)


def shrink_heads(attention: Any, output: Any, heads: torch.Tensor) -> None:
    """Keep only the attention heads ``heads`` (ascending indices) of one attention block."""
    import torch

    size = int(attention.attention_head_size)
    rows = (heads[:, None] * size + torch.arange(size, device=heads.device)).flatten()
    with torch.no_grad():
        for name in ("query", "key", "value"):
            _slice(getattr(attention, name), rows, 0)
        _slice(output, rows, 1)
    # transformers' BertSelfAttention reshapes to (-1, head size), so the head count follows the
    # projections; the attributes are kept true for any code that reads them.
    attention.num_attention_heads = len(heads)
    attention.all_head_size = len(heads) * size


def prune_heads(model: nn.Module, amount: float, norm: str) -> int:
    """Remove the fraction ``amount`` of the attention heads of every layer (one always stays).

    Returns the number of heads removed.

    Raises:
        WorkloadError: the model has no BERT-style attention.
    """
    blocks = attention_blocks(model)
    if not blocks:
        raise WorkloadError(
            f"{type(model).__name__} has no BERT-style attention (self.query/key/value beside "
            "output.dense) whose heads could be pruned"
        )
    removed = 0
    for attention, output in blocks:
        heads = int(attention.num_attention_heads)
        keep = kept_count(heads, amount)
        if keep < heads:
            shrink_heads(attention, output, _top(head_importance(attention, output, norm), keep))
            removed += heads - keep
    return removed


def ffn_blocks(model: nn.Module) -> list[tuple[nn.Linear, nn.Linear]]:
    """The BERT-style feed-forward blocks: (``intermediate.dense``, ``output.dense``) pairs."""
    from torch import nn

    blocks = []
    for module in model.modules():
        up = getattr(getattr(module, "intermediate", None), "dense", None)
        down = getattr(getattr(module, "output", None), "dense", None)
        if (
            isinstance(up, nn.Linear)
            and isinstance(down, nn.Linear)
            and up.out_features == down.in_features
        ):
            blocks.append((up, down))
    return blocks


def prune_ffns(model: nn.Module, amount: float, norm: str) -> int:
    """Remove the fraction ``amount`` of the hidden units of every transformer FFN.

    A unit's importance is the norm of its ``intermediate.dense`` row and ``output.dense``
    column. Returns the number of units removed; 0 when the model has no such FFN.
    """
    import torch

    removed = 0
    for up, down in ffn_blocks(model):
        keep = kept_count(up.out_features, amount)
        if keep == up.out_features:
            continue
        scores = torch.cat([up.weight.detach().float(), down.weight.detach().float().t()], dim=1)
        index = _top(unit_importance(scores, 0, norm), keep)
        removed += up.out_features - keep
        with torch.no_grad():
            _slice(up, index, 0)
            _slice(down, index, 1)
    sizes = {up.out_features for up, _ in ffn_blocks(model)}
    config: Any = getattr(model, "config", None)
    if removed and len(sizes) == 1 and hasattr(config, "intermediate_size"):
        # Every FFN has the same width, so the config can still describe the model.
        config.intermediate_size = sizes.pop()
    return removed


def layer_stack(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList] | None:
    """The model's layer stack: the longest ``nn.ModuleList`` of 2+ modules of one type.

    Returns (its parent, its attribute name, the list), or None when there is none.
    """
    from torch import nn

    best: tuple[nn.Module, str, nn.ModuleList] | None = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if (
                isinstance(child, nn.ModuleList)
                and len(child) >= 2
                and len({type(layer) for layer in child}) == 1
                and (best is None or len(child) > len(best[2]))
            ):
                best = (parent, name, child)
    return best


def keep_layers(model: nn.Module, count: int) -> list[int]:
    """Keep ``count`` evenly spaced layers of the model's layer stack; returns their indices.

    The last layer is always kept (it feeds the output); a ``layer_idx`` attribute (transformers'
    cache index) is renumbered and ``config.num_hidden_layers`` updated where present.

    Raises:
        WorkloadError: the model has no layer stack, or fewer than ``count`` layers.
    """
    from torch import nn

    found = layer_stack(model)
    if found is None:
        raise WorkloadError(
            f"{type(model).__name__} has no stack of layers (an nn.ModuleList of one layer type) "
            "to keep some of"
        )
    parent, name, stack = found
    total = len(stack)
    if count > total:
        raise WorkloadError(f"cannot keep {count} layers of a stack of {total}")
    index = [round((i + 1) * total / count) - 1 for i in range(count)]
    kept = nn.ModuleList(stack[i] for i in index)
    for position, layer in enumerate(kept):
        module: Any
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position
    setattr(parent, name, kept)
    config: Any = getattr(model, "config", None)
    if hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = count
    return index

"""The remedy base: a config object per technique, a registered handler, and one verb, ``apply``.

A remedy is a frozen dataclass (its settings, validated with a clear ``ValueError`` on
construction) plus a handler ``handler(workload, config) -> Workload`` registered for that class.
:func:`apply` dispatches through the registry and returns a new :class:`~pinchpoint.Workload`;
the caller's workload, model and optimizer are never changed in place.

Config modules must stay importable without torch (``import pinchpoint.remedies`` is cheap); the
handlers import torch when they run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pinchpoint import codec
from pinchpoint.workload import Mode, Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine

__all__ = [
    "RemedyConfig",
    "apply",
    "bool_setting",
    "capability_number",
    "clone_workload",
    "config_from_dict",
    "finite",
    "handler",
    "int_setting",
    "registered",
    "whole",
]

C = TypeVar("C", bound="RemedyConfig")
Handler = Callable[[Workload, Any], Workload]


@dataclass(frozen=True)
class RemedyConfig(codec.Saved):
    """The settings of one remedy; subclasses are frozen dataclasses with a registered handler.

    Class attributes a subclass sets:
        name: the registry key, also the ``"remedy"`` field of :meth:`to_dict`.
        modes: the workload modes it applies to (``"infer"``, ``"train"``).
        addresses: the catalog remedy names (``analyzers/_catalog.py``) this config implements,
            so the optimizer can go from a finding's remedies to configs to try.
    """

    name: ClassVar[str] = ""
    modes: ClassVar[tuple[Mode, ...]] = ("infer", "train")
    addresses: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line message when a setting is out of range."""

    def gate(self, machine: Machine) -> str | None:
        """Why this remedy will not be fast on ``machine`` (it may still be tried), or None."""
        return None

    def label(self) -> str:
        """A short stable label, e.g. ``quantize(method=dynamic-int8)``."""
        settings = ", ".join(f"{k}={_short(v)}" for k, v in self.settings().items())
        return f"{self.name}({settings})" if settings else self.name

    def short_label(self) -> str:
        """The label with the first setting (the method, the dtype…) and only the others that
        differ from their defaults, for display."""
        changed = {
            f.name: getattr(self, f.name)
            for i, f in enumerate(dataclasses.fields(self))
            if i == 0 or f.default is dataclasses.MISSING or getattr(self, f.name) != f.default
        }
        settings = ", ".join(f"{k}={_short(_jsonable(v))}" for k, v in changed.items())
        return f"{self.name}({settings})" if settings else self.name

    def settings(self) -> dict[str, Any]:
        """The config's fields as JSON-ready values."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"remedy": self.name, **data}  # the registry key, which config_from_dict reads


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def whole(value: Any, least: int) -> bool:
    """Whether ``value`` is an int (not a bool) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_setting(owner: str, name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless setting ``name`` of ``owner`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, not {value}")


def bool_setting(owner: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless the setting ``owner.name`` is True, False or None."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True, False or None, not {value!r}")


def capability_number(machine: Machine) -> float | None:
    """The GPU's compute capability as a number (8.0 for "8.0"), or None without a GPU."""
    if not machine.gpu:
        return None
    try:
        return float(str(machine.gpu.get("capability", "")))
    except ValueError:
        return None


_REGISTRY: dict[str, tuple[type[RemedyConfig], Handler]] = {}


def handler(config_type: type[C]) -> Callable[[Callable[[Workload, C], Workload]], Any]:
    """Register the decorated function as the handler of ``config_type``."""
    if not config_type.name:
        raise ValueError(f"{config_type.__name__} has no name")

    def register(fn: Callable[[Workload, C], Workload]) -> Callable[[Workload, C], Workload]:
        existing = _REGISTRY.get(config_type.name)
        if existing is not None and existing[0] is not config_type:
            raise ValueError(f"remedy name {config_type.name!r} is already registered")
        _REGISTRY[config_type.name] = (config_type, fn)
        return fn

    return register


def registered() -> dict[str, type[RemedyConfig]]:
    """Every registered remedy config class, by name."""
    return {name: entry[0] for name, entry in sorted(_REGISTRY.items())}


def config_from_dict(data: Mapping[str, Any]) -> RemedyConfig:
    """The config that :meth:`RemedyConfig.to_dict` wrote (``{"remedy": name, ...}``)."""
    name = data.get("remedy")
    if name not in _REGISTRY:
        raise ValueError(f"unknown remedy {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    config_type = _REGISTRY[str(name)][0]
    known = {f.name: f for f in dataclasses.fields(config_type)}
    unknown = sorted(set(data) - set(known) - {"remedy"})
    if unknown:
        raise ValueError(f"remedy {name!r} has no setting {unknown[0]!r}")
    return codec.decode(config_type, data)


def apply(workload: Workload, *remedies: RemedyConfig) -> Workload:
    """A new workload with ``remedies`` applied in order; ``workload`` itself is unchanged.

    Raises:
        ValueError: a remedy is not registered or does not apply to the workload's mode.
    """
    for remedy in remedies:
        if not isinstance(remedy, RemedyConfig):
            raise ValueError(f"not a remedy config: {remedy!r}")
        entry = _REGISTRY.get(remedy.name)
        if entry is None or not isinstance(remedy, entry[0]):
            raise ValueError(f"no handler is registered for {type(remedy).__name__}")
        if workload.mode not in remedy.modes:
            raise ValueError(
                f"{remedy.label()} applies to {' and '.join(remedy.modes)} workloads, "
                f"and {workload.name!r} is a {workload.mode} workload"
            )
        result = entry[1](workload, remedy)
        workload = dataclasses.replace(result, applied=(*workload.applied, remedy.label()))
    return workload


def clone_workload(workload: Workload, **changes: Any) -> Workload:
    """A copy of ``workload`` with its own deep copy of the model (unless ``model`` is given).

    A training workload's optimizer is rebuilt over the new model's parameters, with the same
    class and per-group settings, so stepping it never touches the caller's model. Other fields
    are shared (data, loss, evaluate) unless given in ``changes``.
    """
    import copy

    model = changes.pop("model", None)
    if model is None:
        model = copy.deepcopy(workload.model)
    if "optimizer" not in changes and workload.optimizer is not None:
        changes["optimizer"] = rebind_optimizer(workload.optimizer, workload.model, model)
    return dataclasses.replace(workload, model=model, **changes)


def rebind_optimizer(optimizer: Any, old_model: Any, new_model: Any, **overrides: Any) -> Any:
    """A new optimizer of ``optimizer``'s class over ``new_model``'s parameters, with no state.

    Parameters are matched by name: one of ``new_model`` takes the settings of the group that
    held the same-named parameter of ``old_model`` (the first group when there is none, as for a
    layer a remedy created). ``overrides`` (``lr=…``, ``foreach=True``…) replace a setting in
    every group.
    """
    import inspect

    group_of: dict[str, int] = {}
    names = {id(p): n for n, p in old_model.named_parameters()}
    for position, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            if id(p) in names:
                group_of[names[id(p)]] = position
    members: list[list[Any]] = [[] for _ in optimizer.param_groups]
    for name, p in new_model.named_parameters():
        members[group_of.get(name, 0)].append(p)
    groups = [
        {**{k: v for k, v in group.items() if k != "params"}, **overrides, "params": params}
        for group, params in zip(optimizer.param_groups, members, strict=True)
        if params
    ]
    # Some classes keep settings in ``defaults`` that their constructor does not take (AdamW's
    # decoupled_weight_decay); the groups carry them anyway.
    accepted = inspect.signature(type(optimizer)).parameters
    defaults = {k: v for k, v in {**optimizer.defaults, **overrides}.items() if k in accepted}
    return type(optimizer)(groups, **defaults)

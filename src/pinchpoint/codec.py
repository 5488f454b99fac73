"""The codec of saved results: a dataclass to JSON-ready data and back, by its fields' types.

One encoder and one decoder serve every saved dataclass, so that a field cannot be written in one
direction only: what a class saves is its fields, each converted by its type hint (nested
dataclasses, lists, tuples, dicts, ``X | None``, int, float, str, bool, ``Literal``; ``Any`` is
kept as it is). A class says only what is special about it:

- a field's :class:`Rule`, through ``dataclasses.field(metadata=...)`` and the helpers below:
  :func:`omit_none` (a key newer files write only when set, so older files stay as they were),
  :func:`not_saved` (derived or transient data), :func:`missing_as` (what an absent key of a
  required field reads as), :func:`nonfinite_null` (NaN and infinity written as null), and
  :func:`custom` (an encoder and decoder pair for the odd field);
- a :class:`Document` class attribute ``saved_as`` on a top-level result: its ``schema`` (the
  version, written first and checked on read) and its name in error messages;
- a ``_saving`` method that post-processes the encoded dict: keys in another order than the
  fields, derived keys for readers of the file (a ``summary``), which reading ignores.

Floats that are not finite are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (JSON has no such numbers) and read back. Unknown keys are ignored on read,
absent ones take the field's default; a missing required key or a value of the wrong type is a
:class:`FormatError`, which names where in the data it is.

The :class:`Saved` mixin gives a class its ``to_dict``/``from_dict`` from :func:`encode` and
:func:`decode`. This module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import orjson

from pinchpoint._io import atomic_write_bytes, read_json
from pinchpoint.errors import ProfileFormatError

__all__ = [
    "Document",
    "FormatError",
    "Rule",
    "Saved",
    "arrange",
    "custom",
    "decode",
    "encode",
    "float_in",
    "float_out",
    "missing_as",
    "nonfinite_null",
    "not_saved",
    "omit_none",
]

S = TypeVar("S", bound="Saved")
T = TypeVar("T")

#: The metadata key under which a field's :class:`Rule` is kept.
KEY = "pinchpoint.codec"


class _Required:
    """The :attr:`Rule.missing` of a field whose key a file must have."""

    def __repr__(self) -> str:
        return "REQUIRED"


_REQUIRED: Any = _Required()
_NONE = type(None)


class FormatError(ProfileFormatError, ValueError):
    """Saved data that does not fit its dataclass: a missing key, a value of the wrong type.

    A ValueError too, so that callers that turn a reader's ValueError into their own message
    (a calibration cache, a comparison's reader) go on doing so.
    """


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one field is saved (the default: written always, read by its type hint).

    Attributes:
        save: False for a field that is neither written nor read (derived, or transient).
        omit_none: the key is written only when the value is not None.
        missing: what an absent key reads as, for a field the constructor requires.
        nonfinite: when set, non-finite floats in the field are written as null, and null is
            read as this value (the convention of the trial records).
        encode: writes the value instead of the type hint's conversion.
        decode: reads the saved value instead of the type hint's conversion.
    """

    save: bool = True
    omit_none: bool = False
    missing: Any = _REQUIRED
    nonfinite: float | None = None
    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None


def _rule(**settings: Any) -> dict[str, Rule]:
    return {KEY: Rule(**settings)}


def omit_none() -> dict[str, Rule]:
    """Field metadata: the key is written only when the value is not None."""
    return _rule(omit_none=True)


def not_saved() -> dict[str, Rule]:
    """Field metadata: the field is neither written nor read (it takes its default)."""
    return _rule(save=False)


def missing_as(value: Any) -> dict[str, Rule]:
    """Field metadata: a file without the key reads it as ``value`` (files older than it)."""
    return _rule(missing=value)


def nonfinite_null(read_as: float = math.nan) -> dict[str, Rule]:
    """Field metadata: NaN and infinities are written as null, and null reads as ``read_as``."""
    return _rule(nonfinite=read_as)


def custom(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> dict[str, Rule]:
    """Field metadata: the value is written by ``encode`` and read back by ``decode``."""
    return _rule(encode=encode, decode=decode)


@dataclasses.dataclass(frozen=True)
class Document:
    """What a top-level saved result writes besides its fields: the schema that versions it.

    ``schema`` is written first (``pinchpoint.profile/1``) and a file of another schema is
    refused on read; ``what`` names the type in messages (``not a pinchpoint profile``).
    """

    schema: str
    what: str


def float_out(value: float | None) -> float | str | None:
    """A float for JSON: NaN and infinities as strings, so that a diverging loss survives."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def float_in(value: Any) -> float:
    """A float from JSON, strings written by :func:`float_out` included. An integer stays one
    (an int is a float to the type hints), so that a file re-saved is the file read."""
    if isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return value


@dataclasses.dataclass(frozen=True)
class _Slot:
    """One saved field: its name, resolved type hint, rule and default (or _REQUIRED)."""

    name: str
    hint: Any
    rule: Rule
    default: Callable[[], Any] | None


_SLOTS: dict[type, tuple[_Slot, ...]] = {}


def _slots(cls: type) -> tuple[_Slot, ...]:
    """The saved fields of a dataclass (worked out once per class)."""
    known = _SLOTS.get(cls)
    if known is not None:
        return known
    slots = []
    for f in dataclasses.fields(cls):
        rule = f.metadata.get(KEY, Rule())
        if not rule.save:
            continue  # its type may be one its module imports for type checking only
        default: Callable[[], Any] | None = None
        if f.default is not dataclasses.MISSING:
            default = (lambda v: lambda: v)(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        elif rule.missing is not _REQUIRED:
            default = (lambda v: lambda: v)(rule.missing)
        slots.append(_Slot(f.name, _hint(cls, f), rule, default))
    _SLOTS[cls] = tuple(slots)
    return _SLOTS[cls]


def _hint(cls: type, f: dataclasses.Field[Any]) -> Any:
    """A field's type hint, evaluated in the module of the class that declares it."""
    if not isinstance(f.type, str):
        return f.type
    owner = next(c for c in cls.__mro__ if f.name in inspect.get_annotations(c))
    return eval(f.type, vars(sys.modules[owner.__module__]))  # the module's own annotation


def encode(obj: Any) -> dict[str, Any]:
    """A dataclass instance as JSON-ready data: its schema first (a :class:`Document`), then
    its saved fields by their type hints, then its ``_saving`` hook's changes."""
    cls = type(obj)
    data: dict[str, Any] = {}
    doc = getattr(cls, "saved_as", None)
    if isinstance(doc, Document):
        data["schema"] = doc.schema
    for slot in _slots(cls):
        value = getattr(obj, slot.name)
        if slot.rule.omit_none and value is None:
            continue
        if slot.rule.encode is not None:
            data[slot.name] = slot.rule.encode(value)
        else:
            data[slot.name] = _out(value, slot.hint, slot.rule.nonfinite is not None)
    hook = getattr(obj, "_saving", None)
    return hook(data) if hook is not None else data


def _out(value: Any, hint: Any, null: bool) -> Any:
    """``value`` as JSON-ready data, by its type hint (``null``: non-finite floats as null)."""
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        rest = [a for a in args if a is not _NONE]
        return _out(value, rest[0], null) if len(rest) == 1 else value
    if dataclasses.is_dataclass(hint):
        return encode(value)
    if hint is float:
        value = value if type(value) in (float, int) else float(value)  # numpy scalars
        if null:
            return value if math.isfinite(value) else None
        return float_out(value)
    if hint is int:
        return value if type(value) is int else int(value)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return [_out(v, args[0], null) for v in value]
    if origin is tuple:
        return [_out(v, h, null) for v, h in zip(value, args, strict=True)]
    if origin is dict:
        return {k: _out(v, args[1], null) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Any, where: str = "") -> T:
    """The ``cls`` instance that :func:`encode` wrote as ``data``.

    Raises:
        FormatError: for data that is not such a record; for a :class:`Document` type it reads
            ``not a pinchpoint WHAT (...)`` or ``broken pinchpoint WHAT: ...``, on one line.
    """
    doc = getattr(cls, "saved_as", None)
    if not isinstance(doc, Document):
        return _decode(cls, data, where)
    if not isinstance(data, Mapping):
        raise FormatError(f"not a pinchpoint {doc.what}: the JSON is not an object")
    schema = data.get("schema")
    if schema != doc.schema:
        found = f"schema {schema!r}" if schema else "no schema field"
        raise FormatError(f"not a pinchpoint {doc.what} ({found}; expected {doc.schema!r})")
    try:
        return _decode(cls, data, where)
    except (FormatError, TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = str(exc) if isinstance(exc, FormatError) else f"{type(exc).__name__}: {exc}"
        raise FormatError(f"broken pinchpoint {doc.what}: {detail}") from exc


def _decode(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, Mapping):
        raise FormatError(f"{where or 'the data'}: {_shown(data)} where a record belongs")
    values: dict[str, Any] = {}
    for slot in _slots(cls):
        at = f"{where}.{slot.name}" if where else slot.name
        if slot.name not in data:
            if slot.default is None:
                raise FormatError(f"missing key {at!r}")
            values[slot.name] = slot.default()
        elif slot.rule.decode is not None:
            try:
                values[slot.name] = slot.rule.decode(data[slot.name])
            except (TypeError, ValueError, KeyError) as exc:
                raise FormatError(f"{at}: {type(exc).__name__}: {exc}") from exc
        else:
            values[slot.name] = _in(data[slot.name], slot.hint, at, slot.rule.nonfinite)
    try:
        return cls(**values)
    except TypeError as exc:  # a class's own ValueError (its validation) keeps its words
        raise FormatError(f"{where or cls.__name__}: {exc}") from exc


def _in(value: Any, hint: Any, where: str, nonfinite: float | None) -> Any:
    """The saved ``value`` read by its type hint."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        if value is None and _NONE in args:
            return None
        rest = [a for a in args if a is not _NONE]
        return _in(value, rest[0], where, nonfinite) if len(rest) == 1 else value
    if value is None and hint is float and nonfinite is not None:
        return nonfinite
    if dataclasses.is_dataclass(hint):
        return _decode(typing.cast(type, hint), value, where)
    try:
        if hint is float:
            return float_in(value)
        if hint is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if hint in (str, bool) and isinstance(value, hint):
            return value
        if origin is Literal and value in args:
            return value
        if origin is list and isinstance(value, list):
            return [_in(v, args[0], f"{where}[{i}]", nonfinite) for i, v in enumerate(value)]
        if origin is tuple and isinstance(value, list | tuple):
            if len(args) == 2 and args[1] is Ellipsis:
                args = (args[0],) * len(value)
            if len(args) == len(value):
                return tuple(
                    _in(v, h, f"{where}[{i}]", nonfinite)
                    for i, (v, h) in enumerate(zip(value, args, strict=True))
                )
        if origin is dict and isinstance(value, Mapping):
            key = args[0]
            return {
                (int(k) if key is int else k): _in(v, args[1], f"{where}.{k}", nonfinite)
                for k, v in value.items()
            }
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{where}: {exc}") from exc
    raise FormatError(f"{where}: {_shown(value)} where {_named(hint)} belongs")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _named(hint: Any) -> str:
    return f"a {hint.__name__}" if isinstance(hint, type) else f"a {hint}"


def arrange(data: dict[str, Any], order: str, **derived: Any) -> dict[str, Any]:
    """``data`` and the ``derived`` keys, those ``order`` names (space-separated) first and in
    its order, then the rest of ``data``, then the rest of ``derived``: for a ``_saving`` hook
    whose file's keys are in another order than the class's fields."""
    keys = [k for k in order.split() if k in derived or k in data]
    out = {k: derived[k] if k in derived else data[k] for k in keys}
    out.update((k, v) for k, v in data.items() if k not in out)
    out.update((k, v) for k, v in derived.items() if k not in out)
    return out


class Saved:
    """A mixin for saved dataclasses: ``to_dict``/``from_dict`` by :func:`encode`/:func:`decode`,
    and for a top-level result its file (``to_json``, ``save``, ``load``).

    A ``saved_as`` :class:`Document` makes the class a top-level result with a schema; a
    ``_saving`` method (taking and returning the encoded dict) changes what is written.
    """

    saved_as: ClassVar[Document | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The object as JSON-ready data (see :mod:`pinchpoint.codec`)."""
        return encode(self)

    @classmethod
    def from_dict(cls: type[S], data: Any) -> S:
        """The object :meth:`to_dict` wrote; :class:`FormatError` for data that is not one."""
        return decode(cls, data)

    def to_json(self) -> bytes:
        """The object as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def save(self, path: str | Path) -> Path:
        """Write the object as JSON to ``path`` atomically (never a half-written file)."""
        return atomic_write_bytes(path, self.to_json())

    @classmethod
    def load(cls: type[S], path: str | Path) -> S:
        """Read an object saved by :meth:`save`; ProfileFormatError, on one line, if it cannot."""
        return cls.from_dict(read_json(path))

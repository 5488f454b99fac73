"""Every saved result, one interface: the :class:`Result` protocol and the schema registry.

A result is what a command produces and saves: a Profile, a Diagnosis, a trace analysis, a
comparison, an optimize result, an LR range test, a scaling measurement. Each is saved as JSON
whose ``schema`` field (``pinchpoint.KIND/VERSION``) names its type, and each type is registered
here once (:func:`register`), with its class named by module and attribute so that nothing is
imported until a file of that kind is read. Everything that must tell results apart asks this
registry: :func:`load_result` reads any saved file (or a profiler trace, or an optimize folder),
:func:`kind_of` names what an object or a file's data is, and the report builders register per
kind (:mod:`pinchpoint.report`), as remedies register handlers.

A new result type adds one :func:`register` call below and, for an HTML report, one builder.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pinchpoint._io import read_json
from pinchpoint.errors import ProfileFormatError, TraceFormatError

__all__ = [
    "Result",
    "ResultType",
    "decode",
    "is_trace",
    "kind_of",
    "listing",
    "load_result",
    "register",
    "result_type",
    "saved_path",
    "types",
]


@runtime_checkable
class Result(Protocol):
    """What every saved result has: its JSON form (carrying its ``schema``) and a way to save it."""

    def to_dict(self) -> dict[str, Any]: ...

    def save(self, path: str | Path) -> Path: ...


@dataclass(frozen=True)
class ResultType:
    """One registered result type.

    Attributes:
        kind: its short name (``profile``, ``trace``…), as reports and the CLI call it.
        schema: the schema it writes now (``pinchpoint.profile/1``); files of any version of the
            same family are recognised, and their reader decides what it can load.
        module, name: where its class lives (imported on first use).
        what: a reader's words for it, for messages ("a trace analysis").
    """

    kind: str
    schema: str
    module: str
    name: str
    what: str

    @property
    def noun(self) -> str:
        """:attr:`what` without its article: ``trace analysis``."""
        return self.what.partition(" ")[2]

    @property
    def family(self) -> str:
        """The schema without its version: ``pinchpoint.profile``."""
        return self.schema.rpartition("/")[0]

    def cls(self) -> type:
        """The result's class (importing its module)."""
        return getattr(importlib.import_module(self.module), self.name)  # type: ignore[no-any-return]

    def is_instance(self, value: object) -> bool:
        """Whether ``value`` is of this type, without importing a module no object can come from."""
        loaded = sys.modules.get(self.module)
        return loaded is not None and isinstance(value, getattr(loaded, self.name))

    def decode(self, data: Mapping[str, Any], source: str = "the data") -> Any:
        """The result in ``data`` (this type's saved form), by its class's ``from_dict``; a file
        that is broken or of an unreadable version fails in one line."""
        decode: Callable[[Mapping[str, Any]], Any] = self.cls().from_dict  # type: ignore[attr-defined]
        try:
            return decode(data)
        except (ProfileFormatError, TraceFormatError) as exc:
            raise type(exc)(f"{source}: {exc}") from exc


_TYPES: dict[str, ResultType] = {}


def register(result: ResultType) -> ResultType:
    """Add a result type to the registry (keyed by its schema family) and return it."""
    _TYPES[result.family] = result
    return result


def types() -> list[ResultType]:
    """Every registered result type, in registration order."""
    return list(_TYPES.values())


def result_type(schema: object) -> ResultType | None:
    """The registered type of a schema string (any version of its family), or None."""
    family = str(schema).rpartition("/")[0] if isinstance(schema, str) else ""
    return _TYPES.get(family)


def kind_of(value: object) -> str | None:
    """The registered kind of a result object or of a saved result's data; None for neither."""
    if isinstance(value, Mapping):
        found = result_type(value.get("schema"))
        return found.kind if found else None
    return next((t.kind for t in _TYPES.values() if t.is_instance(value)), None)


def load_result(path: str | Path) -> Any:
    """The result saved at ``path``: any registered schema's JSON file, an ``optimize`` output
    folder (its ``optimize.json``), or a profiler trace (one file or a folder of ranks), which is
    analysed into a TraceAnalysis.

    Raises:
        ProfileFormatError: on one line, for a missing file, a file that is not JSON, a JSON file
            that is not a pinchpoint result, or a broken one.
    """
    path = saved_path(path)
    if is_trace(str(path)):
        from pinchpoint.traces import load_trace

        return load_trace(path)
    return decode(read_json(path), source=str(path))


def saved_path(path: str | Path) -> Path:
    """The file a result is read from: ``path``, or the ``optimize.json`` of an optimize folder."""
    path = Path(path)
    if path.is_dir() and (path / "optimize.json").is_file():
        return path / "optimize.json"
    return path


def is_trace(target: str) -> bool:
    """Whether ``target`` names a profiler trace: a folder, a ``.json.gz``, or a ``.json`` with
    a ``traceEvents`` array (or a bare array of events) that is not one of pinchpoint's own
    files (those carry a ``pinchpoint.`` schema up front)."""
    if target.startswith("zoo:"):
        return False
    path = Path(target)
    if path.is_dir():
        return True
    name = path.name.lower()
    if name.endswith(".json.gz"):
        return True
    if not name.endswith(".json") or not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(1 << 20)  # Kineto's metadata before traceEvents can run to kilobytes
    except OSError:
        return False
    if b'"pinchpoint.' in head[:4096]:
        return False
    return head.lstrip()[:1] == b"[" or b'"traceEvents"' in head


def decode(data: Any, source: str = "the data") -> Any:
    """The result in a saved result's data, by its ``schema`` field (see :func:`load_result`)."""
    schema = data.get("schema") if isinstance(data, Mapping) else None
    found = result_type(schema)
    if found is None:
        shown = f"schema {schema!r}" if schema else "no pinchpoint schema field"
        raise ProfileFormatError(
            f"{source} is not a saved pinchpoint result ({shown}; expected {listing(types())})"
        )
    return found.decode(data, source)


def listing(kinds: Iterable[ResultType]) -> str:
    """The kinds in a reader's words: ``a profile, diagnosis or trace analysis``."""
    chosen = list(kinds)
    words = [chosen[0].what] + [t.noun for t in chosen[1:]]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# The result types, in the order messages list them: kind, schema, class, what.
for _kind, _schema, _where, _what in (
    ("profile", "profile/1", "_profile:Profile", "a profile"),
    ("diagnosis", "diagnosis/1", "diagnosis:Diagnosis", "a diagnosis"),
    ("trace", "trace/1", "traces._analysis:TraceAnalysis", "a trace analysis"),
    ("optimize", "optimize/1", "optimizer.result:OptimizeResult", "an optimize result"),
    ("lr_find", "lr_find/1", "lr_find:LRFindResult", "an LR range test"),
    ("compare", "compare/1", "comparison:Comparison", "a comparison"),
    ("scale", "scale/1", "trials.scale:ScaleResult", "a scaling measurement"),
):
    _module, _, _name = _where.partition(":")
    register(ResultType(_kind, f"pinchpoint.{_schema}", f"pinchpoint.{_module}", _name, _what))

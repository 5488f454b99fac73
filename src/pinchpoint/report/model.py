"""The Report and its renderer-neutral pieces, and the registry of builders per result kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinchpoint import results
from pinchpoint._io import read_json
from pinchpoint.errors import ProfileFormatError
from pinchpoint.finding import Finding

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Fact:
    """One labelled number or word; ``unit`` tells a renderer how to format ``value``."""

    label: str
    value: Any
    unit: str = "text"


@dataclass(frozen=True)
class Column:
    """A table column: its heading and the unit of its cells."""

    name: str
    unit: str = "text"


@dataclass(frozen=True)
class Table:
    """Rows of raw values under typed columns; renderers may let a reader sort them.

    ``total_rows`` is how many rows there were before the table was cut to its top rows.
    """

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    total_rows: int | None = None


@dataclass(frozen=True)
class Series:
    """One named series of a chart: ``x`` and ``y`` values and how they are shown.

    ``style`` is ``"bar"``, ``"line"``, ``"markers"`` or ``"lines+markers"``; ``labels``, when
    given, names each point (an operator, a trial) for a reader who points at it; ``emphasis``
    singles a series out (the chosen candidate, the roof).
    """

    name: str
    x: tuple[Any, ...]
    y: tuple[Any, ...]
    style: str = "line"
    labels: tuple[str, ...] | None = None
    emphasis: bool = False


@dataclass(frozen=True)
class Mark:
    """A reference line across a chart at ``value`` on its ``axis`` (``"x"`` or ``"y"``)."""

    axis: str
    value: float
    label: str


@dataclass(frozen=True)
class Chart:
    """A chart's data: its series, axes (title, unit, log scale) and reference marks.

    ``stacked`` stacks bar series; ``horizontal`` lays bars along the x axis (the categories
    are then the ``y`` values of each series). ``y_range``, when set, is the part of the y axis
    worth showing (points beyond it are cut off, as a diverged loss would flatten the rest).
    """

    id: str
    title: str
    series: tuple[Series, ...]
    x_title: str = ""
    y_title: str = ""
    x_unit: str = "number"
    y_unit: str = "number"
    x_log: bool = False
    y_log: bool = False
    stacked: bool = False
    horizontal: bool = False
    marks: tuple[Mark, ...] = ()
    note: str = ""
    y_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Section:
    """One part of a report: paragraphs, facts, tables and charts about one subject."""

    id: str
    title: str
    text: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()


@dataclass(frozen=True)
class VerdictFinding:
    """A finding as the verdict shows it: with a title and what its kind means."""

    finding: Finding
    title: str
    meaning: str


@dataclass(frozen=True)
class Verdict:
    """What a reader should know first.

    ``status`` is ``"bottleneck"`` (a high-severity finding), ``"healthy"``, ``"best"`` (an
    optimize run found a verified candidate), ``"no_best"``, ``"suggestion"`` (an LR range
    test suggests a rate), ``"no_suggestion"``, or a comparison's ``"regression"``,
    ``"improved"`` or ``"ok"``. ``findings`` are ranked: the first is the principal bottleneck
    (for a comparison: the findings B gained, then those it lost).
    """

    status: str
    headline: str
    detail: tuple[str, ...] = ()
    findings: tuple[VerdictFinding, ...] = ()


@dataclass(frozen=True)
class Report:
    """Everything one report shows, gathered from one pinchpoint result.

    ``kind`` says what it was built from: ``"profile"``, ``"diagnosis"``, ``"trace"``,
    ``"optimize"``, ``"lr_find"`` or ``"compare"``. Build one with :meth:`build` (any result
    object), :meth:`from_dict` (a saved result's JSON) or :meth:`load` (a saved file, a folder
    written by ``optimize``, or a profiler trace).
    """

    kind: str
    title: str
    subtitle: str = ""
    verdict: Verdict | None = None
    sections: tuple[Section, ...] = ()
    created: str = ""

    @property
    def charts(self) -> list[Chart]:
        """Every chart of the report, in the order it shows them."""
        return [chart for section in self.sections for chart in section.charts]

    @property
    def tables(self) -> list[Table]:
        """Every table of the report, in the order it shows them."""
        return [table for section in self.sections for table in section.tables]

    def section(self, id: str) -> Section | None:
        """The section with this id, or None when the report has no such section."""
        return next((s for s in self.sections if s.id == id), None)

    @classmethod
    def build(cls, result: Any) -> Report:
        """The Report of any pinchpoint result object (or its ``to_dict`` data), by the builder
        registered for its kind (:func:`register_builder`)."""
        if isinstance(result, Mapping):
            return cls.from_dict(result)
        kind = results.kind_of(result)
        builder = BUILDERS.get(kind) if kind else None
        if builder is None:
            raise TypeError(f"a Report is built from {_buildable()}, not {type(result).__name__}")
        return builder(result)

    @classmethod
    def from_dict(cls, data: Any, source: str = "the data") -> Report:
        """The Report of a saved result's JSON, recognised by its ``schema`` field."""
        schema = data.get("schema") if isinstance(data, Mapping) else None
        found = results.result_type(schema)
        if found is None:
            shown = f"schema {schema!r}" if schema else "no pinchpoint schema field"
            raise ProfileFormatError(
                f"{source} is not a saved pinchpoint result ({shown}; expected {_buildable()})"
            )
        builder = BUILDERS.get(found.kind)
        if builder is None:
            raise ProfileFormatError(
                f"{source} is {found.what}, which has no report (one is made of {_buildable()})"
            )
        result = found.decode(data, source)
        try:
            return builder(result)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if found.decoder is not None:
                raise
            raise ProfileFormatError(
                f"{source}: broken pinchpoint {found.kind} result: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """The Report of a saved result file (a comparison's too), an ``optimize`` output
        folder, or a trace (see :func:`pinchpoint.results.load_result`)."""
        path = results.saved_path(path)
        if results.is_trace(str(path)):
            return cls.build(results.load_result(path))
        return cls.from_dict(read_json(path), source=str(path))


#: The report builder of each result kind (:mod:`pinchpoint.results`); filled at the end of
#: this module, and by :func:`register_builder` for a new result type.
BUILDERS: dict[str, Callable[[Any], Report]] = {}


def register_builder(kind: str, builder: Callable[[Any], Report]) -> None:
    """Make ``builder`` the report of results of ``kind`` (the object or its saved mapping)."""
    if kind not in {t.kind for t in results.types()}:
        raise ValueError(f"no result type {kind!r} is registered in pinchpoint.results")
    BUILDERS[kind] = builder


def _buildable() -> str:
    return results.listing(t for t in results.types() if t.kind in BUILDERS)

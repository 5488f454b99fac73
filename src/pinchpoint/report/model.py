"""The Report and its renderer-neutral pieces, and the registry of builders per result kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from pinchpoint import results
from pinchpoint._io import read_json
from pinchpoint.errors import ProfileFormatError
from pinchpoint.finding import Finding


@dataclass(frozen=True)
class Fact:
    """One labelled number or word; ``unit`` tells a renderer how to format ``value``."""

    label: str
    value: Any
    unit: str = "text"


@dataclass(frozen=True)
class Column:
    """A table column: its heading and the unit of its cells.

    The rest are layout hints a renderer that lays out a narrow screen follows (a page may
    ignore them): ``align`` (``"left"`` or ``"right"``), a ``tone`` for every cell, whether a
    cell may ``wrap``, its ``width``, ``min_width`` and ``max_width`` in characters, and its
    ``grow``, its part of the room left over when the table fills the width.
    """

    name: str
    unit: str = "text"
    align: str = "left"
    tone: str = ""
    wrap: bool = True
    width: int | None = None
    min_width: int | None = None
    max_width: int | None = None
    grow: int | None = None


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
class Span:
    """A run of a brief's line: a raw ``value`` in its ``unit``, in a ``tone``.

    ``"text"`` is shown as written; the other units are those of :class:`Fact` and :class:`Column`
    and a few of a narrow screen's own: ``"pct"`` (a share in whole percent), ``"bar"`` (a share
    as a bar), ``"s_range"`` (two durations), ``"x"`` (a factor), ``"ratio"``, ``"g3"``/``"g4"``
    (significant digits), ``"quality"``, ``"whole"``/``"tenths"`` (counts with separators), and a
    change of B from A: ``"signed_s"``, ``"signed_share"``, ``"points"``, ``"relative"`` (a pair).
    A tone says what a reader should make of the run, not its colour: ``"strong"``, ``"muted"``,
    ``"aside"``, ``"accent"``, ``"good"``, ``"good_strong"``, ``"warn"``, ``"warn_strong"`` or
    ``"bad"``.
    """

    value: Any
    unit: str = "text"
    tone: str = ""


@dataclass(frozen=True)
class Line:
    """One paragraph of a brief, its runs in order (without any, a blank line); ``tone`` is the
    whole line's, under its runs' own."""

    spans: tuple[Span, ...] = ()
    tone: str = ""


@dataclass(frozen=True)
class FactLine:
    """Facts on one line, ``label value`` between dots; a fact's unit ``"field"`` is the unit
    its label carries, as an evidence field's name does (``_s``, ``_bytes``, ``_share``…)."""

    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Grid:
    """A compact table of a brief: typed columns and rows of raw values.

    A cell that is a :class:`Span` or a :class:`Line` is shown as one, in its own unit and tone.
    ``header`` is the tone of the headings (None: no headings); ``expand`` fills the width.
    """

    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    title: str = ""
    header: str | None = ""
    expand: bool = False


@dataclass(frozen=True)
class Indent:
    """Pieces set in by ``by`` characters, under the line they belong to."""

    pieces: tuple[Piece, ...]
    by: int = 3


#: One piece of a brief.
Piece: TypeAlias = "Line | FactLine | Grid | Indent"


@dataclass(frozen=True)
class Brief:
    """A report's one-screen summary: its pieces in reading order, framed under ``title``
    (None: unframed). A narrow renderer draws it; every number in it is a raw value."""

    pieces: tuple[Piece, ...]
    title: Line | None = None


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
    ``"optimize"``, ``"lr_find"``, ``"compare"`` or ``"scale"``. ``brief``, when there is one, is
    its one-screen summary; ``sections`` are the rest of what it shows. Build one with
    :meth:`build` (any result object), :meth:`from_dict` (a saved result's JSON) or :meth:`load`
    (a saved file, a folder written by ``optimize``, or a profiler trace).
    """

    kind: str
    title: str
    subtitle: str = ""
    verdict: Verdict | None = None
    sections: tuple[Section, ...] = ()
    created: str = ""
    brief: Brief | None = None

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
        return builder(found.decode(data, source))

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

"""The Report: the one input every renderer takes.

A Report gathers what pinchpoint produced (a :class:`~pinchpoint.Profile`, a
:class:`~pinchpoint.Diagnosis`, a :class:`~pinchpoint.TraceAnalysis`, an
:class:`~pinchpoint.OptimizeResult`, an LR range test, a :class:`~pinchpoint.Comparison`, or
any of them saved as JSON) into
renderer-neutral pieces, in the order a reader needs them:

- a :class:`Verdict` first: the principal bottleneck with its evidence and remedies (or that
  the run is healthy, the best verified candidate, the suggested learning rate, whether the
  second of two runs regressed);
- a :class:`Brief`, the one-screen summary a terminal draws: :class:`Line`\\ s of toned
  :class:`Span`\\ s, :class:`FactLine`\\ s, compact :class:`Grid`\\ s and :class:`Indent`\\ ed
  blocks (a page leaves it out);
- then :class:`Section`\\ s, each holding :class:`Fact`\\ s, :class:`Table`\\ s and
  :class:`Chart`\\ s.

Every number stays raw, with a unit key (``"s"``, ``"share"``, ``"bytes"``…) that tells a
renderer how to format it; a chart holds its series, axes and reference marks, never drawing
instructions. The numbers are quoted from the object the Report was built from (the Profile is
the one source of truth), never measured again. A section, table or chart without data is not
created, so no renderer ever shows an empty one.

The package is laid out by result kind: :mod:`~pinchpoint.report.model` holds the pieces, the
Report and the builder registry; :mod:`~pinchpoint.report.parts` what the builders share; one
module per result kind holds its builder (``profile``, ``trace``, ``optimize``, ``lr_find``,
``compare``), registered below by kind (:mod:`pinchpoint.results` names the kinds).
"""

from __future__ import annotations

from pinchpoint.report.compare import from_comparison
from pinchpoint.report.lr_find import from_lr_find
from pinchpoint.report.model import (
    BUILDERS,
    Brief,
    Chart,
    Column,
    Fact,
    FactLine,
    Grid,
    Indent,
    Line,
    Mark,
    Report,
    Section,
    Series,
    Span,
    Table,
    Verdict,
    VerdictFinding,
    register_builder,
)
from pinchpoint.report.optimize import from_optimize
from pinchpoint.report.parts import MEANINGS, findings_verdict
from pinchpoint.report.profile import from_diagnosis, from_profile
from pinchpoint.report.trace import from_trace

__all__ = [
    "BUILDERS",
    "MEANINGS",
    "Brief",
    "Chart",
    "Column",
    "Fact",
    "FactLine",
    "Grid",
    "Indent",
    "Line",
    "Mark",
    "Report",
    "Section",
    "Series",
    "Span",
    "Table",
    "Verdict",
    "VerdictFinding",
    "findings_verdict",
    "from_comparison",
    "from_diagnosis",
    "from_lr_find",
    "from_optimize",
    "from_profile",
    "from_trace",
    "register_builder",
]

for _kind, _builder in (
    ("profile", from_profile),
    ("diagnosis", from_diagnosis),
    ("trace", from_trace),
    ("optimize", from_optimize),
    ("lr_find", from_lr_find),
    ("compare", from_comparison),
):
    register_builder(_kind, _builder)

"""The HTML report: one self-contained file that opens offline, in any browser.

:func:`render_html` lays out a :class:`~pinchpoint.report.Report` (verdict first, then each
section's facts, charts and tables) as one page. Everything it needs is inside the file:
plotly.js (read from the ``plotly`` package, inlined once, never fetched from a CDN), the
figures as JSON, a small script that draws them and makes tables sortable by their headings, and
a Content-Security-Policy that forbids the page any network access at all.

Text from a trace, a model or a user (operator, kernel, module, file and workload names) is
escaped wherever it lands: ``html.escape`` in the markup; in figure JSON, HTML entities (plotly
shows ``&lt;`` as ``<`` and never reads tags from it), and the JSON itself with ``<``, ``>`` and
``&`` written as ``\\u003c``-style escapes so nothing in it can close its ``<script>`` element.

This module only formats and lays out; every number comes from the Report.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import math
from pathlib import Path
from typing import Any

import orjson

from pinchpoint._io import atomic_write_bytes
from pinchpoint.errors import PinchpointError
from pinchpoint.finding import Finding
from pinchpoint.renderers.terminal import (
    format_bytes,
    format_count,
    format_evidence,
    format_seconds,
)
from pinchpoint.report import Chart, Fact, Report, Section, Series, Table, Verdict, VerdictFinding

__all__ = ["render_html", "write_html"]

#: No network at all: scripts and styles only from the page itself, images only as data.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)

_KIND_LABELS = {
    "profile": "profile",
    "diagnosis": "diagnosis",
    "trace": "trace analysis",
    "optimize": "optimize",
    "lr_find": "LR range test",
}
#: Cells longer than this many characters are clamped to three lines.
_LONG_TEXT = 160
_NUMERIC_UNITS = frozenset(
    {
        "s",
        "share",
        "bytes",
        "count",
        "flops",
        "flops_per_s",
        "bytes_per_s",
        "flops_per_byte",
        "x",
        "int",
        "number",
        "lr",
        "per_s",
        "bool",
    }
)


# --------------------------------------------------------------------------- entry points


def render_html(report: Report) -> str:
    """The whole page for ``report``, as one self-contained HTML document."""
    figures: list[dict[str, Any]] = []
    body = [_header(report), _nav(report)]
    if report.verdict is not None:
        body.append(_verdict(report.verdict))
    body += [_section(section, figures) for section in report.sections]
    from pinchpoint._version import __version__

    footer = f"made by pinchpoint {_e(__version__)}"
    if report.created:
        footer += f" · run recorded {_e(report.created)}"
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>pinchpoint · {_e(_KIND_LABELS.get(report.kind, report.kind))} · "
            f"{_e(report.title)}</title>\n",
            f"<style>{_CSS}</style>\n</head>\n<body>\n",
            "\n".join(body),
            f"\n<footer>{footer}</footer>\n",
            f"<script>{_inline_js(_plotly_js())}</script>\n" if figures else "",
            '<script type="application/json" id="pp-figures">',
            _script_json(figures),
            "</script>\n",
            f"<script>{_APP_JS}</script>\n</body>\n</html>\n",
        ]
    )


def write_html(report: Report, path: str | Path) -> Path:
    """Write the report's page to ``path`` atomically (readers never see half a file)."""
    text = render_html(report)
    try:
        return atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise PinchpointError(f"cannot write {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- escaping


def _e(text: Any) -> str:
    """Text for HTML markup or an attribute value, with every special character escaped."""
    return html.escape(str(text), quote=True)


def _plot_text(value: Any) -> Any:
    """A string for plotly as an entity-escaped literal; other values as they are."""
    return html.escape(value, quote=False) if isinstance(value, str) else value


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element whatever its strings hold."""
    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode("utf-8")
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _inline_js(source: str) -> str:
    """Script source that cannot end its ``<script>`` element early."""
    return source.replace("</script", "<\\/script").replace("<!--", "<\\!--")


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    """plotly.js as the ``plotly`` package ships it, found without importing the package."""
    spec = importlib.util.find_spec("plotly")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise PinchpointError(
        "the HTML report needs plotly.js from the plotly package: pip install plotly"
    )


# --------------------------------------------------------------------------- formatting


def format_value(value: Any, unit: str) -> str:
    """A raw value as a reader sees it, by its unit key."""
    if value is None:
        return "–"
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "text" or isinstance(value, (str, bool)):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    formats = {
        "s": lambda: format_seconds(number),
        "share": lambda: f"{number:.1%}",
        "bytes": lambda: format_bytes(int(number)),
        "count": lambda: format_count(number),
        "flops": lambda: format_count(number, "FLOP"),
        "flops_per_s": lambda: format_count(number, "FLOP/s"),
        "bytes_per_s": lambda: format_count(number, "B/s"),
        "flops_per_byte": lambda: f"{number:.3g} FLOP/B",
        "per_s": lambda: f"{number:,.1f}/s",
        "x": lambda: f"{number:.2f}×",
        "int": lambda: f"{int(number):,}",
        "lr": lambda: f"{number:.3g}",
    }
    return formats.get(unit, lambda: f"{number:.4g}")()


def _sort_key(value: Any, unit: str) -> str:
    """The value a sortable column orders by: the raw number itself, exactly, or the text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


# --------------------------------------------------------------------------- layout


def _header(report: Report) -> str:
    kind = _KIND_LABELS.get(report.kind, report.kind)
    sub = f'<p class="sub">{_e(report.subtitle)}</p>' if report.subtitle else ""
    return (
        f'<header><p class="kind">pinchpoint {_e(kind)}</p>'
        f"<h1>{_e(report.title)}</h1>{sub}</header>"
    )


def _nav(report: Report) -> str:
    links = ['<a href="#verdict">Verdict</a>'] if report.verdict is not None else []
    links += [f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in report.sections]
    return f"<nav>{' '.join(links)}</nav>"


def _verdict(verdict: Verdict) -> str:
    parts = [
        f'<section id="verdict" class="verdict {_e(verdict.status)}"><h2>Verdict</h2>',
        f'<p class="headline">{_e(verdict.headline)}</p>',
    ]
    parts += [f'<p class="detail">{_e(line)}</p>' for line in verdict.detail]
    for i, view in enumerate(verdict.findings):
        parts.append(_finding(view, principal=i == 0, bottleneck=verdict.status == "bottleneck"))
    parts.append("</section>")
    return "".join(parts)


def _share_line(finding: Finding) -> str:
    if finding.kind == "memory_capacity":
        return f"{finding.share:.0%} of the memory budget in use"
    return (
        f"{finding.share:.0%} of the step; removing it would save about {finding.saving_share:.0%}"
    )


def _evidence_label(key: str) -> str:
    """An evidence field's name in words; its unit suffix goes, the formatted value shows it."""
    rate = key.endswith(("_per_s", "_per_byte"))
    for suffix in ("_s", "_bytes"):
        if key.endswith(suffix) and len(key) > len(suffix) and not rate:
            key = key[: -len(suffix)]
            break
    return key.replace("_", " ")


def _finding(view: VerdictFinding, principal: bool, bottleneck: bool) -> str:
    f = view.finding
    rows = "".join(
        f"<tr><th>{_e(_evidence_label(key))}</th><td>{_e(format_evidence(key, value))}</td></tr>"
        for key, value in f.evidence.items()
    )
    evidence = f'<h4>Evidence</h4><table class="evidence">{rows}</table>' if rows else ""
    remedies = "".join(f"<li><b>{_e(r.name)}</b>: {_e(r.why)}</li>" for r in f.remedies)
    remedy_list = f'<h4>What to do</h4><ol class="remedies">{remedies}</ol>' if remedies else ""
    label = "principal bottleneck" if principal and bottleneck else "finding"
    head = (
        f'<summary><span class="label">{label}</span> <b>{_e(view.title)}</b> '
        f'<span class="sev {_e(f.severity)}">{_e(f.severity)}</span> '
        f'<span class="dim">{_e(_share_line(f))}</span></summary>'
    )
    meaning = f'<p class="meaning">{_e(view.meaning)}</p>' if view.meaning else ""
    # Why it ranks here; a diagnosis saved before rank reasons existed has none.
    why = f'<p class="dim rank-reason">{_e(f.rank_reason)}</p>' if f.rank_reason else ""
    return (
        f'<details class="finding" data-kind="{_e(f.kind)}"{" open" if principal else ""}>'
        f"{head}{meaning}<p>{_e(f.summary)}</p>{why}{evidence}{remedy_list}</details>"
    )


def _section(section: Section, figures: list[dict[str, Any]]) -> str:
    parts = [f'<section id="{_e(section.id)}"><h2>{_e(section.title)}</h2>']
    parts += [f"<p>{_e(text)}</p>" for text in section.text]
    if section.facts:
        parts.append(_facts(section.facts))
    for chart in section.charts:
        parts.append(_chart(chart, figures))
    for table in section.tables:
        parts.append(_table(table))
    parts.append("</section>")
    return "".join(parts)


def _facts(facts: tuple[Fact, ...]) -> str:
    items = "".join(
        f"<div><dt>{_e(f.label)}</dt><dd>{_e(format_value(f.value, f.unit))}</dd></div>"
        for f in facts
    )
    return f'<dl class="facts">{items}</dl>'


def _table(table: Table) -> str:
    heads = "".join(
        f'<th scope="col" data-type="{"num" if c.unit in _NUMERIC_UNITS else "text"}" '
        f'aria-sort="none"><button type="button">{_e(c.name)}</button></th>'
        for c in table.columns
    )
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td data-sort="{_e(_sort_key(value, c.unit))}"'
            f"{' class=num' if c.unit in _NUMERIC_UNITS else ''}>"
            f"{_cell_text(format_value(value, c.unit))}</td>"
            for value, c in zip(row, table.columns, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    shown = (
        f"The top {len(table.rows)} of {table.total_rows} rows. "
        if table.total_rows is not None
        else ""
    )
    note = f"{shown}{table.note} Click a heading to sort.".strip()
    return (
        f'<div class="table-wrap"><h3>{_e(table.title)}</h3><p class="note">{_e(note)}</p>'
        f'<div class="scroll"><table class="sortable" id="table-{_e(table.id)}">'
        f"<thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table></div></div>"
    )


def _cell_text(text: str) -> str:
    """A cell's text; a very long one (a templated kernel name) clamped to a few lines, whole
    in its tooltip and in the page's text."""
    if len(text) <= _LONG_TEXT:
        return _e(text)
    return f'<span class="long" title="{_e(text)}">{_e(text)}</span>'


def _chart(chart: Chart, figures: list[dict[str, Any]]) -> str:
    div_id = f"chart-{chart.id}"
    figures.append({"id": div_id, **_figure(chart)})
    note = f'<p class="note">{_e(chart.note)}</p>' if chart.note else ""
    return (
        f'<figure class="chart"><figcaption>{_e(chart.title)}</figcaption>'
        f'<div class="plot" id="{_e(div_id)}"></div>{note}</figure>'
    )


# --------------------------------------------------------------------------- plotly figures


_TICKS: dict[str, dict[str, str]] = {
    "s": {"tickformat": "~s", "ticksuffix": "s", "hoverformat": ".3~s"},
    "bytes": {"tickformat": "~s", "ticksuffix": "B", "hoverformat": ".3~s"},
    "flops_per_s": {"tickformat": "~s", "ticksuffix": "FLOP/s", "hoverformat": ".3~s"},
    "flops_per_byte": {"tickformat": "~g", "ticksuffix": " FLOP/B", "hoverformat": ".3~g"},
    "share": {"tickformat": ".0%", "hoverformat": ".1%"},
    "x": {"ticksuffix": "×", "hoverformat": ".2f"},
    "int": {"tickformat": "d"},
    "lr": {"exponentformat": "e", "hoverformat": ".3~g"},
    "number": {"hoverformat": ".4~g"},
}


def _axis(title: str, unit: str, log: bool) -> dict[str, Any]:
    axis: dict[str, Any] = {"title": {"text": _plot_text(title)}, "automargin": True}
    axis.update(_TICKS.get(unit, {}))
    if log:
        axis["type"] = "log"
    elif unit == "text":
        axis["type"] = "category"
    return axis


#: One colour per phase and per kind of device time, the same in every chart of every report.
_COLOURS = {
    "data": "#1f77b4",
    "transfer": "#17becf",
    "forward": "#ff7f0e",
    "backward": "#2ca02c",
    "communication": "#bcbd22",
    "optimizer": "#d62728",
    "log": "#7f7f7f",
    "other": "#9467bd",
    "compute": "#2ca02c",
    "non-compute (communication, copies, syncs)": "#ff7f0e",
    "idle": "#c7c7c7",
    "busy": "#2ca02c",
    "exposed all-reduce": "#bcbd22",
    "sync": "#8c564b",
    "host": "#e377c2",
}


def _trace(series: Series, chart: Chart) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "name": _plot_text(series.name),
        "x": [_plot_text(v) for v in series.x],
        "y": [_plot_text(v) for v in series.y],
    }
    if series.style == "bar":
        trace["type"] = "bar"
        if chart.stacked and series.name in _COLOURS:
            trace["marker"] = {"color": _COLOURS[series.name]}
        if chart.horizontal:
            trace["orientation"] = "h"
    else:
        trace["type"] = "scatter"
        trace["mode"] = series.style
        if series.emphasis and series.style == "line":
            trace["line"] = {"color": "#444", "width": 2}
        elif series.emphasis:
            trace["marker"] = {"size": 14, "symbol": "star", "color": "#067647"}
    if series.labels is not None:
        trace["hovertext"] = [_plot_text(label) for label in series.labels]
    return trace


def _marks(chart: Chart) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reference lines as shapes across the plot, each labelled by an annotation."""
    shapes, notes = [], []
    for mark in chart.marks:
        log = chart.x_log if mark.axis == "x" else chart.y_log
        # Annotations on a log axis are placed in log10 units; shapes in data units.
        where = math.log10(mark.value) if log and mark.value > 0 else mark.value
        line = {"dash": "dot", "color": "#777", "width": 1}
        if mark.axis == "x":
            shapes.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": mark.value,
                    "x1": mark.value,
                    "y0": 0,
                    "y1": 1,
                    "line": line,
                }
            )
            notes.append(
                {
                    "x": where,
                    "xref": "x",
                    "y": 1,
                    "yref": "paper",
                    "yanchor": "bottom",
                    "text": _plot_text(mark.label),
                    "showarrow": False,
                    "font": {"size": 11, "color": "#555"},
                }
            )
        else:
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "yref": "y",
                    "x0": 0,
                    "x1": 1,
                    "y0": mark.value,
                    "y1": mark.value,
                    "line": line,
                }
            )
            notes.append(
                {
                    "x": 1,
                    "xref": "paper",
                    "xanchor": "right",
                    "y": where,
                    "yref": "y",
                    "yanchor": "bottom",
                    "text": _plot_text(mark.label),
                    "showarrow": False,
                    "font": {"size": 11, "color": "#555"},
                }
            )
    return shapes, notes


#: An integer axis that spans at most this many units gets a tick at every integer.
_EVERY_TICK_SPAN = 20


def _integer_span(chart: Chart) -> float:
    """How many units the numeric x values of ``chart`` span (infinite when there are none)."""
    xs = [x for s in chart.series for x in s.x if isinstance(x, (int, float))]
    return max(xs) - min(xs) if xs else math.inf


def _figure(chart: Chart) -> dict[str, Any]:
    """A plotly figure (plain JSON) that draws ``chart``."""
    x_axis = _axis(chart.x_title, chart.x_unit, chart.x_log)
    x_axis["zeroline"] = False
    if chart.x_unit == "int" and _integer_span(chart) <= _EVERY_TICK_SPAN:
        x_axis["dtick"] = 1  # a few steps: one tick each, never 1, 2, 2, 3 from half-steps
    y_axis = _axis(chart.y_title, chart.y_unit, chart.y_log)
    if chart.y_range is not None:
        lo, hi = chart.y_range
        y_axis["range"] = [math.log10(lo), math.log10(hi)] if chart.y_log else [lo, hi]
    shapes, notes = _marks(chart)
    layout: dict[str, Any] = {
        "height": 380,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "barmode": "stack" if chart.stacked else "group",
        "hovermode": "closest",
        "xaxis": x_axis,
        "yaxis": y_axis,
        "shapes": shapes,
        "annotations": notes,
        "showlegend": len(chart.series) > 1,
        "legend": {"font": {"size": 11}},
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#f7f8fa",
    }
    return {
        "data": [_trace(s, chart) for s in chart.series],
        "layout": layout,
        "config": {"displaylogo": False, "responsive": True},
    }


# --------------------------------------------------------------------------- page assets


_CSS = """
:root { --ink:#1d2330; --dim:#5b6577; --line:#dde1e8; --accent:#3451b2; --bad:#b42318;
  --warn:#b54708; --good:#067647; --bg:#ffffff; --panel:#f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 0 24px 48px; color: var(--ink);
  background: var(--bg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { padding: 28px 0 8px; border-bottom: 1px solid var(--line); }
header .kind { margin: 0; color: var(--dim); text-transform: uppercase; letter-spacing: .06em;
  font-size: 12px; }
h1 { margin: 4px 0; font-size: 26px; overflow-wrap: anywhere; }
.sub, .dim, .note { color: var(--dim); }
.note { font-size: 13px; }
nav { position: sticky; top: 0; z-index: 5; background: var(--bg); padding: 8px 0;
  border-bottom: 1px solid var(--line); font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
section { margin-top: 28px; }
h2 { font-size: 20px; margin: 0 0 8px; }
h3 { font-size: 16px; margin: 18px 0 4px; }
h4 { font-size: 14px; margin: 12px 0 4px; }
.verdict { border: 1px solid var(--line); border-left: 6px solid var(--dim); border-radius: 6px;
  padding: 14px 18px; background: var(--panel); }
.verdict.bottleneck, .verdict.no_best, .verdict.no_suggestion, .verdict.regression {
  border-left-color: var(--bad); }
.verdict.healthy, .verdict.best, .verdict.suggestion, .verdict.improved, .verdict.ok {
  border-left-color: var(--good); }
.headline { font-size: 18px; font-weight: 600; margin: 4px 0 8px; }
.finding { border-top: 1px solid var(--line); padding: 8px 0; }
.finding summary { cursor: pointer; }
.finding .label { color: var(--dim); font-size: 12px; text-transform: uppercase; }
.meaning { font-style: italic; }
.sev { font-size: 12px; padding: 1px 6px; border-radius: 8px; color: #fff; background: var(--dim); }
.sev.high { background: var(--bad); } .sev.medium { background: var(--warn); }
table { border-collapse: collapse; font-size: 13px; }
table.evidence th { text-align: left; font-weight: normal; color: var(--dim);
  padding: 1px 14px 1px 0; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr));
  gap: 6px 18px; margin: 8px 0 12px; }
.facts div { border-bottom: 1px dotted var(--line); padding: 2px 0; }
.facts dt { color: var(--dim); font-size: 12px; } .facts dd { margin: 0; overflow-wrap: anywhere; }
figure.chart { margin: 14px 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { font-weight: 600; font-size: 14px; }
.plot { width: 100%; min-height: 380px; }
.scroll { overflow-x: auto; max-height: 560px; overflow-y: auto; border: 1px solid var(--line); }
table.sortable { width: 100%; }
table.sortable th { position: sticky; top: 0; background: var(--panel); text-align: left;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
table.sortable th button { all: unset; cursor: pointer; padding: 4px 8px; display: block; }
table.sortable th[aria-sort=ascending] button::after { content: " ▲"; }
table.sortable th[aria-sort=descending] button::after { content: " ▼"; }
table.sortable td { padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top;
  overflow-wrap: anywhere; max-width: 520px; }
.long { display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical;
  overflow: hidden; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
footer { margin-top: 36px; color: var(--dim); font-size: 12px; }
"""

#: Draws every figure, then sets ``data-charts-drawn`` on <body> (tests and benchmarks wait for
#: it); sorts a table by the column whose heading is clicked, numbers by their raw value.
_APP_JS = """
(function () {
  "use strict";
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") === "descending" ||
      (th.getAttribute("aria-sort") === "none" && !numeric);
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var v = row.cells[column].getAttribute("data-sort");
      if (!numeric) { return v.toLowerCase(); }
      return v === "" ? NaN : Number(v);
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (numeric) {
        if (isNaN(x)) { return isNaN(y) ? 0 : 1; }
        if (isNaN(y)) { return -1; }
        return ascending ? x - y : y - x;
      }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.children, function (other) {
      other.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  var figures = JSON.parse(document.getElementById("pp-figures").textContent);
  if (!figures.length) { document.body.setAttribute("data-charts-drawn", "0"); return; }
  Promise.all(figures.map(function (f) {
    return Plotly.newPlot(document.getElementById(f.id), f.data, f.layout, f.config);
  })).then(function () {
    document.body.setAttribute("data-charts-drawn", String(figures.length));
  });
})();
"""

"""The HTML report's content: sections per input, the numbers it quotes, escaping, the CLI.

Every report here is built from a real run: a recorded and diagnosed `zoo:digits-cnn`, the
corpus's profiler traces, a real optimize search and a real LR range test. The page's numbers
are read back out of its tables and figure JSON and compared with the objects they came from.
Comparison reports come from the corpus's trace pairs: the tiny pair (one operator table
changed, nothing else) and the A100 trace against the two-rank job (a real regression).
The browser side (scripts run, charts draw) is in ``test_report_browser.py``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch

import pinchpoint
from helpers import run_cli
from pinchpoint import zoo
from pinchpoint._profile import Operator, Profile
from pinchpoint.comparison import Comparison, compare
from pinchpoint.errors import PinchpointError, ProfileFormatError
from pinchpoint.lr_find import LRFindResult, lr_find
from pinchpoint.remedies import Quantize
from pinchpoint.remedies.precision import Precision
from pinchpoint.renderers.html import render_html, write_html
from pinchpoint.renderers.terminal import format_bytes, format_evidence, format_seconds
from pinchpoint.report import Report

TRACES = Path(__file__).parent / "data" / "traces"
TWO_RANKS = TRACES / "two_ranks_a"
A100 = TRACES / "a100_nccl_rank0.json.gz"
TINY_BASE = TRACES / "tiny_compare_base.json.gz"
TINY_TEST = TRACES / "tiny_compare_test.json.gz"
V100 = TRACES / "v100_single_rank.json.gz"
GOLDEN_DIAGNOSIS = Path(__file__).parent / "data" / "golden" / "slow-collate.diagnosis.json"

EVIL_OP = "<script>alert(1)</script>"
EVIL_MODULE = "<img src=x onerror=alert(2)>"
EVIL_FILE = "<svg onload=alert(3)>"
EVIL_TARGET = "mlp</script><script>alert(4)</script>"


# --------------------------------------------------------------------------- real runs


def tiny_mlp_workload(name: str = "tiny-mlp") -> pinchpoint.Workload:
    """A small inference MLP with an accuracy to keep: quick to optimize for real."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)
    ).eval()
    x = torch.randn(256, 256)
    labels = model(x).argmax(dim=1).detach()

    def accuracy(m: Any) -> float:
        with torch.inference_mode():
            return float((m(x).argmax(dim=1) == labels).float().mean())

    return pinchpoint.Workload(
        model=model,
        data=[x[i : i + 64] for i in range(0, 256, 64)],
        evaluate=accuracy,
        name=name,
        metric="accuracy",
        threads=1,
    )


def optimize_tiny(name: str = "tiny-mlp") -> pinchpoint.OptimizeResult:
    return pinchpoint.optimize(
        tiny_mlp_workload(name),
        candidates=[Quantize("dynamic-int8"), Precision("bf16", "convert")],
        max_drop=0.02,
        time_budget="2m",
        combine=False,
        target=name,
    )


def lr_sweep() -> LRFindResult:
    """A real LR range test on a small regression: the loss falls, then diverges."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    x = torch.randn(512, 16)
    y = x @ torch.randn(16, 1)
    workload = pinchpoint.Workload(
        model=model,
        data=[(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)],
        loss=lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        name="lr-mlp",
    )
    return lr_find(workload, start_lr=1e-5, end_lr=10.0, steps=60)


@pytest.fixture(scope="module")
def diagnosis() -> pinchpoint.Diagnosis:
    # 25 steps: update ratios are kept every 10th step, activation statistics every 20th.
    return pinchpoint.diagnose(zoo.get("digits-cnn"), steps=25, warmup=2, device="cpu")


@pytest.fixture(scope="module")
def trace() -> pinchpoint.TraceAnalysis:
    return pinchpoint.load_trace(TWO_RANKS, workers=1)


@pytest.fixture(scope="module")
def regression() -> Comparison:
    return compare(A100, TWO_RANKS, fail_above="5%")


@pytest.fixture(scope="module")
def tiny_pair() -> Comparison:
    return compare(TINY_BASE, TINY_TEST)


@pytest.fixture(scope="module")
def optimized() -> pinchpoint.OptimizeResult:
    return optimize_tiny()


@pytest.fixture(scope="module")
def sweep() -> LRFindResult:
    return lr_sweep()


# --------------------------------------------------------------------------- reading a page


class _Page(HTMLParser):
    """The tables (cells as (data-sort, text)), section ids and script elements of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[tuple[str | None, str]]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.sections: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._sort: str | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(str(a.get("id")))
        elif tag == "script":
            self.scripts += 1
        elif tag == "table" and "sortable" in (a.get("class") or ""):
            self._table = str(a["id"]).removeprefix("table-")
            self.tables[self._table] = []
            self.headers[self._table] = []
        elif self._table and tag == "tr":
            self.tables[self._table].append([])
        elif self._table and tag in ("td", "th"):
            self._cell, self._sort, self._in_head = [], a.get("data-sort"), tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if self._table and tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if self._in_head:
                self.headers[self._table].append(text)
            else:
                self.tables[self._table][-1].append((self._sort, text))
            self._cell = None
        elif tag == "table":
            if self._table:
                self.tables[self._table] = [r for r in self.tables[self._table] if r]
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def page(html_text: str) -> _Page:
    parsed = _Page()
    parsed.feed(html_text)
    return parsed


def figures(html_text: str) -> dict[str, dict[str, Any]]:
    """The page's figures by chart id, decoded from its JSON block."""
    match = re.search(
        r'<script type="application/json" id="pp-figures">(.*?)</script>', html_text, re.S
    )
    assert match is not None
    assert "<" not in match.group(1) and ">" not in match.group(1)
    return {f["id"].removeprefix("chart-"): f for f in json.loads(match.group(1))}


def column(parsed: _Page, table: str, name: str) -> list[tuple[str | None, str]]:
    index = parsed.headers[table].index(name)
    return [row[index] for row in parsed.tables[table]]


# --------------------------------------------------------------------------- sections


def test_a_diagnosis_report_has_every_section_of_a_training_run(
    diagnosis: pinchpoint.Diagnosis,
) -> None:
    report = Report.build(diagnosis)
    assert report.kind == "diagnosis" and report.title == "digits-cnn"
    assert [s.id for s in report.sections] == [
        "steps",
        "roofline",
        "operators",
        "modules",
        "memory",
        "health",
        "machine",
    ]
    charts = [c.id for c in report.charts]
    assert charts == [
        "step-breakdown",
        "roofline",
        "memory",
        "loss",
        "grad-norm",
        "layer-grad-norm",
        "update-ratio",
        "dead-units",
    ]
    parsed = page(render_html(report))
    # The verdict comes first, then the sections in the report's order.
    assert parsed.sections == ["verdict", *[s.id for s in report.sections]]
    assert len(figures(render_html(report))) == len(report.charts)


def test_sections_without_data_are_left_out() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    profile = pinchpoint.profile(
        pinchpoint.Workload(model=model, data=[torch.randn(4, 8)], name="infer-mlp"),
        steps=3,
        warmup=1,
        device="cpu",
    )
    report = Report.build(profile)
    ids = [s.id for s in report.sections]
    # Inference has no training health; an uncalibrated profile has no roofline.
    assert "health" not in ids and "roofline" not in ids
    assert ids == ["steps", "operators", "modules", "memory", "machine"]
    text = render_html(report)
    assert 'id="health"' not in text and 'id="roofline"' not in text
    assert report.verdict is not None and "calibrated peaks" in report.verdict.detail[0]
    # Memory of an inference run: no gradients, no optimizer state, so no bars for them.
    memory = next(c for c in report.charts if c.id == "memory")
    assert "gradients" not in memory.series[0].y and "optimizer state" not in memory.series[0].y

    empty = Report.build(Profile(name="nothing", mode="train", device="cpu"))
    assert empty.sections == () and not empty.charts
    blank = render_html(empty)
    assert "plotly.js v" not in blank and len(blank) < 20_000  # no chart, no plotly.js


def test_trace_reports_per_rank_charts_and_straggler_view(trace: pinchpoint.TraceAnalysis) -> None:
    report = Report.build(trace)
    assert report.kind == "trace"
    assert [s.id for s in report.sections] == [
        "ranks",
        "steps",
        "stragglers",
        "kernels",
        "operators",
    ]
    assert [c.id for c in report.charts] == [
        "rank-breakdown",
        "idle-causes",
        "rank-steps",
        "stragglers",
    ]
    single = Report.build(pinchpoint.load_trace(A100, workers=1))
    # One rank: nothing to compare it with, so no straggler view.
    assert "stragglers" not in [s.id for s in single.sections]


def test_optimize_and_lr_reports(optimized: pinchpoint.OptimizeResult, sweep: LRFindResult) -> None:
    report = Report.build(optimized)
    assert [s.id for s in report.sections] == ["trials", "baseline", "machine"]
    assert [c.id for c in report.charts] == ["pareto-speedup"]
    lr = Report.build(sweep)
    assert [s.id for s in lr.sections] == ["lr-range"] and [c.id for c in lr.charts] == ["lr-range"]
    assert lr.verdict is not None
    if sweep.suggestion is not None:
        assert lr.verdict.status == "suggestion"
        assert f"{sweep.suggestion:.3g}" in lr.verdict.headline
        chart = lr.charts[0]
        assert chart.marks[0].value == sweep.suggestion
    assert list(lr.charts[0].series[0].x) == sweep.lrs


# --------------------------------------------------------------------------- the verdict


def test_the_verdict_names_the_principal_bottleneck_with_evidence_and_remedies() -> None:
    analysis = pinchpoint.load_trace(A100, workers=1)
    principal = analysis.findings[0]
    assert principal.kind == "overhead_bound" and principal.severity == "high"
    report = Report.build(analysis)
    assert report.verdict is not None and report.verdict.status == "bottleneck"
    assert report.verdict.headline.startswith("Principal bottleneck: overhead bound.")
    text = render_html(report)
    verdict = text[text.index('id="verdict"') : text.index("</section>")]
    assert "principal bottleneck" in verdict and "Framework, Python and launch overhead" in verdict
    for key, value in principal.evidence.items():
        assert format_evidence(key, value).replace("&", "&amp;") in verdict
    for remedy in principal.remedies:
        assert f"<b>{remedy.name}</b>" in verdict
    assert text.index('id="verdict"') < text.index('id="ranks"')


def test_a_healthy_run_says_so(diagnosis: pinchpoint.Diagnosis) -> None:
    report = Report.build(diagnosis)
    assert report.verdict is not None
    assert report.verdict.status == ("healthy" if diagnosis.healthy else "bottleneck")
    kinds = [v.finding.kind for v in report.verdict.findings]
    assert kinds == [f.kind for f in diagnosis.findings]


# --------------------------------------------------------------------------- numbers


def test_the_numbers_in_the_page_are_the_profiles(diagnosis: pinchpoint.Diagnosis) -> None:
    profile = diagnosis.profile
    text = render_html(Report.build(diagnosis))
    parsed = page(text)
    stats = {k: v for k, v in profile.phase_stats().items() if v.mean_s > 0}
    assert "transfer" not in stats  # no copies on a CPU: no row for them
    rows = parsed.tables["phase-table"]
    assert [r[0][1] for r in rows] == list(stats)
    for row, st in zip(rows, stats.values(), strict=True):
        sort, shown = row[1]
        assert sort is not None and float(sort) == st.median_s
        assert shown == format_seconds(st.median_s)
        assert float(row[5][0] or "nan") == st.share
    # The operators table: ranked by self time, the Profile's own numbers.
    ranked = profile.operator_shares()
    names = column(parsed, "operators", "operator")
    assert [n for _, n in names] == [op.name for op, _ in ranked[:100]]
    selfs = column(parsed, "operators", "self")
    assert [float(s or "nan") for s, _ in selfs] == [op.self_s for op, _ in ranked[:100]]
    # The step chart plots each measured step's phases.
    figure = figures(text)["step-breakdown"]
    measured = profile.measured_steps
    forward = next(t for t in figure["data"] if t["name"] == "forward")
    assert forward["x"] == [s.index for s in measured]
    assert forward["y"] == [s.phases["forward"] for s in measured]
    # Memory and the roofline quote the Profile and the diagnosis.
    memory = profile.memory
    assert format_bytes(memory.process_rss_bytes) in text
    bars = figures(text)["memory"]["data"][0]
    assert bars["y"] == ["parameters", "gradients", "optimizer state", "activation peak"]
    assert bars["x"] == [
        memory.parameters_bytes,
        memory.gradients_bytes,
        memory.optimizer_state_bytes,
        memory.activations_peak_bytes,
    ]
    roof = figures(text)["roofline"]["data"]
    ops = next(t for t in roof if t["name"] == "operators")
    placed = [
        p
        for p in diagnosis.roofline["operators"]
        if 0 < p["intensity_flops_per_byte"] < float("inf") and p["achieved_flops_per_s"] > 0
    ]
    assert ops["x"] == [p["intensity_flops_per_byte"] for p in placed]
    assert roof[0]["y"][1] == diagnosis.roofline["peak_flops_per_s"]
    # Training health: the loss series and the per-layer gradient norms.
    loss = figures(text)["loss"]["data"][0]
    assert loss["y"] == [v for _, v in profile.series("loss")]
    health = profile.health
    assert health is not None
    layers = figures(text)["layer-grad-norm"]["data"]
    assert [t["y"] for t in layers] == [
        [row[j] for row in health.grad_norm] for j in range(len(health.layers))
    ]
    assert layers[0]["name"] == "0 (Conv2d)"


def test_trace_numbers_come_from_the_analysis(trace: pinchpoint.TraceAnalysis) -> None:
    text = render_html(Report.build(trace))
    parsed = page(text)
    timelines = [r.device_timeline for r in trace.ranks]
    assert all(tl is not None for tl in timelines)
    idle = column(parsed, "ranks", "idle")
    assert [float(s or "nan") for s, _ in idle] == [tl.idle_share for tl in timelines if tl]
    assert [shown for _, shown in idle] == ["53.6%", "54.7%"]  # HTA's figures for this trace
    breakdown = figures(text)["rank-breakdown"]["data"]
    compute = next(t for t in breakdown if t["name"] == "compute")
    assert compute["y"] == [tl.compute_share for tl in timelines if tl]
    busy = figures(text)["stragglers"]["data"]
    assert trace.stragglers is not None
    assert busy[0]["y"] == [
        v["median_busy_s"] for _, v in sorted(trace.stragglers.per_rank.items())
    ]
    kernels = parsed.tables["kernels"]
    totals = [(name, k) for tl in timelines if tl for name, k in tl.kernel_totals.items()]
    top = max(totals, key=lambda item: item[1].time_s)
    assert kernels[0][0][1] == top[0]
    total = sum(k.time_s for name, k in totals if name == top[0])
    assert float(kernels[0][3][0] or "nan") == pytest.approx(total, rel=1e-12)


def test_optimize_numbers_come_from_the_trials(optimized: pinchpoint.OptimizeResult) -> None:
    text = render_html(Report.build(optimized))
    parsed = page(text)
    rows = parsed.tables["trials"]
    assert len(rows) == len(optimized.records)
    for row, record in zip(rows, optimized.records, strict=True):
        assert row[1][1] == " + ".join(record.candidate.labels)
        assert record.trial is not None
        assert float(row[2][0] or "nan") == record.trial.speedup
        assert row[8][1] == ("yes" if record.accepted else "no")
    pareto = figures(text)["pareto-speedup"]["data"]
    plotted = sum(len(t["x"]) for t in pareto if t["name"] != "baseline")
    best = 1 if optimized.best is not None else 0
    # Every measured trial once (the best is drawn twice: on the frontier and as a star).
    assert plotted == len(optimized.trials) + best
    baseline = next(t for t in pareto if t["name"] == "baseline")
    assert baseline["x"] == [1.0] and baseline["y"] == [optimized.baseline["quality"]]
    if optimized.best is not None:
        chosen = optimized.records[optimized.best]
        assert " + ".join(chosen.candidate.labels) in text


def test_a_saved_result_gives_the_same_report(
    diagnosis: pinchpoint.Diagnosis,
    trace: pinchpoint.TraceAnalysis,
    optimized: pinchpoint.OptimizeResult,
    sweep: LRFindResult,
    tmp_path: Path,
) -> None:
    diagnosis.save(tmp_path / "d.json")
    diagnosis.profile.save(tmp_path / "p.json")
    trace.save(tmp_path / "t.json")
    optimized.save(tmp_path / "opt")
    sweep.save(tmp_path / "lr.json")
    assert render_html(Report.load(tmp_path / "d.json")) == render_html(Report.build(diagnosis))
    assert render_html(Report.load(tmp_path / "t.json")) == render_html(Report.build(trace))
    assert Report.load(tmp_path / "opt") == Report.build(optimized)
    assert Report.load(tmp_path / "opt" / "optimize.json") == Report.build(optimized)
    assert Report.load(tmp_path / "lr.json") == Report.build(sweep)
    # A saved profile: the same sections as a diagnosis, its verdict from the analyzers alone.
    from_profile = Report.load(tmp_path / "p.json")
    assert from_profile.kind == "profile"
    assert from_profile.sections == Report.build(diagnosis).sections
    # A trace file or folder reports directly.
    assert Report.load(TWO_RANKS).sections == Report.build(trace).sections


# --------------------------------------------------------------------------- escaping


def evil_profile(profile: Profile) -> Profile:
    """The profile with an operator, a module and a layer named to inject markup."""
    first = profile.operators[0]
    health = profile.health
    assert health is not None
    layers = [EVIL_MODULE if name == "6" else name for name in health.layers]
    return dataclasses.replace(
        profile,
        operators=[
            Operator(EVIL_OP, 1, 1.0, 1.0, [[2, 2]], ["float"], 8, 16),
            *profile.operators,
        ]
        if first.name != EVIL_OP
        else profile.operators,
        modules=[
            dataclasses.replace(m, name=EVIL_MODULE) if m.name == "6" else m
            for m in profile.modules
        ],
        health=dataclasses.replace(health, layers=layers),
    )


def evil_trace(tmp_path: Path) -> pinchpoint.TraceAnalysis:
    folder = tmp_path / "evil-trace"
    folder.mkdir()
    shutil.copy(TWO_RANKS / "rank-0.json.gz", folder / f"{EVIL_FILE}rank-0.json.gz")
    return pinchpoint.load_trace(folder, workers=1)


def without_plotly(text: str) -> str:
    """The page with plotly.js's source cut out of its <script> element (the rest is ours)."""
    banner = text.index("plotly.js v")
    start = text.rindex("<script>", 0, banner) + len("<script>")
    return text[:start] + text[text.index("</script>", banner) :]


def assert_no_live_markup(text: str) -> None:
    ours = without_plotly(text)
    for evil in (EVIL_OP, EVIL_MODULE, EVIL_FILE, EVIL_TARGET):
        assert evil not in text
    assert ours.count("<script") == 3  # plotly.js, the figures' JSON, the page's own script
    assert "<img" not in ours and "<svg" not in ours


def test_names_from_runs_and_traces_are_escaped(
    diagnosis: pinchpoint.Diagnosis, tmp_path: Path
) -> None:
    evil = dataclasses.replace(diagnosis, profile=evil_profile(diagnosis.profile))
    text = render_html(Report.build(evil))
    assert_no_live_markup(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text
    parsed = page(text)
    assert parsed.tables["operators"][0][0][1] == EVIL_OP  # shown as text, whole
    assert EVIL_MODULE in [row[0][1] for row in parsed.tables["modules"]]
    # In charts the names are entities, which plotly shows as the characters themselves.
    layers = figures(text)["layer-grad-norm"]["data"]
    assert "&lt;img src=x onerror=alert(2)&gt; (Linear)" in [t["name"] for t in layers]

    trace_text = render_html(Report.build(evil_trace(tmp_path)))
    assert_no_live_markup(trace_text)
    files = column(page(trace_text), "ranks", "file")
    assert files[0][1].endswith(f"{EVIL_FILE}rank-0.json.gz")


def test_a_workload_name_is_escaped_in_optimize_and_titles() -> None:
    result = optimize_tiny(EVIL_TARGET)
    text = render_html(Report.build(result))
    assert_no_live_markup(text)
    assert "<title>pinchpoint · optimize · mlp&lt;/script&gt;&lt;script&gt;" in text


# --------------------------------------------------------------------------- the file


def test_the_page_is_self_contained_and_plotly_is_inlined_once(
    diagnosis: pinchpoint.Diagnosis,
) -> None:
    text = render_html(Report.build(diagnosis))
    assert text.count("plotly.js v") == 1
    ours = without_plotly(text)
    assert "<script src" not in ours and "<link" not in ours
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "connect-src 'none'" in text


def test_write_html_is_atomic(
    diagnosis: pinchpoint.Diagnosis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = Report.build(diagnosis)
    path = tmp_path / "out" / "report.html"
    assert write_html(report, path) == path
    assert path.read_text(encoding="utf-8") == render_html(report)
    path.write_text("the old report")

    def broken(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(PinchpointError, match=r"cannot write .*No space left on device"):
        write_html(report, path)
    assert path.read_text() == "the old report"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temp file left
    monkeypatch.undo()
    with pytest.raises(PinchpointError, match="cannot write"):
        write_html(report, tmp_path)  # a folder


def test_bad_input_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not int"):
        Report.build(42)
    with pytest.raises(ProfileFormatError, match="not a saved pinchpoint result"):
        Report.from_dict({"schema": "someone.else/2"})
    with pytest.raises(
        ProfileFormatError, match="broken pinchpoint trace analysis: missing key 'device'"
    ):
        Report.from_dict({"schema": "pinchpoint.trace/1", "ranks": [{}]})
    with pytest.raises(ProfileFormatError, match="no such file"):
        Report.load(tmp_path / "missing.json")


def test_rendering_a_trace_report_does_not_load_torch(tmp_path: Path) -> None:
    code = (
        "import sys, pinchpoint\n"
        "from pinchpoint.report import Report\n"
        "from pinchpoint.renderers.html import write_html\n"
        f"write_html(Report.load({str(TWO_RANKS)!r}), {str(tmp_path / 'r.html')!r})\n"
        "print('torch' in sys.modules, 'plotly' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == ["False", "False"]
    assert (tmp_path / "r.html").stat().st_size > 1_000_000  # plotly.js is inside


# --------------------------------------------------------------------------- comparisons


def fact_values(report: Report, section: str) -> dict[str, Any]:
    found = report.section(section)
    assert found is not None, section
    return {f.label: f.value for f in found.facts}


def shown_fact(text: str, label: str, value: str) -> bool:
    """Whether the page shows the fact ``label`` with ``value`` (as the renderer lays it out)."""
    return f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" in text


def test_a_regression_report_leads_with_its_verdict_and_the_findings_b_gained(
    regression: Comparison,
) -> None:
    report = Report.build(regression)
    assert report.kind == "compare"
    assert report.title == "a100_nccl_rank0.json.gz → two_ranks_a"
    assert [s.id for s in report.sections] == [
        "step-time",
        "phases",
        "changes",
        "findings",
        "runs",
    ]
    assert [c.id for c in report.charts] == ["step-times", "phase-times"]
    assert [t.id for t in report.tables] == [
        "phase-changes",
        "device-changes",
        "operator-changes",
        "kernel-changes",
        "finding-changes",
        "runs",
    ]
    verdict = report.verdict
    assert verdict is not None and verdict.status == "regression"
    assert verdict.headline.startswith("Regression:")
    assert verdict.detail == (regression.why,)
    assert "178.4% slower" in regression.why and "5% threshold" in regression.why
    # The evidence: the two findings only B has (overhead bound only got better: not evidence).
    assert [v.title for v in verdict.findings] == [
        "communication bound (added in B)",
        "optimizer bound (added in B)",
    ]
    added = regression.findings_with("added")
    assert [v.finding for v in verdict.findings] == [f.b for f in added]
    text = render_html(report)
    parsed = page(text)
    assert parsed.sections == ["verdict", *[s.id for s in report.sections]]
    assert len(figures(text)) == len(report.charts)
    verdict_html = text[text.index('id="verdict"') : text.index("</section>")]
    assert 'class="verdict regression"' in text
    assert html.escape(regression.why) in verdict_html
    assert "communication bound (added in B)" in verdict_html
    assert "Collective communication is exposed" in verdict_html  # what the kind means
    # The other way round: an improvement, and the same findings are gone from B.
    back = Report.build(compare(TWO_RANKS, A100))
    assert back.verdict is not None and back.verdict.status == "improved"
    assert [v.title for v in back.verdict.findings] == [
        "communication bound (gone: only in A)",
        "optimizer bound (gone: only in A)",
    ]


def test_comparison_sections_without_data_are_left_out(tiny_pair: Comparison) -> None:
    # The tiny pair: no finding on either side, no note, and no kernel changed.
    assert tiny_pair.findings == [] and tiny_pair.notes == []
    assert tiny_pair.kernels is not None and tiny_pair.kernels.rows == []
    report = Report.build(tiny_pair)
    assert [s.id for s in report.sections] == ["step-time", "phases", "changes", "runs"]
    assert [t.id for t in report.tables] == [
        "phase-changes",
        "device-changes",
        "operator-changes",
        "runs",
    ]
    assert report.verdict is not None and report.verdict.status == "ok"
    assert report.verdict.findings == ()
    # No interval from 2 against 2 steps: the page says so instead of showing one.
    step = fact_values(report, "step-time")
    assert "95 % interval of B / A: low" not in step and "beyond noise" not in step
    assert step["95 % interval of B / A"].startswith("none: too few steps")
    # The kernels are counted, though none changed.
    changes = fact_values(report, "changes")
    assert changes["kernels unchanged"] == 1 and changes["kernels changed"] == 0
    assert changes["operators added"] == 3 and changes["operators unchanged"] == 4
    text = render_html(report)
    assert 'id="findings"' not in text and 'id="notes"' not in text
    assert 'id="table-kernel-changes"' not in text
    # The overlap has no value on either side (no communication): no row for it.
    measures = [row[0][1] for row in page(text).tables["device-changes"]]
    assert measures == [
        "device idle",
        "device compute",
        "device non-compute (communication, copies, syncs)",
        "exposed communication",
    ]

    # A trace against a live run compares step time and phases only, and the notes say why.
    diagnosis = pinchpoint.Diagnosis.from_dict(json.loads(GOLDEN_DIAGNOSIS.read_text()))
    mixed = compare(V100, diagnosis)
    assert mixed.notes
    report = Report.build(mixed)
    assert [s.id for s in report.sections] == ["step-time", "phases", "notes", "runs"]
    assert [t.id for t in report.tables] == ["phase-changes", "notes", "runs"]
    notes = page(render_html(report)).tables["notes"]
    assert [row[0][1] for row in notes] == mixed.notes
    assert any("only step time and phases compare" in n for n in mixed.notes)


def test_the_numbers_in_a_comparison_page_are_the_comparisons(regression: Comparison) -> None:
    step = regression.step_time
    report = Report.build(regression)
    text = render_html(report)
    parsed = page(text)
    # Step time: the facts quote the Comparison exactly, and the page shows them formatted.
    facts = fact_values(report, "step-time")
    assert facts["A median step"] == step.a_s == 0.222442191
    assert facts["B median step"] == step.b_s == pytest.approx(0.6192715)
    assert facts["change of the median (B / A − 1)"] == step.change
    assert facts["regression threshold"] == regression.fail_above == 0.05
    assert (facts["A steps"], facts["B steps"]) == (3, 2)
    assert shown_fact(text, "A median step", "222 ms")
    assert shown_fact(text, "B median step", "619 ms")
    assert shown_fact(text, "change of the median (B / A − 1)", "178.4%")
    assert shown_fact(text, "ratio B / A", "2.78×")
    assert shown_fact(text, "regression threshold", "5.0%")
    # The step chart: each run's step times in order, the medians marked.
    chart = figures(text)["step-times"]
    a, b = chart["data"]
    assert a["name"] == "A · a100_nccl_rank0.json.gz" and b["name"] == "B · two_ranks_a"
    assert a["y"] == list(step.a_times_s) == [0.222442191, 0.219726905, 0.224936243]
    assert b["y"] == list(step.b_times_s) == [0.607904, 0.630639]
    assert a["x"] == [1, 2, 3] and b["x"] == [1, 2]
    assert [s["y0"] for s in chart["layout"]["shapes"]] == [step.a_s, step.b_s]
    # Phases: the grouped bars and the table hold the Comparison's medians and deltas.
    bars = figures(text)["phase-times"]["data"]
    names = [p.name for p in regression.phases]
    assert names == ["data", "transfer", "forward", "backward", "optimizer", "other"]
    assert [t["x"] for t in bars] == [names, names]
    assert bars[0]["y"] == [p.a_s for p in regression.phases]
    assert bars[1]["y"] == [p.b_s for p in regression.phases]
    assert [column(parsed, "phase-changes", "phase")[i][1] for i in range(6)] == names
    deltas = column(parsed, "phase-changes", "B − A")
    assert [float(s or "nan") for s, _ in deltas] == [p.delta_s for p in regression.phases]
    assert [shown for _, shown in deltas] == [format_seconds(p.delta_s) for p in regression.phases]
    optimizer = {p.name: p for p in regression.phases}["optimizer"]
    assert format_seconds(optimizer.a_s) == "14.8 ms" and format_seconds(optimizer.b_s) == "215 ms"
    # The device: idle share 77.2 % on the A100 trace, 54.1 % averaged over the two ranks.
    gpu = {d.name: d for d in regression.gpu or []}
    idle = parsed.tables["device-changes"][0]
    assert idle[0][1] == "device idle"
    assert [float(c[0] or "nan") for c in idle[1:]] == [
        gpu["idle_share"].a,
        gpu["idle_share"].b,
        gpu["idle_share"].delta,
    ]
    assert [c[1] for c in idle[1:]] == ["77.2%", "54.1%", "-23.1%"]
    assert shown_fact(text, "device busy per step, B", format_seconds(gpu["busy_per_step_s"].b))
    # Operators and kernels: the Comparison's rows in its order (largest change first), top 100.
    ops = regression.operators
    kernels = regression.kernels
    assert ops is not None and kernels is not None
    assert len(ops.rows) == 273 and len(kernels.rows) == 250
    shown_ops = column(parsed, "operator-changes", "operator")
    assert [n for _, n in shown_ops] == [r.name for r in ops.rows[:100]]
    op_deltas = column(parsed, "operator-changes", "B − A")
    assert [float(s or "nan") for s, _ in op_deltas] == [r.delta_s for r in ops.rows[:100]]
    assert "The top 100 of 273 rows." in text and "The top 100 of 250 rows." in text
    first = parsed.tables["kernel-changes"][0]
    top = kernels.rows[0]
    assert first[0][1] == top.name and top.name.startswith("ncclKernel_SendRecv")
    assert (first[1][1], first[2][1]) == ("communication", "added")
    assert first[3] == ("", "–")  # no such kernel in A
    assert float(first[4][0] or "nan") == top.b_s and float(first[5][0] or "nan") == top.delta_s
    # Findings: every one, with its status and both sides' numbers.
    rows = parsed.tables["finding-changes"]
    assert [(r[0][1], r[1][1]) for r in rows] == [
        ("communication bound", "added"),
        ("optimizer bound", "added"),
        ("overhead bound", "better"),
    ]
    overhead = {f.kind: f for f in regression.findings or []}["overhead_bound"]
    assert overhead.a is not None and overhead.b is not None
    assert (rows[2][2][1], rows[2][3][1]) == ("high", "medium")
    assert float(rows[2][4][0] or "nan") == overhead.a.share
    assert float(rows[2][5][0] or "nan") == overhead.b.share
    # The two runs, side by side.
    runs = parsed.tables["runs"]
    assert [(r[0][1], r[2][1], r[6][1], r[7][1]) for r in runs] == [
        ("A", "a100_nccl_rank0.json.gz", "1", "3"),
        ("B", "two_ranks_a", "2", "2"),
    ]


def test_a_saved_comparison_gives_the_same_report(
    regression: Comparison, tiny_pair: Comparison, tmp_path: Path
) -> None:
    for comparison in (regression, tiny_pair):
        saved = comparison.save(tmp_path / "compare.json")
        built = Report.build(comparison)
        assert Report.load(saved) == built
        assert Report.build(comparison.to_dict()) == built
        assert render_html(Report.load(saved)) == render_html(built)
    with pytest.raises(ProfileFormatError, match=r"^x\.json: broken pinchpoint comparison"):
        Report.from_dict({"schema": "pinchpoint.compare/1", "verdict": "ok"}, source="x.json")


def evil_comparison(comparison: Comparison) -> Comparison:
    """The comparison with A's name, its top operator and kernel, and a note made to inject
    markup."""
    assert comparison.operators is not None and comparison.kernels is not None
    return dataclasses.replace(
        comparison,
        a=dataclasses.replace(comparison.a, name=EVIL_FILE),
        operators=dataclasses.replace(
            comparison.operators,
            rows=[
                dataclasses.replace(comparison.operators.rows[0], name=EVIL_OP),
                *comparison.operators.rows[1:],
            ],
        ),
        kernels=dataclasses.replace(
            comparison.kernels,
            rows=[
                dataclasses.replace(comparison.kernels.rows[0], name=EVIL_MODULE),
                *comparison.kernels.rows[1:],
            ],
        ),
        notes=[EVIL_TARGET],
    )


def test_names_in_a_comparison_are_escaped(regression: Comparison) -> None:
    evil = evil_comparison(regression)
    text = render_html(Report.build(evil))
    assert_no_live_markup(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    parsed = page(text)
    assert parsed.tables["operator-changes"][0][0][1] == EVIL_OP  # shown as text, whole
    assert parsed.tables["kernel-changes"][0][0][1] == EVIL_MODULE
    assert parsed.tables["notes"][0][0][1] == EVIL_TARGET
    assert "<h1>&lt;svg onload=alert(3)&gt; → two_ranks_a</h1>" in text
    # In the charts' legends the file name is entities, which plotly shows as the characters.
    steps = figures(text)["step-times"]["data"]
    assert steps[0]["name"] == "A · &lt;svg onload=alert(3)&gt;"


def test_rendering_a_comparison_of_traces_does_not_load_torch(tmp_path: Path) -> None:
    code = (
        "import sys, pinchpoint\n"
        "from pinchpoint.report import Report\n"
        "from pinchpoint.renderers.html import write_html\n"
        f"c = pinchpoint.compare({str(A100)!r}, {str(TWO_RANKS)!r})\n"
        f"write_html(Report.build(c), {str(tmp_path / 'c.html')!r})\n"
        "print('torch' in sys.modules, 'plotly' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == ["False", "False"]
    assert 'id="chart-step-times"' in (tmp_path / "c.html").read_text()


# --------------------------------------------------------------------------- the command line


def test_report_command_writes_the_page(diagnosis: pinchpoint.Diagnosis, tmp_path: Path) -> None:
    saved = diagnosis.save(tmp_path / "run.json")
    result = run_cli("report", str(saved), "-o", str(tmp_path / "page.html"))
    assert result.returncode == 0, result.stderr
    assert "report written to" in result.stdout
    assert (tmp_path / "page.html").read_text() == render_html(Report.load(saved))
    # Without -o the page goes beside the file.
    result = run_cli("report", str(saved))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.html").is_file()


def test_report_command_reads_a_trace_folder(tmp_path: Path) -> None:
    out = tmp_path / "trace.html"
    result = run_cli("report", str(TWO_RANKS), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert 'id="stragglers"' in out.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file: "),
        ('{"schema": "pinchpoint.nothing/1"}', "is not a saved pinchpoint result"),
        ("{not json", "is not valid JSON"),
        ('{"schema": "pinchpoint.optimize/1"}', "broken pinchpoint optimize result"),
    ],
)
def test_report_command_bad_input(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("report", str(path), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_command_cannot_write(diagnosis: pinchpoint.Diagnosis, tmp_path: Path) -> None:
    saved = diagnosis.save(tmp_path / "run.json")
    result = run_cli("report", str(saved), "-o", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: cannot write")
    assert "Traceback" not in result.stderr


def test_html_option_on_trace_and_diagnose(tmp_path: Path, diagnosis: pinchpoint.Diagnosis) -> None:
    out = tmp_path / "t.html"
    result = run_cli("trace", str(A100), "--html", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert (
        "Principal bottleneck: overhead bound." in text and "HTML report written" in result.stderr
    )
    saved = diagnosis.profile.save(tmp_path / "p.json")
    result = run_cli("diagnose", str(saved), "--html", str(tmp_path / "d.html"))
    assert result.returncode == 0, result.stderr
    assert "pinchpoint diagnosis" in (tmp_path / "d.html").read_text()


def test_html_option_on_profile(workload_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    result = run_cli(
        "profile", str(workload_file), "--steps", "3", "--warmup", "1", "--html", str(out)
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "file-mlp" in text and 'id="steps"' in text and 'id="health"' in text


def test_html_option_on_optimize(workload_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.html"
    result = run_cli(
        "optimize",
        f"{workload_file}:inference",
        "--time-budget",
        "4s",
        "--out",
        str(tmp_path / "opt"),
        "--html",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "opt" / "optimize.json").read_text())
    assert out.read_text() == render_html(Report.from_dict(saved))


def test_html_option_on_compare_keeps_the_gate(tmp_path: Path, regression: Comparison) -> None:
    out, saved = tmp_path / "c.html", tmp_path / "c.json"
    result = run_cli("compare", str(A100), str(TWO_RANKS), "--html", str(out), "--json", str(saved))
    # The report is written, and the regression still fails the gate.
    assert result.returncode == 1, result.stderr
    assert "REGRESSION" in result.stdout and "HTML report written" in result.stderr
    text = out.read_text()
    assert text == render_html(Report.load(saved)) == render_html(Report.build(regression))
    assert 'class="verdict regression"' in text
    # `pinchpoint report` reads the saved comparison, and gives the same page.
    again = run_cli("report", str(saved), "-o", str(tmp_path / "again.html"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.html").read_text() == text
    # No regression: exit 0, with the page written all the same.
    ok = run_cli("compare", str(TINY_BASE), str(TINY_TEST), "--html", str(tmp_path / "ok.html"))
    assert ok.returncode == 0, ok.stderr
    assert 'class="verdict ok"' in (tmp_path / "ok.html").read_text()

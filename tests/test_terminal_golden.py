"""Golden files for the terminal summaries: each rendered at 80 columns and compared to a file.

The inputs are fixed: a diagnosis saved once from a real run of ``zoo:slow-collate``
(``data/golden/slow-collate.diagnosis.json``), a scaling measurement saved once from a real
``pinchpoint scale`` run (``data/golden/scale.json``), and traces from the corpus, which are real
files. So every number in the output is stable and stays in the golden file, where a change
to a number's formatting or to what is shown fails the test. What would still vary is scrubbed:
absolute paths (the traces are opened by relative name from their folder), dates and elapsed
times. Each summary must also fit one screen: 80 columns and at most 40 lines.

To accept a deliberate change, regenerate the files and review their diff::

    PINCHPOINT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_terminal_golden.py
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from rich.console import Console, RenderableType

import pinchpoint
from pinchpoint.comparison import compare
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.renderers.terminal import (
    render_comparison,
    render_diagnosis,
    render_optimize,
    render_profile,
    render_scale,
    render_terminal,
    render_trace,
)
from pinchpoint.report import Brief, Column, Fact, FactLine, Grid, Indent, Line, Report, Span
from pinchpoint.results import load_result

GOLDEN = Path(__file__).parent / "data" / "golden"
TRACES = Path(__file__).parent / "data" / "traces"
WIDTH = 80
MAX_LINES = 40
UPDATE = bool(os.environ.get("PINCHPOINT_UPDATE_GOLDEN"))

_SCRUBS: list[tuple[re.Pattern[str], str]] = [
    # ISO dates and times (a profile's "created").
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
        "<date>",
    ),
    # Absolute paths (a temporary folder, the checkout).
    (re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*"), "<path>"),
    # Elapsed wall time of the command itself ("in 12 s", "took 3.4 s").
    (re.compile(r"\b(in|took) \d+(\.\d+)? s\b"), r"\1 <elapsed>"),
]


def scrub(text: str) -> str:
    """``text`` with what differs from run to run replaced by placeholders."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def render(renderable: RenderableType) -> str:
    """The plain text rich prints at a fixed width, without colour."""
    console = Console(width=WIDTH, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` (scrubbed) with ``data/golden/NAME.txt``, or write it when updating."""
    path = GOLDEN / f"{name}.txt"
    text = scrub(text)
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden file {path.name}: run with PINCHPOINT_UPDATE_GOLDEN=1")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs (see the docstring)"


@pytest.fixture
def in_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open traces by their relative names, so the paths in the output do not depend on where
    the checkout is."""
    monkeypatch.chdir(TRACES)


def _diagnosis() -> Diagnosis:
    return Diagnosis.from_dict(orjson.loads((GOLDEN / "slow-collate.diagnosis.json").read_bytes()))


def _fits(text: str) -> None:
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines: more than one screen"
    assert max(len(line) for line in lines) <= WIDTH


def _optimize_without_measurements() -> RenderableType:
    """An optimize run in which no candidate could be tried (twelve, each with its reason):
    the verdicts beyond the first six go to the JSON, so the screen holds."""
    from pinchpoint._profile import Machine
    from pinchpoint.optimizer import Candidate, OptimizeResult, TrialRecord
    from pinchpoint.remedies import Threads
    from pinchpoint.trials.quality import Budget

    records = [
        TrialRecord(
            candidate=Candidate(remedies=(Threads(count=i + 1),), reason="the objective"),
            error=f"{i + 1} threads: the machine has fewer cores than that, so it was skipped",
        )
        for i in range(12)
    ]
    result = OptimizeResult(
        target="zoo:digits-cnn",
        objective="latency",
        budget=Budget(0.01, relative=True),
        machine=Machine(),
        baseline={"quality": 0.98, "time_s": 0.0042, "size_bytes": 153_100},
        records=records,
        best=None,
        best_effort=None,
        pareto=[],
        seconds=12.0,
    )
    return render_optimize(result)


CASES: dict[str, Callable[[], RenderableType]] = {
    "optimize-nothing-measured": _optimize_without_measurements,
    "diagnosis-slow-collate": lambda: render_diagnosis(_diagnosis()),
    "profile-slow-collate": lambda: render_profile(_diagnosis().profile),
    "trace-a100-nccl": lambda: render_trace(
        pinchpoint.load_trace("a100_nccl_rank0.json.gz", workers=1)
    ),
    "trace-two-ranks": lambda: render_trace(pinchpoint.load_trace("two_ranks_a", workers=1)),
    "compare-tiny": lambda: render_comparison(
        compare("tiny_compare_base.json.gz", "tiny_compare_test.json.gz")
    ),
    "compare-a100-two-ranks": lambda: render_comparison(
        compare("a100_nccl_rank0.json.gz", "two_ranks_a")
    ),
    "scale": lambda: render_scale(load_result(GOLDEN / "scale.json")),
}


@pytest.mark.usefixtures("in_traces")
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    text = render(CASES[name]())
    check_golden(name, text)
    if name != "compare-a100-two-ranks":  # two different jobs: every section has changes
        _fits(text)


def test_the_golden_catches_a_changed_number() -> None:
    """A real change in what is shown must fail: the scrubbing keeps every rendered number."""
    diagnosis = _diagnosis()
    golden = (GOLDEN / "diagnosis-slow-collate.txt").read_text(encoding="utf-8")
    assert scrub(render(render_diagnosis(diagnosis))) == golden
    principal = diagnosis.findings[0]
    evidence = dict(principal.evidence)
    evidence["data_share"] = evidence["data_share"] + 0.01
    diagnosis.findings[0] = dataclasses.replace(principal, evidence=evidence)
    assert scrub(render(render_diagnosis(diagnosis))) != golden


def test_scrub_replaces_what_varies_and_keeps_numbers() -> None:
    text = "saved /tmp/pytest-7/run.json at 2024-05-01T12:30:05Z in 12 s · 59.8 ms · 26.2%"
    assert scrub(text) == "saved <path> at <date> in <elapsed> · 59.8 ms · 26.2%\n"


def test_a_name_with_emoji_codes_is_shown_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rich turns ":100:" into an emoji in markup; a folder name is not markup.
    monkeypatch.chdir(tmp_path)
    Path("run:100:thumbs_up:").mkdir()
    Path("run:100:thumbs_up:/rank0.json.gz").write_bytes(
        (TRACES / "tiny_compare_base.json.gz").read_bytes()
    )
    text = render(render_trace(pinchpoint.load_trace("run:100:thumbs_up:", workers=1)))
    assert "trace · run:100:thumbs_up: · 1 rank" in text
    assert "\N{HUNDRED POINTS SYMBOL}" not in text and "\N{THUMBS UP SIGN}" not in text


def test_the_terminal_draws_any_brief_by_its_units_and_nothing_else() -> None:
    """The drawer knows no result kind: a hand-made brief is drawn from its pieces alone."""
    brief = Brief(
        (
            Line((Span("Step: ", tone="strong"), Span(0.00321, "s"), Span(" · "))),
            FactLine((Fact("wait_share", 0.25, "field"), Fact("size", 3 * 1024**2, "bytes"))),
            Grid(
                (Column("name"), Column("time", "s", align="right"), Column("", "bar")),
                (("forward", 0.5, 0.5), (Span("—"), None, 0.0)),
            ),
            Indent((Line((Span((0.001, 0.002), "s_range"),)),), by=2),
        ),
        title=Line((Span("made by hand"),)),
    )
    assert render(render_terminal(Report("test", "t", brief=brief))).splitlines() == [
        "╭─ made by hand ───────────────────────────────────────────────────────────────╮",
        "│ Step: 3.21 ms ·                                                              │",
        "│ wait_share 25.0% · size 3.0 MiB                                              │",
        "│ name       time                                                              │",
        "│ forward  500 ms  ██████████                                                  │",
        "│ —             –                                                              │",
        "│   1 ms–2 ms                                                                  │",
        "╰──────────────────────────────────────────────────────────────────────────────╯",
    ]


def test_a_report_without_a_brief_has_no_terminal_summary() -> None:
    with pytest.raises(ValueError, match="has no terminal summary"):
        render_terminal(Report("lr_find", "sweep"))

"""HTML reports opened in a real headless Chromium: scripts run, charts draw, names stay text.

Debian's chromium (``/usr/bin/chromium``; ``make test`` installs it when missing) is driven
through playwright, which never downloads a browser of its own. One browser serves the whole
session; each report opens in a fresh context with the network switched off, so a page that
needed anything from outside would fail here.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pinchpoint
from pinchpoint import zoo
from pinchpoint.comparison import compare
from pinchpoint.renderers.html import write_html
from pinchpoint.report import Report
from test_report_html import (
    A100,
    EVIL_FILE,
    EVIL_MODULE,
    EVIL_OP,
    EVIL_TARGET,
    TWO_RANKS,
    evil_comparison,
    evil_profile,
    evil_trace,
    lr_sweep,
    optimize_tiny,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: Flags that keep Chromium off the network and quick to start on a bare machine.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session (playwright gives it a fresh user-data dir)."""
    if not CHROMIUM.exists():
        message = f"the browser tests need Debian's chromium at {CHROMIUM} (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        yield chromium
        chromium.close()


@dataclass
class Opened:
    """A report open in a page, with everything that went wrong while it loaded."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def open_report(browser: Browser, tmp_path: Path) -> Iterator[Any]:
    contexts = []

    def opener(report: Report, name: str = "report.html") -> Opened:
        path = write_html(report, tmp_path / name)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        contexts.append(context)
        opened = Opened(context.new_page())
        page = opened.page
        page.on("pageerror", lambda exc: opened.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                opened.errors.append(f"console: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("request", lambda request: opened.requests.append(request.url))

        def dialog(d: Any) -> None:
            opened.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-charts-drawn]", state="attached", timeout=60_000)
        assert opened.requests == [path.as_uri()], "the page asked for something else"
        return opened

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def diagnosis() -> pinchpoint.Diagnosis:
    return pinchpoint.diagnose(zoo.get("digits-cnn"), steps=25, warmup=2, device="cpu")


@pytest.fixture(scope="module")
def live(diagnosis: pinchpoint.Diagnosis) -> Report:
    return Report.build(diagnosis)


@pytest.fixture(scope="module")
def reports(live: Report) -> dict[str, Report]:
    return {
        "live run": live,
        "trace": Report.build(pinchpoint.load_trace(TWO_RANKS, workers=1)),
        "optimize": Report.build(optimize_tiny()),
        "LR range test": Report.build(lr_sweep()),
        # A real regression: the A100 trace against the two-rank job.
        "comparison": Report.build(compare(A100, TWO_RANKS)),
    }


def colours(png: bytes) -> int:
    """How many distinct colours a screenshot holds (a blank one has one or two)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        found = image.convert("RGB").getcolors(maxcolors=1 << 24)
    return len(found or [])


@pytest.mark.parametrize("kind", ["live run", "trace", "optimize", "LR range test", "comparison"])
def test_a_report_opens_offline_without_errors_and_draws_every_chart(
    kind: str, reports: dict[str, Report], open_report: Any
) -> None:
    report = reports[kind]
    assert report.charts, "every kind of report has charts to check"
    opened = open_report(report)
    page = opened.page
    assert opened.errors == [] and opened.dialogs == []
    assert page.get_attribute("body", "data-charts-drawn") == str(len(report.charts))
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == len(report.charts)
    for i, chart in enumerate(report.charts):
        plot = plots.nth(i)
        assert plot.get_attribute("id") == f"chart-{chart.id}"
        assert plot.locator(".main-svg").count() >= 1
        # plotly draws one group per series: every series of the Report is on the chart.
        assert plot.locator("g.trace").count() == len(chart.series), chart.id
        assert colours(plot.screenshot()) >= 8, f"chart {chart.id} looks blank"
    assert colours(page.screenshot(full_page=True)) >= 100
    # The verdict is the first thing on the page, within the first screen.
    verdict = page.locator("section").first
    assert verdict.get_attribute("id") == "verdict"
    box = verdict.bounding_box()
    assert box is not None and box["y"] < 900


def test_injected_names_show_as_text_and_never_run(
    diagnosis: pinchpoint.Diagnosis, open_report: Any, tmp_path: Path
) -> None:
    evil = Report.build(dataclasses.replace(diagnosis, profile=evil_profile(diagnosis.profile)))
    opened = open_report(evil, "evil.html")
    page = opened.page
    assert opened.errors == [] and opened.dialogs == []
    assert page.evaluate("document.scripts.length") == 3
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onload]').length") == 0
    first_operator = page.locator("#table-operators tbody tr").first.locator("td").first
    assert first_operator.inner_text() == EVIL_OP
    legend = page.locator("#chart-layer-grad-norm .legendtext").all_text_contents()
    assert f"{EVIL_MODULE} (Linear)" in legend
    assert EVIL_MODULE in page.locator("#table-modules").inner_text()

    trace = open_report(Report.build(evil_trace(tmp_path)), "evil-trace.html")
    assert trace.errors == [] and trace.dialogs == []
    assert EVIL_FILE in trace.page.locator("#table-ranks").inner_text()
    assert trace.page.evaluate("document.querySelectorAll('[onload]').length") == 0

    comparison = open_report(
        Report.build(evil_comparison(compare(A100, TWO_RANKS))), "evil-compare.html"
    )
    assert comparison.errors == [] and comparison.dialogs == []
    assert comparison.page.evaluate("document.scripts.length") == 3
    changed = comparison.page.locator("#table-operator-changes tbody tr").first.locator("td")
    assert changed.first.inner_text() == EVIL_OP
    assert EVIL_TARGET in comparison.page.locator("#table-notes").inner_text()
    legend = comparison.page.locator("#chart-step-times .legendtext").all_text_contents()
    assert f"A · {EVIL_FILE}" in legend


def column(page: Page, table: str, index: int) -> list[str]:
    return page.eval_on_selector_all(
        f"#table-{table} tbody tr",
        f"rows => rows.map(r => r.cells[{index}].getAttribute('data-sort'))",
    )


def test_tables_sort_by_clicking_a_heading(live: Report, open_report: Any) -> None:
    page = open_report(live).page
    heading = page.locator("#table-operators th").nth(2)  # "self"
    assert heading.inner_text() == "self"
    before = [float(v) for v in column(page, "operators", 2)]
    assert before == sorted(before, reverse=True)  # the Report's own order: most time first
    heading.click()
    assert heading.get_attribute("aria-sort") == "descending"
    heading.click()
    ascending = [float(v) for v in column(page, "operators", 2)]
    assert ascending == sorted(before) and heading.get_attribute("aria-sort") == "ascending"
    names = page.locator("#table-operators th").nth(0)
    names.click()
    sorted_names = column(page, "operators", 0)
    assert sorted_names == sorted(sorted_names, key=str.lower)
    assert len(sorted_names) == len(before)

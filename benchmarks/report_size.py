"""How large the HTML report of a big multi-rank trace is, and how fast it opens.

The 8-rank set is built as ``benchmarks/trace_vs_hta.py`` builds it (one trace of the shared
corpus copied N times as ``rank-{i}.json.gz``, renumbered through ``distributedInfo.rank``),
analysed with ``pinchpoint.load_trace``, turned into a Report and written as HTML. Then the page
is opened ``--repeat`` times in headless Chromium (Debian's ``/usr/bin/chromium``, driven by
playwright with the network off, a fresh context each time, the browser already started), and
the time from asking for the page to the moment every chart has drawn (the page sets
``data-charts-drawn`` on <body>) is measured from this process.

Targets: the file under 10 MB, the page open with its charts drawn in under 5 s (median).

``--quick`` builds 2 ranks from the repository's own copy of the corpus (``tests/data/traces``)
and opens the page once: the same code in seconds. Where Chromium is missing it says so in one
line and measures the file alone (without ``--quick`` it stops with that message).

    .venv/bin/python benchmarks/report_size.py [--ranks 8] [--source FILE] [--repeat 5]
        [--keep report.html] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trace_vs_hta import REPO_CORPUS, build_rank_set, default_corpus, resolve_source

SIZE_TARGET_BYTES = 10_000_000
OPEN_TARGET_S = 5.0
CHROMIUM = "/usr/bin/chromium"
QUICK = {"ranks": 2, "repeat": 1}
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_report(folder: Path, out: Path) -> tuple[float, float, int]:
    """Analyse the rank set and write its report: (analysis s, report s, chart count)."""
    import pinchpoint
    from pinchpoint.renderers.html import write_html
    from pinchpoint.report import Report

    started = time.perf_counter()
    analysis = pinchpoint.load_trace(folder)
    analysed = time.perf_counter()
    report = Report.build(analysis)
    write_html(report, out)
    return analysed - started, time.perf_counter() - analysed, len(report.charts)


def open_times(page_path: Path, repeat: int, charts: int) -> list[float]:
    """Seconds from asking for the page to every chart drawn, once per repeat."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            started = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-charts-drawn]", state="attached", timeout=120_000)
            times.append(time.perf_counter() - started)
            drawn = page.get_attribute("body", "data-charts-drawn")
            if errors or drawn != str(charts):
                raise SystemExit(f"the page failed: drew {drawn} of {charts} charts, {errors}")
            context.close()
        browser.close()
    return times


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--source", help="a trace file of the corpus (default: a100_nccl_rank0)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="also copy the report to this path")
    parser.add_argument("--quick", action="store_true", help="2 ranks, one open: a check")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.ranks < 1 or args.repeat < 1:
        parser.error("--ranks and --repeat must be >= 1")
    browser = Path(CHROMIUM).exists()
    if not browser and not args.quick:
        parser.error(f"no Chromium at {CHROMIUM}: the page cannot be opened")
    source = resolve_source(args.source, REPO_CORPUS if args.quick else default_corpus())
    with tempfile.TemporaryDirectory(prefix="pinchpoint-report-") as tmp:
        folder = Path(tmp) / "ranks"
        build_rank_set(source, args.ranks, folder)
        page = Path(tmp) / "report.html"
        analysis_s, report_s, charts = write_report(folder, page)
        size = page.stat().st_size
        times = open_times(page, args.repeat, charts) if browser else []
        if args.keep is not None:
            args.keep.write_bytes(page.read_bytes())
    print(f"source: {source.name} × {args.ranks} ranks; analysis {analysis_s:.2f} s")
    print(f"report: {charts} charts, built and written in {report_s:.2f} s")
    print(
        f"size: {size / 1e6:.2f} MB (target < {SIZE_TARGET_BYTES / 1e6:.0f} MB) "
        f"{verdict(size < SIZE_TARGET_BYTES)}"
    )
    if not times:
        print(f"open time not measured: no Chromium at {CHROMIUM}")
        return
    median = statistics.median(times)
    print(
        f"open until charts drew: median {median:.2f} s over {len(times)} opens "
        f"(min {min(times):.2f}, max {max(times):.2f}; target < {OPEN_TARGET_S:.0f} s) "
        f"{verdict(median < OPEN_TARGET_S)}"
    )


if __name__ == "__main__":
    main()

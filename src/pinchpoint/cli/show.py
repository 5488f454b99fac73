"""The commands that show what pinchpoint has: zoo, demo, report."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pinchpoint.cli.options import (
    Debug,
    Steps,
    app,
    guarded,
    load_input,
    no_blas_threads,
    out_console,
    record_workload,
    status,
)

__all__ = ["DEMO_TARGETS", "demo_command", "report_command", "zoo_command"]


@app.command("zoo")
def zoo_command() -> None:
    """List the built-in workloads (run one with `pinchpoint profile zoo:NAME`)."""
    from rich.table import Table

    from pinchpoint import zoo

    table = Table(box=None, pad_edge=False, show_header=True)
    table.add_column("name", style="bold")
    table.add_column("mode")
    table.add_column("what it is")
    for entry in zoo.entries():
        table.add_row(f"zoo:{entry.name}", entry.mode, entry.summary)
    out_console().print(table)


#: What `pinchpoint demo` records: one training and one inference workload.
DEMO_TARGETS = ("zoo:digits-cnn", "zoo:minilm")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the saved diagnoses.")] = Path(
        "pinchpoint-demo"
    ),
    steps: Steps = 20,
    debug: Debug = False,
) -> None:
    """Diagnose a built-in training and inference workload; save each with an HTML report."""
    from pinchpoint.diagnosis import diagnose
    from pinchpoint.renderers.html import write_html
    from pinchpoint.renderers.terminal import render_diagnosis, render_profile
    from pinchpoint.report import Report

    def work() -> None:
        for target in DEMO_TARGETS:
            profile = record_workload(load_input(target), steps, 3, "auto", what="diagnosing")
            result = diagnose(profile, name=target)
            out_console().print(render_profile(result.profile))
            out_console().print(render_diagnosis(result))
            written = result.save(out / f"{profile.name}.diagnosis.json")
            page = write_html(Report.build(result), out / f"{profile.name}.report.html")
            out_console().print(f"saved {escape(str(written))} and {escape(str(page))}\n")

    guarded(debug, work)


def _default_report_path(run: str) -> Path:
    """``run.json`` → ``run.html`` beside it; a folder's report goes beside the folder."""
    path = Path(run.rstrip("/\\") or run)
    name = path.name
    for suffix in (".json.gz", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name or 'report'}.html")


@app.command("report")
def report_command(
    run: Annotated[
        str,
        typer.Argument(
            help="A saved profile, diagnosis, trace analysis, comparison, optimize result (or "
            "its --out folder) or LR range test (.json); also a profiler trace file or folder."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The HTML file to write (default: RUN with .html)."),
    ] = None,
    debug: Debug = False,
) -> None:
    """Write a self-contained HTML report of a saved result: it opens offline, in any browser."""
    from pinchpoint.results import is_trace

    if is_trace(run):
        no_blas_threads()
    from pinchpoint.renderers.html import write_html
    from pinchpoint.report import Report

    def work() -> None:
        with status(f"reading {run}…"):
            report = Report.load(run)
        written = write_html(report, output or _default_report_path(run))
        out_console().print(f"report written to {escape(str(written))}", soft_wrap=True)

    guarded(debug, work)

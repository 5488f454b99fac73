"""The commands that change or tune a workload: optimize, calibrate, lr-find."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pinchpoint.cli.options import (
    Debug,
    Device,
    Html,
    app,
    err_console,
    guarded,
    load_input,
    out_console,
    status,
    write_report,
)

__all__ = ["calibrate_command", "lr_find_command", "optimize_command"]


@app.command("optimize")
def optimize_command(
    target: Annotated[
        str,
        typer.Argument(
            help="A workload: file.py (its workload() function), file.py:function or zoo:NAME."
        ),
    ],
    max_drop: Annotated[
        str,
        typer.Option(
            "--max-drop",
            help="Quality the result may lose: 1% (relative to the baseline), 0.01 (absolute, "
            "in the metric's units) or 0.5pt (percentage points).",
        ),
    ] = "1%",
    objective: Annotated[
        str, typer.Option("--objective", help="latency, throughput, size or memory.")
    ] = "latency",
    time_budget: Annotated[
        str, typer.Option("--time-budget", help="Time for the whole search, e.g. 10m or 90s.")
    ] = "10m",
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for optimize.json, the chosen model and its remedies."),
    ] = Path("pinchpoint-optimize"),
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Threads the model runs with (default: torch's)."),
    ] = None,
    device: Device = "cpu",
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Run data-parallel on this many processes (torchrun, DDP): the baseline and "
            "each candidate are launched runs, and the data-parallel remedies are tried.",
        ),
    ] = None,
    html: Html = None,
    debug: Debug = False,
) -> None:
    """Try the remedies for what the diagnosis found; keep the best verified candidate."""
    from pinchpoint.optimizer import optimize, parse_duration
    from pinchpoint.renderers.terminal import render_optimize
    from pinchpoint.trials.quality import Budget

    try:
        budget = Budget.parse(max_drop)
        seconds = parse_duration(time_budget)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if objective not in ("latency", "throughput", "size", "memory"):
        raise typer.BadParameter(f"{objective!r}: use latency, throughput, size or memory")
    if nproc is not None and objective not in ("latency", "throughput"):
        raise typer.BadParameter("--nproc trials measure speed: use latency or throughput")

    def work() -> None:
        import dataclasses

        workload = load_input(target)
        if threads is not None:
            workload = dataclasses.replace(workload, threads=threads)
        console = err_console()

        def progress(record: Any) -> None:
            label = " + ".join(record.candidate.labels)
            console.print(f"[dim]tried[/] {escape(label)}: {escape(record.why)}")

        result = optimize(
            workload,
            max_drop=budget,
            objective=objective,
            time_budget=seconds,
            out=out,
            device=device,
            target=target,
            on_trial=progress,
            nproc=nproc,
        )
        out_console().print(render_optimize(result))
        console.print(f"results written to {out}/ (optimize.json, model.pt, remedies.json)")
        if html is not None:
            write_report(result, html)

    guarded(debug, work)


@app.command("calibrate")
def calibrate_command(
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Measure again even when a cached result exists.")
    ] = False,
    debug: Debug = False,
) -> None:
    """Measure this machine's peak FLOP/s, memory bandwidth and dispatch overhead (cached)."""
    from rich.table import Table

    from pinchpoint.machine.calibrate import cache_path, load_or_calibrate
    from pinchpoint.renderers.terminal import format_evidence

    def work() -> None:
        with status("calibrating…"):
            peaks, cached = load_or_calibrate(device, refresh=refresh)
        table = Table(box=None, pad_edge=False, show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for dtype, rate in peaks.flops.items():
            table.add_row(f"matmul {dtype}", format_evidence("_flops_per_s", rate))
        table.add_row(
            "memory bandwidth", format_evidence("_bytes_per_s", peaks.bandwidth_bytes_per_s)
        )
        for level, rate in peaks.cache_bandwidth_bytes_per_s.items():
            held = format_evidence("_bytes", peaks.cache_bytes.get(level, 0))
            table.add_row(
                f"{level.upper()} bandwidth (up to {held})", format_evidence("_bytes_per_s", rate)
            )
        table.add_row(
            "ridge point (fp32)", format_evidence("_flops_per_byte", peaks.ridge_flops_per_byte())
        )
        table.add_row("per-operator overhead", format_evidence("_s", peaks.dispatch_s))
        out_console().print(table)
        how = "cached result from" if cached else f"measured in {peaks.seconds:.1f} s, saved to"
        err_console().print(f"{how} {cache_path(device)}")

    guarded(debug, work)


@app.command("lr-find")
def lr_find_command(
    target: Annotated[
        str, typer.Argument(help="A training workload: file.py, file.py:function or zoo:NAME.")
    ],
    start_lr: Annotated[float, typer.Option("--start-lr", help="First rate of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Last rate of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="Steps in the sweep.")] = 100,
    device: Device = "auto",
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the sweep as JSON to this file.")
    ] = None,
    debug: Debug = False,
) -> None:
    """Run a learning-rate range test on a copy of the model and suggest a learning rate."""
    from rich.table import Table

    from pinchpoint.lr_find import lr_find

    def work() -> None:
        workload = load_input(target)
        with status("sweeping learning rates…"):
            result = lr_find(workload, start_lr=start_lr, end_lr=end_lr, steps=steps, device=device)
        table = Table(
            box=None, pad_edge=False, show_header=True, title="LR range test", title_justify="left"
        )
        table.add_column("learning rate", justify="right")
        table.add_column("loss (smoothed)", justify="right")
        for i in range(0, len(result.lrs), max(1, len(result.lrs) // 12)):
            table.add_row(f"{result.lrs[i]:.2e}", f"{result.smoothed[i]:.4g}")
        out_console().print(table)
        if result.suggestion is not None:
            out_console().print(f"[bold]suggested learning rate: {result.suggestion:.3g}[/]")
        else:
            out_console().print("[bold yellow]no learning rate made the loss fall[/]")
        out_console().print(escape(result.reason))
        if json is not None:
            err_console().print(f"sweep written to {result.save(json)}")

    guarded(debug, work)

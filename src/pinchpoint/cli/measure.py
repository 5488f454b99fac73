"""The commands that record or read runs: profile, diagnose, merge, trace, compare, scale."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pinchpoint.cli.options import (
    Debug,
    Device,
    Html,
    Nnodes,
    NodeRank,
    Nproc,
    RanksDir,
    RdzvEndpoint,
    Steps,
    Timeout,
    Warmup,
    app,
    err_console,
    fail,
    guarded,
    load_input,
    no_blas_threads,
    out_console,
    parse_size,
    record_ranks,
    record_workload,
    status,
    write_outputs,
    write_report,
)

__all__ = [
    "compare_command",
    "diagnose_command",
    "merge_command",
    "profile_command",
    "scale_command",
    "trace_command",
]


@app.command("profile")
def profile_command(
    target: Annotated[
        str, typer.Argument(help="file.py (its workload() function), file.py:function or zoo:NAME.")
    ],
    steps: Steps = 20,
    warmup: Warmup = 3,
    device: Device = "auto",
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the Profile as JSON to this file.")
    ] = None,
    html: Html = None,
    nproc: Nproc = None,
    nnodes: Nnodes = 1,
    node_rank: NodeRank = 0,
    rdzv_endpoint: RdzvEndpoint = None,
    ranks_dir: RanksDir = None,
    timeout: Timeout = None,
    debug: Debug = False,
) -> None:
    """Record a workload and show where each step's time goes."""
    from pinchpoint.renderers.terminal import render_profile

    def work() -> None:
        if nproc is not None:
            result = record_ranks(
                target,
                nproc,
                nnodes,
                node_rank,
                rdzv_endpoint,
                steps,
                warmup,
                device,
                ranks_dir,
                timeout,
            )
            if result is None:
                return
        else:
            result = record_workload(load_input(target), steps, warmup, device)
        out_console().print(render_profile(result))
        write_outputs(result, "profile", json, html)

    guarded(debug, work)


@app.command("diagnose")
def diagnose_command(
    target: Annotated[
        str,
        typer.Argument(
            help="file.py, file.py:function, zoo:NAME, a saved profile/diagnosis .json, or a "
            "profiler trace (.json, .json.gz, or a folder of per-rank files)."
        ),
    ],
    steps: Steps = 20,
    warmup: Warmup = 3,
    device: Device = "auto",
    memory_budget: Annotated[
        str | None,
        typer.Option("--memory-budget", help="Memory the run must fit in, e.g. 512MiB or 2GB."),
    ] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the diagnosis as JSON to this file.")
    ] = None,
    html: Html = None,
    nproc: Nproc = None,
    nnodes: Nnodes = 1,
    node_rank: NodeRank = 0,
    rdzv_endpoint: RdzvEndpoint = None,
    ranks_dir: RanksDir = None,
    timeout: Timeout = None,
    debug: Debug = False,
) -> None:
    """Find the principal bottleneck, with its evidence and the remedies that apply."""
    from pinchpoint.results import is_trace

    if is_trace(target):
        no_blas_threads()
    from pinchpoint.diagnosis import diagnose
    from pinchpoint.renderers.terminal import render_diagnosis

    budget = parse_size(memory_budget) if memory_budget is not None else None

    def work() -> None:
        from pinchpoint._profile import Profile
        from pinchpoint.traces import TraceAnalysis

        if nproc is not None:
            if is_trace(target) or target.endswith(".json"):
                raise fail(
                    "--nproc records a workload; a saved profile or trace is diagnosed as is"
                )
            loaded = record_ranks(
                target,
                nproc,
                nnodes,
                node_rank,
                rdzv_endpoint,
                steps,
                warmup,
                device,
                ranks_dir,
                timeout,
            )
            if loaded is None:
                return
        else:
            loaded = load_input(target, profiles=True)
        if not isinstance(loaded, (Profile, TraceAnalysis)):
            loaded = record_workload(loaded, steps, warmup, device, what="diagnosing")
        with status("calibrating this machine (once)…"):
            result = diagnose(loaded, memory_budget_bytes=budget, name=target)
        out_console().print(render_diagnosis(result))
        write_outputs(result, "diagnosis", json, html)

    guarded(debug, work)


@app.command("merge")
def merge_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="A folder of per-rank profiles (.json), or the files, from one data-parallel job."
        ),
    ],
    json: Annotated[
        Path | None,
        typer.Option("--json", help="Write the merged multi-rank Profile as JSON to this file."),
    ] = None,
    html: Html = None,
    debug: Debug = False,
) -> None:
    """Merge the per-rank profiles of one data-parallel job into one multi-rank profile."""
    from pinchpoint.recorders.job import merge
    from pinchpoint.renderers.terminal import render_profile

    def work() -> None:
        merged = merge(paths[0] if len(paths) == 1 else paths)
        out_console().print(render_profile(merged))
        if json is not None:
            err_console().print(f"merged profile written to {escape(str(merged.save(json)))}")
        if html is not None:
            write_report(merged, html)

    guarded(debug, work)


@app.command("trace")
def trace_command(
    path: Annotated[
        str,
        typer.Argument(
            help="A PyTorch profiler (Kineto) trace, .json or .json.gz, or a folder of per-rank "
            "trace files."
        ),
    ],
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the analysis as JSON to this file.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes for the ranks (default: one per core)."),
    ] = None,
    html: Html = None,
    debug: Debug = False,
) -> None:
    """Analyse profiler traces: GPU time breakdown, kernels, steps, stragglers, findings."""
    no_blas_threads()
    from pinchpoint.renderers.terminal import render_trace
    from pinchpoint.traces import load_trace

    def work() -> None:
        with status(f"analysing {path}…"):
            analysis = load_trace(path, workers=workers)
        out_console().print(render_trace(analysis))
        write_outputs(analysis, "trace analysis", json, html)

    guarded(debug, work)


@app.command("compare")
def compare_command(
    a: Annotated[
        str,
        typer.Argument(
            help="The baseline: a saved profile, diagnosis or trace analysis (.json), or a "
            "profiler trace (.json, .json.gz, or a folder of per-rank files)."
        ),
    ],
    b: Annotated[str, typer.Argument(help="The run to check against it, of any of those kinds.")],
    fail_above: Annotated[
        str | None,
        typer.Option(
            "--fail-above",
            help="Exit 1 when B's step time is slower than A's by more than this, beyond "
            "noise: 5% or 0.05 (default 5%).",
        ),
    ] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON to this file.")
    ] = None,
    html: Html = None,
    debug: Debug = False,
) -> None:
    """Compare two runs: step time, phases, operators, kernels, findings. Exit 1 on a regression."""
    from pinchpoint.results import is_trace

    if is_trace(a) or is_trace(b):
        no_blas_threads()
    from pinchpoint.comparison import compare, parse_fail_above
    from pinchpoint.renderers.terminal import render_comparison

    try:
        parse_fail_above(fail_above)  # a mistake in the option shows before any work is done
    except ValueError as exc:
        raise fail(f"--fail-above: {exc}") from None

    def work() -> bool:
        with status(f"comparing {a} and {b}…"):
            result = compare(a, b, fail_above=fail_above)
        out_console().print(render_comparison(result))
        write_outputs(result, "comparison", json, html)
        return result.regression

    if guarded(debug, work):
        raise typer.Exit(code=1)


@app.command("scale")
def scale_command(
    target: Annotated[
        str,
        typer.Argument(help="A training workload: file.py, file.py:function or zoo:NAME."),
    ],
    nproc: Annotated[
        str,
        typer.Option(
            "--nproc", help="Process counts to compare, e.g. 1,2 (the smallest is the reference)."
        ),
    ] = "1,2",
    steps: Steps = 20,
    warmup: Warmup = 3,
    repeats: Annotated[
        int,
        typer.Option("--repeats", min=1, help="Runs per process count, interleaved (1 2 2 1)."),
    ] = 2,
    device: Annotated[
        str, typer.Option("--device", help="cpu (gloo) or cuda (NCCL, one GPU per rank).")
    ] = "cpu",
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=1.0, help="Seconds one run may take before it is stopped."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Threads per rank at every count (default: cores / the largest count).",
        ),
    ] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the measurement as JSON to this file.")
    ] = None,
    debug: Debug = False,
) -> None:
    """Measure data-parallel throughput at each process count and its efficiency against linear."""
    from pinchpoint.renderers.terminal import render_scale
    from pinchpoint.trials.scale import parse_nprocs, scale

    try:
        counts = parse_nprocs(nproc)
    except ValueError as exc:
        raise fail(f"--nproc: {exc}") from None

    def work() -> None:
        runs = len(counts) * repeats
        with status(f"running {target} {runs} times on {nproc} processes…"):
            result = scale(
                target,
                counts,
                steps=steps,
                warmup=warmup,
                device=device,
                timeout_s=timeout,
                repeats=repeats,
                threads=threads,
            )
        out_console().print(render_scale(result))
        if json is not None:
            written = escape(str(result.save(json)))
            err_console().print(f"scaling written to {written}", soft_wrap=True)

    guarded(debug, work)

"""The ``pinchpoint`` command: argument parsing only; the work is done by the public API.

Errors a user can cause (``PinchpointError``) print as one line on stderr with exit status 2;
``--debug`` shows the traceback instead.

Annotations here are evaluated when the module loads (no ``from __future__ import annotations``):
typer reads every command's parameters at each start, and string annotations would make it
parse and compile each one again, about 12 ms of every run.
"""

import contextlib
import gc
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pinchpoint.errors import PinchpointError

__all__ = ["app", "main"]

app = typer.Typer(
    name="pinchpoint",
    help="Find and fix the bottlenecks of PyTorch training and inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Steps = Annotated[int, typer.Option("--steps", min=1, help="Measured steps (after warm-up).")]
Warmup = Annotated[
    int, typer.Option("--warmup", min=0, help="Warm-up steps, left out of statistics.")
]
Device = Annotated[
    str, typer.Option("--device", help="auto, cpu or cuda (cuda:N for another GPU).")
]


def _stdout() -> Console:
    return Console(highlight=False, emoji=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, emoji=False)


def _fail(message: str) -> typer.Exit:
    _stderr().print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _guarded(debug: bool, work: Callable[[], T]) -> T:
    """Run ``work``; turn a PinchpointError (or an interrupt) into a one-line error and exit 2."""
    try:
        return work()
    except PinchpointError as exc:
        if debug:
            raise
        raise _fail(str(exc).replace("[", "\\[")) from None
    except KeyboardInterrupt:
        if debug:
            raise
        raise _fail("interrupted") from None


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar on stderr when it is a terminal; a silent callback otherwise."""
    console = _stderr()
    if not console.is_terminal:
        yield lambda _step: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda _step: bar.advance(task)


def _load(target: str, *, profiles: bool = False) -> Any:
    """The Workload (or, with ``profiles``, a saved Profile) that ``target`` names."""
    from pinchpoint.targets import load_target, load_workload

    console = _stderr()
    with console.status(f"loading {target}…") if console.is_terminal else _nothing():
        return load_target(target) if profiles else load_workload(target)


def _record(workload: Any, steps: int, warmup: int, device: str, what: str = "profiling") -> Any:
    """Record a Workload with a progress bar; the one path every recording command shares."""
    from pinchpoint.recorders import profile, resolve_device, sample_plan

    resolved = resolve_device(device)
    # Roughly the steps profile() will run (activation-sampled steps add a few more).
    total = warmup + len(sample_plan(resolved)) + steps + steps // 10
    with _progress(f"{what} {workload.name}", total) as advance:
        return profile(workload, steps=steps, warmup=warmup, device=resolved, on_step=advance)


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes from a size such as ``512MiB``, ``2GB`` or ``1048576``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise typer.BadParameter(f"{text!r} is not a size like 512MiB, 2GB or 1048576")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise typer.BadParameter("a memory budget must be positive")
    return value


def _no_blas_threads() -> None:
    """Keep numpy's OpenBLAS from starting a thread per core, for commands that never call BLAS.

    The threads spin while numpy loads, costing 0.1-0.3 CPU seconds for nothing in a trace
    analysis. Only where numpy is not loaded yet and the user has not chosen a thread count.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


Html = Annotated[
    Path | None,
    typer.Option(
        "--html", help="Also write a self-contained HTML report (opens offline) to this file."
    ),
]


def _write_report(result: Any, path: Path) -> None:
    """Write the HTML report of any result to ``path`` and say where it went."""
    from pinchpoint.renderers.html import write_html
    from pinchpoint.report import Report

    written = write_html(Report.build(result), path)
    _stderr().print(f"HTML report written to {escape(str(written))}", soft_wrap=True)


Nproc = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        help="Run on this many ranks of this node under torchrun with DistributedDataParallel "
        "(gloo on cpu, NCCL on cuda) and merge their profiles.",
    ),
]
Nnodes = Annotated[
    int, typer.Option("--nnodes", help="Nodes of a multi-node job (run the same command on each).")
]
NodeRank = Annotated[
    int,
    typer.Option("--node-rank", help="This node's number, 0 to nnodes-1 (0 hosts the rendezvous)."),
]
RdzvEndpoint = Annotated[
    str | None,
    typer.Option("--rdzv-endpoint", help="HOST:PORT of node 0's rendezvous (several nodes)."),
]
RanksDir = Annotated[
    Path | None,
    typer.Option(
        "--ranks-dir", help="Folder for the per-rank profiles (default: a temporary folder)."
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout", min=1.0, help="With --nproc: stop the whole job after these seconds."
    ),
]


def _record_ranks(
    target: str,
    nproc: int,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    steps: int,
    warmup: int,
    device: str,
    ranks_dir: Path | None,
    timeout: float | None,
) -> Any:
    """Launch ``target`` on many ranks; the merged Profile, or None on a node without rank 0."""
    from pinchpoint.recorders.job import launch

    if nproc < 1:
        raise _fail(f"--nproc must be at least 1, not {nproc}")
    console = _stderr()
    ranks = f"{nproc} rank{'s' * (nproc != 1)}" + (
        f" on each of {nnodes} nodes" if nnodes > 1 else ""
    )
    try:
        with console.status(f"running {target} on {ranks}…") if console.is_terminal else _nothing():
            merged = launch(
                target,
                nproc=nproc,
                nnodes=nnodes,
                node_rank=node_rank,
                rdzv_endpoint=rdzv_endpoint,
                steps=steps,
                warmup=warmup,
                device=device,
                out_dir=ranks_dir,
                timeout_s=timeout,
            )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if merged is None:
        where = str(ranks_dir) if ranks_dir is not None else "a temporary folder (--ranks-dir)"
        console.print(
            "rank 0 ran on another node, which merges the job; this node's ranks saved their "
            f"profiles in {escape(where)}",
            soft_wrap=True,
        )
    return merged


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
            result = _record_ranks(
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
            result = _record(_load(target), steps, warmup, device)
        _stdout().print(render_profile(result))
        if json is not None:
            written = result.save(json)
            _stderr().print(f"profile written to {written}")
        if html is not None:
            _write_report(result, html)

    _guarded(debug, work)


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
        _no_blas_threads()
    from pinchpoint.diagnosis import diagnose
    from pinchpoint.renderers.terminal import render_diagnosis

    budget = parse_size(memory_budget) if memory_budget is not None else None

    def work() -> None:
        from pinchpoint._profile import Profile
        from pinchpoint.traces import TraceAnalysis

        if nproc is not None:
            if is_trace(target) or target.endswith(".json"):
                raise _fail(
                    "--nproc records a workload; a saved profile or trace is diagnosed as is"
                )
            loaded = _record_ranks(
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
            loaded = _load(target, profiles=True)
        if not isinstance(loaded, (Profile, TraceAnalysis)):
            loaded = _record(loaded, steps, warmup, device, what="diagnosing")
        with (
            _stderr().status("calibrating this machine (once)…")
            if _stderr().is_terminal
            else (_nothing())
        ):
            result = diagnose(loaded, memory_budget_bytes=budget, name=target)
        _stdout().print(render_diagnosis(result))
        if json is not None:
            _stderr().print(f"diagnosis written to {result.save(json)}")
        if html is not None:
            _write_report(result, html)

    _guarded(debug, work)


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
        _stdout().print(render_profile(merged))
        if json is not None:
            _stderr().print(f"merged profile written to {escape(str(merged.save(json)))}")
        if html is not None:
            _write_report(merged, html)

    _guarded(debug, work)


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
    _no_blas_threads()
    from pinchpoint.renderers.terminal import render_trace
    from pinchpoint.traces import load_trace

    def work() -> None:
        console = _stderr()
        with console.status(f"analysing {path}…") if console.is_terminal else _nothing():
            analysis = load_trace(path, workers=workers)
        _stdout().print(render_trace(analysis))
        if json is not None:
            _stderr().print(f"trace analysis written to {analysis.save(json)}")
        if html is not None:
            _write_report(analysis, html)

    _guarded(debug, work)


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
        _no_blas_threads()
    from pinchpoint.comparison import compare, parse_fail_above
    from pinchpoint.renderers.terminal import render_comparison

    try:
        parse_fail_above(fail_above)  # a mistake in the option shows before any work is done
    except ValueError as exc:
        raise _fail(f"--fail-above: {exc}") from None

    def work() -> bool:
        console = _stderr()
        with console.status(f"comparing {a} and {b}…") if console.is_terminal else _nothing():
            result = compare(a, b, fail_above=fail_above)
        _stdout().print(render_comparison(result))
        if json is not None:
            _stderr().print(f"comparison written to {result.save(json)}")
        if html is not None:
            _write_report(result, html)
        return result.regression

    if _guarded(debug, work):
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
        raise _fail(f"--nproc: {exc}") from None

    def work() -> None:
        console = _stderr()
        runs = len(counts) * repeats
        with (
            console.status(f"running {target} {runs} times on {nproc} processes…")
            if console.is_terminal
            else _nothing()
        ):
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
        _stdout().print(render_scale(result))
        if json is not None:
            console.print(f"scaling written to {escape(str(result.save(json)))}", soft_wrap=True)

    _guarded(debug, work)


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

        workload = _load(target)
        if threads is not None:
            workload = dataclasses.replace(workload, threads=threads)
        console = _stderr()

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
        _stdout().print(render_optimize(result))
        console.print(f"results written to {out}/ (optimize.json, model.pt, remedies.json)")
        if html is not None:
            _write_report(result, html)

    _guarded(debug, work)


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
        with _stderr().status("calibrating…") if _stderr().is_terminal else _nothing():
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
        _stdout().print(table)
        how = "cached result from" if cached else f"measured in {peaks.seconds:.1f} s, saved to"
        _stderr().print(f"{how} {cache_path(device)}")

    _guarded(debug, work)


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
        workload = _load(target)
        with (
            _stderr().status("sweeping learning rates…") if _stderr().is_terminal else (_nothing())
        ):
            result = lr_find(workload, start_lr=start_lr, end_lr=end_lr, steps=steps, device=device)
        table = Table(
            box=None, pad_edge=False, show_header=True, title="LR range test", title_justify="left"
        )
        table.add_column("learning rate", justify="right")
        table.add_column("loss (smoothed)", justify="right")
        for i in range(0, len(result.lrs), max(1, len(result.lrs) // 12)):
            table.add_row(f"{result.lrs[i]:.2e}", f"{result.smoothed[i]:.4g}")
        _stdout().print(table)
        if result.suggestion is not None:
            _stdout().print(f"[bold]suggested learning rate: {result.suggestion:.3g}[/]")
        else:
            _stdout().print("[bold yellow]no learning rate made the loss fall[/]")
        _stdout().print(escape(result.reason))
        if json is not None:
            _stderr().print(f"sweep written to {result.save(json)}")

    _guarded(debug, work)


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
    _stdout().print(table)


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
            profile = _record(_load(target), steps, 3, "auto", what="diagnosing")
            result = diagnose(profile, name=target)
            _stdout().print(render_profile(result.profile))
            _stdout().print(render_diagnosis(result))
            written = result.save(out / f"{profile.name}.diagnosis.json")
            page = write_html(Report.build(result), out / f"{profile.name}.report.html")
            _stdout().print(f"saved {escape(str(written))} and {escape(str(page))}\n")

    _guarded(debug, work)


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
        _no_blas_threads()
    from pinchpoint.renderers.html import write_html
    from pinchpoint.report import Report

    def work() -> None:
        console = _stderr()
        with console.status(f"reading {run}…") if console.is_terminal else _nothing():
            report = Report.load(run)
        written = write_html(report, output or _default_report_path(run))
        _stdout().print(f"report written to {escape(str(written))}", soft_wrap=True)

    _guarded(debug, work)


def main() -> None:
    """Entry point of the ``pinchpoint`` script."""
    # Quiet third-party progress bars and hub look-ups: everything pinchpoint runs is offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if _command(sys.argv[1:]) in _FILE_COMMANDS:
        _reuse_freed_memory()
        # These commands make few reference cycles and live for seconds; the collector's passes
        # over every tracked object (numpy's and rich's module state included) buy nothing.
        gc.disable()
    try:
        app(prog_name="pinchpoint")
    except SystemExit as exc:
        if _reads_files_only(sys.argv[1:]):
            _quick_exit(exc.code)
        raise


#: Commands that only read and write files: no user code runs in them, so nothing of the user's
#: waits for the interpreter's shutdown.
_FILE_COMMANDS = frozenset({"trace", "compare", "report", "merge"})


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def _reads_files_only(args: list[str]) -> bool:
    return _command(args) in _FILE_COMMANDS and "--debug" not in args


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _reuse_freed_memory() -> None:
    """Have glibc keep the memory a file command frees for its next allocations.

    Reading a trace allocates and frees, chunk after chunk, arrays and buffers of a few hundred
    kB to a few MB. glibc's adaptive defaults map each block above its threshold afresh and hand
    the heap's free top back to the kernel once it exceeds twice that threshold, so every chunk
    touched new pages: about 2,900 page faults per 8 MB rank file, 10-25 % of the time it takes
    to read. Fixed thresholds (blocks up to 16 MiB from the heap, up to 64 MiB of free top kept)
    bring that to a few faults per file. Linux with glibc only; elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return
    mallopt(_M_MMAP_THRESHOLD, 16 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _quick_exit(code: object) -> NoReturn:
    """Leave without the interpreter's shutdown, once the output is flushed.

    The shutdown frees every object and module one by one (1.4 % of the instructions of
    ``pinchpoint trace`` on eight ranks, and the pages go back to the kernel one by one); the
    files are already written, atomically, by then.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()

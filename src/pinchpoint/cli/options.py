"""The command line's app, the options its commands share, and the helpers every command uses.

Annotations here are evaluated when the module loads (no ``from __future__ import annotations``,
here and in the command modules): typer reads every command's parameters at each start, and
string annotations would make it parse and compile each one again, about 12 ms of every run.
"""

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pinchpoint.errors import PinchpointError

__all__ = [
    "Debug",
    "Device",
    "Html",
    "Nnodes",
    "NodeRank",
    "Nproc",
    "RanksDir",
    "RdzvEndpoint",
    "Steps",
    "Timeout",
    "Warmup",
    "app",
    "err_console",
    "fail",
    "guarded",
    "load_input",
    "no_blas_threads",
    "nothing",
    "out_console",
    "parse_size",
    "progress_bar",
    "record_ranks",
    "record_workload",
    "status",
    "write_outputs",
    "write_report",
]

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


def out_console() -> Console:
    """The console results print to (stdout)."""
    return Console(highlight=False, emoji=False)


def err_console() -> Console:
    """The console messages, progress and errors print to (stderr)."""
    return Console(stderr=True, highlight=False, emoji=False)


def fail(message: str) -> typer.Exit:
    """Print ``message`` as a one-line error; the exit (status 2) to raise."""
    err_console().print(
        f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)


def guarded(debug: bool, work: Callable[[], T]) -> T:
    """Run ``work``; turn a PinchpointError (or an interrupt) into a one-line error and exit 2."""
    try:
        return work()
    except PinchpointError as exc:
        if debug:
            raise
        raise fail(str(exc).replace("[", "\\[")) from None
    except KeyboardInterrupt:
        if debug:
            raise
        raise fail("interrupted") from None


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar on stderr when it is a terminal; a silent callback otherwise."""
    console = err_console()
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


def load_input(target: str, *, profiles: bool = False) -> Any:
    """The Workload (or, with ``profiles``, a saved Profile) that ``target`` names."""
    from pinchpoint.targets import load_target, load_workload

    with status(f"loading {target}…"):
        return load_target(target) if profiles else load_workload(target)


def record_workload(
    workload: Any, steps: int, warmup: int, device: str, what: str = "profiling"
) -> Any:
    """Record a Workload with a progress bar; the one path every recording command shares."""
    from pinchpoint.recorders import profile, resolve_device, sample_plan

    resolved = resolve_device(device)
    # Roughly the steps profile() will run (activation-sampled steps add a few more).
    total = warmup + len(sample_plan(resolved)) + steps + steps // 10
    with progress_bar(f"{what} {workload.name}", total) as advance:
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


def no_blas_threads() -> None:
    """Keep numpy's OpenBLAS from starting a thread per core, for commands that never call BLAS.

    The threads spin while numpy loads, costing 0.1-0.3 CPU seconds for nothing in a trace
    analysis. Only where numpy is not loaded yet and the user has not chosen a thread count.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@contextmanager
def nothing() -> Iterator[None]:
    """A context that does nothing, for a status line off a terminal."""
    yield


def status(message: str) -> AbstractContextManager[Any]:
    """A status line on stderr while the block runs, when stderr is a terminal."""
    console = err_console()
    return console.status(message) if console.is_terminal else nothing()


Html = Annotated[
    Path | None,
    typer.Option(
        "--html", help="Also write a self-contained HTML report (opens offline) to this file."
    ),
]


def write_report(result: Any, path: Path) -> None:
    """Write the HTML report of any result to ``path`` and say where it went."""
    from pinchpoint.renderers.html import write_html
    from pinchpoint.report import Report

    written = write_html(Report.build(result), path)
    err_console().print(f"HTML report written to {escape(str(written))}", soft_wrap=True)


def write_outputs(result: Any, what: str, json: Path | None, html: Path | None) -> None:
    """Save ``result`` as JSON and write its HTML report where asked, saying where each went."""
    if json is not None:
        err_console().print(f"{what} written to {result.save(json)}")
    if html is not None:
        write_report(result, html)


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


def record_ranks(
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
        raise fail(f"--nproc must be at least 1, not {nproc}")
    console = err_console()
    ranks = f"{nproc} rank{'s' * (nproc != 1)}" + (
        f" on each of {nnodes} nodes" if nnodes > 1 else ""
    )
    try:
        with status(f"running {target} on {ranks}…"):
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
        raise fail(str(exc)) from None
    if merged is None:
        where = str(ranks_dir) if ranks_dir is not None else "a temporary folder (--ranks-dir)"
        console.print(
            "rank 0 ran on another node, which merges the job; this node's ranks saved their "
            f"profiles in {escape(where)}",
            soft_wrap=True,
        )
    return merged

"""Compare ``pinchpoint trace`` with Holistic Trace Analysis (HTA) on the same set of rank traces.

A set of N rank files is built in a temporary folder from one trace of the shared corpus (the
file is copied N times as ``rank-{i}.json.gz``, each copy renumbered through
``distributedInfo.rank``, nothing else changed), or a folder of rank files is used as it is. Each
tool then runs on that folder in a fresh process, in ``--repeat`` rounds of one HTA run and
``--pinchpoint-runs`` pinchpoint runs (default 3), alternating which goes first:

- ``python -m pinchpoint trace FOLDER --json OUT`` with this interpreter (run the script with the
  project's venv: ``.venv/bin/python benchmarks/trace_vs_hta.py``);
- with ``--hta-venv PATH``, a small driver under that venv's python that runs HTA's
  ``get_temporal_breakdown`` and ``get_comm_comp_overlap`` (HTA is never a dependency of
  pinchpoint; it lives in its own venv).

Measured per run, the same way for both tools:

- CPU seconds: user + sys of the process and all its descendants, from
  ``getrusage(RUSAGE_CHILDREN)`` before and after (it includes grandchildren their parent waited
  for, e.g. worker pools), cross-checked against psutil samples of each process in the tree (which
  miss the last few milliseconds of every process, so they read a little lower);
- wall seconds, from just before the start to the end of the process;
- peak memory: the peak of the SUM of the PSS (proportional set size, from
  ``/proc/PID/smaps_rollup``) of every process in the tree, sampled from this process every
  ``--interval-ms`` while the tool runs. PSS splits a page shared by N processes N ways, so a
  tree's PSS sum is the memory it really occupies; the sum of RSS, which counts the interpreter
  and libraries that forked workers share once per process, is printed beside it (both tools
  fork workers, so both are overstated by it alike).

Why more pinchpoint runs: this machine's speed dips for moments of a second or so; a ten-second
HTA run averages them out, a one-second pinchpoint run is either caught by one or not, so the
median of a few pinchpoint runs swings by a third between invocations. More of its runs steady
the median; they do not bias it.

The medians are printed against the targets (pinchpoint uses ≥ 10× less CPU time than HTA and
≤ 1/3 of its peak memory), with each tool's best run beside them and a yardstick
(``json.load`` of one gzipped rank file, in-process), then per rank both tools' idle, compute,
non-compute and compute/communication-overlap shares in percent and their differences, flagging
any above 0.1 percentage points.

``--quick`` runs the same code on 2 ranks, one measured run per tool and no warm-up, from the
repository's own copy of the corpus (``tests/data/traces``) unless ``--corpus`` says otherwise:
a check that the script works, in seconds. Without ``--hta-venv`` (quick or not) only
pinchpoint's side runs, and one line says that HTA was not measured.

    .venv/bin/python benchmarks/trace_vs_hta.py [--ranks 8] [--source FILE_OR_FOLDER]
        [--hta-venv /work/hta-venv] [--repeat 3] [--pinchpoint-runs 3] [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's own copy of the corpus's small traces (quick mode reads it).
REPO_CORPUS = REPO_ROOT / "tests" / "data" / "traces"
QUICK = {"ranks": 2, "repeat": 1, "warmup": 0, "pinchpoint_runs": 1}
CORPUS_ENV = "PINCHPOINT_TRACES"
DEFAULT_SOURCE = "a100_nccl_rank0.json.gz"
CPU_TARGET = 10.0  # HTA CPU seconds / pinchpoint CPU seconds must be at least this
MEMORY_TARGET = 1 / 3  # pinchpoint peak / HTA peak must be at most this
PARITY_PP = 0.1  # flag per-rank differences above this many percentage points
METRICS = ("idle", "compute", "non_compute", "overlap")
PINCHPOINT_KEYS = {
    "idle": "idle_share",
    "compute": "compute_share",
    "non_compute": "non_compute_share",
    "overlap": "comm_comp_overlap",
}
TRACE_SUFFIXES = (".json", ".json.gz", ".gz")

HTA_DRIVER = '''\
"""Run HTA's temporal breakdown and comm/comp overlap on a folder; write per-rank percentages."""
import json
import logging
import math
import sys
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)  # HTA logs every file it parses at INFO, to stdout

from hta.trace_analysis import TraceAnalysis  # noqa: E402

logging.disable(logging.WARNING)  # (again: HTA's logging.config is loaded on import)


def number(value):
    value = float(value)
    return None if math.isnan(value) else value


trace_dir, out_path = sys.argv[1], sys.argv[2]
ranks, errors = {}, {}
analysis = TraceAnalysis(trace_dir=trace_dir)
try:
    breakdown = analysis.get_temporal_breakdown(visualize=False)
    for row in breakdown.to_dict("records"):
        entry = ranks.setdefault(str(int(row["rank"])), {})
        entry["idle"] = number(row["idle_time_pctg"])
        entry["compute"] = number(row["compute_time_pctg"])
        entry["non_compute"] = number(row["non_compute_time_pctg"])
        for column in ("idle_time(us)", "compute_time(us)", "non_compute_time(us)",
                       "kernel_time(us)"):
            entry[column] = number(row[column])
except Exception as exc:  # keep the other analysis's figures
    errors["temporal_breakdown"] = f"{type(exc).__name__}: {exc}"
try:
    overlap = analysis.get_comm_comp_overlap(visualize=False)
    for row in overlap.to_dict("records"):
        ranks.setdefault(str(int(row["rank"])), {})["overlap"] = number(
            row["comp_comm_overlap_pctg"]
        )
except Exception as exc:
    errors["comm_comp_overlap"] = f"{type(exc).__name__}: {exc}"
with open(out_path, "w") as fp:
    json.dump({"ranks": ranks, "errors": errors}, fp, indent=1)
'''


# --------------------------------------------------------------------------- building the set


def default_corpus() -> Path:
    """``$PINCHPOINT_TRACES``, else ``../shared/traces`` beside the repository root."""
    env = os.environ.get(CORPUS_ENV)
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "traces").resolve()


def resolve_source(source: str | None, corpus: Path) -> Path:
    """A path as given if it exists, else relative to the corpus."""
    if source is None:
        return corpus / DEFAULT_SOURCE
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute():
        return path
    return corpus / source


def _dump_trace(doc: dict[str, Any], rank_key: str) -> bytes:
    """The trace as JSON, one top-level key and one list element per line, as Kineto writes it.

    ``distributedInfo`` is written with ``json`` (``"rank": N``, a space after the colon): HTA
    finds a file's rank with the regular expression ``"rank":\\s+(\\d+)`` on its first matching
    line, so orjson's compact ``"rank":N`` would make it take every copy for rank 0.
    """
    parts = []
    for key, value in doc.items():
        head = orjson.dumps(key) + b": "
        if key == rank_key:
            parts.append(head + json.dumps(value).encode())
        elif isinstance(value, list) and value:
            items = b",\n  ".join(orjson.dumps(item) for item in value)
            parts.append(head + b"[\n  " + items + b"\n  ]")
        else:
            parts.append(head + orjson.dumps(value))
    return b"{\n  " + b",\n  ".join(parts) + b"\n}\n"


def build_rank_set(source: Path, ranks: int, folder: Path) -> list[Path]:
    """Copy ``source`` ``ranks`` times into ``folder`` as ``rank-{i}.json.gz``, renumbered."""
    raw = source.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise SystemExit(f"{source}: not a Chrome-trace object")
    if "distributedInfo" not in doc or not isinstance(doc["distributedInfo"], dict):
        rest = {k: v for k, v in doc.items() if k != "distributedInfo"}
        doc = {"distributedInfo": {"rank": 0}, **rest}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(ranks):
        doc["distributedInfo"] = {**doc["distributedInfo"], "rank": i}
        path = folder / f"rank-{i}.json.gz"
        path.write_bytes(gzip.compress(_dump_trace(doc, "distributedInfo"), compresslevel=6))
        paths.append(path)
    return paths


def compile_package() -> str:
    """Compile pinchpoint's bytecode, as an installed package has it, and say what was done.

    pip compiles every module it installs (HTA's venv holds its ``.pyc`` files), but an editable
    install only gets bytecode when Python may write it; with ``PYTHONDONTWRITEBYTECODE`` set,
    each run would compile pinchpoint's sources again (about 0.1 CPU seconds) and the
    comparison would charge pinchpoint for how it was installed.
    """
    import compileall

    import pinchpoint

    package = Path(pinchpoint.__file__).parent
    ok = compileall.compile_dir(package, quiet=1, force=False)
    return f"{package} compiled to .pyc" + ("" if ok else " (some modules failed)")


def trace_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(TRACE_SUFFIXES))


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One measured run of one tool."""

    returncode: int
    cpu_s: float  # RUSAGE_CHILDREN delta, user + sys, the whole tree
    cpu_psutil_s: float  # sum over sampled processes of their last-seen own user + sys
    wall_s: float
    peak_mb: float  # peak of the sum of PSS over the tree
    peak_rss_mb: float  # peak of the sum of RSS over the tree
    peak_main_mb: float  # peak RSS of the tool's own process alone
    max_processes: int
    samples: int


def _descendants(pid: int) -> list[int]:
    """Every descendant pid, from ``/proc/PID/task/TID/children`` (~15× cheaper than psutil's
    scan of all of ``/proc``); falls back on psutil where the kernel lacks that file."""
    out: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as fp:
                    kids = [int(k) for k in fp.read().split()]
            except FileNotFoundError:
                if parent == pid and tid == str(pid):
                    return _descendants_psutil(pid)
                continue
            except (OSError, ValueError):
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def _descendants_psutil(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _pss(pid: int, fallback: int) -> int:
    """Proportional set size of a process in bytes (its RSS where the kernel does not say)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fp:
            for line in fp:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def measure(cmd: Sequence[str], cwd: Path, stdout: Path, stderr: Path, interval_s: float) -> Run:
    """Run ``cmd`` to completion, sampling its process tree every ``interval_s``."""
    procs: dict[int, psutil.Process] = {}
    cpu_seen: dict[tuple[int, float], float] = {}
    peak = peak_main = peak_pss = 0
    max_processes = samples = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=err)
        while child.poll() is None:
            total = alive = total_pss = 0
            for pid in [child.pid, *_descendants(child.pid)]:
                try:
                    proc = procs.get(pid) or procs.setdefault(pid, psutil.Process(pid))
                    with proc.oneshot():
                        rss = proc.memory_info().rss
                        times = proc.cpu_times()
                    cpu_seen[(pid, proc.create_time())] = times.user + times.system
                except psutil.Error:  # gone, or a zombie waiting to be reaped
                    continue
                total += rss
                total_pss += _pss(pid, rss)
                alive += 1
                if pid == child.pid:
                    peak_main = max(peak_main, rss)
            peak = max(peak, total)
            peak_pss = max(peak_pss, total_pss)
            max_processes = max(max_processes, alive)
            samples += 1
            time.sleep(interval_s)
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(
        returncode=child.returncode,
        cpu_s=cpu,
        cpu_psutil_s=sum(cpu_seen.values()),
        wall_s=wall,
        peak_mb=peak_pss / 2**20,
        peak_rss_mb=peak / 2**20,
        peak_main_mb=peak_main / 2**20,
        max_processes=max_processes,
        samples=samples,
    )


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class Tool:
    """How to run one tool, and its runs and per-rank figures once run."""

    name: str
    cmd: list[str]
    out_json: Path
    read: Callable[[Path], dict[int, dict[str, float | None]]]
    runs: list[Run] = field(default_factory=list)
    ranks: dict[int, dict[str, float | None]] = field(default_factory=dict)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in self.runs))

    def summary(self) -> dict[str, Any]:
        keys = ("cpu_s", "cpu_psutil_s", "wall_s", "peak_mb", "peak_rss_mb", "peak_main_mb")
        return {
            "median": {k: self.median(k) for k in keys} if self.runs else None,
            "runs": [asdict(r) for r in self.runs],
            "cmd": self.cmd,
        }


def run_tool(tool: Tool, workdir: Path, index: int, interval_s: float) -> None:
    """One measured run; on failure prints the stderr tail and exits non-zero."""
    stdout, stderr = workdir / f"{tool.name}-{index}.out", workdir / f"{tool.name}-{index}.err"
    tool.out_json.unlink(missing_ok=True)
    run = measure(tool.cmd, workdir, stdout, stderr, interval_s)
    problem = None
    if run.returncode != 0:
        problem = f"exited with status {run.returncode}"
    elif not tool.out_json.is_file():
        problem = f"wrote no {tool.out_json.name}"
    else:
        try:
            ranks = tool.read(tool.out_json)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = f"wrote a JSON this script cannot read ({type(exc).__name__}: {exc})"
        else:
            if not ranks:
                problem = "gave no per-rank figures"
            elif not tool.ranks:
                tool.ranks = ranks
    if problem is not None:
        print(f"\n{tool.name} {problem}: {' '.join(tool.cmd)}", file=sys.stderr)
        for label, path in (("stderr", stderr), ("stdout", stdout)):
            text = tail(path)
            if text:
                print(f"--- {tool.name} {label} (tail) ---\n{text}", file=sys.stderr)
        raise SystemExit(1)
    tool.runs.append(run)
    print(
        f"  {tool.name:<10} run {index}: cpu {run.cpu_s:6.2f} s  wall {run.wall_s:6.2f} s  "
        f"peak {run.peak_mb:7.1f} MB  ({run.max_processes} processes, {run.samples} samples)",
        flush=True,
    )


def read_pinchpoint(path: Path) -> dict[int, dict[str, float | None]]:
    """``ranks[i]["gpu"][...]`` fractions 0..1 (any may be null) → percent by rank."""
    data = json.loads(path.read_text())
    out: dict[int, dict[str, float | None]] = {}
    for entry in data["ranks"]:
        gpu = entry.get("gpu") or {}
        out[int(entry["rank"])] = {
            metric: (None if gpu.get(key) is None else 100 * float(gpu[key]))
            for metric, key in PINCHPOINT_KEYS.items()
        }
    return out


def read_hta(path: Path) -> dict[int, dict[str, float | None]]:
    data = json.loads(path.read_text())
    return {int(rank): values for rank, values in data["ranks"].items()}


def yardstick(path: Path, repeat: int) -> dict[str, float]:
    """``json.load`` of one gzipped rank file in this process: median CPU and wall seconds."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        with gzip.open(path, "rt") as fp:
            json.load(fp)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall)}


# --------------------------------------------------------------------------- reporting


def _fmt(value: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


MARKS = {"differs": "!", "one-sided": "?"}


def parity(
    pinchpoint: dict[int, dict[str, float | None]] | None,
    hta: dict[int, dict[str, float | None]] | None,
) -> tuple[list[dict[str, Any]], int, int]:
    """Per-rank rows (both tools' percentages, |difference| and a status), the number of values
    differing by more than PARITY_PP, and the number only one tool gave (the other's null)."""
    rows: list[dict[str, Any]] = []
    flagged = one_sided = 0
    both = pinchpoint is not None and hta is not None
    for rank in sorted(set(pinchpoint or {}) | set(hta or {})):
        row: dict[str, Any] = {"rank": rank}
        for metric in METRICS:
            ours = None if pinchpoint is None else pinchpoint.get(rank, {}).get(metric)
            theirs = None if hta is None else hta.get(rank, {}).get(metric)
            diff, status = None, None
            if ours is not None and theirs is not None:
                diff = abs(ours - theirs)
                status = "ok" if diff <= PARITY_PP else "differs"  # NaN differs too
                flagged += status == "differs"
            elif both and (ours is not None or theirs is not None):
                status = "one-sided"
                one_sided += 1
            row[metric] = {"pinchpoint": ours, "hta": theirs, "diff_pp": diff, "status": status}
        rows.append(row)
    return rows, flagged, one_sided


def print_parity(rows: list[dict[str, Any]], with_hta: bool) -> None:
    if not with_hta:
        print("\nPer rank, pinchpoint, percent")
        print(f"{'rank':>5}" + "".join(f"{m.replace('_', '-'):>13}" for m in METRICS))
        for row in rows:
            cells = "".join(_fmt(row[m]["pinchpoint"], 13) for m in METRICS)
            print(f"{row['rank']:>5}{cells}")
        return
    print(
        f"\nPer rank, percent (|diff| in percentage points; ! above {PARITY_PP}, "
        "? only one tool gave a value)"
    )
    print(f"{'rank':>5}  {'':<12}{'pinchpoint':>11}{'HTA':>9}{'|diff|':>9}")
    for row in rows:
        for i, metric in enumerate(METRICS):
            cell = row[metric]
            diff = cell["diff_pp"]
            mark = MARKS.get(cell["status"], "")
            rank = f"{row['rank']:>5}" if i == 0 else " " * 5
            print(
                f"{rank}  {metric.replace('_', '-'):<12}{_fmt(cell['pinchpoint'], 11)}"
                f"{_fmt(cell['hta'], 9)}{_fmt(diff, 9)} {mark}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        help=f"a trace file to copy into N ranks, or a folder of rank files used as they are "
        f"(a name that does not exist as given is looked up in the corpus; default "
        f"{DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help=f"the trace corpus (default ${CORPUS_ENV}, else ../shared/traces from the repo root)",
    )
    parser.add_argument(
        "--ranks", type=int, default=8, help="copies to build from a file source (default 8)"
    )
    parser.add_argument(
        "--hta-venv", type=Path, help="a virtual environment with HTA installed; omit to skip HTA"
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per tool (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured runs per tool first (default 1)"
    )
    parser.add_argument(
        "--pinchpoint-runs",
        type=int,
        default=3,
        help="pinchpoint runs in each round, beside HTA's one (default 3: a run of a second is "
        "hit harder by the machine's moments of slowness than one of ten, so its median needs "
        "more runs to settle)",
    )
    parser.add_argument(
        "--interval-ms", type=float, default=5.0, help="process-tree sampling period (default 5)"
    )
    parser.add_argument(
        "--no-pinchpoint",
        action="store_true",
        help="measure HTA alone (e.g. to check this script's HTA half on its own)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--keep", type=Path, help="build the rank set and logs in this folder and keep them"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 3 if a target fails or a rank differs"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 ranks, one run each: a check that it runs"
    )
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK, corpus=REPO_CORPUS)
        args = parser.parse_args()
    if args.repeat < 1 or args.warmup < 0 or args.pinchpoint_runs < 1:
        parser.error("--repeat and --pinchpoint-runs must be ≥ 1, --warmup ≥ 0")

    corpus = args.corpus or default_corpus()
    source = resolve_source(args.source, corpus)
    if not source.exists():
        parser.error(f"no such trace file or folder: {source}")
    hta_python = None
    if args.hta_venv is not None:
        hta_python = args.hta_venv / "bin" / "python"
        if not hta_python.exists():
            parser.error(f"no python in {args.hta_venv}/bin")
    elif args.no_pinchpoint:
        parser.error("--no-pinchpoint leaves nothing to run without --hta-venv")

    with tempfile.TemporaryDirectory(prefix="trace-vs-hta-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            folder = source.resolve()
            files = trace_files(folder)
            if not files:
                parser.error(f"no trace files (*.json, *.json.gz) in {folder}")
            note = f"{len(files)} rank files used as they are"
            if args.ranks not in (0, 8):
                note += f" (--ranks {args.ranks} ignored for a folder)"
        else:
            if args.ranks < 1:
                parser.error("--ranks must be ≥ 1 for a file source")
            folder = workdir / "ranks"
            if folder.exists():
                shutil.rmtree(folder)
            t0 = time.perf_counter()
            files = build_rank_set(source, args.ranks, folder)
            note = f"{args.ranks} renumbered copies, built in {time.perf_counter() - t0:.1f} s"
        size_mb = sum(f.stat().st_size for f in files) / 2**20
        print(f"source  {source}\nset     {folder}: {note}, {size_mb:.1f} MB gzipped")
        print(
            f"machine {os.cpu_count()} cores, load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )

        if not args.no_pinchpoint:
            print(f"bytecode {compile_package()}")
        tools: list[Tool] = []
        if not args.no_pinchpoint:
            pinchpoint_json = workdir / "pinchpoint.json"
            cmd = [sys.executable, "-m", "pinchpoint", "trace", str(folder)]
            tools.append(
                Tool(
                    "pinchpoint",
                    [*cmd, "--json", str(pinchpoint_json)],
                    pinchpoint_json,
                    read_pinchpoint,
                )
            )
        if hta_python is not None:
            driver = workdir / "hta_driver.py"
            driver.write_text(HTA_DRIVER)
            out = workdir / "hta.json"
            tools.append(
                Tool("HTA", [str(hta_python), str(driver), str(folder), str(out)], out, read_hta)
            )

        interval = args.interval_ms / 1000
        for i in range(args.warmup):
            for tool in tools if i % 2 == 0 else tools[::-1]:
                run_tool(tool, workdir, -1 - i, interval)
            for tool in tools:
                tool.runs.clear()
        per_round = {"pinchpoint": args.pinchpoint_runs, "HTA": 1}
        print(
            f"measuring ({args.repeat} rounds of {args.pinchpoint_runs} pinchpoint run(s) and "
            "one HTA run, alternating which goes first)"
        )
        for i in range(args.repeat):
            for tool in tools if i % 2 == 0 else tools[::-1]:
                for j in range(per_round[tool.name]):
                    run_tool(tool, workdir, i * per_round[tool.name] + j, interval)
        stick = yardstick(files[0], args.repeat)
        hta_errors = {}
        if hta_python is not None:
            hta_errors = json.loads((workdir / "hta.json").read_text()).get("errors", {})

    pp = next((t for t in tools if t.name == "pinchpoint"), None)
    hta = next((t for t in tools if t.name == "HTA"), None)
    print(
        f"\nmedians{'':<19}{'CPU s':>9}{'(psutil)':>10}{'wall s':>9}{'peak MB':>10}"
        f"{'(RSS sum)':>11}{'best CPU s':>12}"
    )
    for tool in tools:
        print(
            f"{tool.name + f' ({len(tool.runs)} runs)':<26}{tool.median('cpu_s'):>9.2f}"
            f"{tool.median('cpu_psutil_s'):>10.2f}{tool.median('wall_s'):>9.2f}"
            f"{tool.median('peak_mb'):>10.1f}{tool.median('peak_rss_mb'):>11.1f}"
            f"{min(r.cpu_s for r in tool.runs):>12.2f}"
        )
    print(
        f"{'json.load ' + files[0].name:<26}{stick['cpu_s']:>9.2f}{'':>10}{stick['wall_s']:>9.2f}"
        f"{'':>10}   (one rank, in-process)"
    )
    targets: dict[str, Any] = {}
    if hta is not None and pp is not None:
        cpu_ratio = hta.median("cpu_s") / pp.median("cpu_s")
        mem_ratio = pp.median("peak_mb") / hta.median("peak_mb")
        targets = {
            "cpu_hta_over_pinchpoint": cpu_ratio,
            "cpu_pass": cpu_ratio >= CPU_TARGET,
            "peak_pinchpoint_over_hta": mem_ratio,
            "peak_pass": mem_ratio <= MEMORY_TARGET,
        }
        best_ratio = min(r.cpu_s for r in hta.runs) / min(r.cpu_s for r in pp.runs)
        targets["cpu_best_hta_over_pinchpoint"] = best_ratio
        print(
            f"\nHTA CPU / pinchpoint CPU    {cpu_ratio:8.2f}×  target ≥ {CPU_TARGET:.0f}×   "
            f"{'PASS' if targets['cpu_pass'] else 'FAIL'}   (medians; best runs: {best_ratio:.2f}×)"
        )
        print(
            f"pinchpoint peak / HTA peak  {mem_ratio:8.3f}   target ≤ 1/3   "
            f"{'PASS' if targets['peak_pass'] else 'FAIL'}"
        )
    elif hta is None:
        print(
            "\nHTA was not measured (no --hta-venv): pinchpoint's side only, no ratios or parity."
        )
    else:
        print("\npinchpoint was not run (--no-pinchpoint): no ratios, targets or parity.")
    if hta is not None:
        for name, message in hta_errors.items():
            print(f"HTA's {name} failed: {message}")

    rows, flagged, one_sided = parity(
        pp.ranks if pp is not None else None, hta.ranks if hta is not None else None
    )
    print_parity(rows, hta is not None)
    if hta is not None and pp is not None:
        print(
            f"{flagged} value(s) differ by more than {PARITY_PP} pp"
            if flagged
            else f"all values both tools gave are within {PARITY_PP} pp"
        )
        if one_sided:
            print(f"{one_sided} value(s) given by one tool only (the other's is null)")

    if args.json is not None:
        report = {
            "source": str(source),
            "folder": str(folder) if args.keep or source.is_dir() else None,
            "files": [f.name for f in files],
            "repeat": args.repeat,
            "interval_ms": args.interval_ms,
            "cpu_count": os.cpu_count(),
            "tools": {tool.name: tool.summary() for tool in tools},
            "hta_run": hta is not None,
            "hta_errors": hta_errors,
            "yardstick_json_load": {"file": files[0].name, **stick},
            "targets": targets,
            "ranks": rows,
            "flagged": flagged,
            "one_sided": one_sided,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    failed = flagged + one_sided > 0 or (
        bool(targets) and not (targets["cpu_pass"] and targets["peak_pass"])
    )
    if args.strict and failed:
        raise SystemExit(3)


if __name__ == "__main__":
    main()

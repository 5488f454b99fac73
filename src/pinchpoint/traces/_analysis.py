"""Trace analysis across ranks: map each file to a summary, reduce the summaries to findings.

:func:`analyze_file` is the map: one trace file in, one small JSON-ready summary out (or an
error record). :func:`combine` is the reduce: it reads only summaries, never events, so the same
two functions can run on a cluster engine for thousands of ranks. :func:`load_trace` runs the
map in parallel processes on this machine and the reduce here.

Each rank's summary becomes a :class:`~pinchpoint._profile.Profile` (:func:`rank_profile`), and
the default analyzers, the same ones a live run gets, find its bottlenecks; findings of one kind
on several ranks merge into one that names the ranks. Stragglers come from the calibrated test
in :mod:`pinchpoint.stragglers` over the ranks' per-step busy time. The merging and the
straggler findings are :mod:`pinchpoint.analyzers.ranks`', which a recorded multi-rank Profile
shares.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pinchpoint._io import atomic_write_bytes
from pinchpoint._profile import DeviceTimeline, Machine, Operator, Profile, Step
from pinchpoint.analyzers import Analyzer, run_analyzers
from pinchpoint.analyzers.ranks import merge_rank_findings, straggler_findings
from pinchpoint.errors import TraceFormatError
from pinchpoint.finding import Finding, rank
from pinchpoint.stragglers import StragglerReport, find_stragglers
from pinchpoint.traces._parse import read_trace
from pinchpoint.traces._rank import summarize_rank

__all__ = [
    "SCHEMA",
    "TraceAnalysis",
    "analyze_file",
    "combine",
    "find_trace_files",
    "load_trace",
    "rank_profile",
]

SCHEMA = "pinchpoint.trace/1"
_SUFFIXES = (".json", ".json.gz")


@dataclass
class TraceAnalysis:
    """The analysis of one trace file or a folder of per-rank files.

    ``ranks`` holds each rank's summary (see :mod:`pinchpoint.traces._rank`), sorted by rank;
    ``stragglers`` the cross-rank test; ``findings`` the ranked findings of every rank merged by
    kind, straggler findings included; ``issues`` what was wrong with the input and repaired or
    skipped. ``confidence`` is ``"full"`` or ``"reduced"`` (when there are issues).
    """

    source: str
    ranks: list[dict[str, Any]] = field(default_factory=list)
    stragglers: StragglerReport | None = None
    findings: list[Finding] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> str:
        """``"reduced"`` when the input had problems that were repaired or skipped."""
        damaged = self.issues or any(r.get("issues") for r in self.ranks)
        return "reduced" if damaged else "full"

    @property
    def principal(self) -> Finding | None:
        """The finding with the largest expected saving, if any."""
        return self.findings[0] if self.findings else None

    def profiles(self) -> list[Profile]:
        """One Profile per rank, as the analyzers see it."""
        return [rank_profile(r) for r in self.ranks]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract ``pinchpoint.trace/1`` (see the README)."""
        ranks = []
        for summary, profile in zip(self.ranks, self.profiles(), strict=True):
            row = dict(summary)
            row["phases"] = {k: v.to_dict() for k, v in profile.phase_stats().items()}
            row["step_time_s"] = profile.step_time_s
            ranks.append(row)
        return {
            "schema": SCHEMA,
            "source": self.source,
            "confidence": self.confidence,
            "issues": list(self.issues),
            "ranks": ranks,
            "stragglers": (
                [s.to_dict() for s in self.stragglers.stragglers] if self.stragglers else []
            ),
            "straggler_test": self.stragglers.to_dict() if self.stragglers else None,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self) -> bytes:
        """The analysis as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` atomically."""
        return atomic_write_bytes(path, self.to_json())


def find_trace_files(path: str | Path) -> list[Path]:
    """The trace files at ``path``: the file itself, or the ``.json``/``.json.gz`` files in it."""
    path = Path(path)
    if not path.exists():
        raise TraceFormatError(f"no such file or folder: {path}")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES))
    if not files:
        raise TraceFormatError(f"{path} holds no .json or .json.gz trace files")
    return files


def analyze_file(path: str | Path, order: int = 0) -> dict[str, Any]:
    """The map step: one file's summary, or ``{"file", "error"}`` when it holds no trace."""
    try:
        return summarize_rank(read_trace(path), path, order)
    except TraceFormatError as exc:
        return {"file": str(path), "error": str(exc)}


def _pool_context() -> Any:
    # Forking a process that has torch's thread pools running can hang a child; fork is only
    # used when torch is not loaded (the CLI never loads it for traces).
    method = "fork" if "torch" not in sys.modules and sys.platform == "linux" else "spawn"
    return multiprocessing.get_context(method)


def load_trace(
    path: str | Path,
    *,
    workers: int | None = None,
    analyzers: Iterable[Analyzer] | None = None,
) -> TraceAnalysis:
    """Analyse a trace file or a folder of per-rank trace files.

    Ranks are analysed in up to ``workers`` processes (default: one per core, at most one per
    file). Files that hold no trace are skipped with an issue; when none holds one,
    :class:`~pinchpoint.errors.TraceFormatError` is raised.
    """
    files = find_trace_files(path)
    workers = min(len(files), workers or os.cpu_count() or 1)
    if workers <= 1:
        summaries = [analyze_file(f, i) for i, f in enumerate(files)]
    else:
        summaries = _map_in_processes(files, workers)
    return combine(summaries, source=str(path), analyzers=analyzers)


def _map_in_processes(files: Sequence[Path], workers: int) -> list[dict[str, Any]]:
    """``analyze_file`` over ``files`` in ``workers`` processes: this one and ``workers - 1``
    children.

    Children take files from the front of the list (each with one more queued, so none waits on
    the parent), this process from the back, until none is left; no process sits idle waiting
    for the others, and one fewer interpreter is started than with a pool of ``workers``.
    """
    results: list[dict[str, Any] | None] = [None] * len(files)
    queue = deque(range(len(files)))
    children = workers - 1
    # Objects the children inherit stay out of their collector's reach: a collection in a
    # forked child would touch (and so copy) every page of the parent's heap.
    gc.freeze()
    try:
        with ProcessPoolExecutor(max_workers=children, mp_context=_pool_context()) as pool:
            running: dict[Future[dict[str, Any]], int] = {}
            while queue or running:
                while queue and len(running) < 2 * children:
                    i = queue.popleft()
                    running[pool.submit(analyze_file, files[i], i)] = i
                if queue:
                    i = queue.pop()
                    results[i] = analyze_file(files[i], i)
                    finished = [f for f in running if f.done()]
                else:
                    finished = list(wait(running, return_when=FIRST_COMPLETED).done)
                for future in finished:
                    results[running.pop(future)] = future.result()
    finally:
        gc.unfreeze()
    return [r for r in results if r is not None]


def combine(
    summaries: Sequence[dict[str, Any]],
    *,
    source: str = "",
    analyzers: Iterable[Analyzer] | None = None,
) -> TraceAnalysis:
    """The reduce step: rank summaries (and error records) into one analysis with findings."""
    issues: list[str] = []
    good = []
    for s in summaries:
        if "error" in s:
            issues.append(f"skipped {s['error']}")
        else:
            good.append(s)
    if not good:
        first = issues[0].removeprefix("skipped ") if issues else "no trace files"
        raise TraceFormatError(first if len(summaries) == 1 else f"no readable trace: {first}")
    good.sort(key=lambda s: (s["rank"], s["file"]))
    issues.extend(_job_issues(good))
    analysis = TraceAnalysis(source=source, ranks=good, issues=issues)
    analysis.stragglers = _straggler_test(good, issues)
    analysis.findings = _findings(analysis, analyzers)
    return analysis


def _job_issues(ranks: list[dict[str, Any]]) -> list[str]:
    """Signs that the files do not come from one job: clashing ranks or world sizes."""
    out = []
    counts = Counter(r["rank"] for r in ranks)
    for number, n in sorted(counts.items()):
        if n > 1:
            files = ", ".join(Path(r["file"]).name for r in ranks if r["rank"] == number)
            out.append(f"{n} files claim rank {number} ({files}): mixed jobs or a copied file")
    sizes = {r["world_size"] for r in ranks if r["world_size"] is not None}
    if len(sizes) > 1:
        out.append(f"files from different jobs: world sizes {sorted(sizes)}")
    return out


def _mixed(issues: list[str]) -> bool:
    return any("mixed jobs" in i or "different jobs" in i for i in issues)


def _straggler_test(ranks: list[dict[str, Any]], issues: list[str]) -> StragglerReport | None:
    """The calibrated straggler test over steps every rank has (None with one rank)."""
    if len(ranks) < 2:
        return None
    if _mixed(issues):
        issues.append("no straggler test: the files do not come from one job")
        return None
    common = set.intersection(*({s["index"] for s in r["steps"]} for r in ranks))
    if not common:
        issues.append("no straggler test: the ranks share no profiler step")
        return None
    order = sorted(common)
    busy = {r["rank"]: _series(r, order, "busy_s") for r in ranks}
    wall = {r["rank"]: _series(r, order, "wall_s") for r in ranks}
    return find_stragglers(busy, step_s=wall)


def _series(summary: dict[str, Any], order: list[int], key: str) -> list[float]:
    by_index = {s["index"]: s[key] for s in summary["steps"]}
    return [float(by_index[i]) for i in order]


def rank_profile(summary: dict[str, Any]) -> Profile:
    """The Profile of one rank's summary: its steps, operators, device and device timeline."""
    device = summary["device"]
    kind = device.get("kind", "cpu")
    device_name = "cpu" if kind == "cpu" else f"cuda:{device.get('index') or 0}"
    steps = [
        Step(index=int(s["index"]), wall_s=float(s["wall_s"]), phases=dict(s["phases"]))
        for s in summary["steps"]
    ]
    gpu = None
    if kind != "cpu":
        gpu = {
            "name": device.get("name"),
            "capability": device.get("compute_capability"),
            "memory_bytes": device.get("memory_bytes"),
        }
    timeline = None
    g = summary.get("gpu")
    if g is not None:
        launches = summary.get("launches") or {}
        timeline = DeviceTimeline(
            window=g["window"],
            span_s=g["span_s"],
            busy_s=g["busy_s"],
            compute_s=g["compute_s"],
            communication_s=g["communication_s"],
            exposed_communication_s=g["exposed_communication_s"],
            comm_comp_overlap=g["comm_comp_overlap"],
            idle_causes=dict(g["idle_causes"]),
            idle_breakdown={
                k: v for k, v in g["idle_breakdown"].items() if isinstance(v, (int, float))
            },
            kernels=g["kernels"]["count"],
            kernel_median_s=g["kernels"]["median_s"],
            launches_per_step=launches.get("per_step"),
            launch_median_s=launches.get("median_s"),
        )
    return Profile(
        name=f"rank {summary['rank']}",
        mode="train" if any(s.get("backward") for s in summary["steps"]) else "infer",
        device=device_name,
        steps=steps,
        operators=[
            Operator(name=o["name"], count=o["count"], self_s=o["self_s"], total_s=o["total_s"])
            for o in summary["operators"]
        ],
        machine=Machine(gpu=gpu),
        settings={"source": "trace", "file": summary["file"], "rank": summary["rank"]},
        device_timeline=timeline,
    )


def _findings(analysis: TraceAnalysis, analyzers: Iterable[Analyzer] | None) -> list[Finding]:
    """Every rank's findings merged by kind (the largest saving kept), plus stragglers."""
    chosen = list(analyzers) if analyzers is not None else None
    merged = merge_rank_findings(
        [
            (summary["rank"], run_analyzers(profile, chosen))
            for summary, profile in zip(analysis.ranks, analysis.profiles(), strict=True)
        ]
    )
    merged.extend(straggler_findings(analysis.stragglers))
    return rank(merged)

"""Trace analysis across ranks: map each file to its rank's Profile, reduce them to findings.

:func:`analyze_file` is the map: one trace file in, one rank's small Profile out (or an
:class:`Unreadable` record). :func:`combine` is the reduce: it reads only those Profiles, never
events, so the same two functions can run on a cluster engine for thousands of ranks.
:func:`load_trace` runs the map in parallel processes on this machine and the reduce here.

The ranks make one multi-rank Profile (:func:`job_profile`), the model a recorded data-parallel
job has too, and it is analysed the same way (:func:`pinchpoint.analyzers.run_analyzers`): the
default analyzers on every rank, findings of one kind on several ranks merged into one that
names the ranks, and the calibrated straggler test over the ranks' own work per step
(:func:`pinchpoint.analyzers.ranks.straggler_test`). :mod:`pinchpoint.traces._format` writes
the analysis as a ``pinchpoint.trace/1`` file and reads one back.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from pinchpoint._io import atomic_write_bytes
from pinchpoint._profile import Profile
from pinchpoint.analyzers import Analyzer, analyse
from pinchpoint.errors import ProfileFormatError, TraceFormatError
from pinchpoint.finding import Finding
from pinchpoint.stragglers import StragglerReport
from pinchpoint.traces._format import rank_profile, rank_row
from pinchpoint.traces._parse import read_trace
from pinchpoint.traces._rank import summarize_rank

__all__ = [
    "SCHEMA",
    "TraceAnalysis",
    "Unreadable",
    "analyze_file",
    "combine",
    "find_trace_files",
    "job_profile",
    "load_trace",
]

SCHEMA = "pinchpoint.trace/1"
_SUFFIXES = (".json", ".json.gz")


@dataclass
class TraceAnalysis:
    """The analysis of one trace file or a folder of per-rank files.

    ``profile`` is the job as one Profile, the model a live run records: the rank's own for one
    file, else the first rank's with every rank's Profile in :attr:`Profile.ranks`, sorted by
    rank (see :mod:`pinchpoint.traces._rank` for what a rank's Profile holds); ``stragglers``
    the cross-rank test; ``findings`` the ranked findings of every rank merged by kind,
    straggler findings included; ``issues`` what was wrong with the input as a whole (each
    rank's own are in its :attr:`~pinchpoint._profile.TraceSource.issues`). ``confidence`` is
    ``"full"`` or ``"reduced"`` (when there are issues).
    """

    source: str
    profile: Profile
    stragglers: StragglerReport | None = None
    findings: list[Finding] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    @property
    def ranks(self) -> list[Profile]:
        """Each rank's Profile, sorted by rank."""
        return self.profile.ranks or [self.profile]

    @property
    def confidence(self) -> str:
        """``"reduced"`` when the input had problems that were repaired or skipped."""
        damaged = self.issues or any(r.trace and r.trace.issues for r in self.ranks)
        return "reduced" if damaged else "full"

    def all_issues(self) -> list[str]:
        """The input's issues, then each rank's, named by rank."""
        ranks = [(r.rank, r.trace.issues if r.trace else []) for r in self.ranks]
        return self.issues + [f"rank {n}: {issue}" for n, issues in ranks for issue in issues]

    @property
    def principal(self) -> Finding | None:
        """The finding with the largest expected saving, if any."""
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract ``pinchpoint.trace/1`` (see the README)."""
        return {
            "schema": SCHEMA,
            "source": self.source,
            "confidence": self.confidence,
            "issues": list(self.issues),
            "ranks": [rank_row(r) for r in self.ranks],
            "stragglers": (
                [s.to_dict() for s in self.stragglers.stragglers] if self.stragglers else []
            ),
            "straggler_test": self.stragglers.to_dict() if self.stragglers else None,
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceAnalysis:
        """Read :meth:`to_dict`'s output back: the same Profiles, findings and test."""
        try:
            ranks = [rank_profile(r) for r in data.get("ranks") or []]
            test = data.get("straggler_test")
            stragglers = StragglerReport.from_dict(test) if test else None
            findings = [Finding.from_dict(f) for f in data.get("findings", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{exc}"
            raise ProfileFormatError(f"broken pinchpoint trace analysis: {what}") from exc
        if not ranks:
            raise ProfileFormatError("broken pinchpoint trace analysis: it holds no rank")
        issues = list(data.get("issues", []))
        return cls(str(data.get("source", "")), job_profile(ranks), stragglers, findings, issues)

    def to_json(self) -> bytes:
        """The analysis as indented JSON bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` atomically."""
        return atomic_write_bytes(path, self.to_json())


def job_profile(ranks: Sequence[Profile]) -> Profile:
    """The job of these ranks' Profiles (sorted by rank) as one Profile: the only rank's, or the
    first rank's with every rank's in :attr:`~pinchpoint._profile.Profile.ranks`."""
    if len(ranks) == 1:
        return ranks[0]
    return replace(ranks[0], ranks=list(ranks))


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


@dataclass(frozen=True)
class Unreadable:
    """A file of the map step that holds no trace, and why."""

    file: str
    error: str


def analyze_file(path: str | Path, order: int = 0) -> Profile | Unreadable:
    """The map step: one file's Profile, or why it holds no trace."""
    try:
        return summarize_rank(read_trace(path), path, order)
    except TraceFormatError as exc:
        return Unreadable(str(path), str(exc))


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


def _map_in_processes(files: Sequence[Path], workers: int) -> list[Profile | Unreadable]:
    """``analyze_file`` over ``files`` in ``workers`` processes: this one and ``workers - 1``
    children.

    Children take files from the front of the list (each with one more queued, so none waits on
    the parent), this process from the back, until none is left; no process sits idle waiting
    for the others, and one fewer interpreter is started than with a pool of ``workers``.
    """
    results: list[Profile | Unreadable | None] = [None] * len(files)
    queue = deque(range(len(files)))
    children = workers - 1
    # Objects the children inherit stay out of their collector's reach: a collection in a
    # forked child would touch (and so copy) every page of the parent's heap.
    gc.freeze()
    try:
        with ProcessPoolExecutor(max_workers=children, mp_context=_pool_context()) as pool:
            running: dict[Future[Profile | Unreadable], int] = {}
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
    summaries: Sequence[Profile | Unreadable],
    *,
    source: str = "",
    analyzers: Iterable[Analyzer] | None = None,
) -> TraceAnalysis:
    """The reduce step: rank Profiles (and unreadable files) into one analysis with findings."""
    issues = [f"skipped {s.error}" for s in summaries if isinstance(s, Unreadable)]
    good = [s for s in summaries if isinstance(s, Profile)]
    if not good:
        first = issues[0].removeprefix("skipped ") if issues else "no trace files"
        raise TraceFormatError(first if len(summaries) == 1 else f"no readable trace: {first}")
    good.sort(key=lambda p: (p.rank, p.trace.file if p.trace else ""))
    issues.extend(_job_issues(good))
    profile = job_profile(good)
    if len(good) >= 2 and any("mixed jobs" in i or "different jobs" in i for i in issues):
        issues.append("no straggler test: the files do not come from one job")
    elif len(good) >= 2 and not profile.matched_steps():
        issues.append("no straggler test: the ranks share no profiler step")
    findings, stragglers = analyse(profile, analyzers)
    return TraceAnalysis(source, profile, stragglers, findings, issues)


def _job_issues(ranks: list[Profile]) -> list[str]:
    """Signs that the files do not come from one job: clashing ranks or world sizes."""
    out = []
    sources = [r.trace for r in ranks if r.trace is not None]
    counts = Counter(s.rank for s in sources)
    for number, n in sorted(counts.items()):
        if n > 1:
            files = ", ".join(Path(s.file).name for s in sources if s.rank == number)
            out.append(f"{n} files claim rank {number} ({files}): mixed jobs or a copied file")
    sizes = {s.world_size for s in sources if s.world_size is not None}
    if len(sizes) > 1:
        out.append(f"files from different jobs: world sizes {sorted(sizes)}")
    return out

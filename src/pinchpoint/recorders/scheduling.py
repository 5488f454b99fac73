"""How the process's threads shared the cores during a run's measured steps.

Each step, :class:`SchedulingMeter` reads ``getrusage(RUSAGE_SELF)``, which sums over every thread
of the process: its CPU time (user plus system), its voluntary context switches (a thread that
blocked: on a lock, on I/O, or parked at the barrier of a parallel region whose peer threads are
off-core) and its involuntary ones (the scheduler took the core from a thread that still had
work). With them it notes the intra-op threads torch ran the step with, the cores this process
may use (:func:`usable_cores`) and, from ``/proc/stat``, the CPU time every process spent on
those cores (Linux only), which tells what other processes took from them. Summed over the
measured steps, the result goes into a Profile's ``settings["scheduling"]``, where the
``thread_oversubscription`` analyzer reads it.

Where ``resource`` does not exist (Windows) the meter records nothing.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["SchedulingMeter", "usable_cores"]

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no getrusage
    resource = None  # type: ignore[assignment]


def _cgroup_cores(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The CPU quota of a cgroup v2 (``"200000 100000"`` is 2 cores), or None without one."""
    try:
        quota, _, period = path.read_text().strip().partition(" ")
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores() -> int | None:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's CPU quota.

    ``os.cpu_count()`` counts the host's cores, which a container or ``taskset`` may not give
    this process; a fractional quota (1.5 cores) counts as the next whole core.
    """
    try:
        cores: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no affinity call
        cores = os.cpu_count()
    quota = _cgroup_cores()
    if cores and quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def _sample() -> tuple[float, int, int] | None:
    """CPU seconds, voluntary and involuntary context switches of the whole process so far."""
    if resource is None:  # pragma: no cover
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw, usage.ru_nivcsw


def _cores_busy_s(cores: frozenset[int], path: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds all processes have spent on ``cores`` since boot (None off Linux)."""
    try:
        with path.open("rb") as stat:
            text = stat.read()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    # The per-core lines come first; the long interrupt counts after them are not parsed.
    for line in text.split(b"\n"):
        if not line.startswith(b"cpu"):
            break
        name, _, rest = line.partition(b" ")
        if name[3:].isdigit() and int(name[3:]) in cores:
            ticks = [int(v) for v in rest.split()]
            # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
            busy += sum(ticks[:8]) - ticks[3] - ticks[4]
    return busy / tick


def _affinity() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return frozenset(range(os.cpu_count() or 1))


#: Measured steps between two readings of ``/proc/stat`` (a few tens of µs each).
_SPAN_EVERY = 8


class SchedulingMeter:
    """Sums CPU time and context switches over the measured steps of a run.

    Each step costs two ``getrusage`` calls; ``/proc/stat`` (15-35 µs a read) is read at the
    first measured step's start and then at the end of every 8th measured step only: the other
    processes' share of the cores is a rate, taken over the span from the first reading to the
    last, against this process's own CPU time over the same span, and reported as
    ``cores_busy_s`` over the steps' own wall time (see :meth:`result`).
    """

    def __init__(self) -> None:
        self._start: tuple[float, int, int] | None = None
        self._cores = _affinity()
        # (perf_counter, this process's CPU seconds, every process's CPU seconds on the cores)
        # at the first measured step's start, and at the latest measured step's end.
        self._span_start: tuple[float, float, float | None] | None = None
        self._span_end: tuple[float, float, float | None] | None = None
        self._threads: int | None = None
        self.steps = 0
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.voluntary = 0
        self.involuntary = 0

    def _span_mark(self, sample: tuple[float, int, int]) -> tuple[float, float, float | None]:
        return time.perf_counter(), sample[0], _cores_busy_s(self._cores)

    def begin(self) -> None:
        """Mark the start of a step (the threads in force are read here, inside the run)."""
        torch = sys.modules.get("torch")
        self._threads = int(torch.get_num_threads()) if torch is not None else None
        self._start = _sample()
        if not self.steps and self._start is not None:
            # Until a measured step has ended, each step may be the span's first.
            self._span_start = self._span_mark(self._start)

    def end(self, wall_s: float, measured: bool) -> None:
        """Close the step begun last; a measured one adds its ``wall_s`` and counters."""
        end = _sample()
        if not measured or self._start is None or end is None:
            return
        self.steps += 1
        self.wall_s += wall_s
        self.cpu_s += end[0] - self._start[0]
        self.voluntary += end[1] - self._start[1]
        self.involuntary += end[2] - self._start[2]
        if (self.steps - 1) % _SPAN_EVERY == 0:
            self._span_end = self._span_mark(end)

    @property
    def cores_busy_s(self) -> float | None:
        """Every process's CPU seconds on this process's cores during the measured steps: this
        process's own (``cpu_s``) plus the others' share of the cores over the measured span
        times the steps' wall time; None off Linux."""
        start, end = self._span_start, self._span_end
        if start is None or end is None or start[2] is None or end[2] is None:
            return None
        span = end[0] - start[0]
        if span <= 0:
            return None
        others = max(0.0, (end[2] - start[2]) - (end[1] - start[1])) / span
        return self.cpu_s + others * self.wall_s

    def result(self) -> dict[str, Any] | None:
        """The sums, for ``Profile.settings["scheduling"]``; None when no step was measured.

        Keys: ``intra_op_threads`` (torch's threads in the last step), ``usable_cores``,
        ``steps``, ``wall_s`` and ``cpu_s`` (summed over the steps), ``voluntary_switches`` and
        ``involuntary_switches`` (the process's context switches in them), ``cores_busy_s``
        (every process's CPU time on this process's cores in them, see :attr:`cores_busy_s`,
        read in clock ticks of 10 ms on most systems; None off Linux).
        """
        if not self.steps:
            return None
        return {
            "intra_op_threads": self._threads,
            "usable_cores": usable_cores(),
            "steps": self.steps,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "voluntary_switches": self.voluntary,
            "involuntary_switches": self.involuntary,
            "cores_busy_s": self.cores_busy_s,
        }

    def settings(self) -> dict[str, Any]:
        """``{"scheduling": result}`` to merge into a Profile's settings; empty without one."""
        result = self.result()
        return {"scheduling": result} if result is not None else {}

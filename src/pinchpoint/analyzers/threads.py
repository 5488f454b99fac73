"""``thread_oversubscription``: more busy threads than cores, so parallel operators stall.

Reads ``profile.settings["scheduling"]`` (see :mod:`pinchpoint.recorders.scheduling`): torch's
intra-op threads during the measured steps, the cores the process may use, and its CPU time and
context switches summed over those steps. Both must hold for a finding:

- **more threads than cores**: the intra-op threads exceed the usable cores (the process's CPU
  affinity capped by its cgroup quota; the machine's logical cores where that was not recorded);
- **stalls seen**: the process switches context at least :data:`SWITCH_RATE` times per second
  of step. A parallel region ends at a barrier that waits for all its threads; when some are off
  the cores the others park (a voluntary switch) and the scheduler rotates them (involuntary
  ones). With one thread per core they spin instead: on a 2-core machine a training step with
  2 threads switched 0-300 times a second, even with other processes busy on the cores, and
  8 000-112 000 times with 8 or 16.

The saving is the share of the cores' time left idle during the steps,
``1 - cpu_s / (wall_s * cores)``: the time the cores waited for parked threads, which one thread
per core would spend working. It is an estimate, not a bound: it misses the cost of the switches
themselves and counts time another process took from the cores. On a shared 2-core machine it
was 0.5 to 1.1 times the saving a trial of the suggested count then measured.

Root cause before symptom: while threads stall, every operator of the step is measured slower
than it runs with one thread per core, so the findings read off operator and phase times
(:data:`SYMPTOMS`: the roofline's, the overhead's, the optimizer's) describe the stalls as much
as the model. :func:`mark_symptoms` marks them ``explained_by: thread_oversubscription`` and
:func:`pinchpoint.finding.rank` places them after it. The idle share can undercount the saving
by far (a 7-block residual MLP at batch 128 idled 28 % of the cores' time with 16 threads, yet
ran 3.5x faster with 2), which would otherwise let a stall-inflated ``compute_bound`` rank first.

The thread count suggested is one per core that other processes left free: the usable cores less
the cores' CPU time the other processes took during the steps (``cores_busy_s - cpu_s``, per
second of step), rounded, at least 1. With a neighbour busy on one of 2 cores, 2 spinning threads
were about 5 times slower than 1 (a thread spins at each barrier while its peer waits for the core),
so the count must leave the neighbour's core alone. The optimizer also tries one thread per
usable core, and a trial decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.finding import Finding, severity_for

__all__ = ["SWITCH_RATE", "SYMPTOMS", "analyze", "mark_symptoms", "scheduling_facts"]

#: Runtime findings read off operator and phase times, which stalled threads inflate.
SYMPTOMS = frozenset({"compute_bound", "memory_bound", "overhead_bound", "optimizer_bound"})

#: Context switches per second of step from which stalled threads are reported.
SWITCH_RATE = 2000.0


def scheduling_facts(profile: Profile) -> dict[str, float] | None:
    """The recorded scheduling numbers as floats, with ``usable_cores`` filled from the machine;
    None when the run recorded none (trace files, profiles saved before they existed)."""
    raw: Any = profile.settings.get("scheduling")
    if not isinstance(raw, Mapping):
        return None
    cores = raw.get("usable_cores") or profile.machine.cores_logical
    keys: tuple[str, ...] = ("intra_op_threads", "steps", "wall_s", "cpu_s")
    keys += ("voluntary_switches", "involuntary_switches")
    values = {key: raw.get(key) for key in keys}
    if isinstance(raw.get("cores_busy_s"), (int, float)):
        values["cores_busy_s"] = raw["cores_busy_s"]
    if cores is None or any(not isinstance(v, (int, float)) for v in values.values()):
        return None
    facts = {key: float(v) for key, v in values.items() if v is not None}
    facts["usable_cores"] = float(cores)
    return facts if facts["wall_s"] > 0 and facts["steps"] > 0 else None


def analyze(profile: Profile) -> list[Finding]:
    """``thread_oversubscription`` when threads outnumber cores and the threads stall."""
    facts = scheduling_facts(profile)
    if facts is None:
        return []
    threads, cores = int(facts["intra_op_threads"]), int(facts["usable_cores"])
    if threads <= cores:
        return []
    switches = facts["voluntary_switches"] + facts["involuntary_switches"]
    rate = switches / facts["wall_s"]
    if rate < SWITCH_RATE:
        return []
    busy_cores = facts["cpu_s"] / facts["wall_s"]
    others = 0.0
    if "cores_busy_s" in facts:
        others = max(0.0, (facts["cores_busy_s"] - facts["cpu_s"]) / facts["wall_s"])
    suggested = max(1, min(cores, round(cores - others)))
    idle = min(1.0, max(0.0, 1.0 - busy_cores / cores))
    why = (
        f"torch.set_num_threads({suggested}) (or Workload threads={suggested}): one intra-op "
        f"thread per free core instead of {threads}, so parallel operators do not wait for "
        "threads the scheduler has taken off the cores"
    )
    return [
        Finding(
            kind="thread_oversubscription",
            severity=severity_for(idle),
            share=idle,
            saving_share=idle,
            summary=(
                f"{threads} intra-op threads share {cores} cores: parallel operators stall at "
                f"their barriers ({rate:,.0f} context switches a second) and the cores sit "
                f"idle {idle:.0%} of the step."
            ),
            evidence={
                "intra_op_threads": threads,
                "usable_cores": cores,
                "other_busy_cores": others,
                "suggested_threads": suggested,
                "context_switches_per_s": rate,
                "voluntary_switches_per_step": facts["voluntary_switches"] / facts["steps"],
                "involuntary_switches_per_step": facts["involuntary_switches"] / facts["steps"],
                "busy_cores": busy_cores,
                "idle_core_share": idle,
                "threshold_switches_per_s": SWITCH_RATE,
            },
            remedies=[remedy("fewer_threads", why)],
        )
    ]


def mark_symptoms(findings: list[Finding]) -> list[Finding]:
    """``findings`` with those in :data:`SYMPTOMS` marked ``explained_by:
    thread_oversubscription`` when that finding is among them (see the module docstring)."""
    if not any(f.kind == "thread_oversubscription" for f in findings):
        return findings
    return [
        dataclasses.replace(f, evidence={**f.evidence, "explained_by": "thread_oversubscription"})
        if f.kind in SYMPTOMS and not f.evidence.get("explained_by")
        else f
        for f in findings
    ]

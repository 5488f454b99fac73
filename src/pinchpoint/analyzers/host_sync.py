"""``host_sync_bound``: per-step logging that reads results back to the host (CPU runs).

A loop that calls ``loss.item()``, reads per-layer norms with ``.item()``, turns tensors into
lists with ``.tolist()`` or ``.cpu()`` and prints a line at every step makes the host stop and
wait for each value, then spends Python time formatting it. On a GPU the cost is the wait for
the device, and the same cause is reported as ``sync_bound`` (:mod:`pinchpoint.analyzers.sync`,
from the time in synchronising calls). On a CPU the operators run synchronously, so there is
no device to wait for: the cost is the logging itself, time in the step that trains nothing.

It is read from the step's ``log`` phase (a Workload's ``log`` hook, or a
``Recorder.logging()`` block in a user's own loop): its share of the measured steps' wall
time. Host reads outside that phase (an ``.item()`` inside the loss function) are counted in
the evidence but not timed, since the profiled operators carry no phase to tell them apart.

- Reported on a CPU profile only, when the log phase takes 10 % of the step or more.
- Saving: logging every :data:`SUGGESTED_FACTOR` times less often keeps the same lines at
  that fraction of the cost, so the saving is the share times ``1 - 1/50`` (98 % of it).
- Evidence: the log share and its mean seconds per step, the share of measured steps that
  logged, the host reads (``aten::_local_scalar_dense`` calls, which ``.item()``, ``.tolist()``
  and scalar ``.cpu()`` go through) in the profiled step, the workload's ``log_every`` when it
  was recorded with one, the ``log_every`` suggested and the threshold.
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import phase_share
from pinchpoint.finding import Finding, severity_for

__all__ = ["HOST_READ_OPERATORS", "LOG_SHARE", "SUGGESTED_FACTOR", "analyze"]

#: The operator each read of a tensor's value to a Python number goes through.
HOST_READ_OPERATORS = frozenset({"aten::_local_scalar_dense"})
#: The log phase's share of the step from which a finding is reported.
LOG_SHARE = 0.10
#: How many times less often the remedy logs (every 50th step where it logged at every one).
SUGGESTED_FACTOR = 50


def analyze(profile: Profile) -> list[Finding]:
    """``host_sync_bound`` when per-step logging takes 10 % of a CPU step or more."""
    if profile.device != "cpu" and not profile.device.startswith("cpu:"):
        return []
    share = phase_share(profile, "log")
    if share < LOG_SHARE:
        return []
    measured = profile.measured_steps
    logged = [s.phases.get("log", 0.0) for s in measured]
    every = profile.settings.get("log_every")
    current = every if isinstance(every, int) and every >= 1 else 1
    saving = share * (1.0 - 1.0 / SUGGESTED_FACTOR)
    reads = sum(op.count for op in profile.operators if op.name in HOST_READ_OPERATORS)
    return [
        Finding(
            kind="host_sync_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=(
                f"Per-step logging takes {share:.0%} of the step, reading {reads} values back "
                f"to Python in the profiled step."
            ),
            evidence={
                "log_share": share,
                "log_mean_s": sum(logged) / len(logged) if logged else 0.0,
                "logged_step_share": (
                    sum(1 for v in logged if v > 0) / len(logged) if logged else 0.0
                ),
                "host_reads_per_step": reads,
                "log_every": every if isinstance(every, int) else None,
                "suggested_log_every": current * SUGGESTED_FACTOR,
                "threshold_share": LOG_SHARE,
            },
            remedies=[
                remedy(
                    "log_less_often",
                    f"log every {current * SUGGESTED_FACTOR} steps instead of "
                    f"{'every step' if current == 1 else f'every {current} steps'}: the same "
                    f"lines at 1/{SUGGESTED_FACTOR} of the cost",
                ),
                remedy("remove_syncs"),
            ],
        )
    ]

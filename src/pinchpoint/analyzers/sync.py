"""``sync_bound``: the host blocking on the device inside the step (GPU runs only).

Host time in synchronising calls (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``,
``cudaEventSynchronize``, and ``aten::_local_scalar_dense``, which ``.item()`` and ``.cpu()`` of a
scalar go through) over all operator time in the profiled step, scaled to its busy part. From 10 %
a finding is reported; the saving assumed is 80 % of it (the device keeps working while the host
queues the next step, once the syncs are gone or rarer). On a CPU nothing waits for a device, and
the same cause, per-step reads of results, is reported as ``host_sync_bound``
(:mod:`pinchpoint.analyzers.host_sync`).
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import busy_share, operator_seconds
from pinchpoint.finding import Finding, severity_for

__all__ = ["SYNC_OPERATORS", "analyze"]

SYNC_OPERATORS = frozenset(
    {
        "cudaStreamSynchronize",
        "cudaDeviceSynchronize",
        "cudaEventSynchronize",
        "aten::_local_scalar_dense",
    }
)
SYNC_SHARE = 0.10
SYNC_SAVING = 0.8


def analyze(profile: Profile) -> list[Finding]:
    """``sync_bound`` when synchronising calls hold the host for 10 % of the step or more."""
    if not profile.device.startswith("cuda"):
        return []
    total = operator_seconds(profile)
    syncs = [op for op in profile.operators if op.name in SYNC_OPERATORS]
    if total <= 0 or not syncs:
        return []
    share = sum(op.self_s for op in syncs) / total * busy_share(profile)
    if share < SYNC_SHARE:
        return []
    saving = share * SYNC_SAVING
    return [
        Finding(
            kind="sync_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=(
                f"The host waits for the device in synchronising calls {share:.0%} of the step."
            ),
            evidence={
                "sync_share": share,
                "sync_calls": sum(op.count for op in syncs),
                "sync_operators": sorted({op.name for op in syncs}),
                "threshold_share": SYNC_SHARE,
            },
            remedies=[remedy("remove_syncs"), remedy("cuda_graphs")],
        )
    ]

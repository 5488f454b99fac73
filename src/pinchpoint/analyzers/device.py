"""Device-timeline analyzers: exposed communication, and a device the host does not keep fed.

Both read :attr:`Profile.device_timeline` (from a trace's kernel timeline) and return nothing
without one. Shares are of the device span (see :class:`~pinchpoint._profile.DeviceTimeline`),
which for a synchronous training step is the step's wall time.

- ``communication_bound``: communication kernel time that no computation kernel overlaps, from
  10 % of the span. Saving: 70 % of it (bucketing and overlap hide most of an all-reduce behind
  backward; what stays exposed is the last bucket).
- ``overhead_bound`` (launch-bound): the device idles while the host is neither waiting for data,
  nor blocked in a sync or copy, nor running the optimizer: Python, framework and launch
  overhead do not keep it fed. From 30 % of the span; saving 70 % (CUDA graphs and
  torch.compile remove most launches). The evidence gives kernels and launches per step and
  their median durations.
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.finding import Finding, severity_for

__all__ = ["analyze_communication", "analyze_launch"]

COMMUNICATION_SHARE = 0.10
COMMUNICATION_SAVING = 0.7
LAUNCH_IDLE_SHARE = 0.30
LAUNCH_SAVING = 0.7


def analyze_communication(profile: Profile) -> list[Finding]:
    """``communication_bound`` when exposed communication is 10 % of the device span or more."""
    tl = profile.device_timeline
    if tl is None or tl.span_s <= 0 or tl.communication_s <= 0:
        return []
    share = tl.exposed_communication_s / tl.span_s
    if share < COMMUNICATION_SHARE:
        return []
    saving = share * COMMUNICATION_SAVING
    overlap = tl.comm_comp_overlap
    return [
        Finding(
            kind="communication_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=(
                f"Communication is exposed {share:.0%} of the time: "
                f"{overlap or 0.0:.0%} of it overlaps computation."
            ),
            evidence={
                "exposed_communication_share": share,
                "exposed_communication_s": tl.exposed_communication_s,
                "communication_s": tl.communication_s,
                "comm_comp_overlap": overlap,
                "span_s": tl.span_s,
                "threshold_share": COMMUNICATION_SHARE,
            },
            remedies=[
                remedy("gradient_bucketing"),
                remedy("no_sync_accumulation"),
                remedy("gradient_compression"),
                remedy("larger_batch"),
            ],
        )
    ]


def analyze_launch(profile: Profile) -> list[Finding]:
    """``overhead_bound`` when the device idles for host overhead 30 % of its span or more."""
    tl = profile.device_timeline
    if tl is None or tl.span_s <= 0:
        return []
    host_idle = tl.idle_causes.get("host", 0.0)
    share = host_idle / tl.span_s
    if share < LAUNCH_IDLE_SHARE:
        return []
    saving = share * LAUNCH_SAVING
    small = tl.kernel_median_s is not None and tl.kernel_median_s < 20e-6
    detail = (
        f", its median kernel {tl.kernel_median_s * 1e6:.0f} µs"
        if tl.kernel_median_s is not None
        else ""
    )
    return [
        Finding(
            kind="overhead_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=(
                f"The device waits for the host {share:.0%} of the time{detail}: Python, "
                "framework and launch overhead do not keep it fed."
            ),
            evidence={
                "device_idle_host_share": share,
                "device_idle_share": tl.idle_s / tl.span_s,
                "idle_causes_s": dict(tl.idle_causes),
                "host_wait_share_of_gaps": tl.idle_breakdown.get("host_wait_share"),
                "kernels": tl.kernels,
                "kernel_median_s": tl.kernel_median_s,
                "launches_per_step": tl.launches_per_step,
                "launch_median_s": tl.launch_median_s,
                "threshold_share": LAUNCH_IDLE_SHARE,
            },
            remedies=[
                remedy("cuda_graphs"),
                remedy("torch_compile"),
                remedy("larger_batch") if small else remedy("fused_modules"),
            ],
        )
    ]

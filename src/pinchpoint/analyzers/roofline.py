"""``compute_bound`` and ``memory_bound``: the roofline against the calibrated peaks.

Every profiled operator with known FLOPs and bytes is placed on the roofline
(:mod:`pinchpoint.roofline`). Its self time counts as compute-bound when its arithmetic
intensity reaches the ridge point, memory-bound below it. The thresholds apply to the share of
operator time (what dominates while operators run); a finding's ``share`` is that share scaled
to the whole step (all but the data wait and copies), so that a step which also waits for data
ranks its input problem by its own, larger saving.

- ``compute_bound``: compute-bound operators take 50 % of operator time or more *and* achieve at
  least 30 % of the calibrated peak: the arithmetic units are the limit, not the way they are fed.
  Running near peak is the efficient end state, so its severity is at most medium. Saving: the
  speed-up a faster native precision offers (its calibrated peak over fp32's) when one exists with
  at least 1.5× the rate: bf16/fp16 through mixed precision, and for inference also int8 through
  quantization; otherwise 10 % of the share (smaller or pruned models).
- ``memory_bound``: memory-bound operators take 40 % of operator time or more. An operator below
  the ridge counts only when its bytes, moved at its memory roof, would take at least 1 % of its
  time: below that its time is the per-call cost of launching it, not traffic (a width-8 layer
  at batch 2 moves its bytes in 0.1 % of its time; the elementwise chains of the planted
  memory-bound cases in 5-17 %), which is ``overhead_bound``'s evidence. Saving: half of it
  (fusion typically halves the bytes moved; lower precision halves them again).
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import busy_share, operator_seconds
from pinchpoint.finding import Finding, severity_for
from pinchpoint.roofline import RooflinePoint, operator_points

__all__ = ["analyze", "faster_precisions"]

COMPUTE_SHARE = 0.50
COMPUTE_FRACTION = 0.30
MEMORY_SHARE = 0.40
MEMORY_SAVING = 0.5
#: The least share of an operator's time its bytes take at its memory roof for it to count as
#: limited by memory traffic rather than by its per-call cost.
MEMORY_ROOF_TIME = 0.01
LOW_PRECISION_MIN_SPEEDUP = 1.5


def faster_precisions(peaks: dict[str, float], inference: bool) -> dict[str, float]:
    """Speed-ups over fp32 of the native lower precisions at least 1.5× faster, by dtype.

    int8 counts only for inference: training in int8 is not a remedy a user can apply.
    """
    fp32 = peaks.get("flops_float32")
    if not fp32:
        return {}
    dtypes = ("bfloat16", "float16", "int8") if inference else ("bfloat16", "float16")
    speedups = {d: peaks[f"flops_{d}"] / fp32 for d in dtypes if f"flops_{d}" in peaks}
    return {d: x for d, x in speedups.items() if x >= LOW_PRECISION_MIN_SPEEDUP}


def _rate(points: list[RooflinePoint], attr: str) -> float:
    seconds = sum(p.seconds for p in points)
    return sum(getattr(p, attr) for p in points) / seconds if seconds > 0 else 0.0


def analyze(profile: Profile) -> list[Finding]:
    """``compute_bound`` and ``memory_bound`` findings from the operator roofline."""
    points = operator_points(profile)
    total = operator_seconds(profile)
    if not points or total <= 0:
        return []
    peaks = profile.machine.peaks
    busy = busy_share(profile)
    compute = [p for p in points if p.bound == "compute"]
    memory = [
        p
        for p in points
        if p.bound == "memory"
        and p.bandwidth_bytes_per_s > 0
        and p.bytes / p.bandwidth_bytes_per_s >= MEMORY_ROOF_TIME * p.seconds
    ]
    compute_of_ops = sum(p.seconds for p in compute) / total
    memory_of_ops = sum(p.seconds for p in memory) / total
    compute_share, memory_share = compute_of_ops * busy, memory_of_ops * busy
    ridge = peaks["flops_float32"] / peaks["bandwidth_bytes_per_s"]
    mfu = None
    if profile.flops is not None and profile.step_time_s:
        mfu = profile.flops.total / profile.step_time_s / peaks["flops_float32"]
    findings = []

    compute_rate = _rate(compute, "flops")
    compute_fraction = compute_rate / peaks["flops_float32"]
    if compute_of_ops >= COMPUTE_SHARE and compute_fraction >= COMPUTE_FRACTION:
        faster = faster_precisions(peaks, inference=profile.mode == "infer")
        best = max(faster.values(), default=None)
        saving = compute_share * (1 - 1 / best) if best else compute_share * 0.1
        remedies = []
        floats = {d: x for d, x in faster.items() if d != "int8"}
        if floats:
            dtype = max(floats, key=floats.__getitem__)
            why = f"this machine's {dtype} matmuls measured {floats[dtype]:.1f}x its fp32 rate"
            remedies.append((floats[dtype], remedy("mixed_precision", why)))
        if "int8" in faster:
            why = f"this machine's int8 matmuls measured {faster['int8']:.1f}x its fp32 rate"
            remedies.append((faster["int8"], remedy("quantize_int8", why)))
        precision = [r for _, r in sorted(remedies, key=lambda pair: -pair[0])]
        if profile.mode == "infer" and "int8" not in faster:
            precision.append(remedy("quantize_int8"))
        severity = severity_for(saving)
        top = max(compute, key=lambda p: p.seconds)
        findings.append(
            Finding(
                kind="compute_bound",
                severity="medium" if severity == "high" else severity,
                share=compute_share,
                saving_share=saving,
                summary=(
                    f"Dense math takes {compute_share:.0%} of the step and runs at "
                    f"{compute_fraction:.0%} of this machine's measured fp32 peak."
                ),
                evidence={
                    "compute_share": compute_share,
                    "compute_share_of_operator_time": compute_of_ops,
                    "achieved_flops_per_s": compute_rate,
                    "peak_flops_per_s": peaks["flops_float32"],
                    "achieved_fraction": compute_fraction,
                    "model_flops_utilization": mfu,
                    "ridge_flops_per_byte": ridge,
                    "top_operator": top.name,
                    "threshold_share": COMPUTE_SHARE,
                    "threshold_fraction": COMPUTE_FRACTION,
                },
                remedies=[*precision, remedy("prune_structured"), remedy("distill")],
            )
        )

    if memory_of_ops >= MEMORY_SHARE:
        saving = memory_share * MEMORY_SAVING
        bandwidth_rate = _rate(memory, "bytes")
        top = max(memory, key=lambda p: p.seconds)
        findings.append(
            Finding(
                kind="memory_bound",
                severity=severity_for(saving),
                share=memory_share,
                saving_share=saving,
                summary=(
                    f"Low-intensity operators (below {ridge:.1f} FLOP/byte) take "
                    f"{memory_share:.0%} of the step, limited by memory traffic."
                ),
                evidence={
                    "memory_share": memory_share,
                    "memory_share_of_operator_time": memory_of_ops,
                    "achieved_bytes_per_s": bandwidth_rate,
                    "bandwidth_bytes_per_s": peaks["bandwidth_bytes_per_s"],
                    "achieved_bandwidth_fraction": bandwidth_rate / peaks["bandwidth_bytes_per_s"],
                    "ridge_flops_per_byte": ridge,
                    "model_flops_utilization": mfu,
                    "top_operator": top.name,
                    "threshold_share": MEMORY_SHARE,
                    "threshold_roof_time": MEMORY_ROOF_TIME,
                },
                remedies=[
                    remedy("operator_fusion"),
                    remedy("lower_precision_activations"),
                    remedy("in_place_ops"),
                    remedy("channels_last"),
                ],
            )
        )
    return findings

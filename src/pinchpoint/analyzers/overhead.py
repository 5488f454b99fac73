"""``overhead_bound``: framework, Python and launch overhead rather than work.

From the profiled step:

- host time when no operator ran at all (Python, module machinery, user code between
  operators): the profiled step's host time minus the time covered by operators;
- dispatch time inside operators: the calibrated per-operator overhead (``dispatch_s``, the time
  of a one-element ``torch.add``) times the number of ATen operator calls.

Their sum over the step's host time is the overhead share. The optimizer's step is left out of
all three (its time, its calls): a slow optimizer is ``optimizer_bound``'s finding, and counting
its per-tensor loop here too would report one cost twice. A finding is reported from 30 %.

The profiler's own bookkeeping (a record at every operator's entry and exit) makes the profiled
step slower than the steps it did not watch, and most of that time falls between operators,
where it would read as the user's overhead: a 3-layer MLP at batch 64 took 1.2 ms profiled and
0.77 ms unwatched, and its gaps held 0.5 ms. So the time the profiled step took beyond the
median unwatched one (both less the optimizer) comes off the gaps first, and the share is taken
of the unwatched step. Dispatch is counted from the calibrated cost, which the profiler does not
inflate.

What the remedies can remove is the overhead inside the model: torch.compile and CUDA graphs
replace the forward and backward's operator calls, and leave the loop around them (the loss
call, ``zero_grad``, the Python of the training loop: the ``other`` phase) as it was. So for a
recorded training run the finding's share is the overhead share times the forward and backward
phases' share of the step, and the saving assumed is 70 % of that. On this project's CPU a
two-layer MLP whose step was 40 % overhead, a third of it in the loop, gained nothing from
torch.compile, while a 40-block stack of narrow layers gained 1.8x. Without those phases
(inference, imported traces) the share is taken over the busy step less the optimizer. The
evidence also gives the operator count, the median operator's self time against the dispatch
cost, and FLOPs per operator.
"""

from __future__ import annotations

import statistics

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import busy_share, phase_share
from pinchpoint.finding import Finding, severity_for

__all__ = ["analyze"]

OVERHEAD_SHARE = 0.30
OVERHEAD_SAVING = 0.7


def _model_share(profile: Profile) -> float:
    """The share of the step the model's own operators run in: its forward and backward for a
    recorded training run, else the busy step less the optimizer's."""
    stats = profile.phase_stats()
    if profile.mode == "train" and "forward" in stats and "backward" in stats:
        return stats["forward"].share + stats["backward"].share
    return max(0.0, busy_share(profile) - phase_share(profile, "optimizer"))


def _unwatched_model_s(profile: Profile) -> float | None:
    """The median measured step's host time less its batch wait and optimizer step: the
    profiled step's counterpart without the profiler; None without measured steps."""
    bodies = [
        s.wall_s - s.phases.get("data", 0.0) - s.phases.get("optimizer", 0.0)
        for s in profile.measured_steps
    ]
    positive = [b for b in bodies if b > 0]
    return statistics.median(positive) if positive else None


def analyze(profile: Profile) -> list[Finding]:
    """``overhead_bound`` when framework overhead is 30 % or more of the step's busy time."""
    coverage = profile.operator_coverage
    dispatch_s = profile.machine.peaks.get("dispatch_s")
    aten = [op for op in profile.operators if op.name.startswith("aten::")]
    if coverage is None or dispatch_s is None or not aten or coverage["wall_s"] <= 0:
        return []
    optimizer_s = coverage.get("optimizer_s", 0.0)
    calls = sum(op.count for op in aten) - int(coverage.get("optimizer_calls", 0))
    profiled_s = coverage["wall_s"] - optimizer_s
    if profiled_s <= 0 or calls <= 0:
        return []
    unwatched = _unwatched_model_s(profile)
    step_s = profiled_s if unwatched is None else min(profiled_s, unwatched)
    profiler_s = profiled_s - step_s
    gap_s = max(0.0, profiled_s - (coverage["covered_s"] - optimizer_s) - profiler_s)
    dispatch_total_s = calls * dispatch_s
    overhead_share_of_busy = min(1.0, (gap_s + dispatch_total_s) / step_s)
    if overhead_share_of_busy < OVERHEAD_SHARE:
        return []
    share = overhead_share_of_busy * _model_share(profile)
    saving = share * OVERHEAD_SAVING
    per_call = [op.self_s / op.count for op in aten for _ in range(op.count)]  # all calls
    flops = profile.flops.total if profile.flops is not None else None
    return [
        Finding(
            kind="overhead_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=(
                f"Framework overhead dominates: {calls} operator calls per step, the median "
                f"taking {statistics.median(per_call) * 1e6:.1f} µs, with Python and dispatch "
                f"around them {overhead_share_of_busy:.0%} of the step's compute time."
            ),
            evidence={
                "overhead_share": share,
                "overhead_share_of_compute": overhead_share_of_busy,
                "ops_per_step": calls,
                "median_op_self_s": statistics.median(per_call),
                "dispatch_s": dispatch_s,
                "dispatch_total_s": dispatch_total_s,
                "python_gap_s": gap_s,
                "profiled_step_s": profiled_s,
                "profiler_s": profiler_s,
                "step_s": step_s,
                "flops_per_op": flops / calls if flops is not None else None,
                "threshold_share": OVERHEAD_SHARE,
            },
            remedies=[
                remedy("torch_compile"),
                remedy("larger_batch"),
                remedy("cuda_graphs")
                if profile.device.startswith("cuda")
                else remedy("fused_modules"),
            ],
        )
    ]

"""``memory_capacity``: the run's peak memory against what it may use.

The peak is the CUDA allocator's peak on a GPU; on a CPU, parameters + gradients + optimizer
state + the activation peak of a step (the process's own libraries are left out: they are not
the model's). The budget is the workload's ``memory_budget_bytes`` when set, else the device's
memory on a GPU, else the process's limit (cgroup, address-space limit or the machine's memory).

- peak ≥ budget: high severity; the run does not fit, so it ranks first (saving 1.0).
- peak ≥ 85 % of the budget: medium; a larger batch or a longer sequence will not fit.
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.finding import Finding, Severity

__all__ = ["analyze"]

NEAR_LIMIT_FRACTION = 0.85


def analyze(profile: Profile) -> list[Finding]:
    """``memory_capacity`` when the peak reaches 85 % of the memory budget."""
    m = profile.memory
    budget_source = "workload budget"
    budget = profile.settings.get("memory_budget_bytes")
    if budget is None and m.device_capacity_bytes:
        budget, budget_source = m.device_capacity_bytes, "device memory"
    if budget is None and m.process_limit_bytes:
        budget, budget_source = m.process_limit_bytes, "process limit"
    if not budget:
        return []
    parts = {
        "parameters_bytes": m.parameters_bytes or 0,
        "gradients_bytes": m.gradients_bytes or 0,
        "optimizer_state_bytes": m.optimizer_state_bytes or 0,
        "activations_peak_bytes": m.activations_peak_bytes or 0,
    }
    peak = (
        m.device_peak_bytes if m.source == "cuda" and m.device_peak_bytes else sum(parts.values())
    )
    fraction = peak / budget
    if fraction < NEAR_LIMIT_FRACTION:
        return []
    fits = fraction < 1.0
    severity: Severity = "medium" if fits else "high"
    largest = max(parts, key=lambda k: parts[k])
    remedies = [
        remedy("grad_accumulation"),
        remedy("activation_checkpointing"),
        remedy("mixed_precision", "bf16/fp16 halve the bytes of activations and weights"),
    ]
    if largest == "optimizer_state_bytes":
        remedies.insert(0, remedy("optimizer_state_sharding"))
    elif largest == "parameters_bytes":
        remedies.insert(0, remedy("quantize_int8", "int8 weights take a quarter of fp32's bytes"))
    verdict = "is within" if fits else "exceeds"
    return [
        Finding(
            kind="memory_capacity",
            severity=severity,
            share=fraction,
            saving_share=0.0 if fits else 1.0,
            summary=(
                f"Peak memory {verdict} the {budget_source}: {peak / 2**20:.0f} MiB of "
                f"{budget / 2**20:.0f} MiB ({fraction:.0%}), mostly "
                f"{largest.removesuffix('_bytes').replace('_', ' ')}."
            ),
            evidence={
                "peak_bytes": peak,
                "budget_bytes": budget,
                "budget_source": budget_source,
                "used_fraction": fraction,
                **parts,
                "near_limit_fraction": NEAR_LIMIT_FRACTION,
            },
            remedies=remedies,
        )
    ]

"""Step-phase analyzers: waiting for data, copying to the device, the optimizer step.

Each reads the shares of the measured steps' wall time (``Profile.phase_stats``).

- ``input_bound``: the data wait's share. Levels follow XProf's input-pipeline analysis:
  "highly" input-bound from 20 % of the step, "moderately" from 5 %; below 5 % nothing is
  reported. Saving: the whole wait, since loading can overlap compute when the loader keeps up.
- ``host_transfer_bound``: the copy phase's share, from 5 %. Saving: 80 % of it (pinned memory
  and non-blocking copies overlap most of a copy with compute).
- ``optimizer_bound``: the optimizer step's share, from 15 %. Saving: 60 % of it when a per-tensor
  (neither foreach nor fused) implementation loops over 16 or more tensors (foreach and fused
  implementations are typically 2-5× faster there), else 25 %.
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.analyzers._common import phase_share
from pinchpoint.finding import Finding, severity_for

__all__ = ["analyze_input", "analyze_optimizer", "analyze_transfer"]

INPUT_MODERATE_SHARE = 0.05
INPUT_HIGH_SHARE = 0.20
TRANSFER_SHARE = 0.05
TRANSFER_SAVING = 0.8
OPTIMIZER_SHARE = 0.15
LOOPED_OPTIMIZER_TENSORS = 16


def analyze_input(profile: Profile) -> list[Finding]:
    """``input_bound`` when the step waits for its batch for 5 % of its time or more."""
    share = phase_share(profile, "data")
    if share < INPUT_MODERATE_SHARE:
        return []
    level = "highly" if share >= INPUT_HIGH_SHARE else "moderately"
    stats = profile.phase_stats()
    remedies = [remedy("dataloader_workers"), remedy("cheaper_collate"), remedy("prefetch")]
    if profile.device.startswith("cuda"):
        remedies.append(remedy("pin_memory"))
    return [
        Finding(
            kind="input_bound",
            severity=severity_for(share),
            share=share,
            saving_share=share,
            summary=(
                f"The step is {level} input-bound: it waits for its next batch "
                f"{share:.0%} of the time."
            ),
            evidence={
                "data_share": share,
                "data_median_s": stats["data"].median_s,
                "step_median_s": profile.step_time_s,
                "level": level,
                "moderate_threshold_share": INPUT_MODERATE_SHARE,
                "high_threshold_share": INPUT_HIGH_SHARE,
            },
            remedies=remedies,
        )
    ]


def analyze_transfer(profile: Profile) -> list[Finding]:
    """``host_transfer_bound`` when copies to the device take 5 % of the step or more."""
    share = phase_share(profile, "transfer")
    if share < TRANSFER_SHARE:
        return []
    saving = share * TRANSFER_SAVING
    return [
        Finding(
            kind="host_transfer_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=f"Copying batches to the device takes {share:.0%} of the step.",
            evidence={
                "transfer_share": share,
                "transfer_median_s": profile.phase_stats()["transfer"].median_s,
                "threshold_share": TRANSFER_SHARE,
            },
            remedies=[
                remedy("pin_memory"),
                remedy("non_blocking_copies"),
                remedy("device_preprocessing"),
            ],
        )
    ]


def analyze_optimizer(profile: Profile) -> list[Finding]:
    """``optimizer_bound`` when the optimizer step takes 15 % of the step or more."""
    share = phase_share(profile, "optimizer")
    if share < OPTIMIZER_SHARE:
        return []
    facts = profile.optimizer or {}
    tensors = int(facts.get("param_tensors") or 0)
    looped = not facts.get("foreach") and not facts.get("fused")
    per_tensor_loop = looped and tensors >= LOOPED_OPTIMIZER_TENSORS
    saving = share * (0.6 if per_tensor_loop else 0.25)
    name = facts.get("type", "the optimizer")
    remedies = [remedy("fewer_param_tensors"), remedy("cheaper_optimizer")]
    if per_tensor_loop:
        remedies.insert(
            0,
            remedy(
                "foreach_optimizer",
                f"{name} loops over {tensors} parameter tensors one at a time; foreach=True or "
                "fused=True updates them in a few kernels",
            ),
        )
    else:
        remedies.append(remedy("foreach_optimizer"))
    detail = f" ({name} looping over {tensors} tensors)" if per_tensor_loop else ""
    return [
        Finding(
            kind="optimizer_bound",
            severity=severity_for(saving),
            share=share,
            saving_share=saving,
            summary=f"The optimizer step takes {share:.0%} of the step{detail}.",
            evidence={
                "optimizer_share": share,
                "optimizer_median_s": profile.phase_stats()["optimizer"].median_s,
                "optimizer": facts.get("type"),
                "param_tensors": tensors,
                "foreach": facts.get("foreach"),
                "fused": facts.get("fused"),
                "threshold_share": OPTIMIZER_SHARE,
            },
            remedies=remedies,
        )
    ]

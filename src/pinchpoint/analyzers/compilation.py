"""``recompilation``: a compiled model that keeps compiling while it runs.

From the Profile's :class:`~pinchpoint._profile.Compilation` (torch._dynamo's own counters,
read around each recorded step), over the measured steps only (warm-up is where a compiled
model is expected to compile):

- the compile share: the seconds dynamo spent compiling in the measured steps over their wall
  time;
- the compile steps: how many measured steps compiled at least one graph.

A finding is reported when the compile share is 10 % or more and graphs were compiled in at
least two measured steps and in 10 % or more of them: a model that compiles once, or once per
rare shape, is healthy; one that recompiles every few steps is not. The saving assumed is 90 %
of the compile share (with dynamic shapes or bucketed lengths a few graphs still compile once).

The evidence gives the graphs compiled per measured step, the compile seconds, the distinct
batch shapes the measured steps saw, the graph breaks met while tracing and the reasons dynamo
gave for its recompiles and breaks, and how often it hit its recompile limit (after which it runs
the function eagerly). Remedies follow the cause: when the batch shapes vary or the guards
failed on a size, dynamic shapes, then padding to buckets, then ``mark_dynamic``; otherwise
(guards on Python values, graph breaks) moving the side effects out of ``forward`` first.
"""

from __future__ import annotations

from pinchpoint._profile import Profile
from pinchpoint.analyzers._catalog import remedy
from pinchpoint.finding import Finding, Remedy, severity_for

__all__ = ["analyze"]

#: Compile seconds over the measured steps' wall time from which a finding is reported.
COMPILE_SHARE = 0.10
#: The least share of measured steps that must compile (and at least MIN_COMPILE_STEPS).
COMPILE_STEP_SHARE = 0.10
MIN_COMPILE_STEPS = 2
#: The share of the compile time that dynamic shapes or buckets are assumed to save.
RECOMPILE_SAVING = 0.9


def analyze(profile: Profile) -> list[Finding]:
    """``recompilation`` when the measured steps keep compiling (see the module docstring)."""
    compilation = profile.compilation
    if compilation is None or len(compilation.graphs) != len(profile.steps):
        return []
    measured = [i for i, step in enumerate(profile.steps) if step.measured]
    wall_s = sum(profile.steps[i].wall_s for i in measured)
    if not measured or wall_s <= 0:
        return []
    compile_steps = [i for i in measured if compilation.graphs[i] > 0]
    compile_s = sum(compilation.compile_s[i] for i in measured)
    compile_share = min(1.0, compile_s / wall_s)
    if (
        compile_share < COMPILE_SHARE
        or len(compile_steps) < MIN_COMPILE_STEPS
        or len(compile_steps) < COMPILE_STEP_SHARE * len(measured)
    ):
        return []
    graphs = sum(compilation.graphs[i] for i in measured)
    breaks = sum(compilation.graph_breaks[i] for i in measured)
    shapes = {compilation.shapes[i] for i in measured if compilation.shapes[i]}
    by_size = any("size mismatch" in reason for reason in compilation.recompile_reasons)
    saving = compile_share * RECOMPILE_SAVING
    summary = (
        f"torch.compile recompiled in {len(compile_steps)} of {len(measured)} measured steps "
        f"({graphs} graphs, {compile_s:.2f} s compiling: {compile_share:.0%} of the run)"
    )
    if len(shapes) > 1:
        summary += f"; the batches came in {len(shapes)} shapes"
    return [
        Finding(
            kind="recompilation",
            severity=severity_for(saving),
            share=compile_share,
            saving_share=saving,
            summary=summary + ".",
            evidence={
                "compile_share": compile_share,
                "compile_s": compile_s,
                "measured_steps": len(measured),
                "compile_steps": len(compile_steps),
                "graphs_compiled": graphs,
                "graphs_per_step": graphs / len(measured),
                "distinct_shapes": len(shapes),
                "graph_breaks": breaks,
                "graph_breaks_per_step": breaks / len(measured),
                "recompile_reasons": dict(compilation.recompile_reasons),
                "graph_break_reasons": dict(compilation.graph_break_reasons),
                "recompile_limit_hits": compilation.limit_hits,
                "measured_wall_s": wall_s,
                "threshold_share": COMPILE_SHARE,
                "threshold_step_share": COMPILE_STEP_SHARE,
            },
            remedies=_remedies(shapes_vary=len(shapes) > 1 or by_size, breaks=breaks),
        )
    ]


def _remedies(*, shapes_vary: bool, breaks: int) -> list[Remedy]:
    """Shape remedies first when sizes change; the side effects first when they do not."""
    shape_remedies = [remedy("dynamic_shapes"), remedy("pad_to_buckets"), remedy("mark_dynamic")]
    if shapes_vary:
        return [*shape_remedies, *([remedy("fix_graph_breaks")] if breaks else [])]
    return [remedy("fix_graph_breaks"), *shape_remedies]

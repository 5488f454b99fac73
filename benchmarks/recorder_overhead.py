"""Measure what recording costs: a zoo training loop with and without pinchpoint's recorder.

Whole runs on a shared 2-core machine vary by ~8 % from one to the next, more than the effect
being measured, so the cost is taken apart and each part measured where it can be measured well:

1. **Per-step cost.** Two identical copies of the workload (same seed) train side by side, step
   by step: one bare (zero_grad, loss, backward, step, loss.item()), one under a
   :class:`pinchpoint.Recorder` driven exactly as ``pinchpoint.profile`` drives it (phase marks,
   loss, gradient norm, bookkeeping). Alternating single steps puts both under the same machine
   conditions; the median of the pairwise ratios is the per-step ratio. The same method run with
   both copies bare (a control) is printed beside it: its distance from 1 is the method's bias.
2. **Fixed cost per run.** Whole ``pinchpoint.profile`` runs, with and without the sampled steps,
   stamp each step's end through ``on_step``. A run's fixed cost is its set-up (with the first
   step's excess over a median step), the time after its last step (building the Profile) and,
   when sampling, the excess of its FLOP-counting and profiled steps. Bare runs are measured the
   same way, so their own start-up cancels out.
3. **Amortised ratio over an N-step run** = ``(N · plain step · per-step ratio + fixed cost)`` over
   ``(N · plain step + plain fixed cost)``. The targets apply to it (issue 2: phase timing
   ≤ 1.03×, with the sampled steps ≤ 1.10× over a 50-step run).

``--quick`` runs the same code at tiny sizes (20 pairs, 10-step runs, one run per mode, a
tiny-gpt of one narrow block, one thread) in seconds: a check that the script works, whose
figures are too noisy to quote.

    python benchmarks/recorder_overhead.py [--workload tiny-gpt] [--steps 50] [--pairs 200]
        [--runs 7] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

import torch

import pinchpoint
from pinchpoint import zoo
from pinchpoint.recorders import Recorder, sample_plan
from pinchpoint.recorders.run import TrainingLoop, installed
from pinchpoint.workload import Workload

QUICK = {"pairs": 20, "steps": 10, "runs": 1}
# Quick mode's tiny-gpt: one narrow block on short windows (a step of a few ms, not ~100).
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "tiny-gpt": {"batch_size": 4, "context": 16, "n_layers": 1, "d_model": 32}
}


def bare_step(workload: Workload, batches: Any) -> float:
    """One training step the way a user writes it; its wall time."""
    start = time.perf_counter()
    batch = next(batches)
    workload.optimizer.zero_grad(set_to_none=True)
    assert workload.loss is not None
    loss = workload.loss(workload.model, batch)
    loss.backward()
    workload.optimizer.step()
    loss.item()
    return time.perf_counter() - start


def per_step_ratios(
    name: str, pairs: int, control: bool = False, options: dict[str, Any] | None = None
) -> tuple[float, list[float]]:
    """Median bare step time and the ratios recorded/bare of ``pairs`` alternating steps.

    With ``control``, the second copy runs bare too: the ratios then show the method's own
    noise floor and any bias between the two copies.
    """
    options = options or {}
    bare, recorded = zoo.get(name, seed=0, **options), zoo.get(name, seed=0, **options)
    bare.model.train()
    recorded.model.train()
    rec = Recorder(recorded.model, recorded.optimizer, warmup=0, sample=False)
    # The loop pinchpoint.profile runs each recorded step through (None: the control's bare copy).
    loop = None if control else TrainingLoop(recorded, recorded.model, rec.device)
    bare_batches = bare.batches()
    rec_batches = rec.data(recorded.batches())
    if control:
        rec.close()
        rec_batches = recorded.batches()

    def second() -> float:
        if loop is None:
            return bare_step(recorded, rec_batches)
        start = time.perf_counter()
        batch = next(rec_batches)
        with rec.step():
            loop.step(rec.to_device(batch), rec)
        return time.perf_counter() - start

    bare_times, ratios = [], []
    with installed(loop):
        for _ in range(5):  # warm both copies
            bare_step(bare, bare_batches)
            second()
        for i in range(pairs):
            # Alternate which copy goes first, so neither always follows the other.
            if i % 2 == 0:
                first_s = bare_step(bare, bare_batches)
                second_s = second()
            else:
                second_s = second()
                first_s = bare_step(bare, bare_batches)
            bare_times.append(first_s)
            ratios.append(second_s / first_s)
    rec.close()
    return statistics.median(bare_times), ratios


def fixed_cost(workload: Workload, steps: int, mode: str) -> float:
    """Seconds one run spends beyond its ordinary steps.

    That is: set-up with the first step's excess over a median step, the time after the last
    step (building the Profile), and each sampled step's excess. The spread of ordinary steps
    is left out: it belongs to the machine, and the per-step ratio accounts for it.
    """
    ends: list[float] = []
    sampled: list[bool] = []

    def stamp(step: Any = None) -> None:
        ends.append(time.perf_counter())
        sampled.append(step is not None and step.sampled is not None)

    start = time.perf_counter()
    if mode == "plain":
        batches = workload.batches()
        workload.model.train()
        for _ in range(steps):
            bare_step(workload, batches)
            stamp()
    else:
        sample = mode == "sampled"
        measured = steps - (len(sample_plan("cpu")) if sample else 0)
        pinchpoint.profile(
            workload, steps=measured, warmup=0, sample=sample, device="cpu", on_step=stamp
        )
    wall = time.perf_counter() - start
    intervals = [b - a for a, b in itertools.pairwise(ends)]
    step = statistics.median(d for d, s in zip(intervals, sampled[1:], strict=True) if not s)
    sampled_excess = sum(d - step for d, s in zip(intervals, sampled[1:], strict=True) if s)
    return (ends[0] - start - step) + (wall - (ends[-1] - start)) + sampled_excess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="tiny-gpt", help="a zoo training workload")
    parser.add_argument("--steps", type=int, default=50, help="steps in a run, for amortising")
    parser.add_argument("--pairs", type=int, default=200, help="alternating step pairs")
    parser.add_argument("--runs", type=int, default=7, help="whole runs per loop, for fixed costs")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
        # A tiny model gains nothing from a second thread, and on a busy machine two threads
        # wait on each other for whole time slices (steps 10-20x slower).
        torch.set_num_threads(1)
    if args.steps < 5 or args.pairs < 2 or args.runs < 1:
        parser.error("--steps must be >= 5, --pairs >= 2 and --runs >= 1")
    if zoo.get(args.workload).mode != "train":
        parser.error(f"{args.workload} is not a training workload")

    options = QUICK_OPTIONS.get(args.workload, {}) if args.quick else {}
    _, control = per_step_ratios(args.workload, args.pairs, control=True, options=options)
    plain_step, ratios = per_step_ratios(args.workload, args.pairs, options=options)
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    control_quartiles = statistics.quantiles(control, n=4)

    workload = zoo.get(args.workload, seed=0, **options)
    fixed: dict[str, list[float]] = {"plain": [], "phases": [], "sampled": []}
    for mode in fixed:  # warm-up: first profiler start, allocator, caches
        fixed_cost(workload, min(10, args.steps), mode)
    for run in range(args.runs):
        modes = list(fixed)
        shift = run % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            fixed[mode].append(fixed_cost(workload, args.steps, mode))
    fixed_s = {mode: statistics.median(values) for mode, values in fixed.items()}

    n = args.steps
    print(
        f"workload zoo:{args.workload}{' (quick: shrunk)' if options else ''}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"bare step {plain_step * 1e3:.2f} ms"
    )
    print(
        f"  per-step ratio (recorded/bare, {args.pairs} alternating pairs): median {ratio:.4f}x, "
        f"quartiles {quartiles[0]:.4f}-{quartiles[2]:.4f}"
    )
    print(
        f"  control (bare/bare, same method): median {statistics.median(control):.4f}x, "
        f"quartiles {control_quartiles[0]:.4f}-{control_quartiles[2]:.4f}"
    )
    print(
        "  fixed cost per run (median of "
        f"{args.runs}): "
        + ", ".join(f"{mode} {value * 1e3:.0f} ms" for mode, value in fixed_s.items())
    )
    base = n * plain_step + fixed_s["plain"]
    for mode, target in (("phases", 1.03), ("sampled", 1.10)):
        amortised = (n * plain_step * ratio + fixed_s[mode]) / base
        verdict = "meets" if amortised <= target else "MISSES"
        print(
            f"  {mode:<8} amortised over {n} steps: {amortised:.3f}x "
            f"(target <= {target:.2f}x: {verdict})"
        )


if __name__ == "__main__":
    main()

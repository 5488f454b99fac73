"""Measure what the training-health tier costs on the zoo's training workloads.

The always-on tier (per-layer gradient norms every step, update ratios every 10th step,
activation statistics every 20th) is compared with phase timing alone. Two identical copies of a
workload (same seed) train side by side, one single step at a time, alternating which goes first:
one under a ``Recorder(health=False)``, one under a ``Recorder(health=True)``, each step run the
way ``pinchpoint.profile`` runs it (its training loop, batch moved through the recorder). Both
skip the sampled FLOP/profiler steps, which are not part of this tier. Printed per workload:

- the amortised ratio, the figure the target applies to (issue 4: ≤ 1.03×): the pairs are split by
  what the health copy's step carried (an ordinary step; an update-ratio step; an
  activation-statistics step, as its Profile's health series record them), each kind's median
  pairwise ratio is weighted by how often that kind occurs. Medians keep a stray slow step (the
  machine's, not pinchpoint's) out;
- the raw ratio of total times, which such strays move by a few percent either way;
- the same with health off on both copies, a control whose distance from 1 is the method's bias
  (its pairs split by the same steps).

``--quick`` runs the same code at tiny sizes (30 pairs, a tiny-gpt of one narrow block, one
thread) in seconds: a check that the script works, whose figures are too noisy to quote.

    python benchmarks/health_overhead.py [--workloads digits-cnn tiny-gpt] [--pairs 200] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from pinchpoint import zoo
from pinchpoint.recorders import Recorder
from pinchpoint.recorders.run import TrainingLoop, installed

WARMUP = 5  # steps each copy runs before the measured pairs
QUICK = {"pairs": 30}
# Quick mode's tiny-gpt: one narrow block on short windows (a step of a few ms, not ~100).
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "tiny-gpt": {"batch_size": 4, "context": 16, "n_layers": 1, "d_model": 32}
}


def _timed_step(rec: Recorder, loop: TrainingLoop, batches: Iterator[Any]) -> float:
    """One step as ``pinchpoint.profile`` records it; its wall time."""
    start = time.perf_counter()
    batch = next(batches)
    with rec.step():
        loop.step(rec.to_device(batch), rec)
    return time.perf_counter() - start


def compare(
    name: str, pairs: int, health: bool, options: dict[str, Any]
) -> tuple[list[float], float, dict[int, str]]:
    """Pairwise ratios of a recorder with ``health`` against one without, after the warm-up.

    Also the ratio of total times, and what the ``health`` copy's steps carried beyond gradient
    norms (``"updates"`` or ``"activations"``, by step index; empty when ``health`` is off).
    """
    base, other = zoo.get(name, seed=0, **options), zoo.get(name, seed=0, **options)
    base.model.train()
    other.model.train()
    base_rec = Recorder(base.model, base.optimizer, warmup=0, sample=False, health=False)
    other_rec = Recorder(other.model, other.optimizer, warmup=0, sample=False, health=health)
    base_loop = TrainingLoop(base, base.model, base_rec.device)
    other_loop = TrainingLoop(other, other.model, other_rec.device)
    base_batches = base_rec.data(base.batches())
    other_batches = other_rec.data(other.batches())
    base_times, other_times = [], []
    with installed(base_loop), installed(other_loop):
        for _ in range(WARMUP):
            _timed_step(base_rec, base_loop, base_batches)
            _timed_step(other_rec, other_loop, other_batches)
        for i in range(pairs):
            if i % 2 == 0:
                base_times.append(_timed_step(base_rec, base_loop, base_batches))
                other_times.append(_timed_step(other_rec, other_loop, other_batches))
            else:
                other_times.append(_timed_step(other_rec, other_loop, other_batches))
                base_times.append(_timed_step(base_rec, base_loop, base_batches))
    base_rec.close()
    other_rec.close()
    carried: dict[int, str] = {}
    series = other_rec.profile().health
    if series is not None:
        carried.update(dict.fromkeys(series.update_steps, "updates"))
        carried.update(dict.fromkeys(series.activation_steps, "activations"))
    ratios = [o / b for o, b in zip(other_times, base_times, strict=True)]
    return ratios, sum(other_times) / sum(base_times), carried


def amortised(ratios: list[float], carried: dict[int, str]) -> float:
    """Each kind of step's median ratio, weighted by how often that kind occurs."""
    kinds: dict[str, list[float]] = {"ordinary": [], "updates": [], "activations": []}
    for i, ratio in enumerate(ratios):
        kinds[carried.get(i + WARMUP, "ordinary")].append(ratio)
    return sum(len(v) * statistics.median(v) for v in kinds.values() if v) / len(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["digits-cnn", "tiny-gpt"])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
        # A tiny model gains nothing from a second thread, and on a busy machine two threads
        # wait on each other for whole time slices (steps 10-20x slower).
        torch.set_num_threads(1)
    if args.pairs < 1:
        parser.error("--pairs must be >= 1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.pairs} pairs")
    for name in args.workloads:
        options = QUICK_OPTIONS.get(name, {}) if args.quick else {}
        control, control_total, _ = compare(name, args.pairs, False, options)
        ratios, total, carried = compare(name, args.pairs, True, options)
        # The control's pairs are split by the same steps as the health run's.
        health_ratio, control_ratio = amortised(ratios, carried), amortised(control, carried)
        verdict = "meets" if health_ratio <= 1.03 else "MISSES"
        label = f"zoo:{name}" + (" (quick: shrunk)" if options else "")
        print(
            f"  {label:<15} health on/off: amortised {health_ratio:.4f}x (raw total "
            f"{total:.4f}x); control off/off: {control_ratio:.4f}x (raw {control_total:.4f}x); "
            f"target <= 1.03x: {verdict}"
        )


if __name__ == "__main__":
    main()

"""Measure what the training-health tier costs on the zoo's training workloads.

The always-on tier (per-layer gradient norms and update ratios every step, activation statistics
every 10th step) is compared with phase timing alone. Two identical copies of a workload (same
seed) train side by side, one single step at a time, alternating which goes first: one under a
``Recorder(health=False)``, one under a ``Recorder(health=True)``. Both skip the sampled
FLOP/profiler steps, which are not part of this tier. Printed per workload:

- the ratio of the copies' total time over all pairs (activation-sampling steps included), the
  figure the target applies to (issue 4: ≤ 1.03×);
- the median of the pairwise ratios (an ordinary step);
- the same method with health off on both copies, a control whose distance from 1 is the method's
  own bias.

    python benchmarks/health_overhead.py [--workloads digits-cnn tiny-gpt] [--pairs 200]
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
from pinchpoint.recorders.run import _train_step
from pinchpoint.workload import Workload


def _timed_step(rec: Recorder, workload: Workload, batches: Iterator[Any]) -> float:
    start = time.perf_counter()
    batch = next(batches)
    with rec.step():
        _train_step(workload, workload.model, batch, rec)
    return time.perf_counter() - start


def compare(name: str, pairs: int, health: bool) -> tuple[float, float]:
    """Total-time and median pairwise ratios of a recorder with ``health`` against one without."""
    base, other = zoo.get(name, seed=0), zoo.get(name, seed=0)
    base.model.train()
    other.model.train()
    base_rec = Recorder(base.model, base.optimizer, warmup=0, sample=False, health=False)
    other_rec = Recorder(other.model, other.optimizer, warmup=0, sample=False, health=health)
    base_batches = base_rec.data(base.batches())
    other_batches = other_rec.data(other.batches())
    for _ in range(5):
        _timed_step(base_rec, base, base_batches)
        _timed_step(other_rec, other, other_batches)
    base_times, other_times = [], []
    for i in range(pairs):
        if i % 2 == 0:
            base_times.append(_timed_step(base_rec, base, base_batches))
            other_times.append(_timed_step(other_rec, other, other_batches))
        else:
            other_times.append(_timed_step(other_rec, other, other_batches))
            base_times.append(_timed_step(base_rec, base, base_batches))
    base_rec.close()
    other_rec.close()
    ratios = [o / b for o, b in zip(other_times, base_times, strict=True)]
    return sum(other_times) / sum(base_times), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["digits-cnn", "tiny-gpt"])
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.pairs} pairs")
    for name in args.workloads:
        control_total, control_median = compare(name, args.pairs, health=False)
        total, median = compare(name, args.pairs, health=True)
        verdict = "meets" if total <= 1.03 else "MISSES"
        print(
            f"  zoo:{name:<11} health on/off: total {total:.4f}x, median step {median:.4f}x; "
            f"control off/off: total {control_total:.4f}x, median {control_median:.4f}x; "
            f"target <= 1.03x: {verdict}"
        )


if __name__ == "__main__":
    main()

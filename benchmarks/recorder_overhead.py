"""Measure what recording costs: a zoo training loop with and without pinchpoint's recorder.

Three loops run the same workload for the same number of steps, interleaved (plain, phases,
sampled, plain, phases, sampled…) so that drift of a noisy machine hits all of them alike:

- ``plain``: the bare training loop (zero_grad, loss, backward, step), no pinchpoint at all;
- ``phases``: ``pinchpoint.profile(..., sample=False)``: phase timing, loss and gradient norm;
- ``sampled``: ``pinchpoint.profile(...)`` with its sampled steps (FLOP counting and
  torch.profiler on 3 of the steps), the default.

Each repetition gives a ratio against the plain loop of the same repetition; the script prints the
median ratio and its range over the repetitions. Targets (issue 2): phases ≤ 1.03×, sampled ≤ 1.10×
over a 50-step run. The whole ``profile()`` call is timed, set-up and Profile building included.

    python benchmarks/recorder_overhead.py [--workload tiny-gpt] [--steps 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import pinchpoint
from pinchpoint import zoo
from pinchpoint.workload import Workload


def plain_loop(workload: Workload, steps: int) -> float:
    """Seconds for ``steps`` bare training steps, the way a user writes them."""
    model, optimizer, loss_fn = workload.model, workload.optimizer, workload.loss
    assert loss_fn is not None
    model.train()
    batches = workload.batches()
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - start


def recorded_loop(workload: Workload, steps: int, sample: bool) -> float:
    """Seconds for a ``pinchpoint.profile`` call covering ``steps`` steps in all."""
    measured = steps - (3 if sample else 0)
    start = time.perf_counter()
    pinchpoint.profile(workload, steps=measured, warmup=0, sample=sample, device="cpu")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="tiny-gpt", help="a zoo training workload")
    parser.add_argument("--steps", type=int, default=50, help="steps in each run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args()

    workload = zoo.get(args.workload)
    if workload.mode != "train":
        parser.error(f"{args.workload} is not a training workload")
    runs: dict[str, Callable[[], float]] = {
        "plain": lambda: plain_loop(workload, args.steps),
        "phases": lambda: recorded_loop(workload, args.steps, sample=False),
        "sampled": lambda: recorded_loop(workload, args.steps, sample=True),
    }
    for run in runs.values():  # warm caches, the allocator and the profiler's first start
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())

    print(
        f"workload zoo:{args.workload}, {args.steps} steps per run, {args.repeats} interleaved "
        f"repetitions, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    plain = times["plain"]
    print(
        f"  plain    median {statistics.median(plain):.3f} s  "
        f"({statistics.median(plain) / args.steps * 1e3:.1f} ms/step)"
    )
    targets = {"phases": 1.03, "sampled": 1.10}
    for name, target in targets.items():
        ratios = [t / p for t, p in zip(times[name], plain, strict=True)]
        median = statistics.median(ratios)
        verdict = "meets" if median <= target else "MISSES"
        print(
            f"  {name:<8} median {statistics.median(times[name]):.3f} s  ratio {median:.3f}x "
            f"(range {min(ratios):.3f}–{max(ratios):.3f})  target <= {target:.2f}x: {verdict}"
        )


if __name__ == "__main__":
    main()

"""Optimize ``zoo:digits-cnn`` for size with real held-out accuracy; print the grid and frontier.

The zoo's digits CNN starts untrained, so it is first trained (``--train-steps`` AdamW steps on
the training images, seeded), then handed to :func:`pinchpoint.optimize` as an inference
workload: its batches of training images, one thread, and its ``evaluate`` (accuracy on the 360
held-out images). The objective is size with a budget of 1 point of accuracy (0.01 absolute).
Structural candidates (channel pruning, distillation) fine-tune on matching the trained model's
outputs, since an inference workload carries no labels.

Printed: every trial (remedies, bytes, how many times smaller, accuracy and its drop, the
measured speed-up with its 95 % interval, and FLOPs per image where torch's FLOP counter can
count them), the Pareto frontier, and the issue's check: the frontier holds a pruned or distilled
model at least 2x smaller that loses at most 1 point.

``--quick`` trains for 30 steps and runs the same search with a tiny grid (dynamic int8, a
channel pruning and a distillation, each fine-tuned for 20 steps), short trials (6 rounds over
one batch) and a 20-second budget, and removes its output folder: a check that the script works,
in seconds; its check may say FAIL and it exits 0 all the same.

    .venv/bin/python benchmarks/optimize_digits.py [--seed 0] [--time-budget 10m] [--out DIR]
        [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import tempfile
import time
from typing import Any

import torch

import pinchpoint
from pinchpoint.zoo import get

SIZE_TARGET = 2.0
DROP_TARGET = 0.01
QUICK = {"train_steps": 30, "time_budget": "20s"}
# Short trials: the fewest rounds a trial takes, over one batch.
QUICK_TRIALS: dict[str, Any] = {"rounds": 6, "batches": 1}


def quick_grid() -> list[Any]:
    """Quick mode's candidates: one of each kind the full grid has, with short fine-tuning."""
    from pinchpoint.remedies import Distill, Prune, Quantize

    return [
        Quantize("dynamic-int8"),
        Prune("channels", 0.5, finetune_steps=20),
        Distill(width=0.5, steps=20),
    ]


def train(workload: pinchpoint.Workload, steps: int, seed: int) -> None:
    """Train the zoo workload's model in place with its own loss and optimizer."""
    assert workload.loss is not None
    torch.manual_seed(seed)
    workload.model.train()
    batches = workload.batches()
    for _ in range(steps):
        workload.optimizer.zero_grad(set_to_none=True)
        workload.loss(workload.model, next(batches)).backward()
        workload.optimizer.step()
    workload.model.eval()


def flops_per_image(model: Any, images: torch.Tensor) -> float | None:
    """Forward FLOPs per image from torch's FLOP counter (None where it counts nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            model(images)
    except Exception:
        return None
    total = counter.get_total_flops()
    return total / len(images) if total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--time-budget", default="10m")
    parser.add_argument("--out", help="folder for the optimize output (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()

    torch.set_num_threads(1)
    zoo = get("digits-cnn", seed=args.seed)
    started = time.perf_counter()
    train(zoo, args.train_steps, args.seed)
    images = [x for x, _ in itertools.islice(zoo.data, 8)]
    workload = pinchpoint.Workload(
        model=zoo.model,
        data=images,
        evaluate=zoo.evaluate,
        name="digits-cnn (trained)",
        metric="accuracy",
        threads=1,
    )
    print(
        f"baseline trained in {time.perf_counter() - started:.1f} s: held-out accuracy "
        f"{zoo.evaluate(zoo.model):.4f}"
    )
    with contextlib.ExitStack() as stack:
        out = args.out
        if out is None and args.quick:  # removed once the search is done
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="optimize-digits-"))
        elif out is None:
            out = tempfile.mkdtemp(prefix="optimize-digits-")
        result = pinchpoint.optimize(
            workload,
            objective="size",
            max_drop=DROP_TARGET,
            time_budget=args.time_budget,
            out=out,
            target="zoo:digits-cnn (trained)",
            keep_models=True,
            on_trial=lambda r: print(f"  {' + '.join(r.candidate.labels)}: {r.why}", flush=True),
            candidates=quick_grid() if args.quick else None,
            trial_options=QUICK_TRIALS if args.quick else None,
        )
    probe = images[0]
    base_flops = flops_per_image(workload.model, probe)
    kept = "removed (--quick)" if args.quick and args.out is None else f"output in {out}"
    print(f"\n{len(result.records)} trials in {result.seconds:.0f} s; {kept}")
    header = (
        f"{'#':>2}  {'remedies':<58} {'bytes':>8} {'smaller':>7} {'accuracy':>8} "
        f"{'drop':>7} {'speed-up (95% CI)':>19} {'kFLOP/img':>9}"
    )
    print(header)
    base_bytes = result.baseline.get("size_bytes") or 0
    print(
        f"{'-':>2}  {'baseline (fp32)':<58} {base_bytes:>8} {1.0:>6.2f}x "
        f"{result.baseline.get('quality', float('nan')):>8.4f} {0.0:>7.4f} {'1.00x':>19} "
        f"{(base_flops or 0) / 1e3:>9.1f}"
    )
    found = []
    for i, record in enumerate(result.records):
        t = record.trial
        label = " + ".join(record.candidate.labels)[:58]
        if t is None:
            print(f"{i:>2}  {label:<58} {record.why}")
            continue
        model = record.workload.model if record.workload is not None else None
        flops = None if model is None else flops_per_image(model, probe)
        smaller = t.size_bytes_baseline / max(t.size_bytes, 1)
        mark = "*" if i in result.pareto else " "
        print(
            f"{i:>2}{mark} {label:<58} {t.size_bytes:>8} {smaller:>6.2f}x {t.quality:>8.4f} "
            f"{t.quality_drop:>7.4f} {t.speedup:>5.2f}x ({t.speedup_ci[0]:.2f}-"
            f"{t.speedup_ci[1]:.2f}) {'' if flops is None else f'{flops / 1e3:9.1f}'}"
        )
        structural = any(r.name in ("prune", "distill") for r in record.candidate.remedies)
        if (
            i in result.pareto
            and structural
            and smaller >= SIZE_TARGET
            and t.quality_drop <= DROP_TARGET
        ):
            found.append((i, smaller, t.quality_drop))
    print("(* on the Pareto frontier of speed, accuracy and size)")
    if found:
        i, smaller, drop = max(found, key=lambda f: f[1])
        print(
            f"\nPASS: trial {i} is on the frontier, {smaller:.1f}x smaller, accuracy drop "
            f"{drop * 100:.2f} points (target >= {SIZE_TARGET}x, <= {DROP_TARGET * 100:.0f} point)"
        )
    else:
        quick = " (--quick: not a measurement)" if args.quick else ""
        print(
            "\nFAIL: no pruned or distilled model on the frontier is 2x smaller within 1 point"
            + quick
        )
        sys.exit(0 if args.quick else 1)


if __name__ == "__main__":
    main()

"""int8 on ``zoo:minilm`` (all-MiniLM-L6-v2, real weights): cosine fidelity and measured speed-up.

Each int8 path pinchpoint has is applied to the sentence encoder and measured against fp32 eager
in a fair interleaved trial on one thread; quality is the workload's ``evaluate``: the mean cosine
similarity of the embeddings of held-out sentences (Python standard-library docstrings) to the
fp32 model's. The issue's check: an int8 model with cosine >= 0.99 that is measurably faster.

``--quick`` runs the same search with a tiny grid (dynamic int8 alone), short trials (6 rounds
over one batch) and a 20-second budget: a check that the script works, in seconds; its check may
say FAIL and it exits 0 all the same.

    .venv/bin/python benchmarks/optimize_minilm.py [--time-budget 10m] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import pinchpoint
from pinchpoint.remedies import OnnxRuntime, Quantize, SmoothQuant
from pinchpoint.zoo import get

COSINE_TARGET = 0.99
QUICK = {"time_budget": "20s"}
# Short trials: the fewest rounds a trial takes, over one batch.
QUICK_TRIALS: dict[str, Any] = {"rounds": 6, "batches": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-budget", default="10m")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()

    workload = dataclasses.replace(get("minilm"), threads=1)
    grid = [
        Quantize("dynamic-int8"),
        SmoothQuant(),
        Quantize("weight-only-int8"),
        OnnxRuntime(quantize="int8"),
        Quantize("static-int8"),
    ]
    result = pinchpoint.optimize(
        workload,
        candidates=grid[:1] if args.quick else grid,
        diagnose_first=False,
        combine=False,
        max_drop=1 - COSINE_TARGET,
        time_budget=args.time_budget,
        target="zoo:minilm",
        on_trial=lambda r: print(f"  {' + '.join(r.candidate.labels)}: {r.why}", flush=True),
        trial_options=QUICK_TRIALS if args.quick else None,
    )
    base = result.baseline
    print(f"\nfp32 eager: {base.get('time_s', float('nan')) * 1e3:.1f} ms per batch, 1 thread")
    print(f"{'remedy':<56} {'ms':>7} {'speed-up (95% CI)':>19} {'cosine':>8} {'MB':>6}")
    passed = []
    for record in result.records:
        label = " + ".join(record.candidate.labels)[:56]
        t = record.trial
        if t is None:
            print(f"{label:<56} {record.why}")
            continue
        print(
            f"{label:<56} {t.speed.candidate_s * 1e3:>7.1f} {t.speedup:>5.2f}x "
            f"({t.speedup_ci[0]:.2f}-{t.speedup_ci[1]:.2f}) {t.quality:>8.5f} "
            f"{t.size_bytes / 1e6:>6.1f}"
        )
        if t.quality >= COSINE_TARGET and t.speedup_ci[0] > 1.0:
            passed.append((t.speedup, label))
    if passed:
        speedup, label = max(passed)
        print(f"\nPASS: {label}: {speedup:.2f}x faster with cosine >= {COSINE_TARGET}")
    else:
        quick = " (--quick: not a measurement)" if args.quick else ""
        print(f"\nFAIL: no int8 path is faster with cosine >= {COSINE_TARGET}{quick}")
        sys.exit(0 if args.quick else 1)


if __name__ == "__main__":
    main()

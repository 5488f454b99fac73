"""Time a whole diagnosis of a zoo workload, calibration from a cold cache included.

Issue 3's target: diagnosing a zoo workload takes at most 60 s on the 2-core development machine,
calibration from a cold cache included. Each workload is diagnosed twice in a fresh process's
temporary cache: once cold (calibration runs) and once warm (the cached peaks are reused); the
time of building the workload (loading a model, reading data) is printed separately.

``--quick`` diagnoses a tiny-gpt of one narrow block for 5 steps on one thread, both passes
(cold and warm cache, then cold again) included: the same code in about 15 s, most of it the two
calibrations.

    python benchmarks/diagnose_time.py [--workloads digits-cnn tiny-gpt bert-base] [--steps 20]
        [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

QUICK: dict[str, Any] = {"workloads": ["tiny-gpt"], "steps": 5}
# Quick mode's tiny-gpt: one narrow block on short windows (a step of a few ms, not ~100).
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "tiny-gpt": {"batch_size": 4, "context": 16, "n_layers": 1, "d_model": 32}
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["digits-cnn", "tiny-gpt", "bert-base"])
    parser.add_argument("--steps", type=int, default=20, help="measured steps (the default)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
        import torch

        # On a busy machine two threads wait on each other for whole time slices.
        torch.set_num_threads(1)
    options = QUICK_OPTIONS if args.quick else {}

    with tempfile.TemporaryDirectory() as cache:
        os.environ["PINCHPOINT_CACHE_DIR"] = cache
        import pinchpoint
        from pinchpoint import zoo

        print(
            f"diagnose with default settings ({args.steps} steps, 3 warm-up), cold cache: {cache}"
        )
        for i, name in enumerate(args.workloads):
            start = time.perf_counter()
            workload = zoo.get(name, **options.get(name, {}))
            built = time.perf_counter() - start
            start = time.perf_counter()
            diagnosis = pinchpoint.diagnose(workload, steps=args.steps)
            total = time.perf_counter() - start
            state = "cold cache (calibrates)" if i == 0 else "warm cache"
            verdict = diagnosis.principal.kind if diagnosis.principal else "no finding"
            target = "meets" if built + total <= 60 else "MISSES"
            if name in options:
                name += " (shrunk)"
            print(
                f"  zoo:{name:<12} build {built:5.1f} s + diagnose {total:5.1f} s = "
                f"{built + total:5.1f} s, {state}; principal: {verdict} "
                f"(target <= 60 s: {target})"
            )
        # The cold case for every workload: drop the cache and diagnose the last one again.
        for entry in os.scandir(os.path.join(cache, "calibration")):
            os.unlink(entry.path)
        start = time.perf_counter()
        workload = zoo.get(args.workloads[-1], **options.get(args.workloads[-1], {}))
        pinchpoint.diagnose(workload, steps=args.steps)
        print(
            f"  zoo:{args.workloads[-1]:<12} again from a cold cache: "
            f"{time.perf_counter() - start:5.1f} s (build included)"
        )


if __name__ == "__main__":
    main()

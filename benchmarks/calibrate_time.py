"""Measure this machine's peaks the way pinchpoint does, and what calibrating costs.

Prints each measured peak, the ridge points, how long a cold calibration takes (in a temporary
cache folder, so the user's cache is neither used nor touched) and how long a warm load from the
cache takes. Torch is imported before the clock starts: a workload being diagnosed has loaded it
already, so its import is no cost of calibration.

``--quick`` calibrates on one thread and times 3 warm loads: the same code, in about the time
one calibration takes (6-9 s on the 2-core development machine).

    python benchmarks/calibrate_time.py [--device cpu] [--warm-loads 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pinchpoint.machine.calibrate import load_or_calibrate

QUICK = {"warm_loads": 3}


def main() -> None:
    """Calibrate cold once in a fresh cache folder, then time warm loads from it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warm-loads", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
        # On a busy machine two threads wait on each other for whole time slices; one thread
        # keeps the calibration near its quiet length.
        torch.set_num_threads(1)
    if args.warm_loads < 1:
        parser.error("--warm-loads must be >= 1")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp)
        start = time.perf_counter()
        peaks, from_cache = load_or_calibrate(args.device, cache_dir=cache_dir)
        cold_s = time.perf_counter() - start
        assert not from_cache
        warm = []
        for _ in range(args.warm_loads):
            start = time.perf_counter()
            again, from_cache = load_or_calibrate(args.device, cache_dir=cache_dir)
            warm.append(time.perf_counter() - start)
            assert from_cache and again == peaks

    for dtype, rate in peaks.flops.items():
        unit = "TOP/s" if dtype == "int8" else "TFLOP/s"
        ridge = peaks.ridge_flops_per_byte(dtype)
        print(f"  peak {dtype:<9} {rate / 1e12:8.3f} {unit:<8} ridge {ridge:7.1f} FLOP/byte")
    print(f"  bandwidth       {peaks.bandwidth_bytes_per_s / 1e9:8.2f} GB/s (read + written)")
    for level, rate in peaks.cache_bandwidth_bytes_per_s.items():
        held = peaks.cache_bytes.get(level, 0) / 2**20
        print(f"  {level} bandwidth    {rate / 1e9:8.2f} GB/s (up to {held:.1f} MiB)")
    print(f"  dispatch        {peaks.dispatch_s * 1e6:8.2f} µs per tiny op")
    print(f"cold calibration {cold_s:6.2f} s (measuring: {peaks.seconds:.2f} s)")
    print(f"warm load        {statistics.median(warm) * 1e3:6.2f} ms (median of {len(warm)})")


if __name__ == "__main__":
    main()

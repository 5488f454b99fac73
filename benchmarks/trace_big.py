"""Analyse a 1 GB uncompressed trace and print the time and peak memory it took.

Builds the trace from the corpus: the events of one real trace (``v100_single_rank`` by default)
repeated back to back, each copy shifted in time past the previous one, with its correlation ids
and step numbers renumbered, until the file reaches ``--size-gb``. Then runs
``pinchpoint trace FILE --json OUT`` in a fresh process and reports its CPU seconds, wall seconds
and peak resident memory (the kernel's own high-water mark for the process tree's largest
process, ``ru_maxrss``), next to the file's size and event count.

The trace and the analysis's JSON are written in a temporary folder, removed at the end.
``--quick`` builds a 10 MB trace instead: the same code in a few seconds.

    .venv/bin/python benchmarks/trace_big.py [--size-gb 1.0] [--keep PATH] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "traces"
QUICK = {"size_gb": 0.01}


def build(source: Path, target: Path, size_bytes: int) -> tuple[int, int]:
    """Write the repeated trace to ``target``; return (bytes, events)."""
    data = orjson.loads(gzip.decompress(source.read_bytes()))
    events: list[dict[str, Any]] = data.pop("traceEvents")
    timed = [e for e in events if isinstance(e.get("ts"), (int, float))]
    start = min(e["ts"] for e in timed)
    span = max(e["ts"] + e.get("dur", 0) for e in timed) - start + 1000.0
    head = orjson.dumps(data)[:-1] + b', "traceEvents": [\n'
    written = 0
    count = 0
    with target.open("wb") as out:
        out.write(head)
        copy = 0
        while written < size_bytes:
            shift = span * copy
            parts = []
            for e in events:
                e2 = dict(e)
                if "ts" in e2 and isinstance(e2["ts"], (int, float)):
                    e2["ts"] = e2["ts"] + shift
                args = e2.get("args")
                if isinstance(args, dict) and "correlation" in args:
                    args = dict(args)
                    args["correlation"] = args["correlation"] + copy * 10_000_000
                    e2["args"] = args
                name = e2.get("name", "")
                if isinstance(name, str) and name.startswith("ProfilerStep#"):
                    e2["name"] = f"ProfilerStep#{int(name[13:]) + copy * 1000}"
                parts.append(orjson.dumps(e2))
            chunk = (b",\n" if copy else b"") + b",\n".join(parts)
            out.write(chunk)
            written += len(chunk)
            count += len(parts)
            copy += 1
        out.write(b"\n]}\n")
    return target.stat().st_size, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--source", type=Path, default=CORPUS / "v100_single_rank.json.gz")
    parser.add_argument("--keep", type=Path, default=None, help="write the big trace here")
    parser.add_argument("--quick", action="store_true", help="a 10 MB trace: a check that it runs")
    args = parser.parse_args(argv)
    if args.quick:  # the quick size, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pinchpoint-big-") as tmp:
        return measure(args.source, args.keep or Path(tmp) / "big.json", args.size_gb, Path(tmp))


def measure(source: Path, path: Path, size_gb: float, folder: Path) -> int:
    """Build the trace at ``path``, analyse it in a fresh process and print the figures."""
    t0 = time.perf_counter()
    size, count = build(source, path, int(size_gb * 2**30))
    took = time.perf_counter() - t0
    print(f"built {path}: {size / 2**30:.2f} GiB, {count:,} events in {took:.0f} s")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1 = time.perf_counter()
    out = folder / "big.trace.json"
    done = subprocess.run(
        [sys.executable, "-m", "pinchpoint", "trace", str(path), "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    wall = time.perf_counter() - t1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        print(done.stderr[-3000:])
        return 1
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = after.ru_maxrss / 2**20  # KiB on Linux
    print(f"pinchpoint trace: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:.2f} GiB")
    print(f"  ({peak * 2**30 / size:.2f}× the file's size; output {out.stat().st_size:,} bytes)")
    print(done.stdout[:1500])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

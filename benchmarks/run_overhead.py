"""Measure what ``pinchpoint run`` costs a plain training script: its step time, run vs bare.

The benchmark writes, to a temporary folder, a training script as a user writes one and
pinchpoint never sees the inside of: an MLP on scikit-learn's digits (saved once to a tensor
file the script loads), a DataLoader (``num_workers=0``), Adam, argparse, one intra-op thread
(``torch.set_num_threads(1)``, so that runs on a shared 2-core machine compare). The script
times each of its own iterations with ``time.perf_counter`` (from fetching the batch to after
``optimizer.step()``) and writes the list of seconds to the JSON file its ``--times`` names.

Each round runs the script four times, as separate processes, in an order reversed every
other round (so a drift of the machine cancels out):

- **bare**: ``python train.py ...``, the reference;
- **run**: ``pinchpoint run --steps K train.py ...`` with K above the script's iteration count,
  so the recorder stays attached through every iteration;
- **control**: bare again, compared with the reference the same way; its distance from 1 is
  the method's bias and noise;
- **after**: ``pinchpoint run --steps 20``: recording stops after 20 measured steps (hooks
  removed, patches undone) and the script goes on bare; what that costs from there on.

A round's ratio for a mode is the median of the script's own iteration times over a window,
divided by the same median of the reference over the same iterations. For **run** (and the
control) the window is the iterations the diagnosis JSON (``--json``) lists as measured steps,
past the first 10 iterations: the finder's discovery step (iteration 0, not recorded), the
warm-up steps, the two sampled steps (FLOP counter, torch.profiler) and the every-20th
activation-statistics steps are left out, as pinchpoint's own statistics leave them out. The
mean over every iteration past the first 10 (activation steps included) is printed beside it.
For **after** the window starts 5 iterations after the last recorded one. Printed: the median
of the per-round ratios with their min-max, the median step, and the median whole-process
wall time of each mode (informative only: ``pinchpoint run`` adds its start-up, the sampled
steps and the diagnosis). The target (issue: ``pinchpoint run`` step time <= 1.05x bare)
applies to the median ratio of **run**. A first, unmeasured ``pinchpoint run`` warms the
calibration cache and the interpreter's bytecode caches.

A second estimate of the per-step cost, free of the differences between processes: in the
"after" run, the median of its measured steps past the first 10 over the median of its own
iterations after recording (fewer steps, so noisier within a round, but the same process).

``--quick`` runs the same code at tiny sizes (one round, 60 iterations of a narrow MLP, 10 steps
for the "after" variant, no warm-up run) in about 20 s: a check that the script works, whose
figures are too noisy to quote.

    python benchmarks/run_overhead.py [--rounds 8] [--iterations 400] [--hidden 256]
        [--batch-size 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
SKIP = 10  # iterations left out at the start of every run (discovery, warm-up, sampled steps)
AFTER_MARGIN = 5  # iterations left out after the last recorded one, in the "after" variant
TARGET = 1.05
QUICK = {"rounds": 1, "iterations": 60, "hidden": 64, "after_steps": 10}

TRAIN_SCRIPT = textwrap.dedent(
    '''
    """Train an MLP on the digits; write each iteration's seconds to --times (JSON)."""

    import argparse
    import json
    import time

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset


    def main():
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--data", required=True, help="a .pt file of (inputs, targets)")
        parser.add_argument("--iterations", type=int, default=400)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--hidden", type=int, default=256)
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--times", required=True, help="write per-iteration seconds here")
        args = parser.parse_args()

        torch.manual_seed(args.seed)
        torch.set_num_threads(1)
        inputs, targets = torch.load(args.data)
        loader = DataLoader(
            TensorDataset(inputs, targets),
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=0,
        )
        model = nn.Sequential(
            nn.Linear(inputs.shape[1], args.hidden),
            nn.ReLU(),
            nn.Linear(args.hidden, args.hidden),
            nn.ReLU(),
            nn.Linear(args.hidden, args.hidden),
            nn.ReLU(),
            nn.Linear(args.hidden, 10),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        loss_fn = nn.CrossEntropyLoss()

        model.train()
        times = []
        epoch = 0
        while len(times) < args.iterations:
            total, count = 0.0, 0
            batches = iter(loader)
            while len(times) < args.iterations:
                start = time.perf_counter()
                try:
                    x, y = next(batches)
                except StopIteration:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                times.append(time.perf_counter() - start)
                total, count = total + loss.item(), count + 1
            epoch += 1
            print(f"epoch {epoch}: loss {total / max(count, 1):.4f}")
        with open(args.times, "w") as f:
            json.dump(times, f)


    if __name__ == "__main__":
        main()
    '''
).lstrip()


def write_data(path: Path) -> None:
    """The digits (8x8 images, 10 classes) as float inputs in [0, 1] and class targets."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    inputs = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    torch.save((inputs, torch.tensor(digits.target, dtype=torch.long)), path)


def launch(command: list[str], env: dict[str, str]) -> float:
    """Run ``command`` to its end; its wall time. Its output is kept only to explain a failure."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(
            f"{' '.join(command)} exited with {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-2000:]}\n--- stderr ---\n{done.stderr[-2000:]}"
        )
    return wall


class Runner:
    """Runs the training script bare or under ``pinchpoint run``; reads back its timings."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder = folder
        self.script = folder / "train.py"
        self.script.write_text(TRAIN_SCRIPT)
        data = folder / "digits.pt"
        write_data(data)
        self.script_args = [
            f"--data={data}",
            f"--iterations={args.iterations}",
            f"--hidden={args.hidden}",
            f"--batch-size={args.batch_size}",
        ]
        # This checkout's pinchpoint, whichever one the interpreter would otherwise import.
        path = os.environ.get("PYTHONPATH")
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *([path] if path else [])]),
        }

    def bare(self) -> tuple[list[float], float]:
        """The script's iteration times and the process's wall time."""
        times = self.folder / "times.json"
        wall = launch(
            [sys.executable, str(self.script), *self.script_args, f"--times={times}"], self.env
        )
        return json.loads(times.read_text()), wall

    def run(self, steps: int, iterations: int | None = None) -> tuple[list[float], float, Any]:
        """The same under ``pinchpoint run --steps steps``, and the diagnosis's steps."""
        times, diagnosis = self.folder / "times.json", self.folder / "diagnosis.json"
        extra = [] if iterations is None else [f"--iterations={iterations}"]
        command = [
            *(sys.executable, "-m", "pinchpoint", "run"),
            *("--steps", str(steps), "--json", str(diagnosis)),
            *(str(self.script), *self.script_args, *extra, f"--times={times}"),
        ]
        wall = launch(command, self.env)
        steps_json = json.loads(diagnosis.read_text())["profile"]["steps"]
        return json.loads(times.read_text()), wall, steps_json


def measured_iterations(steps: list[dict[str, Any]], iterations: int) -> list[int]:
    """The script's iterations that pinchpoint recorded as measured steps, past ``SKIP``.

    Iteration 0 is the finder's discovery step; recorded step ``i`` is iteration ``i + 1``.
    """
    chosen = [s["index"] + 1 for s in steps if not s["warmup"] and s["sampled"] is None]
    return [i for i in chosen if SKIP <= i < iterations]


def median_at(times: list[float], window: list[int]) -> float:
    return statistics.median(times[i] for i in window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the four runs")
    parser.add_argument("--iterations", type=int, default=400, help="the script's iterations")
    parser.add_argument("--hidden", type=int, default=256, help="the MLP's hidden width")
    parser.add_argument("--batch-size", type=int, default=64, help="the script's batch size")
    parser.add_argument(
        "--after-steps", type=int, default=20, help="--steps of the variant that stops recording"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.rounds < 1 or args.after_steps < 1:
        parser.error("--rounds and --after-steps must be >= 1")
    # The "after" variant records discovery + 2 warm-up + 2 sampled + its steps (+ activation
    # steps); it needs iterations left after those to measure.
    if args.iterations < 2 * (args.after_steps + 5) + SKIP + AFTER_MARGIN:
        parser.error(f"--iterations must leave room after --after-steps {args.after_steps}")
    steps_all = args.iterations + 100  # above the iteration count: recorded to the end

    modes = ("bare", "run", "control", "after")
    ratios: dict[str, list[float]] = {mode: [] for mode in modes}
    mean_ratios: list[float] = []
    within: list[float] = []  # "after" run: its recorded steps over its own steps after them
    medians: dict[str, list[float]] = {mode: [] for mode in modes}
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="run-overhead-") as folder:
        runner = Runner(Path(folder), args)
        if not args.quick:  # warm-up: the calibration cache, bytecode caches
            runner.run(5, iterations=2 * SKIP)
        for round_ in range(args.rounds):
            times: dict[str, list[float]] = {}
            recorded: dict[str, list[dict[str, Any]]] = {}
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                if mode in ("bare", "control"):
                    times[mode], wall = runner.bare()
                else:
                    steps = steps_all if mode == "run" else args.after_steps
                    times[mode], wall, recorded[mode] = runner.run(steps)
                walls[mode].append(wall)
            window = measured_iterations(recorded["run"], args.iterations)
            after = len(recorded["after"]) + 1 + AFTER_MARGIN  # past the last recorded one
            windows = {
                "bare": window,
                "run": window,
                "control": window,
                "after": list(range(after, args.iterations)),
            }
            for mode in modes:
                medians[mode].append(median_at(times[mode], windows[mode]))
                ratios[mode].append(medians[mode][-1] / median_at(times["bare"], windows[mode]))
            during = measured_iterations(recorded["after"], args.iterations)
            if during:  # none where --after-steps leaves no measured step past SKIP
                within.append(
                    median_at(times["after"], during) / median_at(times["after"], windows["after"])
                )
            rest = slice(SKIP, args.iterations)
            mean_ratios.append(
                statistics.mean(times["run"][rest]) / statistics.mean(times["bare"][rest])
            )
    elapsed = time.perf_counter() - started

    print(
        f"pinchpoint run vs bare: MLP {args.hidden} wide on digits, batch {args.batch_size}, "
        f"{args.iterations} iterations, {args.rounds} round(s), torch {torch.__version__}, "
        f"1 thread{' (quick: figures too noisy to quote)' if args.quick else ''}"
    )
    labels = {
        "bare": "bare (reference)",
        "control": "bare again (control)",
        "run": f"run --steps {steps_all}",
        "after": f"run --steps {args.after_steps}, after",
    }
    windows_said = {
        "bare": "measured steps",
        "control": "measured steps",
        "run": "measured steps",
        "after": f"from recorded+{AFTER_MARGIN}",
    }
    print(
        f"  {'mode':<26} {'step (ms)':>9} {'ratio':>7} {'min-max':>13} {'process (s)':>11}  window"
    )
    for mode in ("bare", "control", "run", "after"):
        spread = f"{min(ratios[mode]):.3f}-{max(ratios[mode]):.3f}" if mode != "bare" else ""
        print(
            f"  {labels[mode]:<26} {statistics.median(medians[mode]) * 1e3:>9.2f} "
            f"{statistics.median(ratios[mode]):>6.3f}x {spread:>13} "
            f"{statistics.median(walls[mode]):>11.2f}  {windows_said[mode]}"
        )
    print(
        f"  run --steps {steps_all}, ratio of means, iterations past {SKIP} (activation steps "
        f"too): {statistics.median(mean_ratios):.3f}x "
        f"({min(mean_ratios):.3f}-{max(mean_ratios):.3f})"
    )
    if within:
        print(
            f"  run --steps {args.after_steps}, one process: measured steps past {SKIP} / "
            f"steps after recording: {statistics.median(within):.3f}x "
            f"({min(within):.3f}-{max(within):.3f})"
        )
    ratio = statistics.median(ratios["run"])
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(
        f"  target: run step time <= {TARGET:.2f}x bare: {ratio:.3f}x, {verdict} "
        f"(benchmark took {elapsed:.0f} s)"
    )


if __name__ == "__main__":
    main()

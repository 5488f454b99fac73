"""Measure what ``pinchpoint run`` costs a plain training script: its step time, recorded vs bare.

Separate processes cannot show it: on a shared 2-core machine two bare processes of the same
script differ by 0.6-1.3x from one to the next, far more than the cost being measured. So the
comparison is made inside ONE process, between two copies of the same training that take turns.

The benchmark writes, to a temporary folder, a training script as a user writes one and
pinchpoint never sees the inside of: two identical copies, **A** and **B**, of an MLP on
scikit-learn's digits (saved once to a tensor file the script loads; same seed, same
architecture), each with its own Adam and its own DataLoader (``num_workers=0``) over the same
data with the same shuffling seed, one intra-op thread (``torch.set_num_threads(1)``). The two
train in alternating single iterations. A takes the first one, so that ``pinchpoint run``'s
StepFinder, which follows the first optimizer to step, finds A: A's steps are recorded, B is never
hooked (it carries only the process-wide patches, a timing wrapper on DataLoader iterators'
``__next__`` and on ``Tensor.backward`` and the global optimizer-step hooks, which return at once
outside a recorded step, so their few µs are not in the figure). After that first pair the order
within a pair alternates (B-A, A-B, B-A, ...), so neither copy always follows the other. The
script times each iteration of each copy itself with ``time.perf_counter`` (from fetching its
batch to after ``optimizer.step()``) and writes both lists to the JSON file ``--times`` names.

Each round runs the script twice, in an order reversed every other round:

- **run**: ``pinchpoint run --steps K --warmup 2 --json D train.py ...`` with K = iterations + 100,
  so A is recorded through every iteration; the figure is median(A) / median(B) over a window;
- **control**: ``python train.py ...`` (no pinchpoint), the same median(A) / median(B): its
  distance from 1 is the method's bias (A and B are the same computation, so it should be ~1.00).

The window is A's iterations that the diagnosis (``D``, ``profile.steps``) lists as recorded
steps past the warm-up and not one of the two sampled steps (FLOP counter, torch.profiler), from
iteration 10 on: recorded step ``i`` is A's iteration ``i + 1``, iteration 0 being the finder's
own. The every-20th activation-statistics steps stay in (they are part of what recording costs
from step to step; a median barely sees them). B's medians, and the control's, are over the same
iterations. Per round: the ratio of run, the ratio of control, and the per-step cost in µs,
(median A - median B) in run minus the same difference in control. Printed per step size: the
median step of B, the median of the per-round figures and their min-max, whether the target
(issue 18: ``pinchpoint run`` step time <= 1.05x bare) is met by the run's median ratio (never
asserted), and, informative only, the median whole-process wall time of each mode
(``pinchpoint run`` adds its start-up, the sampled steps and the diagnosis).

Two step sizes in one invocation: **small**, an MLP 256 wide at batch 64 (a step of a few ms,
where a fixed per-step cost shows most), and **typical**, an MLP 768 wide at batch 96 (a step
of ~15-25 ms). A first, unmeasured ``pinchpoint run`` warms the calibration cache and the
interpreter's bytecode caches. The whole default run takes about 3 minutes.

``--quick`` runs the same code at one tiny size (one round, 40 iterations of a narrow MLP, no
warm-up run) in about 12 s: a check that the script works, whose figures are too noisy to quote.

    python benchmarks/run_overhead.py [--rounds 3] [--small-iterations 1000]
        [--typical-iterations 300] [--quick]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
SKIP = 10  # A's iterations left out at the start (discovery, warm-up, sampled steps, settling)
TARGET = 1.05
QUICK = {"rounds": 1, "small_iterations": 40, "typical_iterations": 40}


@dataclass(frozen=True)
class Size:
    name: str
    hidden: int
    batch_size: int


SIZES = (Size("small", 256, 64), Size("typical", 768, 96))
QUICK_SIZES = (Size("small", 32, 32),)

TRAIN_SCRIPT = textwrap.dedent(
    '''
    """Train two identical MLPs on the digits in alternating iterations; write their times.

    A steps first, then B; after that the order within a pair alternates. Each iteration is
    timed from fetching the batch to after optimizer.step(); --times gets {"a": [...], "b": [...]}.
    """

    import argparse
    import json
    import time

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset


    class Copy:
        """One model with its own optimizer and DataLoader."""

        def __init__(self, inputs, targets, args):
            torch.manual_seed(args.seed)
            self.model = nn.Sequential(
                nn.Linear(inputs.shape[1], args.hidden),
                nn.ReLU(),
                nn.Linear(args.hidden, args.hidden),
                nn.ReLU(),
                nn.Linear(args.hidden, args.hidden),
                nn.ReLU(),
                nn.Linear(args.hidden, 10),
            )
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
            self.loss_fn = nn.CrossEntropyLoss()
            self.loader = DataLoader(
                TensorDataset(inputs, targets),
                batch_size=args.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=0,
                generator=torch.Generator().manual_seed(args.seed),
            )
            self.batches, self.left = None, 0
            self.times, self.losses = [], []
            self.model.train()

        def iteration(self):
            if self.left == 0:  # a new epoch: the iterator is made outside the timing
                self.batches, self.left = iter(self.loader), len(self.loader)
            start = time.perf_counter()
            x, y = next(self.batches)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.times.append(time.perf_counter() - start)
            self.left -= 1
            self.losses.append(loss.detach())


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

        torch.set_num_threads(1)
        inputs, targets = torch.load(args.data)
        a, b = Copy(inputs, targets, args), Copy(inputs, targets, args)
        for i in range(args.iterations):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            first.iteration()
            second.iteration()
        tail = max(1, args.iterations // 10)
        for name, copy in (("a", a), ("b", b)):
            print(f"{name}: last {tail} losses {torch.stack(copy.losses[-tail:]).mean():.4f}")
        with open(args.times, "w") as f:
            json.dump({"a": a.times, "b": b.times}, f)


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

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.script = folder / "train.py"
        self.script.write_text(TRAIN_SCRIPT)
        self.data = folder / "digits.pt"
        write_data(self.data)
        # This checkout's pinchpoint, whichever one the interpreter would otherwise import.
        path = os.environ.get("PYTHONPATH")
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *([path] if path else [])]),
        }

    def script_args(self, size: Size, iterations: int) -> list[str]:
        return [
            str(self.script),
            f"--data={self.data}",
            f"--iterations={iterations}",
            f"--hidden={size.hidden}",
            f"--batch-size={size.batch_size}",
            f"--times={self.folder / 'times.json'}",
        ]

    def control(self, size: Size, iterations: int) -> tuple[dict[str, list[float]], float]:
        """The script's times of A and B, and the process's wall time."""
        wall = launch([sys.executable, *self.script_args(size, iterations)], self.env)
        return json.loads((self.folder / "times.json").read_text()), wall

    def run(self, size: Size, iterations: int) -> tuple[dict[str, list[float]], float, Any]:
        """The same under ``pinchpoint run`` recording to the end, and the diagnosis's steps."""
        diagnosis = self.folder / "diagnosis.json"
        command = [
            *(sys.executable, "-m", "pinchpoint", "run"),
            *("--steps", str(iterations + 100), "--warmup", "2", "--json", str(diagnosis)),
            *self.script_args(size, iterations),
        ]
        wall = launch(command, self.env)
        steps = json.loads(diagnosis.read_text())["profile"]["steps"]
        return json.loads((self.folder / "times.json").read_text()), wall, steps


def measured_iterations(steps: list[dict[str, Any]], iterations: int) -> list[int]:
    """A's iterations that pinchpoint recorded past warm-up, not sampled, from ``SKIP`` on.

    Iteration 0 is the finder's discovery step; recorded step ``i`` is iteration ``i + 1``. The
    activation-statistics steps stay in: they are part of the recording's per-step cost.
    """
    chosen = [
        s["index"] + 1 for s in steps if not s["warmup"] and s["sampled"] in (None, "activations")
    ]
    return [i for i in chosen if SKIP <= i < iterations]


def medians(times: dict[str, list[float]], window: list[int]) -> tuple[float, float]:
    """Median of A's and of B's times over the same iterations."""
    a, b = (statistics.median(times[k][i] for i in window) for k in ("a", "b"))
    return a, b


def spread(values: list[float], digits: int = 3) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def measure(runner: Runner, size: Size, iterations: int, rounds: int) -> dict[str, Any]:
    """The per-round figures of one step size."""
    out: dict[str, list[float]] = {
        k: [] for k in ("run", "control", "cost_us", "step_b", "wall_run", "wall_control")
    }
    windows = []
    for round_ in range(rounds):
        order = ("run", "control") if round_ % 2 == 0 else ("control", "run")
        times: dict[str, dict[str, list[float]]] = {}
        steps: list[dict[str, Any]] = []
        for mode in order:
            if mode == "run":
                times[mode], wall, steps = runner.run(size, iterations)
            else:
                times[mode], wall = runner.control(size, iterations)
            out[f"wall_{mode}"].append(wall)
        window = measured_iterations(steps, iterations)
        if not window:
            sys.exit(f"no measured iterations past {SKIP} in {iterations}: raise the iterations")
        windows.append(len(window))
        run_a, run_b = medians(times["run"], window)
        control_a, control_b = medians(times["control"], window)
        out["run"].append(run_a / run_b)
        out["control"].append(control_a / control_b)
        out["cost_us"].append(((run_a - run_b) - (control_a - control_b)) * 1e6)
        out["step_b"].append(run_b)
    return {**out, "window": min(windows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of run + control")
    parser.add_argument(
        "--small-iterations", type=int, default=1000, help="iterations of each copy, small size"
    )
    parser.add_argument(
        "--typical-iterations", type=int, default=300, help="iterations of each copy, typical"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    args = parser.parse_args()
    if args.quick:  # the quick sizes, where the command line does not say otherwise
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    # Discovery + 2 warm-up + 2 sampled steps come first; the window starts at SKIP.
    if min(args.small_iterations, args.typical_iterations) < SKIP + 10:
        parser.error(f"the iterations must be >= {SKIP + 10}")
    sizes = QUICK_SIZES if args.quick else SIZES
    iterations = {"small": args.small_iterations, "typical": args.typical_iterations}

    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="run-overhead-") as folder:
        runner = Runner(Path(folder))
        if not args.quick:  # warm-up: the calibration cache, bytecode caches
            runner.run(sizes[0], 2 * SKIP)
        for size in sizes:
            results[size.name] = measure(runner, size, iterations[size.name], args.rounds)
    elapsed = time.perf_counter() - started

    print(
        f"pinchpoint run, recorded copy A vs bare copy B in one process (alternating "
        f"iterations): MLPs on digits, {args.rounds} round(s), torch {torch.__version__}, "
        f"1 thread{' (quick: figures too noisy to quote)' if args.quick else ''}"
    )
    print(
        f"  {'size':<24} {'iters':>5} {'window':>6} {'step B':>8}  {'run A/B':>7} "
        f"{'min-max':>11}  {'control':>7} {'min-max':>11}  {'cost µs':>7} {'min-max':>11}  "
        f"target"
    )
    for size in sizes:
        r = results[size.name]
        ratio = statistics.median(r["run"])
        verdict = "meets" if ratio <= TARGET else "MISSES"
        label = f"{size.name} ({size.hidden} wide, b{size.batch_size})"
        print(
            f"  {label:<24} {iterations[size.name]:>5} {r['window']:>6} "
            f"{statistics.median(r['step_b']) * 1e3:>5.2f} ms  "
            f"{ratio:>6.3f}x {spread(r['run']):>11}  "
            f"{statistics.median(r['control']):>6.3f}x {spread(r['control']):>11}  "
            f"{statistics.median(r['cost_us']):>7.0f} {spread(r['cost_us'], 0):>11}  "
            f"{verdict} <= {TARGET:.2f}x"
        )
    print("  whole process (informative: run adds start-up, sampled steps, diagnosis):")
    for size in sizes:
        r = results[size.name]
        print(
            f"    {size.name:<8} bare {statistics.median(r['wall_control']):.2f} s, "
            f"run {statistics.median(r['wall_run']):.2f} s "
            f"({statistics.median(r['wall_run']) / statistics.median(r['wall_control']):.3f}x)"
        )
    print(f"  benchmark took {elapsed:.0f} s")


if __name__ == "__main__":
    main()

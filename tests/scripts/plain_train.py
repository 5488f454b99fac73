"""A plain training script, as users write them: argparse, a DataLoader, a main guard.

No pinchpoint in it. It writes what it did (its argv, each step's loss) to ``--log`` so tests can
check what ``pinchpoint run`` recorded against it. ``--slow`` plants a collate function that
sleeps 20 ms per batch; ``--crash-at N`` raises before step N; ``--workers`` loads in worker
processes; ``--device cuda`` trains on the GPU (benchmarks/gpu_check.sh).
"""

import argparse
import json
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

SLOW_COLLATE_S = 0.02


def slow_collate(items):
    time.sleep(SLOW_COLLATE_S)
    xs, ys = zip(*items, strict=True)
    return torch.stack(xs), torch.stack(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description="train an MLP on random features")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--crash-at", type=int, default=-1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--log", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(1536, 64)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=64,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=slow_collate if args.slow else None,
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 2),
    )  # fmt: skip
    model.to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    losses = []
    step = 0
    for _ in range(args.epochs):
        for features, labels in loader:
            if step == args.crash_at:
                raise RuntimeError(f"boom at step {step}")
            features, labels = features.to(args.device), labels.to(args.device)
            loss = torch.nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
    if args.log:
        with open(args.log, "w") as file:
            json.dump({"argv": sys.argv, "name": __name__, "losses": losses}, file)
    print(f"trained {step} steps, last loss {losses[-1]:.4f}")


if __name__ == "__main__":
    main()

"""Train a small MLP on scikit-learn's digits with a plain Lightning ``Trainer``.

No pinchpoint in it: ``pinchpoint run lightning_fit.py`` records it unchanged; ``--callback FILE``
adds :class:`pinchpoint.integrations.lightning.PinchpointCallback` (writing its diagnosis to
FILE) instead. ``--slow-collate`` plants a slow collate function.
"""

import argparse
import sys
import time
import warnings

import lightning
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DigitsModel(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_index):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--slow-collate", action="store_true")
    parser.add_argument("--callback", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)

    def slow_collate(items):
        time.sleep(0.01)
        xs, ys = zip(*items, strict=True)
        return torch.stack(xs), torch.stack(ys)

    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=64,
        shuffle=True,
        collate_fn=slow_collate if args.slow_collate else None,
    )
    callbacks = []
    if args.callback:
        from pinchpoint.integrations.lightning import PinchpointCallback

        callbacks.append(PinchpointCallback(steps=6, warmup=1, json=args.callback))
    trainer = lightning.Trainer(
        max_steps=args.max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.out,
        callbacks=callbacks,
    )
    trainer.fit(DigitsModel(), loader)
    print(f"trained {trainer.global_step} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())

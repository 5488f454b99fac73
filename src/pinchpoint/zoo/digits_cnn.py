"""``digits-cnn``: a small CNN training on scikit-learn's bundled 8x8 handwritten digits.

The data is ``sklearn.datasets.load_digits`` (1797 images shipped inside scikit-learn, nothing
downloaded), scaled to [0, 1] as float32 images of shape (1, 8, 8). A fixed stratified 20 %
holds out 360 images for :func:`evaluate`, the same for every seed so that accuracies compare;
the other 1437 feed a shuffled DataLoader. The model is two 3x3 convolutions, a max-pool and two
linear layers (about 40k parameters), trained with AdamW on cross-entropy: 300 steps of 64 reach
about 97 % held-out accuracy on any seed.
"""

from __future__ import annotations

from typing import Any

from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_LR", "HELDOUT_FRACTION", "build", "make_model"]

#: Images per training batch unless ``batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 64
#: AdamW learning rate unless ``lr`` says otherwise.
DEFAULT_LR = 3e-3
#: Share of the images held out for evaluation (stratified by digit).
HELDOUT_FRACTION = 0.2
# The split is fixed, not seeded by the workload's seed: every seed is judged on the same images.
_SPLIT_SEED = 0

NAME = "digits-cnn"


def make_model() -> Any:
    """A fresh, randomly initialized digits CNN: (N, 1, 8, 8) images to (N, 10) logits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def build(*, seed: int = 0, batch_size: int | None = None, lr: float = DEFAULT_LR) -> Workload:
    """The ``digits-cnn`` workload: the CNN, a shuffled DataLoader, AdamW and cross-entropy.

    Args:
        seed: initializes the weights and shuffles the batches.
        batch_size: images per batch (default 64); the last incomplete batch of an epoch is
            dropped so every step sees the same shape.
        lr: the AdamW learning rate.
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch.utils.data import DataLoader, TensorDataset

    from pinchpoint.zoo._classify import accuracy

    batch_size = positive_int(NAME, "batch_size", batch_size, DEFAULT_BATCH_SIZE)
    if not lr > 0:
        raise WorkloadError(f"zoo workload {NAME!r}: lr must be positive, not {lr!r}")
    digits = load_digits()
    # Pixels are integers 0..16; dividing by 16 puts them in [0, 1].
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        list(range(len(labels))),
        test_size=HELDOUT_FRACTION,
        stratify=digits.target,
        random_state=_SPLIT_SEED,
    )
    train_x, train_y = images[train_idx], labels[train_idx]
    test_x, test_y = images[test_idx], labels[test_idx]

    # fork_rng restores the caller's global random state after the seeded initialization.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    loader = DataLoader(
        TensorDataset(train_x, train_y),
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train_y) >= batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def loss(model: Any, batch: Any) -> Any:
        """Cross-entropy of the model's logits on an (images, labels) batch."""
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)

    def evaluate(model: Any) -> float:
        """Accuracy, in [0, 1], on the 360 held-out images."""
        return accuracy(model, test_x, test_y)

    return Workload(
        model=model,
        data=loader,
        loss=loss,
        optimizer=optimizer,
        evaluate=evaluate,
        name=NAME,
        metric="accuracy",
        greater_is_better=True,
        description=(
            f"2-conv CNN (40k params) training on scikit-learn's 8x8 digits, batch {batch_size}, "
            "AdamW; quality = held-out accuracy"
        ),
    )

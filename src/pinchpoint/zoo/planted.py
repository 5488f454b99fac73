"""The planted-bottleneck zoo: small CPU workloads that each make one mistake users really make.

Each builder returns a :class:`~pinchpoint.workload.Workload` whose principal runtime bottleneck
is one kind of the taxonomy, caused by ordinary code written the wrong way, never by a sleep or
an artificial busy loop. :data:`PLANTED` maps each zoo name to the kind it plants; the tests check
the measured evidence of each kind in a recorded Profile, and the analyzers are judged on
whether they name it.

==========================  ===================  ============================================
zoo name                    planted kind         the mistake
==========================  ===================  ============================================
``slow-collate``            ``input_bound``      per-sample Python augmentation in collate_fn
``tiny-layers``             ``overhead_bound``   batch 4 through 64 blocks 16 wide
``wide-mlp``                ``compute_bound``    large fp32 matmuls, already near peak
``unfused-activations``     ``memory_bound``     GELU and LayerNorm written as chains of ops
``many-small-params``       ``optimizer_bound``  512 scalar Parameters under a for-loop Adam
``activation-hog``          ``memory_capacity``  one batch far too large for the memory budget
==========================  ===================  ============================================

The data is synthetic and seeded (scikit-learn's bundled digits for ``slow-collate``), so nothing
is downloaded. Labels come from a fixed random "teacher" so that every training workload can
learn and report a held-out accuracy; ``unfused-activations`` infers and reports how closely its
hand-written operators match torch's fused ones. Every builder follows the zoo's contract,
``build(*, seed=0, batch_size=None, ...)``, and is deterministic for a seed: weights are drawn
inside ``torch.random.fork_rng`` and data from a ``torch.Generator`` of its own, so building
leaves the caller's random state alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import (
    batches,
    classifier,
    eval_forward,
    seeded,
    shuffled_loader,
    stacked_mlp,
)

__all__ = [
    "ACTIVATION_HOG_BUDGET_BYTES",
    "PLANTED",
    "HandWrittenGELU",
    "HandWrittenLayerNorm",
    "NarrowBlock",
    "PerFeatureAffine",
    "activation_hog",
    "many_small_params",
    "slow_collate",
    "tiny_layers",
    "unfused_activations",
    "wide_mlp",
]

#: The planted workloads: zoo name to the taxonomy kind each one exhibits.
PLANTED: dict[str, str] = {
    "slow-collate": "input_bound",
    "tiny-layers": "overhead_bound",
    "wide-mlp": "compute_bound",
    "unfused-activations": "memory_bound",
    "many-small-params": "optimizer_bound",
    "activation-hog": "memory_capacity",
}

_MIB = 1 << 20


# --- shared pieces ------------------------------------------------------------------------------


def teacher_data(
    generator: torch.Generator, samples: int, features: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs labelled by a random two-layer teacher: learnable, yet not linear."""
    hidden = 4 * classes
    first = torch.randn(features, hidden, generator=generator) / features**0.5
    second = torch.randn(hidden, classes, generator=generator) / hidden**0.5
    x = torch.randn(samples, features, generator=generator)
    y = (torch.tanh(x @ first) @ second).argmax(dim=1)
    return x, y


# --- slow-collate: input_bound ------------------------------------------------------------------


def jitter_collate(
    rng: random.Random, noise: float = 0.05
) -> Callable[[Sequence[tuple[torch.Tensor, torch.Tensor]]], tuple[torch.Tensor, torch.Tensor]]:
    """A collate_fn that augments each image pixel by pixel in Python, as users first write it.

    Each image is shifted by up to one pixel each way and given Gaussian pixel noise. The work is
    honest augmentation; the mistake is doing it per sample and per pixel in the main process
    (``.tolist()``, nested loops, ``torch.tensor`` of nested lists) instead of on the batch
    tensor, or in DataLoader workers.
    """

    def collate(
        samples: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images: list[list[list[float]]] = []
        labels: list[int] = []
        for image, label in samples:
            pixels = image.squeeze(0).tolist()
            height, width = len(pixels), len(pixels[0])
            dy, dx = rng.randint(-1, 1), rng.randint(-1, 1)
            shifted = []
            for row in range(height):
                out_row = []
                for col in range(width):
                    src_row, src_col = row - dy, col - dx
                    inside = 0 <= src_row < height and 0 <= src_col < width
                    value = pixels[src_row][src_col] if inside else 0.0
                    value += rng.gauss(0.0, noise)
                    out_row.append(min(1.0, max(0.0, value)))
                shifted.append(out_row)
            images.append(shifted)
            labels.append(int(label))
        return torch.tensor(images).unsqueeze(1), torch.tensor(labels)

    return collate


def slow_collate(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``slow-collate`` workload: a digits MLP fed by a per-pixel Python ``collate_fn``.

    Args:
        seed: initializes the weights, shuffles the batches and drives the augmentation.
        batch_size: images per batch (default 128).
    """
    from pinchpoint.zoo.health import digits_split

    name = "slow-collate"
    batch_size = positive_int(name, "batch_size", batch_size, 128)
    # The split is fixed for every seed so that accuracies compare across seeds.
    train_x, train_y, test_x, test_y = digits_split(images=True)
    model = seeded(
        seed,
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
    )
    loader = shuffled_loader(
        train_x,
        train_y,
        batch_size,
        seed,
        collate_fn=jitter_collate(random.Random(seed)),
        num_workers=0,
    )
    return classifier(
        name,
        model,
        loader,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        (test_x, test_y),
        f"digits MLP, batch {batch_size}, whose collate_fn shifts and noises every pixel in a "
        "Python loop in the main process; quality = held-out accuracy",
    )


# --- tiny-layers: overhead_bound ----------------------------------------------------------------


class NarrowBlock(nn.Module):
    """One residual block ``width`` features wide: RMSNorm, Linear, SiLU, added to its input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        # RMSNorm and SiLU rather than LayerNorm and GELU: torch's CPU LayerNorm and GELU kernels
        # open an OpenMP parallel region even for 64 numbers, and on a machine whose other cores
        # are busy each such region waits milliseconds for its threads. A few stalled operators
        # would then hide the thousands of uniform tiny ones that this workload is about.
        self.norm = nn.RMSNorm(width)
        self.linear = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (batch, width) to (batch, width)."""
        out: torch.Tensor = x + self.act(self.linear(self.norm(x)))
        return out


def tiny_layers(
    *, seed: int = 0, batch_size: int | None = None, depth: int | None = None
) -> Workload:
    """The ``tiny-layers`` workload: batch 4 through a deep stack of 16-wide residual blocks.

    The kind of model an RL policy or a small tabular net is, trained one tiny batch at a time:
    every operator handles at most a few hundred numbers, so each costs its dispatch overhead
    and little more, thousands of microsecond operators per step whatever the FLOP rate.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 4).
        depth: the number of :class:`NarrowBlock` (default 64).
    """
    name = "tiny-layers"
    batch_size = positive_int(name, "batch_size", batch_size, 4)
    depth = positive_int(name, "depth", depth, 64)
    width, classes = 16, 4
    generator = torch.Generator().manual_seed(seed)
    x, y = teacher_data(generator, 2048 + 512, width, classes)
    model = seeded(
        seed,
        lambda: nn.Sequential(
            *(NarrowBlock(width) for _ in range(depth)), nn.Linear(width, classes)
        ),
    )
    return classifier(
        name,
        model,
        batches(x[:2048], y[:2048], batch_size, generator),
        torch.optim.SGD(model.parameters(), lr=0.02),
        (x[2048:], y[2048:]),
        f"{depth} residual blocks of RMSNorm+Linear(16,16)+SiLU trained at batch {batch_size}: "
        "thousands of tiny operators per step; quality = held-out accuracy",
    )


# --- wide-mlp: compute_bound --------------------------------------------------------------------


def wide_mlp(*, seed: int = 0, batch_size: int | None = None, width: int | None = None) -> Workload:
    """The ``wide-mlp`` workload: a 2048-wide MLP at batch 256, all large fp32 matmuls.

    The code is what it should be (a cheap optimizer, batches made up front, no data loader):
    the step is dense matmuls that already run close to the machine's fp32 peak, so only less
    arithmetic makes it faster: bf16 autocast, quantization, a smaller model.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 256).
        width: the hidden width (default 2048).
    """
    name = "wide-mlp"
    batch_size = positive_int(name, "batch_size", batch_size, 256)
    width = positive_int(name, "width", width, 2048)
    features, classes = 1024, 10
    generator = torch.Generator().manual_seed(seed)
    train, test = 8 * batch_size, 1024
    x, y = teacher_data(generator, train + test, features, classes)
    model = seeded(seed, lambda: stacked_mlp(features, (width, width), classes, nn.ReLU))
    return classifier(
        name,
        model,
        batches(x[:train], y[:train], batch_size, generator),
        torch.optim.SGD(model.parameters(), lr=0.01),
        (x[train:], y[train:]),
        f"MLP {features}-{width}-{width}-{classes} trained in fp32 with SGD at batch "
        f"{batch_size}: large matmuls near the machine's peak; quality = held-out accuracy",
    )


# --- unfused-activations: memory_bound ----------------------------------------------------------


class HandWrittenLayerNorm(nn.Module):
    """LayerNorm over the last dimension written out as separate tensor operations."""

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize each row of ``x`` to zero mean and unit variance, then scale and shift."""
        # Each operation is a full pass over x in memory; nn.LayerNorm is one fused kernel.
        features = x.shape[-1]
        mean = x.sum(dim=-1, keepdim=True) / features
        centered = x - mean
        variance = (centered**2).sum(dim=-1, keepdim=True) / features
        normalized = centered / torch.sqrt(variance + self.eps)
        return normalized * self.weight + self.bias


class HandWrittenGELU(nn.Module):
    """The tanh approximation of GELU, typed in from the paper as a chain of tensor operations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply GELU elementwise; eight operations, each a full pass over ``x`` in memory."""
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def unfused_activations(
    *, seed: int = 0, batch_size: int | None = None, tokens: int | None = None
) -> Workload:
    """The ``unfused-activations`` workload: hand-written LayerNorm and GELU on 16 MB activations.

    A token-wise head infers on ``batch_size`` sequences of ``tokens`` tokens, 64 features each:
    one narrow Linear(64, 64), then a LayerNorm and a GELU written as chains of separate tensor
    operations, each of which reads and writes the whole activation for a FLOP per element.

    Args:
        seed: initializes the weights and draws the inputs.
        batch_size: sequences per batch (default 64).
        tokens: tokens per sequence (default 1024).
    """
    name = "unfused-activations"
    batch_size = positive_int(name, "batch_size", batch_size, 64)
    tokens = positive_int(name, "tokens", tokens, 1024)
    features = 64
    generator = torch.Generator().manual_seed(seed)
    model = seeded(
        seed,
        lambda: nn.Sequential(
            nn.Linear(features, features), HandWrittenLayerNorm(features), HandWrittenGELU()
        ),
    )
    linear, norm = model[0], model[1]
    assert isinstance(linear, nn.Linear) and isinstance(norm, HandWrittenLayerNorm)
    with torch.no_grad():
        # A trained model's norm is not the identity; random affine terms make the check real.
        norm.weight.copy_(1.0 + 0.1 * torch.randn(features, generator=generator))
        norm.bias.copy_(0.1 * torch.randn(features, generator=generator))
    data = [torch.randn(batch_size, tokens, features, generator=generator) for _ in range(2)]
    heldout = torch.randn(8, tokens, features, generator=generator)
    with torch.no_grad():
        # What the head is meant to compute, with torch's fused operators and the same weights.
        reference = functional.gelu(
            functional.layer_norm(
                linear(heldout), (features,), norm.weight, norm.bias, eps=norm.eps
            ),
            approximate="tanh",
        ).flatten()

    def evaluate(model: Any) -> float:
        """Cosine similarity of the model's output with the fused reference (1.0: identical)."""
        out = eval_forward(model, heldout).flatten()
        return float(functional.cosine_similarity(out.double(), reference.double(), dim=0))

    return Workload(
        model=model,
        data=data,
        evaluate=evaluate,
        name=name,
        metric="cosine",
        greater_is_better=True,
        description=(
            f"token-wise Linear(64,64) then LayerNorm and tanh-GELU hand-written as chains of "
            f"tensor ops, inferring on {batch_size}x{tokens} tokens; "
            "quality = cosine with the fused operators"
        ),
    )


# --- many-small-params: optimizer_bound ---------------------------------------------------------


class PerFeatureAffine(nn.Module):
    """A learned scale and shift per input feature, each its own one-element Parameter."""

    def __init__(self, features: int) -> None:
        super().__init__()
        # The mistake: one Parameter per feature instead of one vector of ``features`` values.
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in range(features))
        self.shifts = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each column of (batch, features) ``x`` by its own parameters."""
        return x * torch.cat(tuple(self.scales)) + torch.cat(tuple(self.shifts))


def many_small_params(
    *, seed: int = 0, batch_size: int | None = None, features: int | None = None
) -> Workload:
    """The ``many-small-params`` workload: 512 one-element Parameters under a for-loop Adam.

    A tabular classifier whose input features come in wildly different units learns a scale and
    a shift per feature, each its own Parameter, in front of a small MLP. Adam with
    ``foreach=False`` then runs about ten operators and a Python loop iteration per tensor, for
    tensors of one element.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 128).
        features: input features, two Parameters each (default 256).
    """
    name = "many-small-params"
    batch_size = positive_int(name, "batch_size", batch_size, 128)
    features = positive_int(name, "features", features, 256)
    classes = 2
    generator = torch.Generator().manual_seed(seed)
    train, test = 4096, 1024
    x, y = teacher_data(generator, train + test, features, classes)
    # Raw features in units from 1e-2 to 1e2: the reason a per-feature scale is worth learning.
    units = 10.0 ** torch.empty(features).uniform_(-2.0, 2.0, generator=generator)
    x = x * units
    model = seeded(
        seed,
        lambda: nn.Sequential(
            PerFeatureAffine(features),
            nn.Linear(features, 32),
            nn.ReLU(),
            nn.Linear(32, classes),
        ),
    )
    return classifier(
        name,
        model,
        batches(x[:train], y[:train], batch_size, generator),
        torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False),
        (x[train:], y[train:]),
        f"tabular MLP with a separate scalar scale and shift Parameter for each of {features} "
        f"features ({2 * features + 4} tensors), Adam(foreach=False); "
        "quality = held-out accuracy",
    )


# --- activation-hog: memory_capacity ------------------------------------------------------------

#: The memory ``activation-hog`` must fit in: the share of a small edge device it is given.
ACTIVATION_HOG_BUDGET_BYTES = 32 * _MIB


def activation_hog(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``activation-hog`` workload: a wide MLP trained on a batch far too large for its budget.

    The model is small, 32-2048-32-2048-10 with LayerNorm and ReLU after each wide layer and
    under 1 MB of parameters, but every wide layer keeps two batch x 2048 tensors for backward
    (the LayerNorm's input, the ReLU's output), 16 MiB apiece at the default batch of 2048. The
    step peaks near 100 MiB where the workload must fit in 32 MiB, though the weights and the
    optimizer state take under 2 MiB: micro-batches of 512 with gradient accumulation, or
    activation checkpointing, would fit.

    Args:
        seed: initializes the weights and draws the data.
        batch_size: samples per batch (default 2048).
    """
    name = "activation-hog"
    batch_size = positive_int(name, "batch_size", batch_size, 2048)
    features, width, bottleneck, classes = 32, 2048, 32, 10
    generator = torch.Generator().manual_seed(seed)
    train, test = 2 * batch_size, 1024
    x, y = teacher_data(generator, train + test, features, classes)
    model = seeded(
        seed,
        lambda: nn.Sequential(
            nn.Linear(features, width),
            nn.LayerNorm(width),
            nn.ReLU(),
            nn.Linear(width, bottleneck),
            nn.ReLU(),
            nn.Linear(bottleneck, width),
            nn.LayerNorm(width),
            nn.ReLU(),
            nn.Linear(width, classes),
        ),
    )
    budget = ACTIVATION_HOG_BUDGET_BYTES
    return classifier(
        name,
        model,
        batches(x[:train], y[:train], batch_size, generator),
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        (x[train:], y[train:]),
        f"MLP {features}-{width}-{bottleneck}-{width}-{classes} trained at batch {batch_size} in "
        f"one go where it must fit in {budget // _MIB} MiB; quality = held-out accuracy",
        memory_budget_bytes=budget,
    )

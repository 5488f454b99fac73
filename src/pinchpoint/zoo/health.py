"""The training-health zoo: small CPU training workloads that each learn badly for one reason.

Each builder returns a training :class:`~pinchpoint.workload.Workload` whose training shows one
kind of the taxonomy's "Training method" table, caused by a mistake users really make (an
initialization, a learning rate, unscaled inputs, misaligned labels), never by tampering with
gradients or losses. :data:`HEALTH_PLANTED` maps each zoo name to the kind it plants and
:data:`HEALTH_CONTROLS` names the healthy workloads the analyzers must leave alone.

====================  ==========================  ================================================
zoo name              planted kind                the mistake
====================  ==========================  ================================================
``deep-sigmoid``      ``vanishing_gradients``     14 Linear layers 32 wide with Sigmoid, SGD
``bad-init``          ``exploding_gradients``     Linear weights drawn with std 1 (8x Kaiming)
``lr-100x``           ``lr_too_high``             the healthy MLP under Adam at lr 0.3 (100x)
``lr-1000x-low``      ``lr_too_low``              the healthy MLP under SGD at lr 1e-4 (1/1000)
``dead-relu``         ``dead_units``              hidden biases initialized to -0.75
``saturated-tanh``    ``saturated_activations``   unstandardized tabular features into Tanh
``plateau``           ``loss_plateau``            images and labels shuffled independently
``healthy-mlp``       healthy control             the digits MLP under Adam at lr 3e-3
====================  ==========================  ================================================

The data is real and bundled with scikit-learn, so nothing is downloaded: the 8x8 handwritten
digits (64 pixels scaled to [0, 1]) for every workload but ``saturated-tanh``, which takes the
breast-cancer set's 30 raw features (values up to a few thousand). The split into training and
held-out samples is fixed; the training samples are shuffled into batches once, up front, so a
step costs no loader time. Every builder follows the zoo's contract,
``build(*, seed=0, batch_size=None)``: the seed initializes the weights and shuffles the batches
(the images and the labels apart, for ``plateau``), and batches are of 64 samples by default.
Each is deterministic for a seed: weights are drawn inside ``torch.random.fork_rng`` and the
batch order from a ``torch.Generator`` of its own, so building leaves the caller's random state
alone. Each workload's quality is its held-out accuracy (on the true labels, for ``plateau``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pinchpoint.workload import Workload
from pinchpoint.zoo import positive_int
from pinchpoint.zoo._classify import batches, classifier, seeded, stacked_mlp

__all__ = [
    "HEALTH_CONTROLS",
    "HEALTH_PLANTED",
    "PLATEAU_EPOCHS",
    "bad_init",
    "dead_relu",
    "deep_sigmoid",
    "digits_mlp",
    "healthy_mlp",
    "lr_100x",
    "lr_1000x_low",
    "plateau",
    "saturated_tanh",
]

#: The planted training-health workloads: zoo name to the taxonomy kind each one exhibits.
HEALTH_PLANTED: dict[str, str] = {
    "deep-sigmoid": "vanishing_gradients",
    "bad-init": "exploding_gradients",
    "lr-100x": "lr_too_high",
    "lr-1000x-low": "lr_too_low",
    "dead-relu": "dead_units",
    "saturated-tanh": "saturated_activations",
    "plateau": "loss_plateau",
}

#: Healthy training workloads on which no training-health problem may be reported.
HEALTH_CONTROLS: tuple[str, ...] = ("healthy-mlp", "digits-cnn")

_DEFAULT_BATCH = 64
# The held-out share and the split's seed are fixed, so every seed is judged on the same samples.
_HELDOUT_FRACTION = 0.2
_SPLIT_SEED = 0
# The learning rates that train the digits MLP well: Adam's, and plain SGD's.
_GOOD_ADAM_LR = 3e-3
_GOOD_SGD_LR = 0.1

_Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# --- shared pieces ------------------------------------------------------------------------------


def stratified_split(features: Any, labels: Any) -> _Split:
    """A fixed stratified split of numpy ``features`` and ``labels`` into float32/long tensors."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        list(range(len(labels))),
        test_size=_HELDOUT_FRACTION,
        stratify=labels,
        random_state=_SPLIT_SEED,
    )
    x = torch.tensor(features, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def digits_split(images: bool = False) -> _Split:
    """scikit-learn's 8x8 digits in [0, 1]: train x, train y, test x, test y.

    Each sample is 64 pixels, or with ``images`` a (1, 8, 8) image.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are integers 0..16; dividing by 16 puts them in [0, 1], as a careful user would.
    if not images:
        return stratified_split(digits.data / 16.0, digits.target)
    train_x, train_y, test_x, test_y = stratified_split(digits.images / 16.0, digits.target)
    return train_x.unsqueeze(1), train_y, test_x.unsqueeze(1), test_y


def digits_mlp() -> nn.Sequential:
    """A fresh digits MLP, 64-128-64-10 with ReLU and torch's default init: a healthy model."""
    return stacked_mlp(64, (128, 64), 10, nn.ReLU)


def digits_workload(
    name: str,
    seed: int,
    batch_size: int | None,
    model_factory: Callable[[], nn.Module],
    optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer],
    description: str,
    split: Callable[[], _Split] = digits_split,
    make_batches: Callable[..., list[tuple[torch.Tensor, torch.Tensor]]] = batches,
) -> Workload:
    """A classifier Workload on ``split`` (the digits): ``model_factory`` seeded, batches of the
    train split made by ``make_batches``."""
    batch_size = positive_int(name, "batch_size", batch_size, _DEFAULT_BATCH)
    train_x, train_y, test_x, test_y = split()
    generator = torch.Generator().manual_seed(seed)
    model = seeded(seed, model_factory)
    return classifier(
        name,
        model,
        make_batches(train_x, train_y, batch_size, generator),
        optimizer_factory(model),
        (test_x, test_y),
        description,
    )


# --- deep-sigmoid: vanishing_gradients ----------------------------------------------------------


def deep_sigmoid(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``deep-sigmoid`` workload: 13 hidden Sigmoid layers 32 wide with default init, SGD.

    The sigmoid's derivative is at most 1/4 and torch's default init shrinks signals a little
    more at every layer, so the gradient loses about an order of magnitude per layer on its way
    back: the first layers' gradients are some ten orders of magnitude below the head's and
    those layers never learn.
    """
    return digits_workload(
        "deep-sigmoid",
        seed,
        batch_size,
        lambda: stacked_mlp(64, (32,) * 13, 10, nn.Sigmoid),
        lambda model: torch.optim.SGD(model.parameters(), lr=_GOOD_SGD_LR),
        "digits MLP of 13 hidden Sigmoid layers 32 wide, default init, SGD lr 0.1: "
        "no residuals or normalization, so the gradient vanishes towards the input; "
        "quality = held-out accuracy",
    )


# --- bad-init: exploding_gradients --------------------------------------------------------------


def _bad_init_model() -> nn.Sequential:
    """The ``bad-init`` MLP: 5 hidden ReLU layers 64 wide whose weights have std 1."""
    model = stacked_mlp(64, (64,) * 5, 10, nn.ReLU)
    # The mistake: std 1 where Kaiming's is sqrt(2/64) = 0.18, so every layer multiplies the
    # signal, forward and backward, by about 5.7 instead of 1.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1.0)
    return model


def bad_init(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``bad-init`` workload: a deep ReLU MLP whose weights are drawn with std 1.

    Each of the six layers scales activations and gradients by about 5.7, so the logits are in
    the ten thousands, the loss too, and the gradient grows by ~5.7 per layer on its way back to
    the input: every weight's gradient norm is thousands to tens of thousands. SGD at a modest
    1e-4 stays finite, but the steps are huge and erratic.
    """
    return digits_workload(
        "bad-init",
        seed,
        batch_size,
        _bad_init_model,
        lambda model: torch.optim.SGD(model.parameters(), lr=1e-4),
        "digits MLP, 5 hidden ReLU layers 64 wide with Linear weights drawn from N(0, 1) "
        "(8x the Kaiming scale), SGD lr 1e-4: gradients explode; quality = held-out accuracy",
    )


# --- lr-100x: lr_too_high -----------------------------------------------------------------------


def lr_100x(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``lr-100x`` workload: the healthy digits MLP under Adam at lr 0.3, 100x too large.

    :func:`healthy_mlp` trains the same model with Adam at 3e-3. At 0.3 the first steps move
    every weight by several times its size: the loss leaps from log(10) to tens or hundreds,
    and with most of its ReLUs knocked out the model then hovers near its starting loss, at
    20-30 % held-out accuracy after 500 steps where the healthy run has 96 % after 200.
    """
    return digits_workload(
        "lr-100x",
        seed,
        batch_size,
        digits_mlp,
        lambda model: torch.optim.Adam(model.parameters(), lr=100 * _GOOD_ADAM_LR),
        "digits MLP 64-128-64-10 trained with Adam at lr 0.3, 100x the 3e-3 that trains it: "
        "the loss leaps up, then hovers near its start; quality = held-out accuracy",
    )


# --- lr-1000x-low: lr_too_low -------------------------------------------------------------------


def lr_1000x_low(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``lr-1000x-low`` workload: the healthy digits MLP under SGD at lr 1e-4, 1000x too small.

    Each step moves the weights by about a millionth of their norm, so after hundreds of steps
    the model and its loss are where they started.
    """
    return digits_workload(
        "lr-1000x-low",
        seed,
        batch_size,
        digits_mlp,
        lambda model: torch.optim.SGD(model.parameters(), lr=_GOOD_SGD_LR / 1000),
        "digits MLP 64-128-64-10 trained with SGD at lr 1e-4, 1/1000 of the 0.1 that trains "
        "it: the weights barely move and the loss is flat; quality = held-out accuracy",
    )


# --- dead-relu: dead_units ----------------------------------------------------------------------


def _dead_relu_model() -> nn.Sequential:
    """The ``dead-relu`` MLP: 64-256-10 with ReLU and its hidden biases set to -0.75."""
    model = stacked_mlp(64, (256,), 10, nn.ReLU)
    hidden = model[0]
    assert isinstance(hidden, nn.Linear)
    with torch.no_grad():
        # The mistake: a negative bias "to make activations sparse", chosen without looking at
        # the pre-activations, which torch's default weights keep within about +-0.3 on these
        # inputs. Only units whose weights happen to favour the digits' ink ever fire.
        nn.init.constant_(hidden.bias, -0.75)
    return model


def dead_relu(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``dead-relu`` workload: a digits MLP whose hidden ReLU biases are initialized to -0.75.

    The pre-activations sit around -0.75 with a spread of a few tenths, so about nine units in
    ten output zero for every input, pass no gradient and stay dead: the model learns with the
    few survivors, a tenth of the capacity it was given.
    """
    return digits_workload(
        "dead-relu",
        seed,
        batch_size,
        _dead_relu_model,
        lambda model: torch.optim.Adam(model.parameters(), lr=_GOOD_ADAM_LR),
        "digits MLP 64-256-10 with ReLU whose hidden biases are initialized to -0.75, Adam "
        "lr 3e-3: most units output zero for every input; quality = held-out accuracy",
    )


# --- saturated-tanh: saturated_activations ------------------------------------------------------


def saturated_tanh(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``saturated-tanh`` workload: raw breast-cancer features into a Tanh MLP.

    The 30 features of scikit-learn's breast-cancer set are in their own units, areas in the
    hundreds to thousands among them; without a ``StandardScaler`` the first layer's
    pre-activations are in the hundreds, so its tanh outputs are all but exactly +-1 and their
    derivatives zero.
    """
    from sklearn.datasets import load_breast_cancer

    def raw_split() -> _Split:
        cancer = load_breast_cancer()
        # The mistake: the raw features go in as they are, never standardized.
        return stratified_split(cancer.data, cancer.target)

    return digits_workload(
        "saturated-tanh",
        seed,
        batch_size,
        lambda: stacked_mlp(30, (64,), 2, nn.Tanh),
        lambda model: torch.optim.Adam(model.parameters(), lr=_GOOD_ADAM_LR),
        "breast-cancer MLP 30-64-2 with Tanh fed the raw, unstandardized features (up to "
        "thousands): the tanh units saturate at +-1; quality = held-out accuracy",
        split=raw_split,
    )


# --- plateau: loss_plateau ----------------------------------------------------------------------


#: Epochs of ``plateau`` batches made up front, each pairing images and labels afresh.
PLATEAU_EPOCHS = 24


def unpaired_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``epochs`` epochs of batches in which images and labels are shuffled independently.

    This is what zipping two shuffled loaders, one over the images and one over the labels,
    yields: every epoch pairs each image with a label drawn anew, unrelated to it.
    """
    epochs_of_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    for _ in range(epochs):
        images = batches(x, y, batch_size, generator)
        labels = batches(x, y, batch_size, generator)
        epochs_of_batches += [(xs, ys) for (xs, _), (_, ys) in zip(images, labels, strict=True)]
    return epochs_of_batches


def plateau(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``plateau`` workload: the digits MLP fed images and labels shuffled independently.

    A data-pipeline bug, zipping a shuffled loader of images with a separately shuffled loader
    of labels, pairs every image with a random label, drawn anew each epoch: there is nothing
    to learn. With a good Adam learning rate and healthy update sizes the loss stays at
    log(10), the entropy of the labels, and the held-out accuracy (on the true labels) at
    chance. The batches of :data:`PLATEAU_EPOCHS` epochs are made up front (about 500 steps)
    and then repeat.
    """
    return digits_workload(
        "plateau",
        seed,
        batch_size,
        digits_mlp,
        lambda model: torch.optim.Adam(model.parameters(), lr=1e-3),
        "digits MLP 64-128-64-10, Adam lr 1e-3, fed images and labels shuffled by two "
        "independent shuffles: nothing to learn, the loss sits at log(10); "
        "quality = held-out accuracy",
        make_batches=lambda x, y, size, generator: unpaired_batches(
            x, y, size, PLATEAU_EPOCHS, generator
        ),
    )


# --- healthy-mlp: control -----------------------------------------------------------------------


def healthy_mlp(*, seed: int = 0, batch_size: int | None = None) -> Workload:
    """The ``healthy-mlp`` workload: the digits MLP with ReLU, default init and Adam at lr 3e-3.

    The control for the planted workloads: it reaches 90 % held-out accuracy within about 200
    steps, its loss falling steadily.
    """
    return digits_workload(
        "healthy-mlp",
        seed,
        batch_size,
        digits_mlp,
        lambda model: torch.optim.Adam(model.parameters(), lr=_GOOD_ADAM_LR),
        "digits MLP 64-128-64-10 with ReLU, default init, Adam lr 3e-3: trains well "
        "(healthy control); quality = held-out accuracy",
    )

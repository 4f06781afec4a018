"""The networks of the main job: the seed's fully-connected one, and a small convolutional one."""

from __future__ import annotations

import numpy as np

from ..activation import make_relu, make_softmax
from ..cost import make_cross_entropy
from ..initializer import make_he
from ..layer import Conv, Dense, Dropout, Flatten, Layer, Pool
from ..model import Model
from ..numbers import FloatType
from ..optimizer import Optimizer

HIDDEN_SIZE = 128  # the seed's hidden layer
KINDS = ("mlp", "cnn")


def build_model(
    kind: str,
    image_shape: tuple[int, int],
    classes: int,
    optimizer: Optimizer,
    rng: np.random.Generator | int | None = None,
    dtype: FloatType | None = None,
    dropout: float = 0.0,
) -> Model:
    """The network for ``kind``: ``"mlp"`` (the seed's) or ``"cnn"``, with He initialisation and cross-entropy.

    mlp: Dense(pixels, 128, ReLU), Dense(128, classes, softmax); it takes
    (batch, pixels). cnn: two blocks of a 3x3 convolution with ReLU (16,
    then 32 filters) and a 2x2 max-pool, then Dense(.., 128, ReLU) and
    Dense(128, classes, softmax); images under 10 pixels a side (the 8x8
    digits) get the first block only. It takes (batch, 1, rows, cols).
    ``dropout`` above 0 puts a Dropout before the last layer, with its own
    generator drawn from ``rng``. Every draw comes from ``rng`` (a
    Generator or a seed), so a seed rebuilds the same network.

    >>> from corgi.optimizer import GradientDescent
    >>> build_model("cnn", (28, 28), 10, GradientDescent(0.1), rng=0).layers
    [Conv((16, 1, 3, 3), (1, 1), activation=relu), Pool((2, 2), (2, 2)), Conv((32, 16, 3, 3), (1, 1), activation=relu), \
Pool((2, 2), (2, 2)), Flatten(), Dense(800, 128, activation=relu), Dense(128, 10, activation=softmax)]
    >>> build_model("mlp", (8, 8), 10, GradientDescent(0.1), rng=0, dropout=0.2).layers
    [Dense(64, 128, activation=relu), Dropout(0.2), Dense(128, 10, activation=softmax)]
    """
    generator = np.random.default_rng(rng)
    he = make_he(generator)
    rows, cols = image_shape
    if kind == "mlp":
        body: list[Layer] = [Dense(rows * cols, HIDDEN_SIZE, he, make_relu(), dtype=dtype)]
        width = HIDDEN_SIZE
    elif kind == "cnn":
        body = [Conv((16, 1, 3, 3), (1, 1), he, make_relu(), dtype=dtype), Pool((2, 2), (2, 2))]
        depth, rows, cols = 16, (rows - 2) // 2, (cols - 2) // 2
        if min(rows, cols) >= 4:
            body += [Conv((32, 16, 3, 3), (1, 1), he, make_relu(), dtype=dtype), Pool((2, 2), (2, 2))]
            depth, rows, cols = 32, (rows - 2) // 2, (cols - 2) // 2
        if min(rows, cols) < 1:
            raise ValueError(f"build_model: images of {image_shape} are too small for the cnn's 3x3 filters")
        width = HIDDEN_SIZE if depth == 32 else 64
        body += [Flatten(), Dense(depth * rows * cols, width, he, make_relu(), dtype=dtype)]
    else:
        raise ValueError(f"build_model: kind must be 'mlp' or 'cnn', got {kind!r}")
    if dropout:
        body.append(Dropout(dropout, rng=int(generator.integers(2**63))))
    layers = [*body, Dense(width, classes, he, make_softmax(), dtype=dtype)]
    return Model(layers, optimizer, make_cross_entropy())

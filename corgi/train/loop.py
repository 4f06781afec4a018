"""The training loop: epochs of shuffled minibatches, a schedule, held-out accuracy after each epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..array import Array
from ..checks import whole_number
from ..datasets import Dataset, batches, one_hot
from ..model import Model
from ..schedule import Schedule
from .progress import Progress, make_progress


class _Parallel(Protocol):
    """What ``fit`` needs to train data-parallel: ``corgi.distributed.DataParallel`` wrapping the model."""

    @property
    def rank(self) -> int: ...

    @property
    def size(self) -> int: ...

    def step(self, input: Any, target: Any) -> float: ...


@dataclass
class History:
    """Per-epoch mean training loss, held-out accuracy and seconds since the run began.

    >>> History([0.5, 0.25], [0.9, 0.95], [1.0, 2.0]).accuracies[-1]
    0.95
    """

    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        """The history as plain data (for a checkpoint).

        >>> History([0.5], [0.9], [1.5]).to_dict()
        {'losses': [0.5], 'accuracies': [0.9], 'seconds': [1.5]}
        """
        return {"losses": list(self.losses), "accuracies": list(self.accuracies), "seconds": list(self.seconds)}


def examples(images: np.ndarray, image_shape: tuple[int, int], model: Model) -> np.ndarray:
    """``images`` (one per row, or images) shaped as one batch of what ``model`` takes, in its float type.

    The model says what one example is (``Model.input_dimensions``): a row
    of values for a Dense first layer, ``(depth, rows, cols)`` for a Conv.
    A model that does not say gets the images as they are.

    >>> from corgi.layer import Conv, Dense
    >>> from corgi.initializer import make_he
    >>> images = np.zeros((5, 64))
    >>> examples(images, (8, 8), Model([Conv((4, 1, 3, 3), (1, 1), make_he(rng=0))])).shape
    (5, 1, 8, 8)
    >>> examples(images.reshape(5, 8, 8), (8, 8), Model([Dense(64, 10, make_he(rng=0), dtype="float32")])).dtype
    dtype('float32')
    """
    dimensions = model.input_dimensions
    count = len(images)
    if dimensions is None:
        shaped = images
    elif len(dimensions) == 1:
        shaped = images.reshape(count, -1)
    elif len(dimensions) == 3 and dimensions[0] is not None:
        shaped = images.reshape((count, dimensions[0], *image_shape))
    else:
        raise ValueError(f"examples: the model takes examples of dimensions {dimensions}; images are {image_shape}")
    dtype = model.dtype
    return shaped if dtype is None else shaped.astype(dtype, copy=False)


def fit(
    model: Model,
    data: Dataset,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    schedule: Schedule | None = None,
    start_epoch: int = 0,
    end_epoch: int | None = None,
    max_steps: int | None = None,
    report: Callable[[str], None] = print,
    progress: Callable[[int, str], Progress] | None = None,
    history: History | None = None,
    on_epoch: Callable[[int, History], Any] | None = None,
    parallel: _Parallel | None = None,
) -> History:
    """Train ``model`` on ``data`` from epoch ``start_epoch`` up to ``epochs``; return the History.

    ``end_epoch`` stops the run early, before ``epochs`` (the run's length,
    which the report shows) is reached: continue it later with ``start_epoch``.

    Each epoch draws one shuffled order of the training set from ``rng``
    and takes a step per batch; ``schedule`` (if given) sets the learning
    rate at the start of each epoch, from the epoch's number. ``max_steps``
    stops each epoch early (for quick checks). After each epoch the
    held-out accuracy is measured (``Model.accuracy``: evaluation mode, no
    graph), ``on_epoch(epoch, history)`` runs (to save a checkpoint, say),
    and ``report`` gets a line. The run depends only on the model, the
    data, ``rng``'s state and the schedule: restore all of them and
    ``start_epoch``, and it continues bitwise as if never stopped.

    ``parallel`` (a ``corgi.distributed.DataParallel`` wrapping ``model``,
    the same ``rng`` state on every rank) trains on every rank at once:
    each draws the same global batches and takes its share of each (split
    as ``numpy.array_split`` splits it, the first ranks one example more,
    as ``ShardedSampler`` does); each step averages the gradients over the
    whole batch, so the run follows one process's on the same batches up
    to rounding, and every rank's model stays bitwise identical. The
    losses are the global batch's. Every rank calls ``on_epoch`` (so it
    may save collectively); pass ``report`` and ``progress`` that print
    on one rank only.

    >>> from corgi.datasets import load_digits
    >>> from corgi.optimizer import GradientDescent
    >>> from corgi.schedule import Cosine
    >>> from corgi.train import build_model
    >>> data = load_digits()
    >>> model = build_model("mlp", data.image_shape, 10, GradientDescent(0.3), rng=0)
    >>> history = fit(model, data, epochs=2, batch_size=32, rng=np.random.default_rng(0),
    ...               schedule=Cosine(0.3, total=2), report=lambda line: None)
    >>> history.losses[1] < history.losses[0], history.accuracies[-1] > 0.8
    (True, True)
    """
    epochs = whole_number(epochs, "epochs", "fit", minimum=0)
    batch_size = whole_number(batch_size, "batch_size", "fit", minimum=1)
    start_epoch = whole_number(start_epoch, "start_epoch", "fit", minimum=0)
    end_epoch = epochs if end_epoch is None else min(epochs, whole_number(end_epoch, "end_epoch", "fit", minimum=0))
    if max_steps is not None:
        max_steps = whole_number(max_steps, "max_steps", "fit", minimum=1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"fit: rng must be a numpy Generator, got {type(rng).__name__}")
    if schedule is not None and model.optimizer is None:
        raise ValueError("fit: a schedule needs a model with an optimizer")
    train_images = examples(data.train_images, data.image_shape, model)
    test_images = examples(data.test_images, data.image_shape, model)
    dtype = model.dtype or np.float64
    steps = math.ceil(len(train_images) / batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    progress = progress or make_progress
    history = history if history is not None else History()
    already = history.seconds[-1] if history.seconds else 0.0
    started = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, end_epoch):
        if schedule is not None:
            schedule.apply(model.optimizer, epoch)
        bar = progress(steps, f"epoch {epoch + 1}/{epochs}")
        total, done = 0.0, 0
        for images, labels in batches(train_images, data.train_labels, batch_size, rng):
            if done == steps:
                break
            if parallel is None:
                model.forward(Array(images, dtype=dtype))
                loss = model.backward(Array(one_hot(labels, data.classes, dtype=dtype), dtype=dtype))
                model.update()
            else:
                share = np.array_split(np.arange(len(images)), parallel.size)[parallel.rank]
                x, y = images[share], one_hot(labels[share], data.classes, dtype=dtype)
                if len(share):
                    loss = parallel.step(Array(x, dtype=dtype), Array(y, dtype=dtype))
                else:  # this rank's share of a short last batch is empty: it takes part with weight zero
                    loss = parallel.step(x, y)
            total += loss
            done += 1
            bar.update(loss)
        bar.close()
        history.losses.append(total / max(done, 1))
        history.accuracies.append(model.accuracy(test_images, data.test_labels))
        history.seconds.append(already + time.perf_counter() - started)
        if on_epoch is not None:  # before the report: a reported epoch is a saved one
            on_epoch(epoch, history)
        report(
            f"epoch {epoch + 1:>3}/{epochs}  loss {history.losses[-1]:.4f}  "
            f"held-out accuracy {history.accuracies[-1]:.4f}  ({history.seconds[-1]:.1f} s)"
        )
    return history

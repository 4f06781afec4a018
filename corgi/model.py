"""A supervised model: layers, and for training an optimizer and a cost (corgi's ``Model``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint
from .array import Array, no_grad
from .checks import whole_number
from .cost import Cost, Target
from .layer import Layer
from .optimizer import Optimizer

Input = Array | np.ndarray


class Model:
    """Layers applied in order, trained by ``forward``, ``backward`` and ``update``.

    ``optimizer`` and ``cost`` are needed for training only: a model built
    for inference is ``Model(layers)``. A model is callable (``model(x)``
    runs the layers). It starts in training mode; ``eval()`` and ``train()``
    switch every layer (Dropout, and batch normalisation, behave differently).
    ``predict``, ``classify`` and ``accuracy`` evaluate in evaluation mode
    without recording a graph, and leave the mode as they found it.

    >>> from corgi import Array
    >>> from corgi import activation, cost, initializer
    >>> from corgi.layer import Dense
    >>> from corgi.optimizer import GradientDescent
    >>> he = initializer.make_he(rng=0)
    >>> model = Model([Dense(2, 8, he, activation.make_relu()), Dense(8, 2, he, activation.make_softmax())],
    ...               GradientDescent(0.5), cost.make_cross_entropy())
    >>> x = Array([[1.0, 0.0], [0.0, 1.0]])
    >>> target = Array([[1.0, 0.0], [0.0, 1.0]])
    >>> losses = []
    >>> for _ in range(20):
    ...     _ = model.forward(x)
    ...     losses.append(model.backward(target))
    ...     model.update()
    >>> losses[-1] < losses[0], model.classify(x).tolist(), model.accuracy(x, [0, 1])
    (True, [0, 1], 1.0)
    """

    def __init__(self, layers: Sequence[Layer], optimizer: Optimizer | None = None, cost: Cost | None = None) -> None:
        self.layers = list(layers)
        for position, layer in enumerate(self.layers):
            if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "parameters", None))):
                raise TypeError(f"Model: layer {position} needs forward() and parameters(), got {type(layer).__name__}")
        if optimizer is not None and not callable(getattr(optimizer, "update", None)):
            raise TypeError(f"Model: the optimizer needs update(), got {type(optimizer).__name__}")
        if cost is not None and not callable(cost):
            raise TypeError(f"Model: the cost must be callable, got {type(cost).__name__}")
        self.optimizer = optimizer
        self.cost = cost
        self.output: Array | None = None
        self.training = True

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"Model([{layers}], {self.optimizer!r}, {self.cost!r})"

    def __getstate__(self) -> dict[str, Any]:
        # the last output is a graph of this process's training step, not part of the model
        return {**self.__dict__, "output": None}

    # -- running ---------------------------------------------------------

    def __call__(self, input: Input) -> Array:
        """Run every layer on ``input`` (batch first); records a graph if a parameter is tracked.

        A numpy ``input`` becomes an Array of the model's dtype; an Array
        must already have it (see ``dtype``).

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))])
        >>> model.set_parameters([Array([[1.0], [2.0]]), Array([0.5])])
        >>> model(np.array([[3.0, 4.0]]))
        Array([[11.5]], dimensions=(1, 1))
        """
        return self._run(input)

    def forward(self, input: Input) -> Array:
        """Run every layer on ``input`` (batch first) and remember the output for ``backward``.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> model.set_parameters([Array([[1.0], [2.0]]), Array([0.5])])
        >>> model.forward(Array([[3.0, 4.0], [1.0, 0.0]]))
        Array([[11.5],
              [ 1.5]], dimensions=(2, 1))
        >>> model.output is not None
        True
        """
        self.output = self._run(input)
        return self.output

    def backward(self, target: Target) -> float:
        """The cost of the last output against ``target``; fills every parameter's gradient.

        Gradients add up until ``update()`` clears them. Returns the loss as a float.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(1, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> model.set_parameters([Array([[2.0]]).tracked(), Array([0.0]).tracked()])
        >>> _ = model.forward(Array([[1.0]]))
        >>> model.backward(Array([[5.0]]))            # (2 * 1 - 5)^2
        9.0
        >>> model.parameters()[0].gradient()          # d/dw (w x - t)^2 = 2 (w x - t) x
        Array([[-6.]], dimensions=(1, 1))
        """
        if self.cost is None:
            raise ValueError("Model.backward: the model has no cost; build it as Model(layers, optimizer, cost)")
        if self.output is None:
            raise ValueError("Model.backward: no output yet; call forward(input) first")
        loss = self.cost(self.output, target)
        value = loss.sum_all()
        # Nothing runs between the pass's commit and this return (a return checks for no
        # pending signal), so an interrupt raises here only if the pass committed nothing.
        loss.backward()
        return value

    def update(self) -> None:
        """Let the optimizer replace the parameters (new Arrays) and clear their gradients.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(1, 1, initializer.make_he(rng=0))], GradientDescent(0.5), cost.make_mse())
        >>> model.set_parameters([Array([[2.0]]).tracked(), Array([0.0]).tracked()])
        >>> _ = model.forward(Array([[1.0]]))
        >>> old = model.parameters()
        >>> model.backward(Array([[3.0]]))            # dw = db = 2 (2 - 3) = -2
        1.0
        >>> model.update()
        >>> model.parameters(), old[0].gradient()     # w = 2 - 0.5 * -2, b = 0 - 0.5 * -2
        ([Array([[3.]], dimensions=(1, 1), tracked), Array([1.], dimensions=(1,), tracked)], None)
        """
        if self.optimizer is None:
            raise ValueError("Model.update: the model has no optimizer; build it as Model(layers, optimizer, cost)")
        updated = self.optimizer.update(self.parameters())
        if not isinstance(self.optimizer, Optimizer) or not all(isinstance(layer, Layer) for layer in self.layers):
            self.set_parameters(updated)  # somebody else's optimizer or layer: check what it returned
            return
        # a corgi optimizer returns each parameter, or a new one of its dimensions and dtype
        # (step_parameters sees to it), so the checks of set_parameters would find nothing
        start = 0
        for layer in self.layers:
            count = len(layer.parameter_names)
            if count:
                layer._assign_parameters(updated[start : start + count])
                start += count

    # -- modes -------------------------------------------------------------

    def train(self, mode: bool = True) -> Model:
        """Switch every layer to training mode (``mode=False``: evaluation mode); returns the model.

        >>> from corgi.layer import Dropout
        >>> model = Model([Dropout(0.5)])
        >>> model.train(False).training, model.layers[0].training
        (False, False)
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"Model.train: mode must be True or False, got {mode!r}")
        for layer in self.layers:
            switch = getattr(layer, "train", None)
            if callable(switch):
                switch(bool(mode))
        self.training = bool(mode)
        return self

    def eval(self) -> Model:
        """Switch every layer to evaluation mode (``train(False)``); returns the model.

        >>> from corgi.layer import Dropout
        >>> Model([Dropout(0.5)]).eval().layers[0].training
        False
        """
        return self.train(False)

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Evaluation mode and no recording inside; each layer's mode restored after."""
        modes = [getattr(layer, "training", None) for layer in self.layers]
        training = self.training
        try:
            with no_grad():
                self.eval()
                yield
        finally:
            for layer, mode in zip(self.layers, modes):
                if mode is not None and callable(getattr(layer, "train", None)):
                    layer.train(mode)
            self.training = training

    # -- what the model takes ----------------------------------------------

    @property
    def dtype(self) -> np.dtype | None:
        """The float type the model computes in: its first parameterised layer's (None without parameters).

        >>> from corgi import initializer
        >>> from corgi.layer import Dense, Flatten
        >>> Model([Flatten(), Dense(4, 2, initializer.make_he(rng=0), dtype="float32")]).dtype
        dtype('float32')
        """
        for parameter in self.parameters():
            return parameter.dtype
        return None

    @property
    def input_dimensions(self) -> tuple[int | None, ...] | None:
        """The dimensions of one example the first layer takes (see ``Layer.input_dimensions``).

        >>> from corgi import initializer
        >>> from corgi.layer import Conv, Dense
        >>> he = initializer.make_he(rng=0)
        >>> Model([Dense(784, 10, he)]).input_dimensions, Model([Conv((4, 1, 3, 3), (1, 1), he)]).input_dimensions
        ((784,), (1, None, None))
        """
        if not self.layers:
            return None
        dimensions: tuple[int | None, ...] | None = getattr(self.layers[0], "input_dimensions", None)
        return dimensions

    # -- parameters -----------------------------------------------------

    def parameters(self) -> list[Array]:
        """Every layer's parameters, in layer order.

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> he = initializer.make_he(rng=0)
        >>> [p.dimensions for p in Model([Dense(2, 3, he), Dense(3, 1, he)]).parameters()]
        [(2, 3), (3,), (3, 1), (1,)]
        """
        return [parameter for layer in self.layers for parameter in layer.parameters()]

    def named_parameters(self) -> list[tuple[str, Array]]:
        """``("<layer index>.<name>", Array)`` pairs in the order of ``parameters()``.

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> he = initializer.make_he(rng=0)
        >>> [name for name, _ in Model([Dense(2, 3, he), Dense(3, 1, he)]).named_parameters()]
        ['0.weights', '0.biases', '1.weights', '1.biases']
        """
        named: list[tuple[str, Array]] = []
        for position, layer in enumerate(self.layers):
            pairs = layer.named_parameters() if hasattr(layer, "named_parameters") else []
            named.extend((f"{position}.{name}", parameter) for name, parameter in pairs)
        return named

    def check_parameters(self, parameters: Sequence[Array]) -> list[list[Array]]:
        """Each layer's share of ``parameters`` if ``set_parameters`` would take them, else its error.

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> he = initializer.make_he(rng=0)
        >>> Model([Dense(1, 2, he), Dense(2, 1, he)]).check_parameters(
        ...     [Array([[1.0, 2.0]]), Array([0.0, 0.0]), Array([[1.0, 1.0]]), Array([0.5])])
        Traceback (most recent call last):
        ...
        ValueError: Dense.set_parameters: weights has dimensions (2, 1), got (1, 2)
        """
        parameters = list(parameters)
        counts = [len(layer.parameters()) for layer in self.layers]
        if len(parameters) != sum(counts):
            raise ValueError(f"Model.set_parameters: expects {sum(counts)} arrays, got {len(parameters)}")
        chunks, start = [], 0
        for layer, count in zip(self.layers, counts):
            chunk = parameters[start : start + count]
            check = getattr(layer, "check_parameters", None)
            chunks.append(list(check(chunk)) if count and callable(check) else chunk)
            start += count
        return chunks

    def set_parameters(self, parameters: Sequence[Array]) -> None:
        """Hand each layer its share of ``parameters`` (in ``parameters()`` order), all or nothing.

        Every layer's share is checked before any layer changes.

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> he = initializer.make_he(rng=0)
        >>> model = Model([Dense(1, 2, he), Dense(2, 1, he)])
        >>> model.set_parameters([Array([[1.0, 2.0]]), Array([0.0, 0.0]), Array([[1.0], [1.0]]), Array([0.5])])
        >>> model(Array([[2.0]]))             # (2 * 1 + 2 * 2) + 0.5
        Array([[6.5]], dimensions=(1, 1))
        >>> model.set_parameters([Array([[1.0, 2.0]])])
        Traceback (most recent call last):
        ...
        ValueError: Model.set_parameters: expects 4 arrays, got 1
        """
        chunks = self.check_parameters(parameters)
        for layer, chunk in zip(self.layers, chunks):
            if chunk:
                # a corgi Layer's share is checked already; any other layer checks its own
                assign = getattr(layer, "_assign_parameters", None) if isinstance(layer, Layer) else None
                (assign or layer.set_parameters)(chunk)

    # -- checkpoints ----------------------------------------------------

    def save(self, path: checkpoint.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
        """Write a checkpoint atomically; returns the file written (``path``, with ``.npz`` added if missing).

        It holds the parameters (``numpy.load`` reads them by name), the
        layers' buffers and extra state, the optimizer's settings and state
        (velocities, moments, step counts), and ``extra``: JSON-able data of
        your own (an epoch, a schedule's settings, a generator's position),
        read back with ``corgi.checkpoint.read(path).extra``. The file is
        written beside the target and renamed over it, so a failure or an
        interrupt never damages a checkpoint already there.

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(seed):
        ...     return Model([Dense(3, 2, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     written = make(0).save(pathlib.Path(tmp) / "model", extra={"epoch": 3})
        ...     copy = make(1).load(pathlib.Path(tmp) / "model")
        ...     written.name, checkpoint.read(written).extra
        ('model.npz', {'epoch': 3})
        >>> all(a == b for a, b in zip(copy.parameters(), make(0).parameters()))
        True
        """
        arrays, meta = checkpoint.encode(self, extra)
        return checkpoint.write(path, arrays, meta, "Model.save")

    def load(self, path: checkpoint.PathLike | checkpoint.Checkpoint, optimizer: bool = True) -> Model:
        """Restore a checkpoint ``save`` wrote (or an already read ``Checkpoint``); returns the model.

        The file must hold exactly this model's parameter names and
        dimensions; values take the model's float type. The optimizer's
        state and settings are restored too when the file has them and the
        model has an optimizer (of the same kind, else an error:
        ``optimizer=False`` loads all but the optimizer). Everything is
        checked before anything changes, and every error names the file.

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(inputs, seed):
        ...     return Model([Dense(inputs, 1, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(folder.name) / "model.npz"
        >>> _ = make(2, 0).save(path)
        >>> loaded = make(2, 1).load(path)
        >>> loaded.parameters()[0] == make(2, 0).parameters()[0], loaded.parameters()[0].is_tracked
        (True, True)
        >>> make(3, 0).load(path)
        Traceback (most recent call last):
        ...
        ValueError: Model.load: ...model.npz has 0.weights of dimensions (2, 1), the model has (3, 1)
        >>> folder.cleanup()
        """
        if not isinstance(optimizer, (bool, np.bool_)):
            raise TypeError(f"Model.load: optimizer must be True or False, got {optimizer!r}")
        read = path if isinstance(path, checkpoint.Checkpoint) else checkpoint.read(path, "Model.load")
        checkpoint.restore(self, read, bool(optimizer), "Model.load")()
        return self

    # -- evaluation -----------------------------------------------------

    def predict(self, input: Input, batch_size: int = 1000) -> np.ndarray:
        """The model's outputs for ``input``, in batches of ``batch_size``, in evaluation mode, untracked.

        For a regression model these are its estimates; for a classifier its
        scores (``classify`` gives the classes).

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))])
        >>> model.set_parameters([Array([[1.0], [2.0]]), Array([0.5])])
        >>> model.predict(np.array([[1.0, 1.0], [0.0, 0.5], [2.0, 0.0]]), batch_size=2).tolist()
        [[3.5], [1.5], [2.5]]
        """
        batch_size = whole_number(batch_size, "batch_size", "Model.predict", minimum=1)
        dtype = input.dtype if isinstance(input, Array) else None
        values = input.numpy() if isinstance(input, Array) else np.asarray(input)
        if values.ndim == 0:
            raise ValueError("Model.predict: expects a batch of examples, got a single number")
        with self._evaluating():
            outputs = [
                self._run(values[start : start + batch_size] if dtype is None else Array(values[start : start + batch_size], dtype=dtype)).numpy()
                for start in range(0, len(values), batch_size)
            ]
        return np.concatenate(outputs)

    def classify(self, input: Input, batch_size: int = 1000) -> np.ndarray:
        """The class of each example: the index of its largest output (``predict``'s argmax).

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> model = Model([Dense(2, 2, initializer.make_he(rng=0))])
        >>> model.set_parameters([Array([[1.0, 0.0], [0.0, 1.0]]), Array([0.0, 0.5])])
        >>> x = Array([[3.0, 1.0], [0.0, 2.0], [1.0, 1.0]])    # outputs (3, 1.5), (0, 2.5), (1, 1.5)
        >>> model.classify(x).tolist(), model.classify(x, batch_size=2).tolist()
        ([0, 1, 1], [0, 1, 1])
        """
        where = "Model.classify"
        batch_size = whole_number(batch_size, "batch_size", where, minimum=1)
        outputs = self.predict(input, batch_size)
        if outputs.ndim < 2:
            raise ValueError(f"{where}: the model's outputs have dimensions {outputs.shape}; classes need (batch, classes)")
        classes: np.ndarray = outputs.argmax(axis=-1)
        return classes

    def accuracy(self, input: Input, labels: Sequence[int] | np.ndarray | Array, batch_size: int = 1000) -> float:
        """The fraction of examples whose class (``classify``) is the label (integers, or one-hot rows).

        >>> from corgi import initializer
        >>> from corgi.layer import Dense
        >>> model = Model([Dense(2, 2, initializer.make_he(rng=0))])
        >>> model.set_parameters([Array([[1.0, 0.0], [0.0, 1.0]]), Array([0.0, 0.0])])
        >>> x = Array([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0], [1.0, 4.0]])    # classes 0, 1, 0, 1
        >>> model.accuracy(x, [0, 1, 1, 1]), model.accuracy(x, [[1, 0], [0, 1], [1, 0], [1, 0]])
        (0.75, 0.75)
        """
        expected = labels.numpy() if isinstance(labels, Array) else np.asarray(labels)
        if expected.ndim == 2:
            expected = expected.argmax(axis=-1)
        predictions = self.classify(input, batch_size)
        if expected.shape != predictions.shape:
            raise ValueError(
                f"Model.accuracy: {predictions.shape[0]} predictions but labels of dimensions {expected.shape}"
            )
        return float(np.mean(predictions == expected))

    def _run(self, input: Input) -> Array:
        if isinstance(input, Array):
            x = input
        else:
            dtype = self.dtype
            x = Array(input) if dtype is None else Array(input, dtype=dtype)
        for layer in self.layers:
            x = layer.forward(x)
        return x

"""A supervised model: layers, an optimizer and a cost (corgi's ``Model``)."""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from .array import Array
from .checks import whole_number
from .cost import Cost, Target
from .layer import Layer
from .optimizer import Optimizer

Input = Union[Array, np.ndarray]


class Model:
    """Layers applied in order, trained by ``forward``, ``backward`` and ``update``.

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
    >>> losses[-1] < losses[0], model.predict(x).tolist(), model.accuracy(x, [0, 1])
    (True, [0, 1], 1.0)
    """

    def __init__(self, layers: Sequence[Layer], optimizer: Optimizer, cost: Cost) -> None:
        self.layers = list(layers)
        for position, layer in enumerate(self.layers):
            if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "parameters", None))):
                raise TypeError(f"Model: layer {position} needs forward() and parameters(), got {type(layer).__name__}")
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(f"Model: the optimizer needs update(), got {type(optimizer).__name__}")
        if not callable(cost):
            raise TypeError(f"Model: the cost must be callable, got {type(cost).__name__}")
        self.optimizer = optimizer
        self.cost = cost
        self.output: Union[Array, None] = None

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"Model([{layers}], {self.optimizer!r})"

    # -- training -------------------------------------------------------

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
        if self.output is None:
            raise ValueError("Model.backward: no output yet; call forward(input) first")
        loss = self.cost(self.output, target)
        loss.backward()
        return loss.sum_all()

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
        self.set_parameters(self.optimizer.update(self.parameters()))

    # -- parameters -----------------------------------------------------

    def parameters(self) -> list[Array]:
        """Every layer's parameters, in layer order.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> he = initializer.make_he(rng=0)
        >>> model = Model([Dense(2, 3, he), Dense(3, 1, he)], GradientDescent(0.1), cost.make_mse())
        >>> [p.dimensions for p in model.parameters()]
        [(2, 3), (3,), (3, 1), (1,)]
        """
        return [parameter for layer in self.layers for parameter in layer.parameters()]

    def named_parameters(self) -> list[tuple[str, Array]]:
        """``("<layer index>.<name>", Array)`` pairs in the order of ``parameters()``.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> he = initializer.make_he(rng=0)
        >>> model = Model([Dense(2, 3, he), Dense(3, 1, he)], GradientDescent(0.1), cost.make_mse())
        >>> [name for name, _ in model.named_parameters()]
        ['0.weights', '0.biases', '1.weights', '1.biases']
        """
        return [
            (f"{position}.{name}", parameter)
            for position, layer in enumerate(self.layers)
            for name, parameter in layer.named_parameters()
        ]

    def set_parameters(self, parameters: Sequence[Array]) -> None:
        """Hand each layer its share of ``parameters`` (in ``parameters()`` order).

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> he = initializer.make_he(rng=0)
        >>> model = Model([Dense(1, 2, he), Dense(2, 1, he)], GradientDescent(0.1), cost.make_mse())
        >>> model.set_parameters([Array([[1.0, 2.0]]), Array([0.0, 0.0]), Array([[1.0], [1.0]]), Array([0.5])])
        >>> model.forward(Array([[2.0]]))             # (2 * 1 + 2 * 2) + 0.5
        Array([[6.5]], dimensions=(1, 1))
        >>> model.set_parameters([Array([[1.0, 2.0]])])
        Traceback (most recent call last):
        ...
        ValueError: Model.set_parameters: expects 4 arrays, got 1
        """
        parameters = list(parameters)
        counts = [len(layer.parameters()) for layer in self.layers]
        if len(parameters) != sum(counts):
            raise ValueError(f"Model.set_parameters: expects {sum(counts)} arrays, got {len(parameters)}")
        start = 0
        for layer, count in zip(self.layers, counts):
            if count:
                layer.set_parameters(parameters[start : start + count])
            start += count

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the parameters to a ``.npz`` file (numpy adds ``.npz`` to a name without it).

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(seed):
        ...     return Model([Dense(3, 2, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     make(0).save(pathlib.Path(tmp) / "model.npz")
        ...     copy = make(1).load(pathlib.Path(tmp) / "model.npz")
        >>> all(a == b for a, b in zip(copy.parameters(), make(0).parameters()))
        True
        """
        np.savez(path, **{name: parameter.numpy() for name, parameter in self.named_parameters()})

    def load(self, path: Union[str, os.PathLike]) -> "Model":
        """Replace the parameters with tracked Arrays read from a file ``save`` wrote; returns the model.

        The file must hold exactly this model's parameter names and dimensions.

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(inputs, seed):
        ...     return Model([Dense(inputs, 1, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(folder.name) / "model.npz"
        >>> make(2, 0).save(path)
        >>> loaded = make(2, 1).load(path)
        >>> loaded.parameters()[0] == make(2, 0).parameters()[0], loaded.parameters()[0].is_tracked
        (True, True)
        >>> make(3, 0).load(path)
        Traceback (most recent call last):
        ...
        ValueError: Model.load: ...model.npz has 0.weights of dimensions (2, 1), the model has (3, 1)
        >>> folder.cleanup()
        """
        with np.load(path, allow_pickle=False) as saved:
            stored = {name: saved[name] for name in saved.files}
        names = [name for name, _ in self.named_parameters()]
        if sorted(stored) != sorted(names):
            raise ValueError(f"Model.load: {path} holds parameters {sorted(stored)}, the model has {sorted(names)}")
        loaded = []
        for name, parameter in self.named_parameters():
            values = stored[name]
            if values.shape != parameter.dimensions:
                raise ValueError(
                    f"Model.load: {path} has {name} of dimensions {values.shape}, the model has {parameter.dimensions}"
                )
            loaded.append(Array(values, dtype=parameter.dtype).tracked())
        self.set_parameters(loaded)
        return self

    # -- evaluation -----------------------------------------------------

    def predict(self, input: Input, batch_size: int = 1000) -> np.ndarray:
        """The class of each example: the index of the largest output, in batches of ``batch_size``.

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(2, 2, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> model.set_parameters([Array([[1.0, 0.0], [0.0, 1.0]]), Array([0.0, 0.5])])
        >>> x = Array([[3.0, 1.0], [0.0, 2.0], [1.0, 1.0]])    # outputs (3, 1.5), (0, 2.5), (1, 1.5)
        >>> model.predict(x).tolist(), model.predict(x, batch_size=2).tolist()
        ([0, 1, 1], [0, 1, 1])
        """
        batch_size = whole_number(batch_size, "batch_size", "Model.predict", minimum=1)
        values = input.numpy() if isinstance(input, Array) else np.asarray(input)
        if values.ndim == 0:
            raise ValueError("Model.predict: expects a batch of examples, got a single number")
        outputs = [
            self._run(values[start : start + batch_size]).numpy() for start in range(0, len(values), batch_size)
        ]
        return np.concatenate(outputs).argmax(axis=-1)

    def accuracy(self, input: Input, labels: Union[Sequence[int], np.ndarray, Array], batch_size: int = 1000) -> float:
        """The fraction of examples whose predicted class is the label (integers, or one-hot rows).

        >>> from corgi import cost, initializer
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(2, 2, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> model.set_parameters([Array([[1.0, 0.0], [0.0, 1.0]]), Array([0.0, 0.0])])
        >>> x = Array([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0], [1.0, 4.0]])    # predicts 0, 1, 0, 1
        >>> model.accuracy(x, [0, 1, 1, 1]), model.accuracy(x, [[1, 0], [0, 1], [1, 0], [1, 0]])
        (0.75, 0.75)
        """
        labels = labels.numpy() if isinstance(labels, Array) else np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(axis=-1)
        predictions = self.predict(input, batch_size)
        if labels.shape != predictions.shape:
            raise ValueError(
                f"Model.accuracy: {predictions.shape[0]} predictions but labels of dimensions {labels.shape}"
            )
        return float(np.mean(predictions == labels))

    def _run(self, input: Input) -> Array:
        x = input if isinstance(input, Array) else Array(input)
        for layer in self.layers:
            x = layer.forward(x)
        return x

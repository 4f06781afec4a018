"""The main job: train the seed's network on handwritten digits (``python -m corgi.train``).

By default it trains corgi's fully-connected example (Dense-ReLU, then
Dense-softmax, with cross-entropy and gradient descent) on the bundled 8x8
digits, prints the loss and held-out accuracy of every epoch, and ends with
``held-out accuracy: 0.xxxx``. ``--model cnn`` trains a small convolutional
network instead; ``--data DIR`` reads MNIST from IDX files. Run with
``--help`` for every option.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, TextIO

import numpy as np

# The one import of the engine outside corgi/array: --workers sets its thread count.
from . import engine
from .activation import make_relu, make_softmax
from .array import Array
from .cost import make_cross_entropy
from .datasets import Dataset, batches, load_digits, load_mnist, one_hot
from .initializer import make_he
from .layer import Conv, Dense, Pool, Reshape
from .model import Model
from .optimizer import Adam, GradientDescent, Momentum, Optimizer

OPTIMIZERS: dict[str, type] = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
# Learning rates that train both networks well with each optimizer (--lr overrides).
DEFAULT_LEARNING_RATES = {"gd": 0.5, "momentum": 0.05, "adam": 0.003}
# The seed's example uses gradient descent; the CNN learns faster with momentum.
DEFAULT_OPTIMIZERS = {"mlp": "gd", "cnn": "momentum"}
HIDDEN_SIZE = 128


def build_model(
    kind: str,
    image_shape: tuple[int, int],
    classes: int,
    optimizer: Optimizer,
    rng: Optional[np.random.Generator] = None,
) -> Model:
    """The network for ``kind``: ``"mlp"`` (the seed's) or ``"cnn"``.

    mlp: Dense(pixels, 128, ReLU), Dense(128, classes, softmax); it takes
    (batch, pixels). cnn: Conv 16 filters 3x3 + ReLU, max-pool 2x2,
    flatten, Dense(.., 64, ReLU), Dense(64, classes, softmax); it takes
    (batch, 1, rows, cols). Both use He initialisation and cross-entropy.

    >>> model = build_model("cnn", (8, 8), 10, GradientDescent(0.1), np.random.default_rng(0))
    >>> model.layers
    [Conv((16, 1, 3, 3), (1, 1), activation=relu), Pool((2, 2), (2, 2)), Reshape((144,)), Dense(144, 64, activation=relu), Dense(64, 10, activation=softmax)]
    """
    he = make_he(rng)
    rows, cols = image_shape
    if kind == "mlp":
        layers = [
            Dense(rows * cols, HIDDEN_SIZE, he, make_relu()),
            Dense(HIDDEN_SIZE, classes, he, make_softmax()),
        ]
    elif kind == "cnn":
        filters = 16
        flat = filters * ((rows - 2) // 2) * ((cols - 2) // 2)
        layers = [
            Conv((filters, 1, 3, 3), (1, 1), he, make_relu()),
            Pool((2, 2), (2, 2)),
            Reshape((flat,)),
            Dense(flat, 64, he, make_relu()),
            Dense(64, classes, he, make_softmax()),
        ]
    else:
        raise ValueError(f"build_model: kind must be 'mlp' or 'cnn', got {kind!r}")
    return Model(layers, optimizer, make_cross_entropy())


@dataclass
class History:
    """Per-epoch mean training loss, held-out accuracy and elapsed seconds.

    >>> History([0.5, 0.25], [0.9, 0.95], [1.0, 2.0]).accuracies[-1]
    0.95
    """

    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def train(
    model: Model,
    data: Dataset,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    schedule: str = "cosine",
    max_steps: Optional[int] = None,
    report: Callable[[str], None] = print,
    progress: Optional[Callable[[int, str], "ProgressBar"]] = None,
) -> History:
    """Train ``model`` on ``data`` for ``epochs`` of shuffled minibatches; return the History.

    Images are reshaped to (batch, 1, rows, cols) when the first layer is a
    Conv. With ``schedule="cosine"`` the optimizer's learning rate falls from
    its starting value to 0 along half a cosine over the epochs (it must have
    a ``learning_rate`` attribute); ``"constant"`` leaves it. ``max_steps``
    stops each epoch early (for quick checks). ``report`` gets one line per
    epoch.

    >>> data = load_digits()
    >>> rng = np.random.default_rng(0)
    >>> model = build_model("mlp", data.image_shape, 10, GradientDescent(0.3), rng)
    >>> history = train(model, data, epochs=2, batch_size=32, rng=rng, report=lambda line: None)
    >>> history.losses[1] < history.losses[0], history.accuracies[-1] > 0.8
    (True, True)
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"train: schedule must be 'cosine' or 'constant', got {schedule!r}")
    shape = (1,) + data.image_shape if isinstance(model.layers[0], Conv) else (-1,)
    train_images = data.train_images.reshape((len(data.train_images),) + shape)
    test_images = data.test_images.reshape((len(data.test_images),) + shape)
    start_rate = getattr(model.optimizer, "learning_rate", None)
    steps = math.ceil(len(train_images) / batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    progress = progress or make_progress
    history = History()
    started = time.perf_counter()
    for epoch in range(epochs):
        if schedule == "cosine" and start_rate is not None:
            model.optimizer.learning_rate = start_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        bar = progress(steps, f"epoch {epoch + 1}/{epochs}")
        total = 0.0
        done = 0
        for images, labels in batches(train_images, data.train_labels, batch_size, rng):
            if done == steps:
                break
            model.forward(Array(images))
            loss = model.backward(Array(one_hot(labels, data.classes)))
            model.update()
            total += loss
            done += 1
            bar.update(loss)
        bar.close()
        history.losses.append(total / done)
        history.accuracies.append(model.accuracy(test_images, data.test_labels))
        history.seconds.append(time.perf_counter() - started)
        report(
            f"epoch {epoch + 1:>3}/{epochs}  loss {history.losses[-1]:.4f}  "
            f"held-out accuracy {history.accuracies[-1]:.4f}  ({history.seconds[-1]:.1f} s)"
        )
    if start_rate is not None:
        model.optimizer.learning_rate = start_rate
    return history


class ProgressBar:
    """A plain progress bar on ``stream``, redrawn in place; silent when ``stream`` is not a terminal.

    >>> import io
    >>> stream = io.StringIO()
    >>> bar = ProgressBar(4, "epoch 1/1", stream, force=True)
    >>> for _ in range(4):
    ...     bar.update(0.5)
    >>> bar.close()
    >>> stream.getvalue().splitlines()[-1].split("\\r")[-1]
    'epoch 1/1 [##############################] 4/4 loss 0.5000'
    """

    WIDTH = 30

    def __init__(self, total: int, description: str, stream: TextIO = sys.stderr, force: bool = False) -> None:
        self.total, self.description, self.stream = total, description, stream
        self.count = 0
        self.active = force or (hasattr(stream, "isatty") and stream.isatty())

    def update(self, loss: float) -> None:
        """Advance by one batch whose loss was ``loss``.

        >>> import io
        >>> stream = io.StringIO()
        >>> bar = ProgressBar(2, "epoch 1/3", stream, force=True)
        >>> bar.update(0.25)
        >>> stream.getvalue()
        '\\repoch 1/3 [###############---------------] 1/2 loss 0.2500'
        >>> quiet = io.StringIO()                  # not a terminal: counts, draws nothing
        >>> bar = ProgressBar(2, "epoch 1/3", quiet)
        >>> bar.update(0.25)
        >>> bar.count, quiet.getvalue()
        (1, '')
        """
        self.count += 1
        if self.active:
            filled = self.WIDTH * self.count // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r{self.description} [{bar}] {self.count}/{self.total} loss {loss:.4f}")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line.

        >>> import io
        >>> stream = io.StringIO()
        >>> bar = ProgressBar(1, "epoch 1/1", stream, force=True)
        >>> bar.update(0.5)
        >>> bar.close()
        >>> stream.getvalue().endswith("1/1 loss 0.5000\\n")
        True
        """
        if self.active:
            self.stream.write("\n")
            self.stream.flush()


class _TqdmBar:
    def __init__(self, total: int, description: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=description, unit="batch", leave=False, file=sys.stderr)

    def update(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def make_progress(total: int, description: str) -> ProgressBar:
    """A tqdm progress bar on stderr when tqdm is installed, else a ``ProgressBar``.

    >>> bar = make_progress(3, "epoch 1/1")
    >>> bar.update(0.1); bar.close()
    """
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return ProgressBar(total, description)
    return _TqdmBar(total, description)  # type: ignore[return-value]


# -- the command line ---------------------------------------------------------


def _whole_number_from(low: int):
    """An argparse type: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return value

    return parse


_positive_int = _whole_number_from(1)
_whole_number = _whole_number_from(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``corgi-train``.

    >>> parser().parse_args(["--model", "cnn", "--epochs", "3"]).epochs
    3
    """
    p = argparse.ArgumentParser(
        prog="corgi-train",
        description="Train corgi's fully-connected (or convolutional) network on handwritten digits.",
    )
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="the network (default: mlp, the seed's)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="passes over the training set (default: 30)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default: 32)")
    p.add_argument(
        "--optimizer", choices=tuple(OPTIMIZERS), default=None,
        help="gd, momentum or adam (default: gd for mlp, momentum for cnn)",
    )
    p.add_argument(
        "--lr", type=_positive_float, default=None,
        help="starting learning rate (default: 0.5 for gd, 0.05 for momentum, 0.003 for adam)",
    )
    p.add_argument(
        "--schedule", choices=("cosine", "constant"), default="cosine",
        help="learning rate over the epochs: a half cosine down to 0, or constant (default: cosine)",
    )
    p.add_argument("--seed", type=_whole_number, default=0, help="seed of every random draw (default: 0)")
    p.add_argument(
        "--workers", type=_whole_number, default=None,
        help="backward-pass threads; 0 runs it on the calling thread (default: CORGI_WORKERS or the CPU count)",
    )
    p.add_argument("--max-steps", type=_positive_int, default=None, help="stop each epoch after this many steps")
    p.add_argument("--save", metavar="PATH", help="save the trained parameters to PATH (.npz)")
    p.add_argument("--data", metavar="DIR", help="train on MNIST from the IDX files in DIR instead of the digits")
    p.add_argument("--plot", metavar="PATH", help="draw the loss and accuracy curves to PATH (PNG; needs matplotlib)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the main job with command-line arguments ``argv``; returns the exit status.

    Bad arguments print a message and exit with status 2.

    >>> main(["--epochs", "2", "--max-steps", "10"])
    epoch   1/2  loss ...
    epoch   2/2  loss ...
    held-out accuracy: 0.8...
    0
    """
    p = parser()
    args = p.parse_args(argv)
    for what, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                p.error(f"{what}: the folder {folder} does not exist")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    if args.workers is not None:
        engine.configure(workers=args.workers)

    if args.data is not None:
        try:
            data = load_mnist(args.data)
        except (OSError, ValueError) as error:
            p.error(f"--data: {error}")
    else:
        data = load_digits()

    name = args.optimizer or DEFAULT_OPTIMIZERS[args.model]
    rate = args.lr if args.lr is not None else DEFAULT_LEARNING_RATES[name]
    rng = np.random.default_rng(args.seed)
    model = build_model(args.model, data.image_shape, data.classes, OPTIMIZERS[name](rate), rng)
    history = train(model, data, args.epochs, args.batch_size, rng, args.schedule, args.max_steps)

    if args.save is not None:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot is not None:
        _plot(history, args.plot)
        print(f"saved the curves to {args.plot}")
    print(f"held-out accuracy: {history.accuracies[-1]:.4f}")
    return 0


def _plot(history: History, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.losses) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history.losses, marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    right.plot(epochs, history.accuracies, marker="o", color="tab:green")
    right.set(title="held-out accuracy", xlabel="epoch", ylabel="accuracy")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _run() -> int:
    """The console entry point: ``main()``, quiet when its reader goes away (``| head``)."""
    try:
        return main()
    except BrokenPipeError:
        # Python's documented remedy: point stdout at devnull so the final
        # flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(_run())

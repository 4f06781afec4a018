"""The main job: train the seed's network on real MNIST (``python -m corgi.train``), and the loop it uses.

By default it trains corgi's fully-connected example (Dense-ReLU, then
Dense-softmax, with cross-entropy and gradient descent) on the 10,000 MNIST
digits that ship with corgi (8,000 to train, 2,000 held out), prints the
loss and held-out accuracy of every epoch, and ends with ``held-out
accuracy: 0.xxxx``. ``--model cnn`` trains a small convolutional network,
``--dataset digits`` the 8x8 digits, ``--data DIR`` the full MNIST from IDX
files; ``--save`` and ``--resume`` checkpoint and continue a run exactly.
Run with ``--help`` for every option.

The pieces are separate modules: ``fit`` (the loop, usable from any
script), ``build_model`` (the two networks), the progress display, the BLAS
thread setting, and the command line.

>>> from corgi.train import fit, build_model, main
>>> callable(fit) and callable(build_model) and callable(main)
True
"""

from .blas import blas_threads, set_blas_threads
from .cli import main, parser, run
from .loop import History, examples, fit
from .networks import build_model
from .progress import ProgressBar, make_progress

_run = run  # the console script's entry point (pyproject.toml: corgi-train = "corgi.train:_run")

__all__ = ["History", "ProgressBar", "blas_threads", "build_model", "examples", "fit", "main", "make_progress",
           "parser", "run", "set_blas_threads"]

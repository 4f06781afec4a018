"""The command line of the main job: ``python -m corgi.train`` (also the ``corgi-train`` script).

It parses the options, loads the data, builds or restores the model and its
training state, runs ``corgi.train.fit`` and reports. A run's settings and
state go into every checkpoint it saves, so ``--resume`` continues it
exactly (bitwise) where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The one import of the engine outside corgi/array: --workers sets its thread count.
from .. import engine
from ..checkpoint import Checkpoint, read
from ..datasets import Dataset, load_digits, load_mnist, load_mnist10k
from ..model import Model
from ..optimizer import Adam, GradientDescent, Momentum, Optimizer
from ..schedule import Constant, Cosine, Schedule, StepDecay, Warmup
from .blas import set_blas_threads
from .loop import History, fit
from .networks import KINDS, build_model

OPTIMIZERS: dict[str, Callable[[float], Optimizer]] = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
# Learning rates that train both networks well with each optimizer (--lr overrides).
DEFAULT_LEARNING_RATES = {"gd": 0.3, "momentum": 0.05, "adam": 0.003}
# The seed's example uses gradient descent; the CNN learns faster with momentum.
DEFAULT_OPTIMIZERS = {"mlp": "gd", "cnn": "momentum"}
# Epochs by data set and network: the bundled MNIST and digits, and the full MNIST (--data, 60,000 digits).
DEFAULT_EPOCHS = {("mnist", "mlp"): 30, ("mnist", "cnn"): 8, ("digits", "mlp"): 30, ("digits", "cnn"): 30,
                  ("full", "mlp"): 10, ("full", "cnn"): 3}
DATASETS = ("mnist", "digits")
SCHEDULES = ("cosine", "constant", "step")
# The settings that make a run what it is: a resumed run keeps them.
SETTINGS = ("model", "dataset", "data", "dtype", "batch_size", "optimizer", "lr", "schedule", "warmup",
            "seed", "dropout", "max_steps")
DEFAULTS: dict[str, Any] = {"model": "mlp", "dataset": "mnist", "data": None, "dtype": "float64", "batch_size": 32,
                            "schedule": "cosine", "warmup": 0, "seed": 0, "max_steps": None}
# The seed's network has no dropout; the CNN gains from some (seeds 1 and 3: 0.9795 -> 0.982, 0.9775 -> 0.981).
DEFAULT_DROPOUT = {"mlp": 0.0, "cnn": 0.25}
# BLAS threads unless --blas-threads says otherwise: one never lost more than a quarter in our
# measurements (benchmarks/README.md, workload e); two lost 3-7x on a busy machine, 50x on one core.
DEFAULT_BLAS_THREADS = 1


def _whole_number_from(low: int) -> Any:
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


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``corgi-train``; options left out are None (their defaults come later).

    >>> parser().parse_args(["--model", "cnn", "--epochs", "3"]).epochs
    3
    """
    p = argparse.ArgumentParser(
        prog="corgi-train",
        description="Train the seed's fully-connected network (or a small convolutional one) on handwritten digits: "
        "by default the 10,000 MNIST digits that ship with corgi, 8,000 to train and 2,000 held out.",
    )
    p.add_argument("--model", choices=KINDS, help="the network (default: mlp, the seed's)")
    p.add_argument("--dataset", choices=DATASETS,
                   help="mnist: the bundled 10,000 MNIST digits (default); digits: the bundled 8x8 UCI digits")
    p.add_argument("--data", metavar="DIR", help="train on the full MNIST from the four IDX files in DIR instead")
    p.add_argument("--epochs", type=_positive_int,
                   help="epochs of the run (default: 30 for mlp, 8 for cnn on the bundled MNIST, 30 on the digits, "
                   "10 and 3 on the full MNIST; a resumed run: its own)")
    p.add_argument("--stop-after", type=_positive_int, metavar="EPOCHS",
                   help="stop after this many of the run's epochs (save with --save; continue with --resume)")
    p.add_argument("--batch-size", type=_positive_int, help="examples per step (default: 32)")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS),
                   help="gd, momentum or adam (default: gd for mlp, momentum for cnn)")
    p.add_argument("--lr", type=_positive_float,
                   help="starting learning rate (default: 0.3 for gd, 0.05 for momentum, 0.003 for adam)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning rate over the epochs: a half cosine down to 0 (default), constant, "
                   "or step (a tenth every third of the run)")
    p.add_argument("--warmup", type=_whole_number, metavar="EPOCHS",
                   help="epochs of linear warm-up before the schedule (default: 0)")
    p.add_argument("--dropout", type=_rate, metavar="RATE",
                   help="dropout before the last layer (default: none for mlp, 0.25 for cnn)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="the network's float type (default: float64)")
    p.add_argument("--seed", type=_whole_number, help="seed of every random draw (default: 0)")
    p.add_argument("--workers", type=_whole_number,
                   help="backward-pass threads; 0 runs it on the calling thread (default: CORGI_WORKERS or the CPU count)")
    p.add_argument("--blas-threads", type=_positive_int, metavar="N",
                   help=f"threads of numpy's BLAS (default: {DEFAULT_BLAS_THREADS}; more rarely helps networks this small)")
    p.add_argument("--max-steps", type=_positive_int, help="stop each epoch after this many steps")
    p.add_argument("--save", metavar="PATH",
                   help="save a checkpoint to PATH (.npz added if missing; a folder gets <model>.npz) after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH, with its settings")
    p.add_argument("--plot", metavar="PATH", help="draw the loss and accuracy curves to PATH (PNG; needs matplotlib)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the main job with command-line arguments ``argv``; returns the exit status.

    Bad arguments print a message and exit with status 2; Ctrl-C stops the
    run with status 130, its last finished epoch saved if ``--save`` was given.

    Started as several ranks by an MPI launcher (``mpiexec -n 4 python -m
    mpi4py -m corgi.train``, ``srun``, the MPI Operator), it trains
    data-parallel (``corgi.distributed``): every rank takes its share of
    each batch, only rank 0 prints and writes checkpoints, every rank can
    resume from one; see docs/distributed.md.

    >>> main(["--dataset", "digits", "--epochs", "2", "--max-steps", "10"])
    epoch   1/2  loss ...
    epoch   2/2  loss ...
    held-out accuracy: 0.8...
    0
    """
    comm = _world()
    if comm is None:
        run = _prepare(parser(), argv)
        return _train(run, None)
    return _main_parallel(comm, argv)


@dataclass
class _Run:
    """A run ready to train: what ``_prepare`` found and built."""

    args: argparse.Namespace
    settings: dict[str, Any]
    save_path: Path | None
    data: Dataset
    epochs: int
    order: np.random.Generator
    model: Model
    schedule: Schedule
    start: int
    end: int
    history: History
    resumed: Checkpoint | None


def _prepare(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> _Run:
    """Parse ``argv``, set the threads, load the data, build (or restore) the model: everything before training."""
    args = p.parse_args(argv)
    resumed = _resumed(p, args.resume) if args.resume is not None else None
    settings = _settings(p, args, resumed)
    save_path = _save_path(p, args.save if args.save is not None else args.resume, settings["model"])
    if args.plot is not None:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            p.error(f"--plot: the folder {folder} does not exist")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    if args.workers is not None:
        engine.configure(workers=args.workers)
    said = set_blas_threads(args.blas_threads or DEFAULT_BLAS_THREADS)
    if not said.startswith("BLAS threads"):
        print(f"corgi-train: {said}", file=sys.stderr)

    data = _data(p, settings)
    kind = "full" if settings["data"] is not None else settings["dataset"]
    epochs = args.epochs or (resumed.extra["epochs"] if resumed else DEFAULT_EPOCHS[kind, settings["model"]])
    init, order = (np.random.default_rng(seed) for seed in np.random.SeedSequence(settings["seed"]).spawn(2))
    optimizer = OPTIMIZERS[settings["optimizer"]](settings["lr"])
    model = build_model(settings["model"], data.image_shape, data.classes, optimizer, init,
                        dtype=settings["dtype"], dropout=settings["dropout"])
    schedule = _schedule(settings, epochs)
    start, history = 0, History()
    if resumed is not None:
        start, history = _restore(p, resumed, model, order, schedule, epochs)
    end = min(epochs, args.stop_after) if args.stop_after else epochs
    return _Run(args, settings, save_path, data, epochs, order, model, schedule, start, end, history, resumed)


def _train(run: _Run, parallel: Any) -> int:
    """Train ``run`` (data-parallel through ``parallel``, a DataParallel, on rank 0 of several), save, report."""
    args, settings, save_path, schedule, order = run.args, run.settings, run.save_path, run.schedule, run.order
    quiet = parallel is not None and parallel.rank != 0
    if run.resumed is not None and run.start >= run.end and not quiet:
        print(f"corgi-train: {run.resumed.path} has finished {run.start} of {run.epochs} epochs; nothing to train",
              file=sys.stderr)

    def save(epoch: int, history: History) -> None:
        if save_path is not None:
            extra = {"corgi.train": {**settings, "schedule_settings": schedule.to_dict()}, "epoch": epoch + 1,
                     "epochs": run.epochs, "generator": order.bit_generator.state, "history": history.to_dict()}
            if parallel is None:
                run.model.save(save_path, extra=extra)
            else:
                parallel.save(save_path, extra=extra)  # rank 0 writes; every rank waits until it has

    try:
        history = fit(run.model, run.data, run.epochs, settings["batch_size"], order, schedule,
                      start_epoch=run.start, end_epoch=run.end, max_steps=settings["max_steps"],
                      history=run.history, on_epoch=save, parallel=parallel,
                      report=_silent if quiet else print, progress=_no_progress if quiet else None)
    except KeyboardInterrupt:
        if parallel is not None:
            raise  # the abort hook ends every rank at once (status 130); the last saved epoch is whole
        where = f"; resume with --resume {save_path}" if save_path is not None and save_path.exists() else ""
        print(f"corgi-train: interrupted{where}", file=sys.stderr)
        return 130
    if save_path is not None:
        if run.end <= run.start:  # nothing trained: the resumed run as it was, where --save says
            save(run.start - 1, history)
        print(f"saved the model to {save_path}")
    if args.plot is not None and not quiet:
        _plot(history, args.plot)
        print(f"saved the curves to {args.plot}")
    if history.accuracies:
        print(f"held-out accuracy: {history.accuracies[-1]:.4f}")
    return 0


def _world() -> Any:
    """The MPI communicator when several ranks run this job, else None (see ``corgi.distributed.launch``)."""
    from ..distributed import world  # imports nothing of MPI unless a launcher started this process

    try:
        return world("corgi-train")
    except (RuntimeError, ValueError) as error:
        print(error if str(error).startswith("corgi-train") else f"corgi-train: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _main_parallel(comm: Any, argv: Sequence[str] | None) -> int:
    """``main`` on one of several ranks: prepare on every rank (all or none), wrap, train; rank 0 alone prints."""
    from ..distributed import DataParallel, install_abort_hook

    rank = comm.Get_rank()
    install_abort_hook(comm)  # from here an uncaught error on any rank ends every rank
    said = io.StringIO()  # what the other ranks would print while preparing: shown only if they fail alone
    status: int | None = None
    run = None
    with contextlib.ExitStack() as stack:
        if rank != 0:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(said))
        try:
            run = _prepare(parser(), argv)
        except SystemExit as stop:  # a bad option, a missing file, --help: every rank must stop alike
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    statuses = comm.allgather((status, said.getvalue() if status else ""))
    failed = [other for other, (code, _) in enumerate(statuses) if code is not None]
    if failed:
        code, message = statuses[failed[0]]
        if rank == 0 and status is None:
            print(f"corgi-train: rank {failed[0]} could not start:\n{message.rstrip()}", file=sys.stderr)
        return status if status is not None else int(code)
    assert run is not None
    # every rank goes on from rank 0's state: its parameters and optimizer (the wrap), shuffling and epochs
    parallel = DataParallel(run.model, comm)
    state, start, end, history = comm.bcast(
        (run.order.bit_generator.state, run.start, run.end, run.history) if rank == 0 else None, root=0
    )
    run.order.bit_generator.state = state
    run.start, run.end, run.history = start, end, history
    if rank == 0:
        return _train(run, parallel)
    with contextlib.redirect_stdout(io.StringIO()):
        return _train(run, parallel)


def _silent(line: str) -> None:
    """The report of every rank but rank 0."""


class _NoProgress:
    def update(self, loss: float) -> None:
        pass

    def close(self) -> None:
        pass


def _no_progress(total: int, description: str) -> _NoProgress:
    return _NoProgress()


def _resumed(p: argparse.ArgumentParser, path: str) -> Checkpoint:
    try:
        saved = read(path, "--resume")
    except (OSError, ValueError) as error:
        p.error(str(error))
    if not isinstance(saved.extra.get("corgi.train"), dict):
        p.error(f"--resume: {saved.path} is a checkpoint, but not of a corgi-train run")
    return saved


def _settings(p: argparse.ArgumentParser, args: argparse.Namespace, resumed: Checkpoint | None) -> dict[str, Any]:
    """The run's settings: a resumed run's own (an option that differs is an error), else the options."""
    given = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    if args.data is not None and args.dataset == "digits":
        p.error("--data reads MNIST IDX files; it does not go with --dataset digits")
    if resumed is not None:
        saved = resumed.extra["corgi.train"]
        for name, value in given.items():
            if saved.get(name) != value:
                p.error(f"--{name.replace('_', '-')} {value} differs from the resumed run's "
                        f"{saved.get(name)}; a resumed run keeps its settings")
        return {name: saved.get(name) for name in SETTINGS}
    settings = {**DEFAULTS, **given}
    if settings["data"] is not None:
        settings["data"] = os.path.abspath(settings["data"])
    settings["optimizer"] = given.get("optimizer") or DEFAULT_OPTIMIZERS[settings["model"]]
    settings["dropout"] = given.get("dropout", DEFAULT_DROPOUT[settings["model"]])
    settings["lr"] = given.get("lr") or DEFAULT_LEARNING_RATES[settings["optimizer"]]
    return settings


def _save_path(p: argparse.ArgumentParser, path: str | None, model: str) -> Path | None:
    """Where checkpoints go: ``path`` with .npz added if missing, or ``<model>.npz`` inside a folder."""
    if path is None:
        return None
    target = Path(path)
    if path.endswith(("/", os.sep)) or target.is_dir():
        if not target.is_dir():
            p.error(f"--save: the folder {target} does not exist")
        target = target / f"{model}.npz"
    elif target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    if not target.parent.is_dir():
        p.error(f"--save: the folder {target.parent} does not exist")
    return target


def _data(p: argparse.ArgumentParser, settings: dict[str, Any]) -> Dataset:
    if settings["data"] is not None:
        try:
            return load_mnist(settings["data"])
        except (OSError, ValueError) as error:
            p.error(f"--data: {error}")
    return load_digits() if settings["dataset"] == "digits" else load_mnist10k()


def _schedule(settings: dict[str, Any], epochs: int) -> Schedule:
    """The learning rate over ``epochs``: the warm-up's epochs, then the schedule over the rest."""
    rate, warmup = settings["lr"], min(settings["warmup"], epochs - 1)
    rest = epochs - warmup
    schedule: Schedule
    if settings["schedule"] == "cosine":
        schedule = Cosine(rate, total=rest)
    elif settings["schedule"] == "step":
        schedule = StepDecay(rate, step_size=max(1, math.ceil(rest / 3)), gamma=0.1)
    else:
        schedule = Constant(rate)
    return Warmup(schedule, steps=warmup) if warmup else schedule


def _restore(p: argparse.ArgumentParser, resumed: Checkpoint, model: Model, order: np.random.Generator,
             schedule: Schedule, epochs: int) -> tuple[int, History]:
    """Load the resumed run's model, optimizer and generators; returns its next epoch and its history."""
    extra = resumed.extra
    try:
        model.load(resumed)
        order.bit_generator.state = extra["generator"]
        saved_history = extra["history"]
        history = History(list(saved_history["losses"]), list(saved_history["accuracies"]),
                          list(saved_history["seconds"]))
        start = int(extra["epoch"])
        planned = Schedule.from_dict(extra["corgi.train"]["schedule_settings"])
    except (KeyError, TypeError, ValueError) as error:
        p.error(f"--resume: {resumed.path}: {error}")
    if planned != schedule:
        print(f"corgi-train: the run now has {epochs} epochs (it had {extra['epochs']}): its learning rate "
              f"follows {schedule!r} instead of {planned!r}", file=sys.stderr)
    return start, history


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


def run() -> int:
    """The console entry point: ``main()``, quiet when its reader goes away (``| head``).

    >>> callable(run)
    True
    """
    try:
        return main()
    except BrokenPipeError:
        # Python's documented remedy: point stdout at devnull so the final
        # flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

"""What each rank runs in tests/test_distributed.py, under ``mpiexec -n N python tests/mpi_scenarios.py ...``.

Every rank writes what it saw to ``<out>/rank-<r>.json`` (files, not stdout:
mpiexec may split long lines from different ranks), and the test compares
the ranks' reports. Nothing here imports mpi4py at import time (pytest
imports this file to look for doctests); ``corgi.distributed`` does it when
the first DataParallel is made.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _model(seed: int, dtype: str, hidden: int = 16) -> Any:
    from corgi import activation, cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import Momentum

    he = initializer.make_he(rng=seed)
    layers = [Dense(64, hidden, he, activation.make_relu()), Dense(hidden, 10, he)]
    model = Model(layers, Momentum(0.05, 0.9), cost.make_softmax_cross_entropy())
    if dtype != "float64":
        from corgi import Array

        model.set_parameters([Array(p.numpy(), dtype=dtype).tracked() for p in model.parameters()])
    return model


def _data(count: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    from corgi.datasets import load_digits, one_hot

    digits = load_digits()
    return digits.train_images[:count].astype(dtype), one_hot(digits.train_labels[:count]).astype(dtype)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Data-parallel training against one process training on the same global batches."""
    from corgi.distributed import DataParallel, ShardedSampler

    _workers(args)
    x, y = _data(args.count, args.dtype)
    # Each rank starts from its own random parameters: the wrap must give every rank rank 0's.
    parallel = DataParallel(_model(100 + _rank(), args.dtype), reduction=args.reduction)
    rank, size = parallel.rank, parallel.size
    report: dict[str, Any] = {"rank": rank, "size": size, "digests": [parallel.digest()], "losses": [], "seen": []}
    sampler = ShardedSampler(len(x), args.batch, rank, size, seed=7)
    for epoch in range(args.epochs):
        seen = []
        for part in sampler.batches(epoch):
            report["losses"].append(parallel.step(x[part], y[part]))
            report["digests"].append(parallel.digest())
            seen += part.tolist()
        report["seen"].append(seen)
    if rank == 0:
        # the oracle: plain corgi in one process, on the sampler's global batches
        single = _model(100, args.dtype)
        losses = []
        for epoch in range(args.epochs):
            for batch in ShardedSampler(len(x), args.batch, seed=7).global_batches(epoch):
                single.forward(x[batch])
                losses.append(single.backward(y[batch]))
                single.update()
        report["single_losses"] = losses
        report["parameter_error"] = max(
            float(np.max(np.abs(a.numpy().astype(np.float64) - b.numpy()) / (1.0 + np.abs(b.numpy()))))
            for a, b in zip(parallel.parameters(), single.parameters())
        )
    path = Path(args.out) / "checkpoint.npz"
    parallel.save(path)
    fresh = DataParallel(_model(999, args.dtype), reduction=args.reduction)
    before = fresh.digest()
    fresh.load(path)
    report["checkpoint"] = {"before": before, "after": fresh.digest(), "saved": parallel.digest()}
    return report


def disagree(args: argparse.Namespace) -> dict[str, Any]:
    """Ranks that wrap different models all get the same clear error, then can go on together."""
    from corgi import Array
    from corgi.distributed import DataParallel
    from corgi.optimizer import Adam, Momentum

    rank = _rank()
    last = rank == _size() - 1
    errors = []
    attempts = [
        lambda: DataParallel(_model(0, "float64", hidden=17 if last else 16)),
        lambda: DataParallel(_model(0, "float32" if last else "float64")),
        lambda: DataParallel(_model(0, "float64"), bucket_bytes=4096 if last else 8192),
        lambda: DataParallel([Array([1.0]).tracked()] * (2 if last else 3)),
        lambda: DataParallel([Array([1.0]).tracked()], optimizer=Adam() if last else Momentum(0.1)),
    ]
    for attempt in attempts:
        try:
            attempt()
            errors.append(None)
        except ValueError as error:
            errors.append(str(error))
    agreed = DataParallel(_model(rank, "float64"))
    return {"rank": rank, "errors": errors, "digest": agreed.digest()}


def unused(args: argparse.Namespace) -> dict[str, Any]:
    """Gradients of parameters some ranks, or no rank, used; a rank with no examples."""
    from corgi import Array
    from corgi.distributed import DataParallel
    from corgi.optimizer import GradientDescent

    rank = _rank()
    parallel = DataParallel(
        [Array([1.0, -2.0]).tracked(), Array([3.0]).tracked(), Array([5.0]).tracked()], optimizer=GradientDescent(0.5)
    )
    w, b, c = parallel.parameters()
    count = rank + 1  # uneven shares: rank r has r + 1 examples
    loss = (w * w).sum() if rank else (w * w).sum() + b.sum()  # only rank 0 uses b; no rank uses c
    local = parallel.backward_loss(loss, count)
    mean = parallel.synchronize()
    gradients = [None if p.gradient() is None else p.gradient().numpy().tolist() for p in (w, b, c)]
    parallel.update()
    # a step where only rank 0 has examples
    w, b, c = parallel.parameters()
    if rank == 0:
        parallel.backward_loss((w * b).sum(), 4)
    else:
        parallel.skip()
    second = parallel.synchronize()
    parallel.update()
    return {
        "rank": rank,
        "local_loss": local,
        "mean_loss": mean,
        "gradients": gradients,
        "second_loss": second,
        "parameters": [p.numpy().tolist() for p in parallel.parameters()],
    }


def abort(args: argparse.Namespace) -> dict[str, Any]:
    """The last rank raises after two steps; the others go on into the next exchange."""
    from corgi import Array
    from corgi.distributed import DataParallel
    from corgi.optimizer import GradientDescent

    parallel = DataParallel([Array([1.0, 2.0]).tracked()], optimizer=GradientDescent(0.1))
    for step in range(4):
        if step == 2 and parallel.rank == parallel.size - 1:
            (Path(args.out) / "raised").write_text(repr(time.time()))
            raise RuntimeError("rank fails on purpose")
        w = parallel.parameters()[0]
        parallel.backward_loss((w * w).sum(), 1)
        parallel.update()
    return {"rank": parallel.rank, "finished": True}


class _Explode:
    """A layer that passes its input through and, when told, raises in its forward or backward pass."""

    def __init__(self) -> None:
        self.fail_forward = False
        self.fail_backward = False
        self.started_before_failing: list[int] = []
        self.parallel: Any = None

    def parameters(self) -> list[Any]:
        return []

    def forward(self, x: Any) -> Any:
        from corgi import Array

        if self.fail_forward:
            raise FloatingPointError("explode: the forward pass refused on purpose")

        def backward(children: Any, tracked: Any, delta: Any) -> list[Any]:
            if self.fail_backward:
                # how many buckets this rank had sent when its pass failed
                self.started_before_failing.append(self.parallel._reducer.started)
                raise FloatingPointError("explode: the backward pass refused on purpose")
            return [delta]

        return Array.op([x], lambda xs: xs[0] * 1.0, backward, name="explode")


def fail(args: argparse.Namespace) -> dict[str, Any]:
    """A rank's backward pass (step 2) or forward pass (step 4) raises; every rank fails that step, then goes on."""
    from corgi import activation, cost, initializer
    from corgi.distributed import DataParallel
    from corgi.distributed.buckets import StepFailed
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import Momentum

    _workers(args)
    he = initializer.make_he(rng=5)
    explode = _Explode()
    model = Model([Dense(64, 24, he, activation.make_tanh()), explode, Dense(24, 10, he)], Momentum(0.05),
                  cost.make_softmax_cross_entropy())
    # one bucket per parameter: the last layer's two buckets go out before the explode layer's backward runs
    parallel = DataParallel(model, bucket_bytes=1, abort_on_error=False)
    explode.parallel = parallel
    rank, size = parallel.rank, parallel.size
    x, y = _data(60, "float64")
    outcomes = []
    for step in range(7):
        part = np.array_split(np.arange(20 * step, 20 * step + 20) % 60, size)[rank]
        explode.fail_backward = step == 2 and rank == size - 1
        explode.fail_forward = step == 4 and rank == 0
        before = parallel.digest()
        try:
            loss = parallel.step(x[part], y[part])
        except (FloatingPointError, StepFailed) as error:
            outcomes.append({
                "step": step, "error": type(error).__name__, "message": str(error),
                "failed_rank": getattr(error, "rank", None),
                "unchanged": parallel.digest() == before,
                "gradients": [p.gradient() is not None for p in parallel.parameters()],
                "busy": parallel._reducer.busy,
            })
        else:
            outcomes.append({"step": step, "loss": loss})
    return {"rank": rank, "outcomes": outcomes, "digest": parallel.digest(),
            "started_before_failing": explode.started_before_failing,
            "buckets": len(parallel._reducer.buckets)}


def threads(args: argparse.Namespace) -> dict[str, Any]:
    """Wide steps whose gradients are finished (and their buckets sent) by engine workers."""
    import threading

    from mpi4py import MPI

    import corgi.engine
    from corgi import Array, arr
    from corgi.distributed import DataParallel
    from corgi.optimizer import GradientDescent

    _workers(args)
    pooled = corgi.engine.settings().workers > 0
    corgi.engine.configure(handoff_cost=0)  # every queued node gets a worker's ticket
    # With workers, the backward passes of branches 0 and 1 meet at a barrier: two threads must
    # be inside the pass at once, so one branch's weight is finished by a worker, which sends its
    # bucket if it is weight 1's (weight 0's, the last bucket, carries the step's status: finish()
    # sends it, on the caller's thread).
    meeting = threading.Barrier(2, timeout=20)

    def meet(branch: Any) -> Any:
        def backward(children: Any, tracked: Any, delta: Any) -> list[Any]:
            meeting.wait()
            return [delta]

        return Array.op([branch], lambda xs: xs[0] * 1.0, backward, name="meet")

    rng = np.random.default_rng(3)
    branches, inputs, width, batch = 4, 48, 64, 24
    weights = [rng.standard_normal((inputs, width)) * 0.2 for _ in range(branches)]
    x = rng.standard_normal((batch * 3, inputs))

    def loss_of(parameters: list[Any], rows: np.ndarray, meeting: bool) -> Any:
        data = Array(x[rows])
        total = None
        for index, weight in enumerate(parameters):
            branch = (data @ weight).tanh()
            if meeting and index < 2:
                branch = meet(branch)
            term = branch.sum(axis=None)
            total = term if total is None else total + term
        return total * arr(1.0 / len(rows))

    # one bucket per weight, each started from the thread that finished its gradient
    parallel = DataParallel([Array(w).tracked() for w in weights], optimizer=GradientDescent(0.05), bucket_bytes=1)
    rank, size = parallel.rank, parallel.size
    link = parallel._link
    callers: set[str] = set()

    def recorded(method: Any) -> Any:
        def call(*arguments: Any, **options: Any) -> Any:
            callers.add(threading.current_thread().name)
            return method(*arguments, **options)
        return call

    link.Iallreduce = recorded(link.Iallreduce)
    link.Ireduce = recorded(link.Ireduce)
    reducer = parallel._reducer
    finish = reducer.finish
    during_pass, after_finish = [], []

    def counting_finish(extra: float = 0.0) -> None:
        during_pass.append(reducer.started)  # buckets already sent when the pass returned
        finish(extra)
        after_finish.append(reducer.started)

    reducer.finish = counting_finish
    digests = [parallel.digest()]
    for step in range(6):
        rows = np.array_split(np.arange(batch) + batch * (step % 3), size)[rank]
        parallel.backward_loss(loss_of(parallel.parameters(), rows, pooled), len(rows))
        parallel.update()
        digests.append(parallel.digest())
    report: dict[str, Any] = {"rank": rank, "digests": digests, "callers": sorted(callers),
                              "during_pass": during_pass, "after_finish": after_finish, "buckets": len(reducer.buckets),
                              "thread_level": MPI.Query_thread()}
    if rank == 0:
        corgi.engine.configure(workers=0)
        single = [Array(w).tracked() for w in weights]
        optimizer = GradientDescent(0.05)
        for step in range(6):
            rows = np.arange(batch) + batch * (step % 3)
            loss_of(single, rows, False).backward()
            single = optimizer.update(single)
        report["parameter_error"] = max(
            float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(parallel.parameters(), single)
        )
    return report


def optimizer(args: argparse.Namespace) -> dict[str, Any]:
    """Rank 0's optimizer state and settings reach every rank at the wrap, through a checkpoint, and a failed load changes nothing."""
    from corgi import activation, cost, initializer
    from corgi.distributed import DataParallel
    from corgi.distributed.state import model_digest, optimizer_layout
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import Adam

    rank = _rank()

    def make(seed: int, rate: float) -> Any:
        he = initializer.make_he(rng=seed)
        return Model([Dense(64, 12, he, activation.make_relu()), Dense(12, 10, he)], Adam(rate),
                     cost.make_softmax_cross_entropy())

    x, y = _data(40, "float64")
    model = make(rank, 0.01 if rank == 0 else 0.5)
    if rank == 0:  # rank 0 alone has trained: it has moments and step counts, the others none
        for start in (0, 20):
            model.forward(x[start:start + 20])
            model.backward(y[start:start + 20])
            model.update()
    parallel = DataParallel(model)
    size = parallel.size
    report: dict[str, Any] = {"rank": rank, "wrapped": model_digest(model), "layout": repr(optimizer_layout(model.optimizer))}
    part = np.array_split(np.arange(40), size)[rank]
    for _ in range(3):
        parallel.step(x[part], y[part])
    report["trained"] = model_digest(model)
    path = Path(args.out) / "adam.npz"
    parallel.save(path)
    copy = DataParallel(make(50 + rank, 0.2))
    copy.load(path)
    report["loaded"] = model_digest(copy.model)
    for _ in range(2):
        parallel.step(x[part], y[part])
        copy.step(x[part], y[part])
    report["continued"], report["copy_continued"] = model_digest(model), model_digest(copy.model)
    # the last rank's file differs: every rank refuses, and keeps its whole state
    other = Path(args.out) / f"other-{rank}.npz"
    (make(7, 0.1) if rank == size - 1 else copy.model).save(other)
    before = model_digest(copy.model)
    try:
        copy.load(other)
        report["refused"] = None
    except ValueError as error:
        report["refused"] = str(error).replace(str(other), "<file>")
    report["kept"] = model_digest(copy.model) == before
    return report


def cli(args: argparse.Namespace) -> dict[str, Any]:
    """``corgi.train``'s main on every rank, each rank's output captured, and the model it trained hashed.

    With ``--fail-step k`` the last rank raises in its k-th training step.
    """
    import contextlib
    import io
    import shlex

    import corgi.distributed
    from corgi.distributed.state import digest, model_digest
    from corgi.train import cli as train_cli

    made: list[Any] = []
    original = corgi.distributed.DataParallel
    rank, size = _rank(), _size()

    class Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, *arguments: Any, **options: Any) -> None:
            super().__init__(*arguments, **options)
            made.append(self)
            self.steps = 0

        def step(self, input: Any, target: Any) -> float:
            self.steps += 1
            if self.steps == args.fail_step and rank == size - 1:
                (Path(args.out) / "raised").write_text(repr(time.time()))
                raise RuntimeError("corgi.train's step fails on purpose")
            return float(super().step(input, target))

    corgi.distributed.DataParallel = Recorded
    sys.setswitchinterval(1e-6)  # threads switched as often as the interpreter can (--workers in argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = train_cli.main(shlex.split(args.argv))
    report: dict[str, Any] = {"rank": rank, "status": status, "stdout": out.getvalue(), "stderr": err.getvalue()}
    if made:
        report["parameters"] = digest(made[0].parameters())
        report["state"] = model_digest(made[0].model)
        report["steps"] = made[0].steps
    return report


def _workers(args: argparse.Namespace) -> None:
    """The engine's worker count, and threads switched as often as the interpreter can (concurrency tests)."""
    if args.workers is not None:
        import corgi.engine

        corgi.engine.configure(workers=args.workers)
        sys.setswitchinterval(1e-6)


def _rank() -> int:
    from mpi4py import MPI

    rank: int = MPI.COMM_WORLD.Get_rank()
    return rank


def _size() -> int:
    from mpi4py import MPI

    size: int = MPI.COMM_WORLD.Get_size()
    return size


SCENARIOS = {"train": train, "disagree": disagree, "unused": unused, "abort": abort, "fail": fail,
             "threads": threads, "optimizer": optimizer, "cli": cli}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--reduction", default="allreduce")
    parser.add_argument("--count", type=int, default=101)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--thread-level", default=None, help="mpi4py.rc.thread_level before MPI starts")
    parser.add_argument("--argv", default="", help="corgi.train's command line (cli)")
    parser.add_argument("--fail-step", type=int, default=None)
    args = parser.parse_args(argv)
    if args.thread_level is not None:
        import mpi4py

        mpi4py.rc.thread_level = args.thread_level
    report = SCENARIOS[args.scenario](args)
    (Path(args.out) / f"rank-{report['rank']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])

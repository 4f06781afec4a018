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

    rank = _rank()
    last = rank == _size() - 1
    errors = []
    attempts = [
        lambda: DataParallel(_model(0, "float64", hidden=17 if last else 16)),
        lambda: DataParallel(_model(0, "float32" if last else "float64")),
        lambda: DataParallel(_model(0, "float64"), bucket_bytes=4096 if last else 8192),
        lambda: DataParallel([Array([1.0]).tracked()] * (2 if last else 3)),
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


def _rank() -> int:
    from mpi4py import MPI

    rank: int = MPI.COMM_WORLD.Get_rank()
    return rank


def _size() -> int:
    from mpi4py import MPI

    size: int = MPI.COMM_WORLD.Get_size()
    return size


SCENARIOS = {"train": train, "disagree": disagree, "unused": unused, "abort": abort}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--reduction", default="allreduce")
    parser.add_argument("--count", type=int, default=101)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    report = SCENARIOS[args.scenario](args)
    (Path(args.out) / f"rank-{report['rank']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])

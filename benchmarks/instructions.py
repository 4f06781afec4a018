"""Instruction counts (valgrind's callgrind) per node and per training step: a second witness beside timings.

    python -m benchmarks.instructions                 # the chain and the small Model step
    python -m benchmarks.instructions --only model

callgrind counts the instructions a process executes, which does not depend
on what else the machine is doing, so a change's effect shows even when the
timings are buried in noise. Each figure is the difference between two runs
that differ only in how much work they do after the same set-up (imports,
data, warm-up): (count(2k) - count(k)) / k, so start-up is subtracted out.
OpenBLAS runs on one thread (``OPENBLAS_NUM_THREADS=1``) and the collector
stays on, as in the timed benchmarks.

- ``chain``: the (b) chain (alternating ``x * w`` and ``x + b`` on 1-element
  arrays), forward only and forward + backward, per op, at engine
  ``workers=0`` and ``workers=2``.
- ``model``: a Model step (forward, backward, update) of Dense 8-4-2 with
  ReLU and the softmax layer with ``make_cross_entropy`` (the seed's path)
  and with ``make_softmax_cross_entropy`` (fused), batch 4, float64: almost
  nothing but per-operation overhead. ``model-floor`` is the numpy floor's
  step (in place) on the same network.
- ``phases`` (``--only phases``): the same two Model steps cut into phases,
  each the difference of two cumulative runs: the forward; the backward's
  cost, its vjps (each operation node's ``deltas`` on the pass's totals) and
  the pass with the rest (``loss.backward()``, the loss as a float); the
  update.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

from benchmarks import run

CHAIN_N = 2000


def work(kind: str, amount: int, workers: int) -> None:
    """The measured process: set up, warm up, then ``amount`` units of work of ``kind``."""
    import gc

    import numpy as np

    import corgi
    import corgi.engine
    from benchmarks.workloads import common

    corgi.engine.configure(workers=workers)
    if kind.startswith("chain-floor"):
        from benchmarks.workloads import floor

        floor.backward_chain(floor.build_chain(CHAIN_N))
        for _ in range(amount):
            gc.collect()
            state = floor.build_chain(CHAIN_N)
            if kind == "chain-floor":
                floor.backward_chain(state)
            del state
        return
    if kind == "model-floor":
        from benchmarks.workloads import floor

        rng = np.random.default_rng(0)
        x, t = rng.random((4, 8)), np.eye(2)[[0, 1, 1, 0]]
        params = [rng.standard_normal((8, 4)), np.zeros(4), rng.standard_normal((4, 2)), np.zeros(2)]
        step = floor.make_mlp_step_inplace(x, None, t, params, 0.01)
        for _ in range(20):
            step()
        gc.collect()
        for _ in range(amount):
            step()
        return
    if kind.startswith("chain"):
        from benchmarks.workloads.corgi_peer import chain_fns

        build, backward = chain_fns(corgi)
        backward(build(CHAIN_N))
        for _ in range(amount):
            gc.collect()
            state = build(CHAIN_N)
            if kind == "chain":
                backward(state)
            del state
        return
    from corgi import Array
    from corgi.activation import make_relu, make_softmax
    from corgi.cost import make_cross_entropy, make_softmax_cross_entropy
    from corgi.initializer import make_he
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    seed = kind.startswith("model-seed")
    model = Model([Dense(8, 4, make_he(rng=0), make_relu()), Dense(4, 2, make_he(rng=1), make_softmax() if seed else None)],
                  GradientDescent(0.01), make_cross_entropy() if seed else make_softmax_cross_entropy())
    rng = np.random.default_rng(0)
    x = Array(rng.random((4, 8)))
    target = Array(np.eye(2)[[0, 1, 1, 0]])
    for _ in range(20):
        model.forward(x)
        model.backward(target)
        model.update()
    phase = kind.rpartition(":")[2] if ":" in kind else "step"
    if phase == "vjps":  # the pass's total at each operation node, to call its vjps with
        model.forward(x)
        loss = model.cost(model.output, target)
        nodes, stack = [], [loss._node]
        while stack:
            node = stack.pop()
            if node.inputs and all(node is not seen for seen in nodes):
                nodes.append(node)
                stack.extend(node.inputs)
        pairs = list(zip(nodes, corgi.engine.backward(loss._node, np.ones(1), targets=nodes)))
    gc.collect()
    for _ in range(amount):
        model.forward(x)
        if phase in ("cost", "vjps"):
            model.cost(model.output, target)
        if phase == "vjps":
            for node, delta in pairs:
                node.deltas(delta)
        if phase in ("backward", "step"):
            model.backward(target)
        if phase == "step":
            model.update()
    del common


def count(kind: str, amount: int, workers: int) -> int:
    """Instructions callgrind counts for one run of ``work(kind, amount, workers)``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
               "benchmarks.instructions", "--work", kind, "--amount", str(amount), "--workers", str(workers)]
        proc = subprocess.run(cmd, check=False, cwd=run.ROOT, env=run.child_env(1), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        with open(out) as f:
            for line in f:
                match = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if match:
                    return int(match.group(1))
    raise RuntimeError("no instruction total in callgrind's output")


def per_unit(kind: str, workers: int, k: int) -> float:
    return (count(kind, 2 * k, workers) - count(kind, k, workers)) / k


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="chain,model")
    ap.add_argument("--chain-workers", default="0,2", help="engine worker counts for the chain")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--amount", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.work:
        work(args.work, args.amount, args.workers)
        return
    only = args.only.split(",")
    if "chain" in only:
        for workers in [int(w) for w in args.chain_workers.split(",")]:
            forward = per_unit("chain-forward", workers, 2) / CHAIN_N
            total = per_unit("chain", workers, 2) / CHAIN_N
            print(f"chain workers={workers}: forward {forward:,.0f}, backward {total - forward:,.0f}, "
                  f"total {total:,.0f} instructions per op", flush=True)
    if "chain" in only:
        forward = per_unit("chain-floor-forward", 0, 2) / CHAIN_N
        total = per_unit("chain-floor", 0, 2) / CHAIN_N
        print(f"chain, the numpy closure tape: forward {forward:,.0f}, backward {total - forward:,.0f}, "
              f"total {total:,.0f} instructions per op", flush=True)
    if "phases" in only:
        for kind in ("model-seed", "model-fused"):
            at = {phase: per_unit(f"{kind}:{phase}", 0, 50) for phase in ("forward", "cost", "vjps", "backward", "step")}
            print(f"{kind} by phase: forward {at['forward']:,.0f}; backward {at['backward'] - at['forward']:,.0f} "
                  f"(the cost {at['cost'] - at['forward']:,.0f}, the vjps {at['vjps'] - at['cost']:,.0f}, the pass "
                  f"and the rest {at['backward'] - at['vjps']:,.0f}); update {at['step'] - at['backward']:,.0f}",
                  flush=True)
    if "model" in only:
        for kind in ("model-floor", "model-seed", "model-fused"):
            print(f"{kind} (Dense 8-4-2, batch 4, float64): {per_unit(kind, 0, 50):,.0f} instructions per step",
                  flush=True)


if __name__ == "__main__":
    main()

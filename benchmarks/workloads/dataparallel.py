"""(f) Data-parallel MLP steps over MPI: corgi's DataParallel, the numpy floor, the raw allreduce.

Run by the driver under mpiexec, one process per rank:

    mpiexec -n 2 python -m benchmarks.workloads.dataparallel corgi --batch 1024

``--batch`` is the global batch; rank r trains on its ``numpy.array_split``
share of it. Peers:

- ``numpy``: the floor, a hand-written data-parallel loop on mpi4py. The
  784-256-10 MLP's forward and backward by hand (as in floor.py), the
  gradient of the global mean loss written straight into the same bucket
  buffers corgi uses (the weight matrix's product computed into its own
  buffer, the small gradients into one flat buffer), one ``Iallreduce`` per
  bucket, then new parameter arrays from the summed gradients.
- ``corgi``: ``corgi.distributed.DataParallel`` around a ``corgi.model.Model``
  of the same network and cost (softmax cross-entropy on the logits), plain
  SGD; ``step(x, y)``. Also times its gradient exchange alone: from
  "every gradient is final" to "every parameter holds the average".
- ``deep``: the overlap where it can matter: corgi's 2-rank step on a deeper
  MLP, 784-1024-1024-1024-10 (2.9 M parameters, 11.6 MB in float32: four
  buckets, the three big weights each alone), with each bucket sent from the
  backward pass's ready hooks against every gradient reported after the
  pass, alternating in the same processes, and the step with no exchange.
- ``allreduce``: the raw cost of the same buckets' ``Iallreduce`` (into
  preallocated buffers), and of one blocking ``Allreduce`` of all gradients
  in one flat buffer, as measured in issue 13.

Rank 0 prints one JSON line (the driver reads it); times are medians over
``--repeats`` steps, or over exchanges each started after a barrier.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import sys
import time
import traceback

import numpy as np

from benchmarks.workloads import common

PEERS = ("numpy", "corgi", "allreduce", "deep")


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("peer", choices=PEERS)
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per rank")
    p.add_argument("--workers", type=int, default=0,
                   help="corgi's backward-pass workers per rank (0: the ranks already fill the cores)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--exchanges", type=int, default=300, help="timed exchanges (each after a barrier)")
    return p.parse_args(argv)


def shard(args, rank, size):
    """This rank's share of the global batch, and the parameters every rank starts from."""
    x, _, onehot, params = common.mlp_data(np.dtype(args.dtype), args.batch)
    part = np.array_split(np.arange(args.batch), size)[rank]
    return x[part], onehot[part], params


def timed_exchanges(comm, exchange, warmup, repeats):
    """Seconds per exchange, each started together after a barrier (so no rank's lateness counts)."""
    for _ in range(warmup):
        comm.Barrier()
        exchange()
    out = []
    for _ in range(repeats):
        comm.Barrier()
        start = time.perf_counter()
        exchange()
        out.append(time.perf_counter() - start)
    # every rank's median, and the slowest rank's counts: the exchange ends when the last one does
    return max(comm.allgather(statistics.median(out)))


def looped(comm, contenders, blocks, runs):
    """Each contender's time per call, run ``runs`` times back to back with no barrier between calls.

    As in training, the ranks pace each other through the reductions alone.
    Per block, on the slowest rank: the mean per call (the block's time over
    ``runs``: what a loop pays, slow calls included) and the median call
    (comparable with ``interleaved``'s medians). Blocks alternate between
    the contenders like ``interleaved``'s; returns each contender's fastest
    block's mean, its median block's mean, and its fastest block's median.
    """
    means = {name: [] for name in contenders}
    medians = {name: [] for name in contenders}
    for block in range(blocks):
        names = list(contenders)
        if block % 2:
            names.reverse()
        for name in names:
            call = contenders[name]
            call()
            comm.Barrier()
            times = []
            start = time.perf_counter()
            for _ in range(runs):
                before = time.perf_counter()
                call()
                times.append(time.perf_counter() - before)
            mean = (time.perf_counter() - start) / runs
            gathered = comm.allgather((mean, statistics.median(times)))
            means[name].append(max(mean for mean, _ in gathered))
            medians[name].append(max(median for _, median in gathered))
    return {name: (min(means[name]), statistics.median(means[name]), min(medians[name])) for name in contenders}


def arrivals(comm, stamps):
    """Where a step's exchange time goes, from each rank's (arrived, done) clock stamps of the same steps.

    ``arrived``: this rank's gradients are final and its last reduction has
    started; ``done``: it holds the sums. ``time.perf_counter`` is the
    machine's monotonic clock, one for every process on it, so the ranks'
    stamps compare. Per step: ``skew``, the last rank's arrival minus the
    first's (the early rank waits that long for the late one's compute,
    not for the exchange); ``wait``, each rank's arrived-to-done (skew
    included, what a rank's step sees); ``after_last``, the last arrival to
    the slowest rank's done: the exchange's own cost once every rank is in.
    Medians over the steps, us.
    """
    everyone = comm.allgather(stamps)
    skew, wait, after = [], [], []
    for step in zip(*everyone):
        arrived = [a for a, _ in step]
        done = [d for _, d in step]
        skew.append(max(arrived) - min(arrived))
        wait.extend(d - a for a, d in step)
        after.append(max(done) - max(arrived))
    return {"skew_us": statistics.median(skew) * 1e6, "wait_us": statistics.median(wait) * 1e6,
            "after_last_us": statistics.median(after) * 1e6}


def interleaved(comm, contenders, blocks, repeats):
    """Each contender's time, measured in alternating blocks in the same processes.

    The machine's speed drifts by tens of percent within a minute; blocks of
    a few dozen calls each, alternating, expose every contender to the same
    drift. Each block's time is the slowest rank's median; a contender's
    figure is its fastest block (slowdowns only ever add time), and the
    median block is kept too.
    """
    found = {name: [] for name in contenders}
    for block in range(blocks):
        names = list(contenders)
        if block % 2:
            names.reverse()
        for name in names:
            found[name].append(timed_exchanges(comm, contenders[name], 1, repeats))
    return {name: (min(times), statistics.median(times)) for name, times in found.items()}


# -- the floor -----------------------------------------------------------------


def floor_step(comm, args, stamps=None):
    """The hand-written data-parallel step (``step(report_loss=False)``) on this rank's share.

    With ``stamps`` (a list), each step appends its (arrived, done) clock
    readings around the exchange (see ``arrivals``).
    """
    from mpi4py import MPI

    from corgi.distributed import DEFAULT_BUCKET_BYTES
    from corgi.distributed.buckets import plan

    x, t, params = shard(args, comm.rank, comm.size)
    total = args.batch
    shapes = [p.shape for p in params]
    layout = plan(shapes, [p.dtype for p in params], DEFAULT_BUCKET_BYTES)
    assert layout == [[3, 2, 1], [0]], layout  # the buffers below are corgi's buckets for this MLP
    small = np.empty(sum(params[i].size for i in layout[0]), dtype=x.dtype)
    big = np.empty(shapes[0], dtype=x.dtype)
    b2, w2, b1 = (small[0:10], small[10:2570].reshape(256, 10), small[2570:2826])
    state = {"params": params}

    def step(report_loss=False):
        w1, b1_, w2_, b2_ = state["params"]
        z1 = x @ w1 + b1_
        h = np.maximum(z1, 0)
        z2 = h @ w2_ + b2_
        z2 = z2 - z2.max(axis=1, keepdims=True)
        e = np.exp(z2)
        s = e.sum(axis=1, keepdims=True)
        # the gradient of the global mean loss: this rank's sum over its rows, over the global batch
        dz2 = (e / s - t) / total
        np.sum(dz2, axis=0, out=b2)
        np.matmul(h.T, dz2, out=w2)
        dh = dz2 @ w2_.T
        dz1 = dh * (z1 > 0)
        np.sum(dz1, axis=0, out=b1)
        np.matmul(x.T, dz1, out=big)
        # (mpi4py does not keep the buffers of a non-blocking operation alive: name them)
        summed_small, summed_big = np.empty_like(small), np.empty_like(big)
        requests = [comm.Iallreduce(small, summed_small), comm.Iallreduce(big, summed_big)]
        arrived = time.perf_counter()
        MPI.Request.Waitall(requests)
        if stamps is not None:
            stamps.append((arrived, time.perf_counter()))
        grads = (summed_big, summed_small[2570:2826], summed_small[10:2570].reshape(256, 10), summed_small[0:10])
        state["params"] = [p - common.MLP_LR * g for p, g in zip(state["params"], grads)]
        if report_loss:
            local = -(t * (z2 - np.log(s))).sum()
            return comm.allreduce(float(local)) / total
        return None

    return step


def numpy_peer(comm, args):
    step = floor_step(comm, args)
    first = step(report_loss=True)
    times = common.timed(step, args.warmup, args.repeats)
    return {"ms_per_step": statistics.median(times) * 1e3, "first_loss": first, "last_loss": step(True)}


# -- corgi -----------------------------------------------------------------------


def corgi_peer(comm, args):
    from mpi4py import MPI

    import corgi.engine
    from corgi import Array
    from corgi.distributed import DataParallel

    corgi.engine.configure(workers=args.workers)
    x, t, params = shard(args, comm.rank, comm.size)
    dtype = np.dtype(args.dtype).type
    model = _corgi_model(params, dtype)
    parallel = DataParallel(model, comm)
    xa, ta = Array(x, dtype=dtype), Array(t, dtype=dtype)

    def step():
        return parallel.step(xa, ta)

    first = step()
    times = common.timed(step, args.warmup, args.repeats)
    last = step()

    # The exchange alone, on the gradients of one real backward pass, against the raw
    # Iallreduce of the same buckets (the same send buffers, preallocated receive buffers).
    parallel._overlap = False
    parallel.forward(xa)
    parallel.backward(ta)
    parallel.synchronize()

    def exchange():
        parallel._report()     # every gradient is final: fill and start the buckets, the status in the last
        parallel.synchronize()  # wait for them; the averages become the gradients

    # what corgi sends: a lone parameter's gradient as it is, any other bucket's buffer (the last
    # one's with the step's status after its gradients: 14 values here)
    gradients = [parameter.gradient().numpy() for parameter in model.parameters()]
    sends = [np.array(gradients[bucket.slots[0].position]).reshape(-1) if bucket.alone else bucket.send
             for bucket in parallel._reducer.buckets]
    receives = [np.empty_like(send) for send in sends]

    def raw():
        MPI.Request.Waitall([comm.Iallreduce(send, receive) for send, receive in zip(sends, receives)])

    def counts():  # the step's first exchange alone (in a step it is waited for after the forward pass)
        parallel._start_count(len(x), "benchmark")
        parallel._finish_count("benchmark")

    blocks = max(2, args.exchanges // 30)
    timed = interleaved(comm, {"exchange": exchange, "raw": raw, "counts": counts}, blocks, 30)
    # the same two, back to back without barriers (the ranks pace each other, as in training)
    loop = looped(comm, {"exchange": exchange, "raw": raw}, blocks, 30)
    for parameter in model.parameters():
        parameter.clear_gradient()

    # Steps alternating in the same processes: corgi as it runs (each bucket sent from the backward
    # pass's ready hook), corgi reporting every gradient after the pass, the same model's step with
    # no exchange at all (what the exchange adds to a step), and the floor's.
    def after_backward():
        parallel._overlap = False
        try:
            step()
        finally:
            parallel._overlap = True

    def local():
        model.forward(xa)
        model.backward(ta)
        model.update()

    floor = floor_step(comm, args)
    parallel._overlap = True
    contenders = {"corgi": step, "after": after_backward, "local": local, "floor": floor}
    steps = interleaved(comm, contenders, max(2, args.repeats // 25), 25)

    # Inside the step: how long each rank waits for the sums, and how much of that is the other
    # rank's compute (skew), for corgi's step as it runs and for the floor's, alternating.
    corgi_stamps, floor_stamps = [], []

    def stamped():
        parallel.forward(xa)
        parallel.backward(ta)  # ends when this rank's last bucket has started
        arrived = time.perf_counter()
        parallel.synchronize()
        corgi_stamps.append((arrived, time.perf_counter()))
        parallel.update()

    stamped_floor = floor_step(comm, args, floor_stamps)
    interleaved(comm, {"corgi": stamped, "floor": stamped_floor}, max(2, args.repeats // 25), 25)
    inside = {"corgi": arrivals(comm, corgi_stamps), "floor": arrivals(comm, floor_stamps)}
    return {"ms_per_step": statistics.median(times) * 1e3, "first_loss": first, "last_loss": last,
            "exchange_us": timed["exchange"][0] * 1e6, "raw_us": timed["raw"][0] * 1e6,
            "exchange_median_block_us": timed["exchange"][1] * 1e6, "raw_median_block_us": timed["raw"][1] * 1e6,
            "counts_us": timed["counts"][0] * 1e6,
            "exchange_loop_us": loop["exchange"][0] * 1e6, "raw_loop_us": loop["raw"][0] * 1e6,
            "exchange_loop_median_block_us": loop["exchange"][1] * 1e6,
            "raw_loop_median_block_us": loop["raw"][1] * 1e6,
            "exchange_loop_median_call_us": loop["exchange"][2] * 1e6, "raw_loop_median_call_us": loop["raw"][2] * 1e6,
            "in_step": inside,
            "interleaved_ms": steps["corgi"][0] * 1e3, "interleaved_floor_ms": steps["floor"][0] * 1e3,
            "interleaved_after_ms": steps["after"][0] * 1e3, "interleaved_local_ms": steps["local"][0] * 1e3,
            "interleaved_median_ms": {name: median * 1e3 for name, (_, median) in steps.items()},
            "buckets": [[slot.position for slot in b.slots] for b in parallel._reducer.buckets]}


def _corgi_model(params, dtype):
    """The 784-256-10 MLP as a corgi Model, starting from the shared parameters."""
    from corgi import Array, activation, cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    he = initializer.make_he(rng=0)
    model = Model([Dense(784, 256, he, activation.make_relu()), Dense(256, 10, he)],
                  GradientDescent(common.MLP_LR), cost.make_softmax_cross_entropy())
    model.set_parameters([Array(p, dtype=dtype).tracked() for p in params])
    return model


# -- the overlap on a deeper network -------------------------------------------------


DEEP = (784, 1024, 1024, 1024, 10)


def deep_peer(comm, args):
    import corgi.engine
    from corgi import Array, activation, cost, initializer
    from corgi.distributed import DataParallel
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    corgi.engine.configure(workers=args.workers)
    dtype = np.dtype(args.dtype).type
    he = initializer.make_he(rng=0)
    layers = [Dense(inputs, outputs, he, activation.make_relu(), dtype=args.dtype)
              for inputs, outputs in itertools.pairwise(DEEP[:-1])]
    model = Model([*layers, Dense(DEEP[-2], DEEP[-1], he, dtype=args.dtype)], GradientDescent(common.MLP_LR),
                  cost.make_softmax_cross_entropy())
    parallel = DataParallel(model, comm)
    x, _, onehot, _ = common.mlp_data(np.dtype(args.dtype), args.batch)
    part = np.array_split(np.arange(args.batch), comm.size)[comm.rank]
    xa, ta = Array(x[part], dtype=dtype), Array(onehot[part], dtype=dtype)

    def during():
        parallel._overlap = True
        parallel.step(xa, ta)

    def after():
        parallel._overlap = False
        parallel.step(xa, ta)

    def local():
        model.forward(xa)
        model.backward(ta)
        model.update()

    for _ in range(args.warmup):
        during()
        after()
    repeats = max(4, args.repeats // 10)
    steps = interleaved(comm, {"during": during, "after": after, "local": local}, max(4, repeats // 5), 5)
    return {"during_ms": steps["during"][0] * 1e3, "after_ms": steps["after"][0] * 1e3,
            "local_ms": steps["local"][0] * 1e3,
            "median_block_ms": {name: median * 1e3 for name, (_, median) in steps.items()},
            "buckets": [[slot.position for slot in b.slots] for b in parallel._reducer.buckets]}


# -- the raw allreduce -------------------------------------------------------------


def allreduce_peer(comm, args):
    from mpi4py import MPI

    from corgi.distributed import DEFAULT_BUCKET_BYTES
    from corgi.distributed.buckets import plan

    _, _, params = shard(args, comm.rank, comm.size)
    layout = plan([p.shape for p in params], [p.dtype for p in params], DEFAULT_BUCKET_BYTES)
    sends = [np.concatenate([params[i].reshape(-1) for i in bucket]) for bucket in layout]
    receives = [np.empty_like(send) for send in sends]

    def buckets():
        MPI.Request.Waitall([comm.Iallreduce(s, r) for s, r in zip(sends, receives)])

    flat = np.concatenate(sends)
    flat_out = np.empty_like(flat)

    def one_flat():
        comm.Allreduce(flat, flat_out)

    return {"allreduce_us": timed_exchanges(comm, buckets, args.warmup, args.exchanges) * 1e6,
            "flat_allreduce_us": timed_exchanges(comm, one_flat, args.warmup, args.exchanges) * 1e6,
            "values": int(flat.size), "buckets": layout}


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    record = {"peer": args.peer, "workload": "dataparallel", "params": vars(args).copy()}
    record["threads"] = common.limit_threads(args.threads)
    try:
        from mpi4py import MPI
    except ImportError as error:
        record.update(status="missing", error=f"{type(error).__name__}: {error}")
        print(json.dumps(record), flush=True)
        return
    comm = MPI.COMM_WORLD
    record["ranks"] = comm.size
    try:
        peer = {"numpy": numpy_peer, "corgi": corgi_peer, "allreduce": allreduce_peer, "deep": deep_peer}[args.peer]
        gc.collect()
        record["results"] = peer(comm, args)
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - a failing peer becomes a row saying so
        record.update(status="error", error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=4))
    if comm.rank == 0:
        print(json.dumps(record), flush=True)
    if record["status"] != "ok" and comm.size > 1:
        # the other ranks may be waiting in a collective operation: end them (rank 0's line is out)
        sys.stderr.write(record["traceback"])
        sys.stderr.flush()
        time.sleep(0.1)
        comm.Abort(1)
    sys.stdout.flush()
    comm.Barrier()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Shared plumbing for the peer child processes.

Every peer module calls :func:`main`, which parses the command line, pins the
BLAS thread count, imports the peer library, runs one workload and prints ONE
JSON line on stdout. The driver (benchmarks/run.py) only reads that line, so
anything else a library prints (warnings, banners) goes to stderr or is ignored.

The inputs of every workload come from the generators here with fixed seeds,
so all peers compute on the same numbers.
"""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
import traceback

import numpy as np

WORKLOADS = ("mlp", "chain", "wide", "long", "train")

# The chain used by workloads (b) and (d), the same for every peer: n ops,
# alternating x = x * w and x = x + b on 1-element float64 arrays, where w
# and b are tracked leaves. With w < 1 the iteration converges to
# b / (1 - w) = 1, so values stay finite for any length.
CHAIN_X0, CHAIN_W, CHAIN_B = 0.5, 0.9999, 0.0001


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=1, help="BLAS / intra-op threads")
    p.add_argument("--workers", type=int, default=None, help="corgi engine workers")
    p.add_argument("--pool", type=int, default=0, help="numpy floor: thread pool over branches")
    p.add_argument("--n", type=int, default=10_000, help="chain length (ops)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rows", type=int, default=512, help="wide: rows of X")
    p.add_argument("--cols", type=int, default=1024, help="wide: columns of X = size of W_k")
    p.add_argument("--branches", type=int, default=8)
    p.add_argument("--net", default="mlp", choices=("mlp", "cnn"), help="train: the network")
    p.add_argument("--epochs", type=int, default=None, help="train: epochs (default: the workload's)")
    p.add_argument("--steps", type=int, default=None, help="train: steps per epoch (default: all)")
    p.add_argument("--loss", default="fused", choices=("fused", "seed"),
                   help="train, corgi: the fused softmax cross-entropy on logits, or the seed's softmax layer "
                        "and cross-entropy")
    p.add_argument("--job", action="store_true",
                   help="train, corgi: time the main job itself (python -m corgi.train, defaults and --net)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def limit_threads(n):
    """Pin BLAS/OpenMP pools to n threads.

    The driver already set OPENBLAS/OMP/MKL_NUM_THREADS before this process
    started (the only way that works without threadpoolctl); threadpoolctl,
    when installed, enforces it again and tells us what was actually loaded.
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return {"method": "env", "pools": None}
    limiter = threadpool_limits(limits=n)
    # Keep the limiter alive for the process lifetime (it restores on GC/exit).
    limit_threads.keep = limiter
    pools = [f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info()]
    return {"method": "threadpoolctl+env", "pools": pools}


def timed(fn, warmup, repeats):
    """Run fn warmup times untimed, then repeats times; return seconds per call.

    Steady state, as a training loop runs: one full collection before the
    timed calls and none between them (a collection before every call would
    evict the weights from the caches and time a cold step, which no
    training loop sees); the collector stays enabled while timing.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs):
    return statistics.median(xs)


def timed_phases(build, backward, warmup, repeats):
    """Time a forward (build) and a backward phase separately.

    build() returns the state backward(state) needs; each repeat builds a
    fresh graph so no peer can reuse anything between repeats.
    """
    fw, bw = [], []
    for i in range(warmup + repeats):
        gc.collect()
        t0 = time.perf_counter()
        state = build()
        t1 = time.perf_counter()
        backward(state)
        t2 = time.perf_counter()
        del state
        if i >= warmup:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
    return fw, bw


# ---- inputs -----------------------------------------------------------------

def mlp_data(dtype, batch, seed=0):
    """Inputs and He-initialised parameters of the 784-256-10 MLP."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 784)).astype(dtype)
    labels = rng.integers(0, 10, size=batch)
    onehot = np.zeros((batch, 10), dtype=dtype)
    onehot[np.arange(batch), labels] = 1
    w1 = (rng.standard_normal((784, 256)) * np.sqrt(2 / 784)).astype(dtype)
    b1 = np.zeros(256, dtype=dtype)
    w2 = (rng.standard_normal((256, 10)) * np.sqrt(2 / 256)).astype(dtype)
    b2 = np.zeros(10, dtype=dtype)
    return x, labels, onehot, [w1, b1, w2, b2]


MLP_LR = 0.01


def wide_data(rows, cols, branches, seed=0):
    """X (rows x cols) and `branches` weight matrices (cols x cols), float32.

    Scaled so that tanh is not saturated (a saturated tanh would make the
    backward cheaper for no reason on some peers)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    ws = [(rng.standard_normal((cols, cols)) / np.sqrt(cols)).astype(np.float32)
          for _ in range(branches)]
    return x, ws


# ---- memory -----------------------------------------------------------------

def _maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class PeakMemory:
    """Peak resident memory added by a block, via ru_maxrss.

    ru_maxrss is a process-lifetime high-water mark, so importing torch alone
    may have set it above anything the block does. On Linux we reset the mark
    first (writing 5 to /proc/self/clear_refs), which makes the delta the
    block's own peak. It covers every allocator (numpy, torch's C++ graph,
    Python objects), unlike tracemalloc, which misses torch's native memory.
    """

    def __enter__(self):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "ru_maxrss delta (peak reset via /proc/self/clear_refs)"
        except OSError:
            self.method = "ru_maxrss delta (no reset: may under-count)"
        self.before = _maxrss_bytes()
        return self

    def __exit__(self, *exc):
        self.peak_delta = _maxrss_bytes() - self.before
        return False


# ---- workloads shared by every peer -------------------------------------------

def chain_workload(build, backward, args):
    """(b): per-op cost of recording and of backpropagating the chain.

    build(n) runs the forward and returns the state backward(state) needs;
    backward returns (x, grad_w, grad_b) as floats so the driver can check
    that every peer computed the same thing.
    """
    n = args.n
    check = {}

    def bw(state):
        check["out"] = backward(state)

    fw, bk = timed_phases(lambda: build(n), bw, args.warmup, args.repeats)
    f, b = median(fw) / n * 1e6, median(bk) / n * 1e6
    return {"n": n, "fwd_us_per_op": f, "bwd_us_per_op": b, "total_us_per_op": f + b,
            "check": check["out"]}


def long_workload(build, backward, args):
    """(d): one long chain; times plus the peak memory of the first full run.

    The first full-size run is the one measured for memory; the graph is alive from the end of the forward pass
    until the backward pass releases it, so the peak is about one graph.
    """
    n = args.n
    # A short warm-up first: lazy one-time initialisation (torch starts its
    # autograd threads on the first backward) is neither per-node time nor
    # per-node memory.
    backward(build(min(n, 1000)))
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        state = build(n)
        t1 = time.perf_counter()
        out = backward(state)
        t2 = time.perf_counter()
        del state
    fw, bk = [t1 - t0], [t2 - t1]
    if args.repeats > 1:
        more_f, more_b = timed_phases(lambda: build(n), backward, 0, args.repeats - 1)
        fw += more_f
        bk += more_b
    return {"n": n, "fwd_s": median(fw), "bwd_s": median(bk),
            "peak_bytes": mem.peak_delta, "bytes_per_node": mem.peak_delta / n,
            "mem_method": mem.method, "check": out}


def mlp_workload(make_step, args):
    """(a): ms per training step. make_step(x, labels, onehot, params, lr)
    returns a step() that does forward, loss, backward and the SGD update and
    returns the loss as a float (the first loss must agree across peers)."""
    x, labels, onehot, params = mlp_data(np.dtype(args.dtype), args.batch)
    step = make_step(x, labels, onehot, params, MLP_LR)
    first = step()
    times = timed(step, args.warmup, args.repeats)
    # Same number of steps for every peer, so the last loss checks the
    # gradients and updates too, not just the forward pass.
    return {"ms_per_step": median(times) * 1e3, "first_loss": first, "last_loss": step()}


def wide_workload(build, backward, args):
    """(c): forward and backward ms of the wide graph. build(x, ws) returns
    the state; backward(state) returns the sum of dL/dX as a check value."""
    x, ws = wide_data(args.rows, args.cols, args.branches)
    check = {}

    def bw(state):
        check["out"] = backward(state)

    fw, bk = timed_phases(lambda: build(x, ws), bw, args.warmup, args.repeats)
    return {"fwd_ms": median(fw) * 1e3, "bwd_ms": median(bk) * 1e3,
            "bwd_ms_all": [t * 1e3 for t in bk], "check": check["out"]}


# ---- the child's entry point -------------------------------------------------

def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main(peer, load, workloads, argv=None):
    """Entry point of a peer module.

    load() imports the peer library and returns it; workloads maps a workload
    name to fn(lib, args) -> dict of results. A peer library that is not
    installed is reported as "missing", any other failure as "error" with its
    message, so the driver can always print a row.
    """
    args = parse_args(argv)
    record = {"peer": peer, "workload": args.workload, "params": vars(args).copy()}
    record["threads"] = limit_threads(args.threads)
    try:
        lib = load(args)
    except ModuleNotFoundError as e:
        missing = e.name == peer  # the package itself, not a module it lacks
        record.update(status="missing" if missing else "error", error=f"{type(e).__name__}: {e}")
        emit(record)
        return
    except Exception as e:  # noqa: BLE001 - a half-written library: report, don't crash the driver
        record.update(status="error", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=3))
        emit(record)
        return
    fn = workloads.get(args.workload)
    if fn is None:
        record.update(status="n/a", error=f"{peer} has no {args.workload} workload")
        emit(record)
        return
    try:
        record["results"] = fn(lib, args)
        record["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - a failing workload is reported, the driver goes on
        record.update(status="error", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=4))
    emit(record)
    # Skip interpreter teardown: freeing a million-node graph can take longer
    # than building it and would only slow the driver down.
    sys.stdout.flush()
    os._exit(0)

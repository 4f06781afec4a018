"""Where (e)'s CNN step spends its time, per primitive; and corgi's step against torch's, interleaved.

    OPENBLAS_NUM_THREADS=2 python -m benchmarks.cnn_profile             # per-primitive ms a step
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.cnn_profile --cpu       # ... in CPU time of the calling thread
    OPENBLAS_NUM_THREADS=2 python -m benchmarks.cnn_profile --vs-torch  # corgi / torch steps, in one process

The network, weights, optimizer and batches are (e)'s (``workloads/training.py``,
float64, batch 32, corgi's Model with the fused cost). The profile wraps every
registered primitive's forward and vjps with a clock (the wrappers add a little);
the step times include them. ``--cpu`` clocks the calling thread's CPU time
(``time.thread_time``) instead of the wall: on a loaded machine it repeats
within a few percent where wall times swing by 2x (read it at one BLAS
thread: OpenBLAS's other threads are not counted, its spinning main thread
is). ``--vs-torch`` alternates blocks of corgi's
step with blocks of PyTorch's (``workloads/torch_peer.py``'s network and SGD with
momentum, ``torch.set_num_threads`` at the BLAS thread count), in one process: a
ratio the load disturbs less than two separate runs.
"""
import argparse
import collections
import os
import time

import numpy as np

from benchmarks.workloads import training


def build():
    """(e)'s CNN as corgi_peer builds it, and a function that runs step i."""
    from corgi import Array
    from corgi.activation import make_relu
    from corgi.cost import make_softmax_cross_entropy
    from corgi.layer import Conv, Dense, Flatten, Pool
    from corgi.model import Model
    from corgi.optimizer import Momentum

    dtype = np.float64
    weights = training.initial_weights("cnn", dtype)
    weights = [w.reshape(-1, 1, 1) if w.ndim == 1 and i in (1, 3) else w for i, w in enumerate(weights)]

    def unused(dimensions, fan_in):  # replaced by the shared initial weights
        return Array.zeros(dimensions, dtype=dtype)

    relu = make_relu()
    layers = [Conv((16, 1, 3, 3), (1, 1), unused, relu, dtype=dtype), Pool(),
              Conv((32, 16, 3, 3), (1, 1), unused, relu, dtype=dtype), Pool(), Flatten(),
              Dense(800, 128, unused, relu, dtype=dtype), Dense(128, 10, unused, None, dtype=dtype)]
    settings = training.SETTINGS["cnn"]
    model = Model(layers, Momentum(settings["lr"], momentum=settings["momentum"]), make_softmax_cross_entropy())
    model.set_parameters([Array(w, dtype=dtype).tracked() for w in weights])
    images, labels, _, _ = training.mnist("cnn", dtype)
    eye = np.eye(10, dtype=dtype)
    order = training.orders(1)[0]

    def step(i):
        index = order[(i * training.BATCH) % training.TRAIN:][:training.BATCH]
        model.forward(Array(images[index]))
        model.backward(Array(eye[labels[index]]))
        model.update()

    return step


def wrap_primitives(clock, now=time.perf_counter):
    """Replace every fixed-arity primitive with one whose forward and vjps add their seconds (by ``now``) to ``clock``."""
    from corgi.array import registry

    def timed(function, key):
        def run(*args, **kwargs):
            started = now()
            try:
                return function(*args, **kwargs)
            finally:
                clock[key] += now() - started
        return run

    for name, primitive in list(registry.PRIMITIVES.items()):
        if primitive.variadic:
            continue
        vjps = tuple(timed(vjp, (name, f"backward {i}")) for i, vjp in enumerate(primitive.vjps))
        subsets = tuple(tuple(v for i, v in enumerate(vjps) if mask >> i & 1) for mask in range(1 << len(vjps)))
        registry.PRIMITIVES[name] = registry.Primitive(timed(primitive.forward, (name, "forward")), vjps, subsets)


def profile(steps, now=time.perf_counter):
    clock = collections.defaultdict(float)
    wrap_primitives(clock, now)
    step = build()
    for i in range(10):
        step(i)
    clock.clear()
    walls = []
    for i in range(steps):
        started = now()
        step(i)
        walls.append(now() - started)
    kind = "CPU" if now is time.thread_time else "wall"
    print(f"step median {np.median(walls) * 1e3:.2f} ms {kind} (primitives wrapped); per step:")
    for (name, part), seconds in sorted(clock.items(), key=lambda item: -item[1]):
        if seconds / steps >= 1e-5:
            print(f"  {name:24s} {part:11s} {seconds / steps * 1e3:7.3f} ms")
    print(f"  {'all primitives':36s} {sum(clock.values()) / steps * 1e3:7.3f} ms")


def torch_step(threads):
    """(e)'s CNN step in PyTorch, as torch_peer trains it."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    settings = training.SETTINGS["cnn"]
    params = [torch.from_numpy(w.copy()).requires_grad_() for w in training.initial_weights("cnn", np.float64)]
    optimizer = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"])
    images, labels, _, _ = training.mnist("cnn", np.float64)
    order = training.orders(1)[0]

    def step(i):
        index = order[(i * training.BATCH) % training.TRAIN:][:training.BATCH]
        c1, cb1, c2, cb2, w1, b1, w2, b2 = params
        optimizer.zero_grad(set_to_none=True)
        h = F.max_pool2d(torch.relu(F.conv2d(torch.from_numpy(images[index]), c1, cb1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, c2, cb2)), 2)
        logits = torch.relu(h.flatten(1) @ w1 + b1) @ w2 + b2
        F.cross_entropy(logits, torch.from_numpy(labels[index])).backward()
        optimizer.step()

    return step


def vs_torch(blocks, per_block):
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    steps = {"corgi": build(), "torch": torch_step(threads)}
    walls = {name: [] for name in steps}
    for name, step in steps.items():
        for i in range(10):
            step(i)
    i = 0
    for block in range(blocks):
        for name in (("corgi", "torch") if block % 2 == 0 else ("torch", "corgi")):
            for _ in range(per_block):
                started = time.perf_counter()
                steps[name](i)
                walls[name].append(time.perf_counter() - started)
                i += 1
    for name, seconds in walls.items():
        print(f"{name}: wall median {np.median(seconds) * 1e3:.2f} ms, fastest {min(seconds) * 1e3:.2f}, "
              f"10th percentile {np.percentile(seconds, 10) * 1e3:.2f}")
    print(f"corgi / torch: median {np.median(walls['corgi']) / np.median(walls['torch']):.3f}, "
          f"10th percentile {np.percentile(walls['corgi'], 10) / np.percentile(walls['torch'], 10):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="profiled steps")
    parser.add_argument("--cpu", action="store_true", help="the profile in CPU time of the calling thread")
    parser.add_argument("--vs-torch", action="store_true", help="corgi's step against torch's, interleaved")
    parser.add_argument("--blocks", type=int, default=16, help="--vs-torch: blocks of steps (alternating)")
    parser.add_argument("--per-block", type=int, default=10, help="--vs-torch: steps a block")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"BLAS threads (OPENBLAS_NUM_THREADS): {os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; load {load:.2f}")
    if args.vs_torch:
        vs_torch(args.blocks, args.per_block)
    else:
        profile(args.steps, time.thread_time if args.cpu else time.perf_counter)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

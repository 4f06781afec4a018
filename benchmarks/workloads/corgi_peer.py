"""corgi, through its public API only (SPEC.md sections 2-6).

The engine's worker count comes from --workers (corgi.engine.configure);
without it the engine default (CORGI_WORKERS or the CPU count) applies.
"""
import numpy as np

from benchmarks.workloads import common, training


def load(args):
    import corgi
    import corgi.engine

    if args.workers is not None:
        corgi.engine.configure(workers=args.workers)
    if getattr(args, "share_cores", None) is not None:
        corgi.engine.configure(share_cores=bool(args.share_cores))
    return corgi


def _cross_entropy(corgi):
    """The loss and whether it takes logits: corgi's fused cost on logits
    when the library has it (as the PyTorch peer uses F.cross_entropy on
    logits), else its cost on softmax probabilities, else the same loss
    composed from primitive ops: mean over the batch of -sum(target * ln p)."""
    try:
        import corgi.cost
    except ImportError:
        pass
    costs = getattr(corgi, "cost", None)
    fused = getattr(costs, "make_softmax_cross_entropy", None)
    if fused is not None:
        return "corgi.cost.make_softmax_cross_entropy (logits)", fused(), True
    cost = getattr(costs, "make_cross_entropy", None)
    if cost is not None:
        return "corgi.cost.make_cross_entropy (softmax probabilities)", cost(), False

    def composed(p, target):
        batch = target.dimensions[0]
        return (target * p.ln()).sum(2) * (-1.0 / batch)

    return "composed -(t * p.ln()).sum(2) / batch", composed, False


def make_model_step(corgi, dtype, path):
    """make_step for (a) through a corgi Model, as the seed's example trains one: Dense + ReLU, then
    Dense + softmax with ``make_cross_entropy`` (``path="seed"``) or Dense without activation and
    ``make_softmax_cross_entropy`` (``path="fused"``), ``GradientDescent``, ``forward/backward/update``.
    ``corgi`` is the package to build it from: this one, or another copy (``ab.load_before``)."""
    import importlib

    def sub(name):
        return importlib.import_module(f"{corgi.__name__}.{name}")

    Array = corgi.Array
    make_relu, make_softmax = sub("activation").make_relu, sub("activation").make_softmax
    make_cross_entropy, make_softmax_cross_entropy = sub("cost").make_cross_entropy, sub("cost").make_softmax_cross_entropy
    Dense, Model, GradientDescent = sub("layer").Dense, sub("model").Model, sub("optimizer").GradientDescent

    def unused(dimensions, fan_in):  # replaced by the shared initial weights
        return Array.zeros(dimensions, dtype=dtype)

    seed = path == "seed"

    def make_step(x, labels, t, params, lr):
        layers = [Dense(784, params[0].shape[1], unused, make_relu(), dtype=dtype),
                  Dense(params[2].shape[0], 10, unused, make_softmax() if seed else None, dtype=dtype)]
        model = Model(layers, GradientDescent(lr), make_cross_entropy() if seed else make_softmax_cross_entropy())
        model.set_parameters([Array(p, dtype=dtype).tracked() for p in params])
        xa, ta = Array(x, dtype=dtype), Array(t, dtype=dtype)

        def step():
            model.forward(xa)
            loss = model.backward(ta)
            model.update()
            return loss

        step.model = model
        return step

    return make_step


def make_ops_step(corgi, dtype, cost, on_logits):
    """make_step for (a) from Array operations: one matmul node per layer, the cost, the optimizer."""
    from corgi import Array
    from corgi.optimizer import GradientDescent

    def make_step(x, labels, t, params, lr):
        xa, ta = Array(x, dtype=dtype), Array(t, dtype=dtype)
        ps = [Array(p, dtype=dtype).tracked() for p in params]
        optimizer = GradientDescent(lr)

        def step():
            w1, b1, w2, b2 = ps
            h = Array.matmul((xa, False), (w1, False), b1).relu()
            z = Array.matmul((h, False), (w2, False), b2)
            loss = cost(z if on_logits else z.softmax(), ta)
            loss.backward()
            # Values are immutable: corgi's optimizer makes new parameter arrays.
            ps[:] = optimizer.update(ps)
            return loss[0]

        step.parameters = ps
        return step

    return make_step


def mlp(corgi, args):
    dtype = np.dtype(args.dtype).type
    seen = {}
    if args.path == "ops":
        loss_name, cost, on_logits = _cross_entropy(corgi)
        make = make_ops_step(corgi, dtype, cost, on_logits)
    else:
        loss_name = f"Model, {args.path} cost"
        make = make_model_step(corgi, dtype, args.path)

    def make_step(*a):
        step = seen["step"] = make(*a)
        return step

    out = common.mlp_workload(make_step, args)
    step = seen["step"]
    parameters = step.parameters if hasattr(step, "parameters") else step.model.parameters()
    # the parameters stay in the requested dtype through every update
    out.update(loss=loss_name, param_dtype=str(parameters[0].dtype))
    return out


def chain_fns(corgi):
    from corgi import Array

    def build(n):
        w = Array([common.CHAIN_W]).tracked()
        b = Array([common.CHAIN_B]).tracked()
        x = Array([common.CHAIN_X0])
        for i in range(n):
            x = x * w if i % 2 == 0 else x + b
        return x, w, b

    def backward(state):
        x, w, b = state
        x.backward()
        return [float(x.numpy()[0]), float(w.gradient().numpy()[0]),
                float(b.gradient().numpy()[0])]

    return build, backward


def chain(corgi, args):
    return common.chain_workload(*chain_fns(corgi), args)


def long(corgi, args):
    return common.long_workload(*chain_fns(corgi), args)


def wide(corgi, args):
    return common.wide_workload(*wide_fns(corgi), args)


def wide_fns(corgi):
    """(c)'s build(x, ws) and backward(state) for any copy of corgi (``benchmarks.abwide`` passes two)."""
    Array = corgi.Array

    def build(x, ws):
        # copy=False: the inputs are handed over as torch.from_numpy hands them (the floor uses them
        # as they are); copying 34 MB of inputs made corgi's forward 125 ms against numpy's 105
        xa = Array(x, dtype=np.float32, copy=False).tracked()
        loss = None
        for w in ws:
            wa = Array(w, dtype=np.float32, copy=False).tracked()
            part = Array.matmul((xa, False), (wa, False)).tanh().sum(2)
            loss = part if loss is None else loss + part
        return xa, loss

    def backward(state):
        xa, loss = state
        loss.backward()
        return float(xa.gradient().numpy().sum(dtype=np.float64))

    return build, backward


def train(corgi, args):
    """(e): corgi's Model and layers, as corgi.train builds them, with the shared initial weights.

    ``--loss fused`` ends in a linear layer and the fused softmax cross-entropy on its logits (as the
    other peers compute the loss); ``--loss seed`` ends in the seed's softmax layer and cross-entropy
    on probabilities, as ``python -m corgi.train`` does."""
    from corgi import Array
    from corgi.activation import make_relu, make_softmax
    from corgi.cost import make_cross_entropy, make_softmax_cross_entropy
    from corgi.layer import Conv, Dense, Flatten, Pool
    from corgi.model import Model
    from corgi.optimizer import GradientDescent, Momentum

    if args.job:
        return main_job(args)
    net, dtype = args.net, np.dtype(args.dtype).type
    weights = training.initial_weights(net, dtype)
    seed = args.loss == "seed"

    def unused(dimensions, fan_in):  # every parameter is replaced by the shared initial weights
        return Array.zeros(dimensions, dtype=dtype)

    last = make_softmax() if seed else None
    relu = make_relu()
    if net == "mlp":
        layers = [Dense(784, 128, unused, relu, dtype=dtype), Dense(128, 10, unused, last, dtype=dtype)]
        optimizer = GradientDescent(training.SETTINGS[net]["lr"])
    else:
        layers = [Conv((16, 1, 3, 3), (1, 1), unused, relu, dtype=dtype), Pool(),
                  Conv((32, 16, 3, 3), (1, 1), unused, relu, dtype=dtype), Pool(), Flatten(),
                  Dense(800, 128, unused, relu, dtype=dtype), Dense(128, 10, unused, last, dtype=dtype)]
        optimizer = Momentum(training.SETTINGS[net]["lr"], momentum=training.SETTINGS[net]["momentum"])
        weights = [w.reshape(-1, 1, 1) if w.ndim == 1 and i in (1, 3) else w for i, w in enumerate(weights)]
    model = Model(layers, optimizer, make_cross_entropy() if seed else make_softmax_cross_entropy())
    model.set_parameters([Array(w, dtype=dtype).tracked() for w in weights])

    def step(x, labels, t, lr):
        optimizer.learning_rate = lr
        model.forward(Array(x, dtype=dtype))
        loss = model.backward(Array(t, dtype=dtype))
        model.update()
        return loss

    def accuracy(x, labels):
        return model.accuracy(Array(x, dtype=dtype), labels)

    out = training.run(net, args, step, accuracy)
    out["loss"] = args.loss
    return out


def main_job(args):
    """The main job as a user runs it, in this process: ``corgi.train.main`` with its defaults (and --net).

    The seconds are main()'s (loading the data, building the model, training, evaluating); starting
    the interpreter and importing corgi come on top (about half a second here)."""
    import contextlib
    import io
    import time

    from corgi.train import main

    argv = ["--model", args.net, "--blas-threads", str(args.threads)]
    if args.dtype != "float64":
        argv += ["--dtype", args.dtype]
    if args.epochs:
        argv += ["--epochs", str(args.epochs)]
    if args.steps:
        argv += ["--max-steps", str(args.steps)]
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    seconds = time.perf_counter() - started
    last = out.getvalue().strip().splitlines()[-1]
    if status != 0 or not last.startswith("held-out accuracy: "):
        raise RuntimeError(f"corgi.train {' '.join(argv)} ended with status {status}: {last}")
    return {"net": args.net, "job": True, "argv": argv, "total_s": seconds,
            "final_accuracy": float(last.split(": ")[1]), "epochs": len(out.getvalue().strip().splitlines()) - 1}


if __name__ == "__main__":
    common.main("corgi", load, {"mlp": mlp, "chain": chain, "wide": wide, "long": long, "train": train})

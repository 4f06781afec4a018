"""The floor: hand-written numpy forward and backward, no autodiff machinery.

Whatever an autodiff library adds on top of these numbers is its overhead.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.workloads import common, training


def load(args):
    return np


def loss_and_gradients(params, x, t):
    """The MLP's mean softmax cross-entropy and its four gradients, by hand: every floor step runs this."""
    w1, b1, w2, b2 = params
    batch = x.shape[0]
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0)
    z2 = h @ w2 + b2
    z2 = z2 - z2.max(axis=1, keepdims=True)  # stable softmax
    e = np.exp(z2)
    s = e.sum(axis=1, keepdims=True)
    loss = -(t * (z2 - np.log(s))).sum() / batch
    dz2 = (e / s - t) / batch  # d(mean cross-entropy)/d(logits)
    dh = dz2 @ w2.T
    dz1 = dh * (z1 > 0)
    return loss, (x.T @ dz1, dz1.sum(axis=0), h.T @ dz2, dz2.sum(axis=0))


def make_mlp_step(x, labels, t, params, lr):
    state = {"params": params}

    def step():
        loss, grads = loss_and_gradients(state["params"], x, t)
        # New arrays rather than in-place updates, as corgi's values are immutable.
        state["params"] = [p - lr * g for p, g in zip(state["params"], grads)]
        return float(loss)

    return step


def make_mlp_step_inplace(x, labels, t, params, lr):
    """The same step updating the parameters in place, as a hand-written numpy loop would: the real floor.

    The loss and gradients are ``make_mlp_step``'s (so the results agree bit for bit); only the
    update differs: ``p -= lr * g`` writes into the parameter's own buffer."""
    params = [p.copy() for p in params]  # ours to write
    lr = params[0].dtype.type(lr)

    def step():
        loss, grads = loss_and_gradients(params, x, t)
        for p, g in zip(params, grads):
            g *= lr
            p -= g
        return float(loss)

    return step


def mlp(np_, args):
    return common.mlp_workload(make_mlp_step_inplace if args.inplace else make_mlp_step, args)


def build_chain(n):
    """Forward with a closure tape: each op appends its backward closure,
    which maps the output's gradient to the input's and adds into the leaves'."""
    w = np.array([common.CHAIN_W])
    b = np.array([common.CHAIN_B])
    x = np.array([common.CHAIN_X0])
    gw, gb = np.zeros(1), np.zeros(1)
    tape = []
    for i in range(n):
        if i % 2 == 0:
            xin, x = x, x * w

            def back(g, xin=xin):
                np.add(gw, g * xin, out=gw)  # in place: leaves accumulate
                return g * w
        else:
            x = x + b

            def back(g):
                np.add(gb, g, out=gb)
                return g
        tape.append(back)
    return x, tape, gw, gb


def backward_chain(state):
    x, tape, gw, gb = state
    g = np.ones(1)
    for back in reversed(tape):
        g = back(g)
    return [float(x[0]), float(gw[0]), float(gb[0])]


def chain(np_, args):
    return common.chain_workload(build_chain, backward_chain, args)


def long(np_, args):
    return common.long_workload(build_chain, backward_chain, args)


def wide(np_, args):
    # The pool is made once, outside the timing, as an engine's pool would be.
    pool = ThreadPoolExecutor(args.pool) if args.pool > 0 else None
    return common.wide_workload(*wide_fns(pool), args)


def wide_fns(pool=None):
    """(c)'s build(x, ws) and backward(state) by hand, the branches' backward on ``pool`` if given."""

    def build(x, ws):
        ys = [np.tanh(x @ w) for w in ws]
        loss = sum(float(y.sum(dtype=np.float64)) for y in ys)
        return x, ws, ys, loss

    def backward(state):
        x, ws, ys, _ = state

        def branch(k):  # d sum(tanh(X W)) : dZ = 1 - Y^2; dW = X^T dZ; dX = dZ W^T
            dz = 1 - ys[k] * ys[k]
            return x.T @ dz, dz @ ws[k].T

        parts = list(pool.map(branch, range(len(ws))) if pool else map(branch, range(len(ws))))
        dx = parts[0][1]
        for _, dxk in parts[1:]:
            dx = dx + dxk
        return float(dx.sum(dtype=np.float64))

    return build, backward


def train(np_, args):
    """(e): the MLP by hand (the floor trains no CNN: a hand-written convolution is not a floor)."""
    if args.net != "mlp":
        raise ValueError("the numpy floor trains the mlp only")
    dtype = np.dtype(args.dtype).type
    state = {"params": training.initial_weights("mlp", dtype)}

    def step(x, labels, t, lr):
        loss, grads = loss_and_gradients(state["params"], x, t)
        state["params"] = [p - dtype(lr) * g for p, g in zip(state["params"], grads)]
        return float(loss)

    def accuracy(x, labels):
        w1, b1, w2, b2 = state["params"]
        return np.mean((np.maximum(x @ w1 + b1, 0) @ w2 + b2).argmax(axis=1) == labels)

    return training.run("mlp", args, step, accuracy)


if __name__ == "__main__":
    common.main("numpy", load, {"mlp": mlp, "chain": chain, "wide": wide, "long": long, "train": train})

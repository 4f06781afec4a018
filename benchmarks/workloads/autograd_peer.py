"""HIPS autograd: numpy code traced by wrapping values in boxes.

make_vjp separates the traced forward pass (returns the vjp and the value)
from the backward pass (calling the vjp), so the two can be timed apart.
"""
import numpy

from benchmarks.workloads import common


def load(args):
    import autograd

    return autograd


def mlp(autograd, args):
    import autograd.numpy as anp

    def make_step(x, labels, t, params, lr):
        batch = x.shape[0]

        def loss_fn(params):
            w1, b1, w2, b2 = params
            h = anp.maximum(x @ w1 + b1, 0)
            z = h @ w2 + b2
            z = z - anp.max(z, axis=1, keepdims=True)  # stable log-softmax
            logp = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
            return -anp.sum(t * logp) / batch

        value_and_grad = autograd.value_and_grad(loss_fn)
        state = {"params": params}

        def step():
            loss, grads = value_and_grad(state["params"])
            state["params"] = [p - lr * g for p, g in zip(state["params"], grads)]
            return float(loss)

        return step

    return common.mlp_workload(make_step, args)


def chain_fns(autograd):
    def f(w, b):
        x = numpy.array([common.CHAIN_X0])
        for i in range(f.n):
            x = x * w if i % 2 == 0 else x + b
        return x

    vjp_maker = autograd.make_vjp(f, argnum=(0, 1))

    def build(n):
        f.n = n
        w = numpy.array([common.CHAIN_W])
        b = numpy.array([common.CHAIN_B])
        return vjp_maker(w, b)  # (vjp, value)

    def backward(state):
        vjp, x = state
        gw, gb = vjp(numpy.ones(1))
        return [float(x[0]), float(gw[0]), float(gb[0])]

    return build, backward


def chain(autograd, args):
    return common.chain_workload(*chain_fns(autograd), args)


def long(autograd, args):
    return common.long_workload(*chain_fns(autograd), args)


def wide(autograd, args):
    import autograd.numpy as anp

    def f(x, ws):
        loss = anp.sum(anp.tanh(x @ ws[0]))
        for w in ws[1:]:
            loss = loss + anp.sum(anp.tanh(x @ w))
        return loss

    vjp_maker = autograd.make_vjp(f, argnum=(0, 1))

    def build(x, ws):
        return vjp_maker(x, list(ws))

    def backward(state):
        vjp, loss = state
        gx, _ = vjp(numpy.ones_like(loss))
        return float(gx.sum(dtype=numpy.float64))

    return common.wide_workload(build, backward, args)


if __name__ == "__main__":
    common.main("autograd", load, {"mlp": mlp, "chain": chain, "wide": wide, "long": long})

"""PyTorch CPU eager, written the way a PyTorch user would write it."""
import numpy as np

from benchmarks.workloads import common, training


def load(args):
    import torch

    # Intra-op threads follow the BLAS setting; torch's backward on CPU runs
    # on one engine thread regardless, so the wide graph is serial in torch.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    return torch


def make_mlp_step(x, labels, t, params, lr):
    """(a)'s step as a PyTorch user writes it: F.cross_entropy on logits, SGD in place under no_grad."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(x)
    labels = torch.from_numpy(labels)
    ps = [torch.from_numpy(p.copy()).requires_grad_() for p in params]

    def step():
        w1, b1, w2, b2 = ps
        h = torch.relu(x @ w1 + b1)
        loss = F.cross_entropy(h @ w2 + b2, labels)  # mean over the batch
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p -= lr * p.grad  # in place: the idiomatic torch update
                p.grad = None
        return loss.item()

    return step


def mlp(torch, args):
    return common.mlp_workload(make_mlp_step, args)


def chain_fns(torch):
    def build(n):
        w = torch.tensor([common.CHAIN_W], dtype=torch.float64, requires_grad=True)
        b = torch.tensor([common.CHAIN_B], dtype=torch.float64, requires_grad=True)
        x = torch.tensor([common.CHAIN_X0], dtype=torch.float64)
        for i in range(n):
            x = x * w if i % 2 == 0 else x + b
        return x, w, b

    def backward(state):
        x, w, b = state
        x.backward(torch.ones_like(x))
        return [x.item(), w.grad.item(), b.grad.item()]

    return build, backward


def chain(torch, args):
    return common.chain_workload(*chain_fns(torch), args)


def long(torch, args):
    return common.long_workload(*chain_fns(torch), args)


def wide(torch, args):
    def build(x, ws):
        x = torch.from_numpy(x).requires_grad_()
        ws = [torch.from_numpy(w).requires_grad_() for w in ws]
        loss = torch.tanh(x @ ws[0]).sum()
        for w in ws[1:]:
            loss = loss + torch.tanh(x @ w).sum()
        return x, loss

    def backward(state):
        x, loss = state
        loss.backward()
        return float(x.grad.double().sum())

    return common.wide_workload(build, backward, args)


def train(torch, args):
    """(e): the network as a PyTorch user writes it: functional layers, SGD, F.cross_entropy on logits."""
    import torch.nn.functional as F

    net = args.net
    dtype = np.dtype(args.dtype).type
    params = [torch.from_numpy(w.copy()).requires_grad_() for w in training.initial_weights(net, dtype)]
    optimizer = torch.optim.SGD(params, lr=training.SETTINGS[net]["lr"],
                                momentum=training.SETTINGS[net]["momentum"])

    def forward(x):
        if net == "mlp":
            w1, b1, w2, b2 = params
            return torch.relu(x @ w1 + b1) @ w2 + b2
        c1, cb1, c2, cb2, w1, b1, w2, b2 = params
        h = F.max_pool2d(torch.relu(F.conv2d(x, c1, cb1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, c2, cb2)), 2)
        return torch.relu(h.flatten(1) @ w1 + b1) @ w2 + b2

    def step(x, labels, t, lr):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(torch.from_numpy(x)), torch.from_numpy(labels))
        loss.backward()
        optimizer.step()
        return loss.item()

    def accuracy(x, labels):
        with torch.no_grad():
            return (forward(torch.from_numpy(x)).argmax(dim=1).numpy() == labels).mean()

    return training.run(net, args, step, accuracy)


if __name__ == "__main__":
    common.main("torch", load, {"mlp": mlp, "chain": chain, "wide": wide, "long": long, "train": train})

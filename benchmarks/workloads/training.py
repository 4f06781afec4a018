"""Workload (e): training the MNIST networks to an accuracy, the same way in every peer.

Every peer trains the same network from the same initial weights, on the
same 8,000 bundled MNIST digits in the same batch order, with the same
optimizer and learning-rate schedule, and measures the held-out accuracy on
the same 2,000 digits after every epoch. Only the training steps are timed
(each epoch's evaluation is outside the clock), so "time to an accuracy"
is the training time of the first epoch that reaches it.

The networks (float64 in the driver's run; see README.md for why):
- mlp: 784-128-10, ReLU, the seed's network; plain gradient descent, lr 0.3
  falling along a half cosine over the epochs.
- cnn: conv 16 3x3 + ReLU, max-pool 2, conv 32 3x3 + ReLU, max-pool 2,
  flatten (800), dense 128 + ReLU, dense 10: corgi.train's --model cnn;
  momentum 0.9, lr 0.05 along the cosine.
Both end in softmax cross-entropy averaged over the batch of 32.
"""
import gzip
import math
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "corgi", "data")
TRAIN = 8000
BATCH = 32
SETTINGS = {"mlp": {"lr": 0.3, "momentum": 0.0, "epochs": 15, "target": 0.955},
            "cnn": {"lr": 0.05, "momentum": 0.9, "epochs": 6, "target": 0.975}}


def read_idx(name):
    """One bundled IDX file, read without corgi (every peer reads the same bytes)."""
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist(net, dtype):
    """(train images, train labels, test images, test labels): the first 8,000 train, the rest held out.
    Images are (n, 784) for the mlp and (n, 1, 28, 28) for the cnn, in [0, 1]."""
    images = read_idx("mnist10k-images-idx3-ubyte.gz").astype(dtype) / dtype(255)
    labels = read_idx("mnist10k-labels-idx1-ubyte.gz").astype(np.int64)
    images = images.reshape(len(images), -1) if net == "mlp" else images[:, None, :, :]
    return images[:TRAIN], labels[:TRAIN], images[TRAIN:], labels[TRAIN:]


def initial_weights(net, dtype, seed=0):
    """He-normal weights and zero biases, in corgi's layouts: dense (in, out), conv (count, depth, r, c)."""
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)

    if net == "mlp":
        return [he((784, 128), 784), np.zeros(128, dtype), he((128, 10), 128), np.zeros(10, dtype)]
    return [he((16, 1, 3, 3), 9), np.zeros(16, dtype), he((32, 16, 3, 3), 144), np.zeros(32, dtype),
            he((800, 128), 800), np.zeros(128, dtype), he((128, 10), 128), np.zeros(10, dtype)]


def orders(epochs, seed=1):
    """One shuffled order of the training set per epoch."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(TRAIN) for _ in range(epochs)]


def rate(net, epoch, epochs):
    """The learning rate of an epoch: a half cosine from lr down to 0 over the run."""
    return SETTINGS[net]["lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def run(net, args, step, accuracy):
    """Train with ``step(x, labels, onehot, lr) -> loss`` for the epochs; ``accuracy(x, labels)`` after each.

    Returns the per-epoch cumulative training seconds, held-out accuracies
    and mean losses, and the settings. The check is the first ten steps'
    losses: later ones drift apart between peers in float32, where rounding
    differences grow step by step (in float64 whole runs agree)."""
    dtype = np.dtype(args.dtype).type
    epochs = args.epochs or SETTINGS[net]["epochs"]
    train_x, train_y, test_x, test_y = mnist(net, dtype)
    eye = np.eye(10, dtype=dtype)
    seconds, accuracies, losses, first_steps, clock = [], [], [], [], 0.0
    for epoch, order in enumerate(orders(epochs)):
        lr = rate(net, epoch, epochs)
        batches = [order[i:i + BATCH] for i in range(0, TRAIN, BATCH)]
        if args.steps:
            batches = batches[:args.steps]
        total = 0.0
        started = time.perf_counter()
        for index in batches:
            loss = step(train_x[index], train_y[index], eye[train_y[index]], lr)
            total += loss
            if len(first_steps) < 10:
                first_steps.append(loss)
        clock += time.perf_counter() - started
        seconds.append(clock)
        losses.append(total / len(batches))
        accuracies.append(float(accuracy(test_x, test_y)))
    target = SETTINGS[net]["target"]
    reached = next((s for s, a in zip(seconds, accuracies) if a >= target), None)
    return {"net": net, "epochs": epochs, "seconds": seconds, "accuracies": accuracies, "losses": losses,
            "target": target, "seconds_to_target": reached, "total_s": seconds[-1],
            "final_accuracy": accuracies[-1], "check": first_steps}

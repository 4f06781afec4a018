"""PyTorch as a second gradient oracle, beside central finite differences.

Optional: these tests run only where PyTorch is installed (for example with
``pip install torch==2.13.0`` from the project machine's local CPU wheel);
the suite's own oracle is ``corgi.gradcheck``. Each case computes the same
function in corgi and in torch, in float64, sends the same random delta
back, and compares the values and every input's gradient.
"""

import numpy as np
import pytest

from corgi import Array

torch = pytest.importorskip("torch", reason="PyTorch is an optional oracle: pip install torch==2.13.0")
F = torch.nn.functional

pytestmark = pytest.mark.timeout(120)


def _compare(corgi_fn, torch_fn, shapes, positive=False, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) for s in shapes]
    arrays = [Array(v).tracked() for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    out = corgi_fn(*arrays)
    expected = torch_fn(*tensors)
    assert out.dimensions == tuple(expected.shape) or (out.dimensions == (1,) and expected.dim() == 0)
    np.testing.assert_allclose(out.numpy().reshape(-1), expected.detach().numpy().reshape(-1), rtol=1e-12, atol=1e-12)
    delta = rng.standard_normal(out.dimensions)
    out.backward(delta)
    expected.backward(torch.tensor(delta.reshape(tuple(expected.shape))))
    for position, (array, tensor) in enumerate(zip(arrays, tensors)):
        np.testing.assert_allclose(
            array.gradient().numpy(), tensor.grad.numpy(), rtol=1e-10, atol=1e-12,
            err_msg=f"gradient of input {position}",
        )


ELEMENTWISE = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)], False),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, [(2, 1, 4), (3, 1)], False),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 1)], False),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (4,)], True),
    "neg": (lambda a: -a, lambda a: -a, [(5,)], False),
    "powf": (lambda a: a.powf(2.5), lambda a: a**2.5, [(3, 3)], True),
    "pow": (lambda a, b: a**b, lambda a, b: a**b, [(3, 3), (3, 3)], True),
    "reciprocal": (lambda a: a.reciprocal(), lambda a: 1.0 / a, [(4,)], True),
    "ln": (lambda a: a.ln(), torch.log, [(2, 3)], True),
    "exp": (lambda a: a.exp(), torch.exp, [(2, 3)], False),
    "relu": (lambda a: a.relu(), torch.relu, [(4, 5)], False),
    "sigmoid": (lambda a: a.sigmoid(), torch.sigmoid, [(4, 5)], False),
    "tanh": (lambda a: a.tanh(), torch.tanh, [(4, 5)], False),
    "softmax": (lambda a: a.softmax(), lambda a: torch.softmax(a, -1), [(3, 7)], False),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_matches_torch(name):
    corgi_fn, torch_fn, shapes, positive = ELEMENTWISE[name]
    _compare(corgi_fn, torch_fn, shapes, positive)


@pytest.mark.parametrize("skip_count", [1, 2, 3])
def test_sum_matches_torch(skip_count):
    def torch_sum(a):
        axes = tuple(range(a.dim() - skip_count, a.dim()))
        lead = tuple(a.shape[: a.dim() - skip_count])
        return a.sum(dim=axes).reshape(lead + (1,))

    _compare(lambda a: a.sum(skip_count), torch_sum, [(2, 3, 4)])


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_batched_matmul_with_c_matches_torch(transpose_a, transpose_b):
    a_shape = (2, 4, 3) if transpose_a else (2, 3, 4)
    b_shape = (5, 4) if transpose_b else (4, 5)

    def torch_matmul(a, b, c):
        a = a.transpose(-1, -2) if transpose_a else a
        b = b.transpose(-1, -2) if transpose_b else b
        return a @ b + c

    _compare(
        lambda a, b, c: Array.matmul((a, transpose_a), (b, transpose_b), c),
        torch_matmul,
        [a_shape, b_shape, (5,)],
    )


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (1, 2)])
def test_conv_matches_torch(stride):
    # overlapping windows (stride smaller than the 3x3 filter) must add up in the input gradient
    _compare(lambda x, w: x.conv(w, stride), lambda x, w: F.conv2d(x, w, stride=stride), [(2, 3, 7, 6), (4, 3, 3, 3)])


@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (1, 2))])
def test_max_pool_matches_torch(pool, stride):
    _compare(lambda x: x.max_pool(pool, stride), lambda x: F.max_pool2d(x, pool, stride), [(2, 3, 7, 8)])


def test_a_small_network_matches_torch():
    def corgi_net(x, w1, b1, w2, b2):
        hidden = Array.matmul((x, False), (w1, False), b1).relu()
        return Array.matmul((hidden, False), (w2, False), b2).softmax()

    def torch_net(x, w1, b1, w2, b2):
        return torch.softmax(torch.relu(x @ w1 + b1) @ w2 + b2, -1)

    _compare(corgi_net, torch_net, [(8, 6), (6, 5), (5,), (5, 3), (3,)])

"""PyTorch as a second gradient oracle, beside central finite differences.

Optional: these tests run only where PyTorch is installed (for example with
``pip install torch==2.13.0`` from the project machine's local CPU wheel);
the suite's own oracle is ``corgi.gradcheck``. Each case computes the same
function in corgi and in torch, in float64 (and every operation in float32
too), sends the same random delta back, and compares the values and every
input's gradient. ``test_every_operation_has_a_torch_case`` keeps the
registry and this file in step.
"""

import numpy as np
import pytest

from corgi import Array, concatenate, maximum, minimum, split, stack, where
from corgi.array import COMPOSED, PRIMITIVES

torch = pytest.importorskip("torch", reason="PyTorch is an optional oracle: pip install torch==2.13.0")
F = torch.nn.functional

pytestmark = pytest.mark.timeout(120)


# (value rtol, value atol, gradient rtol, gradient atol) per dtype
TOLERANCES = {np.float64: (1e-12, 1e-12, 1e-10, 1e-12), np.float32: (2e-5, 1e-6, 2e-4, 2e-5)}


def _compare(corgi_fn, torch_fn, shapes, positive=False, seed=0, dtype=np.float64, values=None):
    rng = np.random.default_rng(seed)
    if values is None:
        values = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) for s in shapes]
    values = [np.asarray(v, dtype=dtype) for v in values]
    arrays = [Array(v).tracked() for v in values]
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    out = corgi_fn(*arrays)
    expected = torch_fn(*tensors)
    value_rtol, value_atol, rtol, atol = TOLERANCES[dtype]
    assert out.dtype == dtype
    assert out.dimensions == tuple(expected.shape) or (out.dimensions == (1,) and expected.dim() == 0)
    np.testing.assert_allclose(out.numpy().reshape(-1), expected.detach().numpy().reshape(-1), rtol=value_rtol, atol=value_atol)
    delta = rng.standard_normal(out.dimensions).astype(dtype)
    out.backward(delta)
    expected.backward(torch.tensor(delta.reshape(tuple(expected.shape))))
    for position, (array, tensor) in enumerate(zip(arrays, tensors)):
        if tensor.grad is None:
            assert array.gradient() is None or not array.gradient().numpy().any(), f"gradient of input {position}"
            continue
        assert array.gradient().dtype == dtype
        np.testing.assert_allclose(
            array.gradient().numpy(), tensor.grad.numpy(), rtol=rtol, atol=atol,
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


@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
def test_conv_with_biases_matches_torch(stride):
    # the biases ride in the product as a column of the filters: their gradient is g summed over batch and positions
    _compare(
        lambda x, w, b: x.conv(w, stride, biases=b),
        lambda x, w, b: F.conv2d(x, w, b, stride=stride),
        [(3, 2, 7, 6), (4, 2, 3, 3), (4,)],
    )


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


# ---------------------------------------------------------------- every operation, float64 and float32

_MASK = np.array([[True, False, True, True], [False, True, True, False], [True, True, False, False]])
_T = torch  # (short in the table below)

# name: (corgi function, torch function, input shapes, positive inputs only)
_CE_TARGET = np.random.default_rng(7).uniform(0.0, 1.0, size=(3, 5))

OPERATIONS = {
    "add": (lambda a, b: a + b + 1.0, lambda a, b: a + b + 1.0, [(3, 4), (4,)], False),
    "sub": (lambda a, b: 2.0 - a - b, lambda a, b: 2.0 - a - b, [(2, 1, 4), (3, 1)], False),
    "mul": (lambda a, b: a * b * 3.0, lambda a, b: a * b * 3.0, [(3, 4), (3, 1)], False),
    "div": (lambda a, b: a / b / 2.0, lambda a, b: a / b / 2.0, [(3, 4), (4,)], True),
    "neg": (lambda a: -a, lambda a: -a, [(5,)], False),
    "powf": (lambda a: a.powf(2.5), lambda a: a**2.5, [(3, 3)], True),
    "pow": (lambda a, b: a**b + 1.5**b, lambda a, b: a**b + 1.5**b, [(3, 3), (3,)], True),
    "reciprocal": (lambda a: a.reciprocal(), lambda a: 1.0 / a, [(4,)], True),
    "ln": (lambda a: a.ln(), _T.log, [(2, 3)], True),
    "log": (lambda a: a.log(), _T.log, [(2, 3)], True),
    "exp": (lambda a: a.exp(), _T.exp, [(2, 3)], False),
    "relu": (lambda a: a.relu(), _T.relu, [(4, 5)], False),
    "sigmoid": (lambda a: a.sigmoid(), _T.sigmoid, [(4, 5)], False),
    "tanh": (lambda a: a.tanh(), _T.tanh, [(4, 5)], False),
    "softmax": (lambda a: a.softmax(), lambda a: _T.softmax(a, -1), [(3, 7)], False),
    "log_softmax": (lambda a: a.log_softmax(), lambda a: _T.log_softmax(a, -1), [(3, 7)], False),
    "cross_entropy": (  # probabilities against a constant target (make_cross_entropy's node)
        lambda p: (p.abs() + 0.1).cross_entropy(_CE_TARGET),
        lambda p: -(_T.from_numpy(_CE_TARGET).to(p.dtype) * _T.log(p.abs() + 0.1 + 1e-12)).sum() / 3, [(3, 5)], False,
    ),
    "softmax_cross_entropy": (
        lambda z, t: z.softmax_cross_entropy(t), lambda z, t: -(_T.log_softmax(z, -1) * t).sum() / 3, [(3, 5), (3, 1)], False,
    ),
    "axpy": (lambda a, b: Array.axpy(-0.7, a, b), lambda a, b: -0.7 * a + b, [(3, 4), (4,)], False),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4, 2)], False),
    "conv": (lambda x, w: x.conv(w, (1, 2)), lambda x, w: F.conv2d(x, w, stride=(1, 2)), [(2, 2, 5, 6), (3, 2, 3, 3)], False),
    "max_pool": (lambda x: x.max_pool((2, 2), (1, 1)), lambda x: F.max_pool2d(x, (2, 2), (1, 1)), [(2, 5, 5)], False),
    "sum": (
        lambda a: a.sum(axis=(0, -1), keepdims=True) + a.sum(2).sum(axis=None),
        lambda a: a.sum(dim=(0, 2), keepdim=True) + a.sum(), [(2, 3, 4)], False,
    ),
    "mean": (lambda a: a.mean(axis=1), lambda a: a.mean(dim=1), [(3, 4, 2)], False),
    "var": (lambda a: a.var(axis=0, ddof=1), lambda a: a.var(dim=0, correction=1), [(4, 3)], False),
    "std": (lambda a: a.std(axis=(0, 2)), lambda a: a.std(dim=(0, 2), correction=0), [(3, 2, 4)], False),
    "max": (lambda a: a.max(axis=-1), lambda a: _T.amax(a, dim=-1), [(3, 5)], False),
    "min": (lambda a: a.min(axis=(0, 1), keepdims=True), lambda a: _T.amin(a, dim=(0, 1), keepdim=True), [(3, 2, 2)], False),
    "prod": (lambda a: a.prod(axis=1), lambda a: _T.prod(a, dim=1), [(3, 4)], False),
    "logsumexp": (lambda a: a.logsumexp(axis=(0, 1)), lambda a: _T.logsumexp(a, dim=(0, 1)), [(3, 2, 4)], False),
    "abs": (lambda a: abs(a), _T.abs, [(3, 4)], False),
    "sqrt": (lambda a: a.sqrt(), _T.sqrt, [(3, 4)], True),
    "square": (lambda a: a.square(), _T.square, [(3, 4)], False),
    "sin": (lambda a: a.sin(), _T.sin, [(3, 4)], False),
    "cos": (lambda a: a.cos(), _T.cos, [(3, 4)], False),
    "log1p": (lambda a: a.log1p(), _T.log1p, [(3, 4)], True),
    "expm1": (lambda a: a.expm1(), _T.expm1, [(3, 4)], False),
    "clip": (  # some bounds above 0.5: the upper bound wins there
        lambda a, lo, hi: a.clip(lo, hi) + a.clip(lo, 0.5), lambda a, lo, hi: _T.clamp(a, lo, hi) + _T.clamp(a, min=lo, max=_T.tensor(0.5, dtype=a.dtype)),
        [(3, 4), (4,), (3, 1)], False,
    ),
    "maximum": (lambda a, b: maximum(a, b), _T.maximum, [(3, 4), (4,)], False),
    "minimum": (lambda a, b: minimum(a, b), _T.minimum, [(3, 1), (4,)], False),
    "where": (lambda a, b: where(_MASK, a, b), lambda a, b: _T.where(_T.tensor(_MASK), a, b), [(3, 4), (4,)], False),
    "astype": (  # to the other float type and back
        lambda a: a.astype(np.float32 if a.dtype == np.float64 else np.float64).astype(a.dtype) * 2.0,
        lambda a: a.to(_T.float32 if a.dtype == _T.float64 else _T.float64).to(a.dtype) * 2.0, [(3, 4)], False,
    ),
    "index": (lambda a: a[1:, [0, 2, 0]] + a[_MASK].sum(axis=None), lambda a: a[1:, [0, 2, 0]] + a[_T.tensor(_MASK)].sum(), [(3, 4)], False),
    "reshape": (lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), [(2, 3, 2)], False),
    "transpose": (lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1), [(2, 3, 4)], False),
    "T": (lambda a: a.T, lambda a: a.permute(2, 1, 0), [(2, 3, 4)], False),
    "swapaxes": (lambda a: a.swapaxes(0, -1), lambda a: _T.swapaxes(a, 0, -1), [(2, 3, 4)], False),
    "squeeze": (lambda a: a.squeeze(1), lambda a: a.squeeze(1), [(3, 1, 2)], False),
    "expand_dims": (lambda a: a.expand_dims(0) * a.expand_dims(-1).sum(axis=None), lambda a: a.unsqueeze(0) * a.unsqueeze(-1).sum(), [(3, 2)], False),
    "flatten": (lambda a: a.flatten(), _T.flatten, [(3, 2, 2)], False),
    "broadcast_to": (lambda a: a.broadcast_to((4, 3, 2)), lambda a: _T.broadcast_to(a, (4, 3, 2)), [(3, 1)], False),
    "concatenate": (lambda a, b: concatenate([a, b, a], axis=1), lambda a, b: _T.cat([a, b, a], dim=1), [(3, 2), (3, 4)], False),
    "stack": (lambda a, b: stack([a, b], axis=-1), lambda a, b: _T.stack([a, b], dim=-1), [(3, 2), (3, 2)], False),
    "split": (
        lambda a: split(a, [1, 3], axis=1)[1] * split(a, [1, 3], axis=1)[2].sum(axis=None),
        lambda a: _T.split(a, [1, 2, 1], dim=1)[1] * _T.split(a, [1, 2, 1], dim=1)[2].sum(),
        [(3, 4)], False,
    ),
}


def test_every_operation_has_a_torch_case():
    missing = sorted((set(PRIMITIVES) | set(COMPOSED)) - set(OPERATIONS))
    assert not missing, f"operations without a PyTorch oracle case: {missing}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_matches_torch(name, dtype):
    corgi_fn, torch_fn, shapes, positive = OPERATIONS[name]
    _compare(corgi_fn, torch_fn, shapes, positive, seed=len(name), dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_ties_split_the_gradient_as_torch_does(dtype):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    _compare(lambda a: a.max(axis=1), lambda a: _T.amax(a, dim=1), None, values=[x], dtype=dtype)
    _compare(lambda a: a.min(), lambda a: _T.amin(a), None, values=[x], dtype=dtype)
    _compare(lambda a, b: maximum(a, b), _T.maximum, None, values=[x, np.array([2.0, 3.0, 1.0, 0.0])], dtype=dtype)
    _compare(lambda a, b: minimum(a, b), _T.minimum, None, values=[x, np.array([2.0, 3.0, 1.0, 0.0])], dtype=dtype)
    _compare(lambda a: a.clip(0.0, 2.0), lambda a: _T.clamp(a, 0.0, 2.0), None, values=[x], dtype=dtype)
    _compare(lambda a: abs(a - 2.0), lambda a: _T.abs(a - 2.0), None, values=[x], dtype=dtype)
    _compare(lambda a: a.prod(axis=1), lambda a: _T.prod(a, dim=1), None, values=[np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 1.0]])], dtype=dtype)
    equal_rows = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
    _compare(lambda a: a.std(axis=1, ddof=1), lambda a: _T.std(a, dim=1, correction=1), None, values=[equal_rows], dtype=dtype)

"""Bitwise-equal gradients at every worker count for graphs of numpy's everyday operations.

As ``tests/test_reliability.py`` does for corgi 0.9.2's operations: random programs (now of
indexing with repeated indices, concatenate and split, stack, where, maximum, reductions
with axes, shape operations and the new elementwise functions) are run backward serially
and then at 1, 2, 8 and 32 workers, with every hand-off on the pool and with the default
threshold, under a 1 µs switch interval; every tracked value's gradient must have the same
bits each time. The new operations' vjps that fan deltas out (concatenate's pieces, index's
add.at, the reductions' broadcasts) must not make the sum depend on thread timing.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corgi import Array, concatenate, gradcheck, maximum, minimum, split, stack, where
from corgi.engine import configure
from corgi.engine import pool as engine_pool

pytestmark = pytest.mark.usefixtures("engine_state")

N = 3  # every value is N x N, so any operation can take any earlier value
MASK = np.array([[True, False, True], [False, True, True], [True, True, False]])

UNARY = {
    "index_repeats": lambda x: x[[2, 0, 2]] * 0.5,  # add.at of repeated rows
    "index_slices": lambda x: concatenate([x[:, 1:], x[:, :1]], axis=1),
    "mask_select": lambda x: x[MASK].reshape(2, 3).sum(axis=0, keepdims=True) + x,
    "transpose": lambda x: x.T,
    "swapaxes": lambda x: x.swapaxes(0, 1) * x,
    "expand_squeeze": lambda x: x.expand_dims(0).squeeze(0).flatten().reshape(N, N),
    "broadcast": lambda x: x[:1].broadcast_to((N, N)) + x,
    "split_join": lambda x: concatenate(split(x, [1, 2], axis=0)[::-1], axis=0),
    "stack_mean": lambda x: stack([x, x * x, x.T], axis=0).mean(axis=0),
    "max_rows": lambda x: x - x.max(axis=1, keepdims=True),
    "min_all": lambda x: x * x.min(),
    "prod_cols": lambda x: (x * 0.5 + 1.0).prod(axis=0, keepdims=True) * x,
    "logsumexp": lambda x: x - x.logsumexp(axis=-1, keepdims=True),
    "var_std": lambda x: x.var(axis=0, keepdims=True) + x.std(axis=1, keepdims=True, ddof=1) + x,
    "abs_sqrt": lambda x: (abs(x) + 1.0).sqrt(),
    "sin_cos": lambda x: x.sin() * x.cos(),
    "log1p_expm1": lambda x: abs(x).log1p() + x.tanh().expm1(),
    "clip": lambda x: x.clip(-0.5, 0.5),
    "sum_axis": lambda x: x + x.sum(axis=(0, 1)),
}
BINARY = {
    "maximum": lambda x, y: maximum(x, y),
    "minimum": lambda x, y: minimum(x, y * 0.5),
    "where": lambda x, y: where(MASK, x, y),
    "concat_pick": lambda x, y: concatenate([x, y], axis=1)[:, ::2],
    "stack_max": lambda x, y: stack([x, y]).max(axis=0),
    "matmul_T": lambda x, y: (x @ y.T) * 0.5,
    "mul_index": lambda x, y: x * y[[0, 0, 1]],
}


def random_program(seed: int, max_ops: int = 16) -> tuple:
    rng = random.Random(seed)
    leaves = rng.randint(2, 4)
    values = [[rng.uniform(-1, 1) for _ in range(N * N)] for _ in range(leaves)]
    steps = []
    for k in range(rng.randint(6, max_ops)):
        available = leaves + k
        if rng.random() < 0.55:
            steps.append((rng.choice(sorted(UNARY)), rng.randrange(available)))
        else:
            steps.append((rng.choice(sorted(BINARY)), rng.randrange(available), rng.randrange(available)))
    return values, steps, rng.randint(1, 3)


def run_program(program: tuple, inputs: list) -> tuple[list, Array]:
    _, steps, heads = program
    values = list(inputs)
    for step in steps:
        if len(step) == 2:
            values.append(UNARY[step[0]](values[step[1]]))
        else:
            values.append(BINARY[step[0]](values[step[1]], values[step[2]]))
    root = values[-1]
    for extra in values[-heads:-1]:
        root = root + extra
    return values, root.sum(axis=None)


def gradient_bytes(arrays: list) -> list:
    return [None if a.gradient() is None else a.gradient().numpy().tobytes() for a in arrays]


SETTINGS = [(w, 0) for w in (1, 2, 8, 32)] + [(2, engine_pool.DEFAULT_HANDOFF_COST), (8, engine_pool.DEFAULT_HANDOFF_COST)]


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # 3x3 matmuls only: OpenBLAS runs them on one thread anyway
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", range(4))
def test_random_programs_of_the_new_operations_are_bitwise_identical_at_every_worker_count(block, fast_switching):
    for seed in range(block, 60, 4):
        program = random_program(seed)
        leaves = [Array(np.array(v).reshape(N, N)).tracked() for v in program[0]]
        values, root = run_program(program, leaves)
        tracked = [v for v in values if v.is_tracked] + [root]
        delta = np.random.default_rng(seed).uniform(0.5, 1.5, size=root.dimensions)
        configure(workers=0)
        root.backward(delta)
        serial = gradient_bytes(tracked)
        assert any(g is not None for g in serial[: len(leaves)]), f"seed {seed}: no leaf got a gradient"
        for workers, handoff in SETTINGS:
            configure(workers=workers, handoff_cost=handoff)
            for array in tracked:
                array.clear_gradient()
            root.backward(delta)
            assert gradient_bytes(tracked) == serial, f"seed {seed}: workers={workers} handoff_cost={handoff}"


@pytest.mark.timeout(300)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16))
def test_random_programs_of_the_new_operations_match_finite_differences_on_the_pool(seed):
    configure(workers=2, handoff_cost=0)  # the threaded path, every hand-off on the pool
    program = random_program(seed, max_ops=8)
    inputs = [Array(np.array(v).reshape(N, N)) for v in program[0]]
    # kinks (clip, abs, max, maximum ties) are measure-zero for random values; a loose tolerance
    # covers finite differences of the longer chains
    assert gradcheck(lambda *xs: run_program(program, list(xs))[1], inputs, rtol=1e-4, atol=1e-6)

"""Engine reliability under load, faults and scale, with real corgi Arrays (issue 4).

Campaign map (figures in docs/reliability.md):
- random DAGs of the real operations (hypothesis), bit for bit across worker
  counts, and against central finite differences;
- thread storms: 32 threads calling backward() at once at a 1 µs switch
  interval, with and without injected yield points (``chaos`` in conftest);
- faults at random nodes (Exception, BaseException, KeyboardInterrupt, a real
  SIGINT), reentrant backward(), scale, leaks, and bad input.

BLAS: bitwise comparisons pin OpenBLAS to one thread with threadpoolctl
(``OPENBLAS_NUM_THREADS`` only works before numpy is imported). Without
threadpoolctl the graphs still only use 3x3 matmuls, which OpenBLAS never
splits across threads, so the comparison stays valid.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import threading
import time
import traceback
import tracemalloc
import weakref

import counters
import numpy as np
import pytest
from concurrency import run_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corgi import Array, arr, gradcheck
from corgi.engine import configure
from corgi.engine import pool as engine_pool

pytestmark = pytest.mark.usefixtures("engine_state")

DEFAULT_HANDOFF = engine_pool.DEFAULT_HANDOFF_COST
THREADED = [1, 2, 8, 32]


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # 3x3 matmuls only: OpenBLAS runs them on one thread anyway
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# -- random programs of real operations -------------------------------------

N = 3  # every value is N x N, so any op can take any earlier value

UNARY = {
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "softmax": lambda x: x.softmax(),
    "neg": lambda x: -x,
    "square": lambda x: x * x,  # one node, two edges to x
    "exp_tanh": lambda x: x.tanh().exp(),
    "log1p_sq": lambda x: (x * x + 1.0).ln(),
    "powf": lambda x: (x * x + 1.0).powf(1.5),
    "recip": lambda x: (x * x + 1.0).reciprocal(),
    "row_sum": lambda x: x + x.sum() * 0.25,  # (N, 1) broadcast back: un-broadcasting
    "reshape": lambda x: x.reshape((N * N,)).reshape((N, N)) * 0.5,
}
BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / (y * y + 1.0),
    "matmul": lambda x, y: (x @ y) * 0.5,
    "matmul_t": lambda x, y: Array.matmul((x, True), (y, False)) * 0.5,
    "axpy": lambda x, y: Array.axpy(-0.75, x, y),
}


@st.composite
def programs(draw, max_ops=14):
    leaves = draw(st.integers(2, 4))
    values = [
        draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False, width=64), min_size=N * N, max_size=N * N))
        for _ in range(leaves)
    ]
    steps = []
    for k in range(draw(st.integers(3, max_ops))):
        available = leaves + k
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(UNARY)))
            steps.append((name, draw(st.integers(0, available - 1))))
        else:
            name = draw(st.sampled_from(sorted(BINARY)))
            steps.append((name, draw(st.integers(0, available - 1)), draw(st.integers(0, available - 1))))
    heads = draw(st.integers(1, 3))  # the root adds the last few values: fan-in
    return values, steps, heads


def random_program(seed, max_ops=20):
    rng = random.Random(seed)
    leaves = rng.randint(2, 4)
    values = [[rng.uniform(-1, 1) for _ in range(N * N)] for _ in range(leaves)]
    steps = []
    for k in range(rng.randint(8, max_ops)):
        available = leaves + k
        if rng.random() < 0.5:
            steps.append((rng.choice(sorted(UNARY)), rng.randrange(available)))
        else:
            steps.append((rng.choice(sorted(BINARY)), rng.randrange(available), rng.randrange(available)))
    return values, steps, rng.randint(1, 3)


def run_program(program, inputs):
    """Build the graph; returns (every value, the scalar-ish root)."""
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
    return values, root.sum(skip_count=2)


def leaves_of(program):
    return [Array(np.array(v).reshape(N, N)).tracked() for v in program[0]]


def gradient_bytes(arrays):
    return [None if a.gradient() is None else a.gradient().numpy().tobytes() for a in arrays]


def clear(arrays):
    for a in arrays:
        a.clear_gradient()


SETTINGS = [(w, 0) for w in (1, 2, 8, 32)] + [(2, DEFAULT_HANDOFF)]


@pytest.mark.timeout(240)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(), seed=st.integers(0, 2**16))
def test_random_graphs_are_bitwise_identical_for_every_worker_count(program, seed):
    leaves = leaves_of(program)
    values, root = run_program(program, leaves)
    tracked = [v for v in values if v.is_tracked] + [root]
    delta = np.random.default_rng(seed).uniform(0.5, 1.5, size=root.dimensions)
    configure(workers=0)
    root.backward(delta)
    serial = gradient_bytes(tracked)
    assert all(g is not None for g in serial[: len(leaves)] if g is not None)
    for workers, handoff in SETTINGS:
        configure(workers=workers, handoff_cost=handoff)
        clear(tracked)
        root.backward(delta)
        assert gradient_bytes(tracked) == serial, f"workers={workers} handoff_cost={handoff}"


@pytest.mark.timeout(240)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(max_ops=10))
def test_random_graphs_match_finite_differences(program):
    configure(workers=2, handoff_cost=0)  # the threaded path, every hand-off on the pool
    inputs = [Array(np.array(v).reshape(N, N)) for v in program[0]]
    assert gradcheck(lambda *xs: run_program(program, xs)[1], inputs, rtol=1e-4, atol=1e-6)


# -- thread storms -------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [0, *THREADED])
def test_storm_on_shared_leaves_and_a_shared_intermediate(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    threads = 32
    a = Array([1.0, 2.0, -3.0, 0.5]).tracked()
    b = Array([4.0, -1.0, 0.25, 2.0]).tracked()
    shared = a * b + a  # every pass goes through this node
    heads = [(shared * float(i + 1) + b * 2.0).sum() for i in range(threads)]
    run_threads(threads, lambda i: heads[i].backward())
    # Serially, head i gives shared (i+1), a (i+1)(b+1), b (i+1)a + 2: all exact in float64.
    total = sum(i + 1 for i in range(threads))
    assert shared.gradient() == Array([float(total)] * 4)
    assert a.gradient() == Array(total * (b.numpy() + 1.0))
    assert b.gradient() == Array(total * a.numpy() + 2.0 * threads)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [0, *THREADED])
def test_storm_on_one_root(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    program = random_program(7)
    leaves = leaves_of(program)
    values, root = run_program(program, leaves)
    tracked = [v for v in values if v.is_tracked]
    root.backward()
    single = [None if v.gradient() is None else v.gradient().numpy().copy() for v in tracked]
    clear(tracked)
    threads = 32
    run_threads(threads, lambda i: root.backward())
    for array, one in zip(tracked, single):
        if one is None:
            assert array.gradient() is None
        else:  # float addition order across passes is a race: a tolerance, not bits
            np.testing.assert_allclose(array.gradient().numpy(), threads * one, rtol=1e-12, atol=1e-12)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [0, 8])
def test_storm_with_yield_points_in_every_shared_update(workers, chaos):
    configure(workers=workers, handoff_cost=0)
    a = Array([1.0, -2.0]).tracked()
    b = Array([0.5, 4.0]).tracked()
    shared = a * b
    heads = [(shared * float(i + 1) + a).sum() for i in range(8)]
    run_threads(8, lambda i: heads[i].backward())
    assert shared.gradient() == Array([36.0, 36.0])
    assert a.gradient() == Array(36.0 * b.numpy() + 8.0)
    assert b.gradient() == Array(36.0 * a.numpy())


# -- faults ----------------------------------------------------------------------


class Boom(Exception):
    pass


class Abort(BaseException):
    """KeyboardInterrupt-style: not an Exception."""


def inject_fault(node, error):
    """Make ``node``'s backward raise ``error``; returns a function that undoes it.

    Works for any Node subclass: the node's class is swapped for a subclass
    whose ``deltas`` raises (same layout, so ``__class__`` assignment is allowed).
    """
    original = type(node)

    def exploding_vjp(self, delta):
        raise error

    node.__class__ = type("Faulty" + original.__name__, (original,), {"__slots__": (), "deltas": exploding_vjp})

    def undo():
        node.__class__ = original

    return undo


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", [Boom, Abort, KeyboardInterrupt])
@pytest.mark.parametrize("workers", [0, 1, 2, 8, 32])
def test_a_fault_at_a_random_node_ends_the_pass_cleanly(kind, workers, pool_probe):
    configure(workers=workers, handoff_cost=0)
    for seed in range(4):
        program = random_program(100 + seed)
        leaves = leaves_of(program)
        values, root = run_program(program, leaves)
        tracked = [v for v in values if v.is_tracked] + [root]
        root.backward()
        before = gradient_bytes(tracked)
        candidates = [v for v in tracked[len(leaves):] if v.gradient() is not None]
        victim = random.Random(seed).choice(candidates)._node
        error = kind(f"fault {seed}")
        undo = inject_fault(victim, error)
        with pytest.raises(kind) as info:
            root.backward()  # a hang would trip the test's timeout
        assert info.value is error
        assert "exploding_vjp" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert gradient_bytes(tracked) == before, "a failed pass changed a gradient"
        counters.assert_none_left()
        pool_probe.assert_idle()
        undo()
        root.backward()  # reusable: the second successful pass doubles every gradient
        doubled = [None if g is None else (np.frombuffer(g) * 2).tobytes() for g in before]
        assert gradient_bytes(tracked) == doubled
    pool_probe.assert_all_exit()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill (POSIX)")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_real_sigint_while_the_caller_waits(workers, pool_probe):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    configure(workers=workers, handoff_cost=0)
    main = threading.main_thread().ident
    x = Array([1.0, 2.0]).tracked()

    sent = []
    send = threading.Lock()

    def backward_op(children, is_tracked, delta):
        if threading.current_thread() is not threading.main_thread():
            with send:
                first = not sent
                sent.append(1)
            if first:  # exactly one signal
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.2)  # the caller is inside backward(), waiting for this step
        else:
            time.sleep(0.05)  # give a worker time to take a queued branch
        return [delta * 2.0]

    branches = [Array.op([x], lambda xs: xs[0] * 2.0, backward_op) for _ in range(4)]
    root = branches[0] + branches[1] + branches[2] + branches[3]
    with pytest.raises(KeyboardInterrupt):
        root.backward()
    assert sent, "no step ran on a worker thread"
    assert x.gradient() is None and root.gradient() is None
    pool_probe.assert_idle()
    root.backward()
    assert x.gradient() == Array([8.0, 8.0])


# -- reentrant backward ---------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_backward_inside_a_custom_backward(workers):
    configure(workers=workers, handoff_cost=0)
    x = Array([1.5, -2.0]).tracked()
    side = Array([3.0, 0.5]).tracked()

    def backward_op(children, is_tracked, delta):
        (side * side).sum().backward()  # an independent graph
        inner = (children[0] * 3.0).tracked()  # and one built from the inputs' values
        inner.backward(delta)
        return [inner.gradient() * 3.0]

    outs = [Array.op([x], lambda xs: xs[0] * 3.0, backward_op, name="nested") for _ in range(3)]
    root = (outs[0] + outs[1] * 2.0 + outs[2]).tanh()
    root.backward()
    d = 1.0 - np.tanh(x.numpy() * 12.0) ** 2
    np.testing.assert_allclose(x.gradient().numpy(), 3.0 * (1 + 2 + 1) * d, rtol=1e-12)
    assert side.gradient() == Array(3 * 2.0 * side.numpy())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_backward_inside_a_custom_backward_on_its_own_graph_fails_clearly(workers, pool_probe):
    configure(workers=workers, handoff_cost=0)
    x = Array([2.0]).tracked()
    cell = {}

    def backward_op(children, is_tracked, delta):
        cell["out"].backward()  # backward of the pass we are in: endless recursion
        return [delta * 2.0]

    out = Array.op([x], lambda xs: xs[0] * 2.0, backward_op)
    cell["out"] = out
    root = out * 1.0 + out * 3.0
    with pytest.raises(RecursionError):
        root.backward()  # a hang would trip the test's timeout
    assert x.gradient() is None and out.gradient() is None
    pool_probe.assert_idle()
    cell["out"] = None
    fixed = Array.op([x], lambda xs: xs[0] * 2.0, lambda xs, t, d: [d * 2.0])
    (fixed * 1.0 + fixed * 3.0).backward()
    assert x.gradient() == Array([8.0])


# -- scale -----------------------------------------------------------------------


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc")
def test_a_million_node_array_chain(capsys):
    configure(workers=2)
    gc.collect()
    rss_before = rss_bytes()
    x = arr(1.0).tracked()
    y = x
    started = time.perf_counter()
    for _ in range(1_000_000):
        y = y + 1.0
    built = time.perf_counter()
    y.backward()
    done = time.perf_counter()
    per_node = (rss_bytes() - rss_before) / 1_000_000
    assert y == arr(1_000_001.0)
    assert x.gradient() == arr(1.0) and y.gradient() == arr(1.0)
    del y  # freeing a million-deep graph must not recurse
    freed = time.perf_counter()
    with capsys.disabled():
        print(
            f"\n[scale] 1,000,000-node chain: forward {built - started:.1f} s, backward {done - built:.1f} s,"
            f" free {freed - done:.2f} s, {per_node:.0f} bytes RSS per node"
        )
    assert per_node < 4096
    assert done - built < 60


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
def test_a_hundred_thousand_wide_fan_in(workers):
    configure(workers=workers)
    width = 100_000
    leaves = [Array([float(i)]).tracked() for i in range(width)]
    weights = np.arange(width, dtype=np.float64)

    def backward_op(children, is_tracked, delta):
        return [delta * w for w in weights]

    total = Array.op(leaves, lambda xs: Array([sum(x[0] for x in xs)]), backward_op, name="gather")
    total.backward(Array([2.0]))
    assert total == Array([float(sum(range(width)))])
    assert [leaf.gradient()[0] for leaf in leaves[:5]] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert leaves[-1].gradient()[0] == 2.0 * (width - 1)
    ref = weakref.ref(total._node)
    del total, backward_op
    assert ref() is None


@pytest.mark.timeout(120)
def test_memory_is_linear_in_the_graph(capsys):
    configure(workers=0)

    def traced_bytes(length):
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            x = arr(1.0).tracked()
            y = x
            for _ in range(length):
                y = y * 1.0001 + 0.5
            y.backward()
            used = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        return used

    small, large = traced_bytes(4_000), traced_bytes(16_000)
    per_op = (large - small) / 24_000  # two operations per step
    with capsys.disabled():
        print(f"\n[scale] tracemalloc: {per_op:.0f} bytes per operation node (graph + gradients kept)")
    assert 3.5 < large / small < 4.5, (small, large)
    assert per_op < 4096


# -- leaks -------------------------------------------------------------------------


def _gc_disabled():
    class Off:
        def __enter__(self):
            self.was = gc.isenabled()
            gc.collect()
            gc.disable()

        def __exit__(self, *exc):
            if self.was:
                gc.enable()

    return Off()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_a_dropped_graph_is_freed_without_the_collector(workers):
    configure(workers=workers, handoff_cost=0)
    with _gc_disabled():
        x = Array([1.0, 2.0, 3.0]).tracked()
        hidden = (x * x).tanh()
        y = (hidden + hidden.sigmoid() * x).softmax()
        custom = Array.op([y, x], lambda v: v[0] * v[1], lambda v, t, d: [d * v[1], d * v[0]])
        loss = (custom @ Array([1.0, 1.0, 1.0]).reshape((3, 1))).sum()
        loss.backward()
        refs = [weakref.ref(a._node) for a in (hidden, y, custom, loss)]
        del hidden, y, custom, loss
        assert [r() for r in refs] == [None] * 4
        assert x.gradient() is not None


@pytest.mark.timeout(60)
def test_a_failed_pass_frees_its_graph_without_the_collector():
    configure(workers=0)
    with _gc_disabled():
        x = Array([1.0, 2.0]).tracked()
        bad = Array.op([x], lambda v: v[0] * 2.0, lambda v, t, d: [d.reshape((2, 1))])  # wrong shape
        loss = (bad * 3.0).sum()
        with pytest.raises(ValueError):
            loss.backward()
        ref = weakref.ref(bad._node)
        del bad, loss
        assert ref() is None


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc")
def test_training_keeps_memory_and_threads_flat(capsys):
    configure(workers=2)
    rng = np.random.default_rng(0)
    inputs = Array(rng.normal(size=(16, 4)))
    targets = Array(rng.normal(size=(16, 1)))
    w1 = Array(rng.normal(size=(4, 8)) * 0.5).tracked()
    b1 = Array.zeros((8,)).tracked()
    w2 = Array(rng.normal(size=(8, 1)) * 0.5).tracked()
    parameters = [w1, b1, w2]

    def step():
        nonlocal parameters
        w1, b1, w2 = parameters
        hidden = (inputs @ w1 + b1).tanh()
        error = hidden @ w2 - targets
        loss = (error * error).sum(skip_count=2) * (1.0 / 16)
        loss.backward()
        updated = []
        for p in parameters:
            p.stop_tracking()  # the update itself is not recorded
            updated.append((p - p.gradient() * 0.05).tracked())
        parameters = updated
        return loss[0]

    steps, checkpoints = 10_000, {}
    started = time.perf_counter()
    first = step()
    for i in range(1, steps + 1):
        last = step()
        if i in (2_000, steps):
            gc.collect()
            checkpoints[i] = (rss_bytes(), threading.active_count())
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        growth = (checkpoints[steps][0] - checkpoints[2_000][0]) / 2**20
        print(f"\n[leaks] {steps} training steps in {elapsed:.1f} s, RSS growth after warm-up {growth:.2f} MiB")
    assert last < first
    assert checkpoints[steps][0] - checkpoints[2_000][0] < 8 * 2**20
    assert checkpoints[steps][1] == checkpoints[2_000][1]


# -- bad input -----------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_non_finite_values_propagate_as_numpy_does(workers):
    configure(workers=workers, handoff_cost=0)
    values = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0])
    x = Array(values).tracked()
    with np.errstate(all="ignore"):
        y = (x * x).exp() + x.tanh() * x
        y.backward()
        expected = np.exp(values * values) * 2 * values + (1 - np.tanh(values) ** 2) * values + np.tanh(values)
        value = np.exp(values * values) + np.tanh(values) * values
    np.testing.assert_array_equal(y.numpy(), value)
    np.testing.assert_array_equal(x.gradient().numpy(), expected)
    z = Array([1.0, 2.0]).tracked()  # the engine is unharmed
    (z * z).backward()
    assert z.gradient() == Array([2.0, 4.0])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_numpy_error_state_reaches_worker_threads(workers):
    configure(workers=workers, handoff_cost=0)
    x = Array([0.0, 1.0]).tracked()
    with np.errstate(divide="ignore"):
        branches = [x.ln() for _ in range(4)]  # the vjp divides by x
    root = branches[0] + branches[1] + branches[2] + branches[3]
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        root.backward()
    assert x.gradient() is None and root.gradient() is None


@pytest.mark.timeout(60)
def test_bad_deltas_are_refused_before_any_gradient_is_written():
    configure(workers=2, handoff_cost=0)
    x = Array([1.0, 2.0, 3.0]).tracked()
    y = x * 2.0
    with pytest.raises(ValueError, match=r"backward: a delta of dimensions \(2,\) can't be summed down to \(3,\)"):
        y.backward(Array([1.0, 2.0]))
    with pytest.raises(TypeError, match="backward: a delta of dtype complex128"):
        y.backward(np.ones(3, dtype=complex))
    with pytest.raises(TypeError, match="backward: a delta of dtype <U1"):
        y.backward(["a", "b", "c"])
    with pytest.raises(TypeError, match="backward: a delta of dtype bool"):
        y.backward(np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="backward: delta is not a rectangular array"):
        y.backward([[1.0], [1.0, 2.0]])
    assert x.gradient() is None and y.gradient() is None
    y.backward(np.ones((4, 3)))  # extra leading dimensions are summed down
    assert y.gradient() == Array([4.0, 4.0, 4.0]) and x.gradient() == Array([8.0, 8.0, 8.0])


@pytest.mark.timeout(60)
def test_a_non_array_where_an_array_is_expected():
    x = Array([1.0, 2.0]).tracked()
    with pytest.raises(TypeError, match="add: expects an Array or a number, got str"):
        x + "1"
    with pytest.raises(TypeError, match="conv: filters must be an Array, got list"):
        Array.zeros((1, 3, 3)).conv([[1.0]])
    with pytest.raises(TypeError, match="matmul: b must be an Array, got ndarray"):
        Array.matmul((x, False), (np.ones(2), False))
    with pytest.raises(TypeError, match="op: input 1 must be an Array, got float"):
        Array.op([x, 1.0], lambda v: v[0], lambda v, t, d: [d, None])
    with pytest.raises(ValueError, match="backward: the array is not tracked"):
        Array([1.0]).backward()
    assert x.gradient() is None


def _custom_case(answer):
    """root = a * 2 + custom(b, c): ``a``'s branch runs before the custom backward fails."""
    a, b, c = Array([1.0, 2.0]).tracked(), Array([3.0, 4.0]).tracked(), Array([5.0, 6.0]).tracked()
    custom = Array.op([b, c], lambda v: v[0] * v[1], lambda v, t, d: answer(v, d), name="mine")
    root = a * 2.0 + custom
    return [a, b, c, custom, root], root


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize(
    "answer, error, message",
    [
        (lambda v, d: [d * v[1]], ValueError, r"mine: backward_op returned 1 gradients for 2 inputs"),
        (lambda v, d: [d, d, d], ValueError, r"mine: backward_op returned 3 gradients for 2 inputs"),
        (lambda v, d: [d, Array([1.0, 2.0, 3.0])], ValueError, r"mine: gradient 1 has dimensions \(3,\), input 1 has \(2,\)"),
        (lambda v, d: [d, np.ones(2)], TypeError, r"mine: gradient 1 must be an Array or None, got ndarray"),
        (lambda v, d: None, TypeError, r"mine: backward_op must return a list, got NoneType"),
    ],
)
def test_a_custom_backward_giving_wrong_gradients_is_named_and_writes_nothing(workers, answer, error, message):
    configure(workers=workers, handoff_cost=0)
    arrays, root = _custom_case(answer)
    with pytest.raises(error, match=message):
        root.backward()
    assert [a.gradient() for a in arrays] == [None] * len(arrays)
    counters.assert_none_left()

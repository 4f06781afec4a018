"""Splitting a batch over two threads (``corgi/array/halves.py``) and the image primitives that do it.

The split is forced in these tests (``_SMALLEST`` at 0, workers >= 1); ``workers=0`` turns it off,
so the same computation with and without it must agree bit for bit: every example is computed by
the same numpy calls in either case. Checked for conv and max-pool values and gradients (ties, NaN
and infinite deltas included), for a whole CNN step, at 1 and 2 BLAS threads, with the BLAS products
split and not; and for the helper itself: every piece runs once, on both threads, errors reach the
caller, a busy helper or a nested split runs whole, and a forked child gets a helper of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from corgi import Array, engine
from corgi.array import halves

BLAS_COUNTS = (1, 2)


def wait_until_idle() -> None:
    """Wait for the helper to finish what an earlier split left it (a caller that took every piece
    leaves the helper its empty job; until the helper has seen it, a new split runs whole)."""
    busy = halves._helper.busy
    assert busy.acquire(timeout=30), "the helper stayed busy"
    busy.release()


@pytest.fixture
def forced(engine_state, monkeypatch):
    """Every split that may happen does: no size threshold, two workers, an idle helper."""
    monkeypatch.setattr(halves, "_SMALLEST", 0)
    engine.configure(workers=2, share_cores=False)
    wait_until_idle()
    yield


@pytest.fixture
def blas_count(request):
    """Run the test at each BLAS thread count (numpy's OpenBLAS, set through ctypes), then restore it."""
    from corgi.train.blas import blas_threads, set_blas_threads

    before = blas_threads()
    said = set_blas_threads(request.param)
    if said.startswith("could not"):
        pytest.skip(f"the BLAS thread count cannot be set here: {said}")
    yield request.param
    set_blas_threads(before or 1)


def run_split(work, batch: int, blas: bool = False) -> None:
    halves.split_batch(work, batch, 1 << 20, blas=blas)


class Meeting:
    """Each thread holds its first piece until the other thread has taken one too, so that both
    take part whatever the scheduler does (else one thread may take every piece first)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=30)
        self.names: set[str] = set()

    def first_piece(self) -> None:
        name = threading.current_thread().name
        if name not in self.names:
            self.names.add(name)
            self.barrier.wait()


@pytest.mark.timeout(60)
def test_every_piece_runs_once_and_both_threads_take_part(forced, fast_switching):
    seen: list[tuple[int, int, str]] = []
    meeting = Meeting()

    def work(lo: int, hi: int) -> None:
        seen.append((lo, hi, threading.current_thread().name))
        meeting.first_piece()

    run_split(work, 32)
    covered = sorted((lo, hi) for lo, hi, _ in seen)
    assert covered == [(4 * i, 4 * i + 4) for i in range(8)]
    assert {name for _, _, name in seen} == {threading.current_thread().name, "corgi-halves"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["corgi-halves", "caller"])
def test_an_error_in_either_thread_reaches_the_caller_and_the_helper_stays_usable(forced, where):
    meeting = Meeting()

    def work(lo: int, hi: int) -> None:
        meeting.first_piece()
        on_helper = threading.current_thread().name == "corgi-halves"
        if on_helper == (where == "corgi-halves"):
            raise ArithmeticError(f"piece {lo}:{hi}")

    with pytest.raises(ArithmeticError, match="piece"):
        run_split(work, 32)
    out = np.zeros(64)

    def fill(lo: int, hi: int) -> None:
        out[lo:hi] = np.arange(lo, hi)

    wait_until_idle()
    run_split(fill, 64)
    assert (out == np.arange(64)).all()


@pytest.mark.timeout(60)
def test_a_split_inside_a_split_runs_whole_on_its_thread(forced):
    inner: list[tuple[int, int, str]] = []

    def outer(lo: int, hi: int) -> None:
        def record(a: int, b: int) -> None:
            inner.append((a, b, threading.current_thread().name))

        halves.split_batch(record, 10, 1 << 20)

    run_split(outer, 2)
    # each outer piece's inner split ran whole (0, 10) on its own thread: the helper was taken
    assert len(inner) == 2 and all((a, b) == (0, 10) for a, b, _ in inner)


@pytest.mark.parametrize(
    "workers, batch, size, blas, threads, share_cores, expected",
    [
        (0, 32, 1 << 20, False, 2, True, False),  # workers=0: corgi stays on the calling thread
        (2, 1, 1 << 20, False, 2, True, False),  # one example: nothing to split
        (2, 32, 10, False, 2, True, False),  # too small to pay for a hand-off
        (2, 32, 1 << 20, False, 1, True, False),  # one BLAS thread: one thread an operation
        (2, 32, 1 << 20, True, 2, True, False),  # BLAS work: BLAS fills the cores itself
        (1, 32, 1 << 20, False, 2, True, True),  # numpy work beside two BLAS threads
        (2, 32, 1 << 20, False, 4, True, True),
        (2, 32, 1 << 20, True, 1, False, True),  # share_cores off: any work, any BLAS thread count
    ],
)
def test_when_work_is_split(engine_state, monkeypatch, workers, batch, size, blas, threads, share_cores, expected):
    monkeypatch.setattr(halves, "cores", lambda: 2)
    monkeypatch.setattr(halves, "blas_threads", lambda: threads)
    engine.configure(workers=workers, share_cores=share_cores)
    names: set[str] = set()
    meeting = Meeting()

    def work(lo: int, hi: int) -> None:
        names.add(threading.current_thread().name)
        if expected:
            meeting.first_piece()

    wait_until_idle()
    halves.split_batch(work, batch, size, blas=blas)
    assert (len(names) == 2) is expected


def test_one_core_never_splits(engine_state, monkeypatch):
    monkeypatch.setattr(halves, "cores", lambda: 1)
    engine.configure(workers=2)
    assert not halves.may_split() and not halves.may_split(blas=True)


# ---------------------------------------------------------------- the primitives, bit for bit


def primitive_results(x: np.ndarray, filters: np.ndarray, g_scale: float) -> list[np.ndarray]:
    """Values and gradients of conv then max-pool (ties and NaN as the inputs hold them)."""
    xa, fa = Array(x).tracked(), Array(filters).tracked()
    y = xa.conv(fa).max_pool((2, 2), (2, 2))
    y.backward(Array(np.full(y.dimensions, g_scale)))
    return [y.numpy(), xa.gradient().numpy(), fa.gradient().numpy()]


def pool_results(x: np.ndarray, g: np.ndarray, pool, stride) -> list[np.ndarray]:
    xa = Array(x).tracked()
    y = xa.max_pool(pool, stride)
    y.backward(Array(g))
    return [y.numpy(), xa.gradient().numpy()]


def same_bits(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("blas_count", BLAS_COUNTS, indirect=True)
@pytest.mark.parametrize("products_split", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_and_pool_are_bitwise_the_same_split_or_not(forced, monkeypatch, blas_count, products_split, dtype):
    # share_cores off splits the products too; on, with two BLAS threads, only the numpy work
    monkeypatch.setattr(halves, "blas_threads", lambda: 2)
    engine.configure(workers=2, share_cores=not products_split)
    rng = np.random.default_rng(blas_count)
    x = rng.standard_normal((12, 3, 13, 14)).astype(dtype)
    filters = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    split = primitive_results(x, filters, 0.5)
    engine.configure(workers=0)
    whole = primitive_results(x, filters, 0.5)
    assert same_bits(split, whole)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2, 8])
def test_pool_ties_nan_and_infinite_deltas_are_bitwise_the_same_split_or_not(forced, workers):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (6, 4, 10, 9)).astype(float)  # many ties
    x[1, 2, 3, 4] = np.nan
    x[4, 0, :2, :2] = np.nan
    for pool, stride in [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (3, 2))]:
        out_rows, out_cols = (10 - pool[0]) // stride[0] + 1, (9 - pool[1]) // stride[1] + 1
        g = rng.standard_normal((6, 4, out_rows, out_cols))
        g[2, 1, 0, 0] = np.inf
        for delta in (g, np.where(np.isinf(g), 1.0, g)):  # with an infinite delta and without
            engine.configure(workers=workers)
            split = pool_results(x, delta, pool, stride)
            engine.configure(workers=0)
            whole = pool_results(x, delta, pool, stride)
            assert same_bits(split, whole), (pool, stride)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("blas_count", BLAS_COUNTS, indirect=True)
@pytest.mark.parametrize("share_cores", [False, True])
def test_a_cnn_training_step_is_bitwise_the_same_split_or_not(forced, fast_switching, monkeypatch, blas_count,
                                                              share_cores):
    monkeypatch.setattr(halves, "blas_threads", lambda: 2)  # on share_cores, the numpy work splits
    from corgi.optimizer import Momentum
    from corgi.train.networks import build_model

    rng = np.random.default_rng(3)
    x = Array(rng.random((16, 1, 28, 28)))
    t = Array(np.eye(10)[rng.integers(0, 10, 16)])

    def step(workers: int) -> list[np.ndarray]:
        engine.configure(workers=workers, share_cores=share_cores)
        model = build_model("cnn", (28, 28), 10, Momentum(0.05, momentum=0.9), rng=0)
        for _ in range(2):
            model.forward(x)
            model.backward(t)
            model.update()
        return [p.numpy() for p in model.parameters()]

    whole = step(0)
    for workers in (1, 2):
        assert same_bits(step(workers), whole)


@pytest.mark.timeout(120)
def test_many_threads_convolving_at_once_get_the_serial_results(forced, fast_switching):
    rng = np.random.default_rng(11)
    inputs = [(rng.standard_normal((8, 2, 9, 9)), rng.standard_normal((4, 2, 3, 3))) for _ in range(6)]
    engine.configure(workers=0)
    expected = [primitive_results(x, f, 1.0) for x, f in inputs]
    engine.configure(workers=2)
    results: list[list[np.ndarray] | BaseException] = [[] for _ in inputs]

    def run(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = primitive_results(*inputs[i], 1.0)
        except BaseException as error:  # noqa: BLE001 (reported below)
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    for got, want in zip(results, expected):
        assert not isinstance(got, BaseException), got
        assert same_bits(got, want)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_splits_with_a_helper_of_its_own():
    # in a child process with a timeout: a helper lost at the fork would hang the split
    script = textwrap.dedent(
        """
        import os, threading
        import numpy as np
        from corgi import engine
        from corgi.array import halves
        halves._SMALLEST = 0
        engine.configure(workers=2)
        out = np.zeros(64)
        def fill(lo, hi):
            out[lo:hi] = np.arange(lo, hi)
        halves.split_batch(fill, 64, 64)            # the parent's helper exists now
        release = threading.Event()
        def hold(lo, hi):                          # and is busy in a split at the fork
            release.wait(5)
        holder = threading.Thread(target=halves.split_batch, args=(hold, 2, 2))
        holder.start()
        pid = os.fork()
        if pid == 0:
            names = set()
            meeting = threading.Barrier(2, timeout=20)
            def work(lo, hi):
                name = threading.current_thread().name
                if name not in names:          # both threads take part: each waits for the other once
                    names.add(name)
                    meeting.wait()
                out[lo:hi] = -np.arange(lo, hi)
            halves.split_batch(work, 64, 64)
            os._exit(0 if (out == -np.arange(64)).all() and "corgi-halves" in names else 3)
        release.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=90, cwd=root)
    assert done.returncode == 0, done.stderr

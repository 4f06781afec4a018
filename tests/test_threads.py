"""Threads on threads: the engine reads the BLAS thread count and leaves the cores to BLAS when
handing nodes to the pool would oversubscribe them (``corgi.engine.threads``, ``share_cores``)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from corgi import Array, engine
from corgi.engine import scheduler, threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_report(blas_threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads),
               MKL_NUM_THREADS=str(blas_threads), PYTHONPATH=ROOT)
    env.pop("CORGI_SHARE_CORES", None)  # the default
    code = ("import numpy, corgi; from corgi.engine import threads, settings; "
            "print(threads.blas_threads(), threads.cores(), threads.pool_fits(), settings().share_cores)")
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    blas, cores, fits, share = out.stdout.split()
    return int(blas), int(cores), fits == "True", share == "True"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("blas_threads", [1, 2])
def test_the_blas_thread_count_is_read_from_the_loaded_library(blas_threads):
    blas, cores, fits, share = child_report(blas_threads)
    assert blas == blas_threads and share
    assert fits == (2 * blas_threads <= cores)


def branch_threads(share_cores, fits, monkeypatch):
    """The threads that ran the costly vjps of a wide graph, with the pool's fit forced."""
    monkeypatch.setattr(scheduler, "pool_fits", lambda: fits)
    engine.configure(workers=2, handoff_cost=0, share_cores=share_cores)
    seen = set()
    x = Array(np.ones((4, 4))).tracked()
    parts = []
    for k in range(8):
        def backward_op(children, tracked, delta):
            seen.add(threading.get_ident())
            return [delta * 2.0]

        y = Array.op([x], lambda xs: xs[0] * 2.0, backward_op, name=f"b{k}")
        parts.append(y.sum(2))
    loss = parts[0]
    for part in parts[1:]:
        loss = loss + part
    loss.backward()
    return seen, x.gradient().numpy()


@pytest.mark.timeout(60)
def test_a_pass_keeps_every_node_on_the_caller_when_the_pool_would_oversubscribe(engine_state, monkeypatch):
    seen, gradient = branch_threads(True, False, monkeypatch)
    assert seen == {threading.get_ident()}
    _, pooled = branch_threads(False, False, monkeypatch)  # the pool as before: the same gradient, bit for bit
    assert gradient.tobytes() == pooled.tobytes() and np.all(gradient == 16.0)


def test_configure_checks_share_cores(engine_state):
    with pytest.raises(TypeError, match="configure: share_cores must be True or False, got 'yes'"):
        engine.configure(share_cores="yes")
    assert engine.configure(share_cores=True).share_cores is True
    assert engine.settings().workers == engine_state.workers
    assert threads.cores() >= 1 and threads.blas_threads() >= 1

"""Taking, clearing and adding gradients while passes commit on other threads (issue 11, item 4).

Before: ``step_parameters`` read each gradient, stepped, then cleared it
unconditionally, so a pass that committed in between was wiped (3 passes'
worth lost in 3,000; with a step that takes 0.2 ms, 306 of 1,000). Now every change is one indivisible step; these tests
race real threads against each other, with the engine's yield point opening
the window between reading the gradients and publishing the sums, and count
every delta: what the optimizer took plus what is left must equal every pass
that returned, exactly (all values are small integers, so float sums are exact).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from concurrency import run_threads

from corgi import Array
from corgi.array import step_parameters
from corgi.engine import (
    Node,
    add_gradients,
    backward,
    configure,
    set_yield_point,
    take_gradients,
)

pytestmark = pytest.mark.usefixtures("engine_state")


def _yielding(where):
    time.sleep(0)


def _weight_bias_and_loss(workers):
    """A weight and a bias at zero and a loss whose every pass adds dw = (1, 2, 3), db = 2,
    on ``workers`` workers with the engine's yield points open."""
    configure(workers=workers, handoff_cost=0)
    set_yield_point(_yielding)
    w = Array(np.zeros(3)).tracked()
    b = Array(np.zeros(1)).tracked()
    loss = ((w * Array([1.0, 2.0, 3.0])).sum() + b * 2.0).sum()
    return w, b, loss


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_step_parameters_racing_backward_loses_nothing(workers, fast_switching):
    w, b, loss = _weight_bias_and_loss(workers)
    passes = 300
    taken = {"w": np.zeros(3), "b": np.zeros(1), "steps": 0}
    finished = threading.Event()

    def record(position, value, gradient):
        taken["w" if position == 0 else "b"] += gradient
        time.sleep(0.0001)  # a step takes time: passes commit while it runs
        return value

    def work(i):
        if i == 0:
            for _ in range(passes):
                loss.backward()
            finished.set()
        else:
            while not finished.is_set() or taken["steps"] < 20:
                step_parameters([w, b], record)
                taken["steps"] += 1

    run_threads(2, work)
    left_w = np.zeros(3) if w.gradient() is None else w.gradient().numpy()
    left_b = np.zeros(1) if b.gradient() is None else b.gradient().numpy()
    assert (taken["w"] + left_w).tolist() == [passes * 1.0, passes * 2.0, passes * 3.0]
    assert (taken["b"] + left_b).tolist() == [passes * 2.0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_an_update_steps_every_parameter_with_the_same_passes(workers, fast_switching):
    # A pass that commits while an update runs lands in all of its parameters' gradients or in
    # none: the update takes them in one indivisible step. (Taken one by one, a pass that
    # committed during the weight's step went to the bias's gradient only.)
    w, b, loss = _weight_bias_and_loss(workers)
    passes = 300
    counts: list[tuple[float, float]] = []
    finished = threading.Event()

    def record(position, value, gradient):
        if position == 0:
            counts.append((gradient[0], 0.0))
            time.sleep(0.0002)  # the weight's step takes time: passes commit meanwhile
        else:
            counts[-1] = (counts[-1][0], gradient[0] / 2.0)
        return value

    def work(i):
        if i == 0:
            for _ in range(passes):
                loss.backward()
            finished.set()
        else:
            while not finished.is_set() or len(counts) < 20:
                if w.gradient() is not None:
                    step_parameters([w, b], record)

    run_threads(2, work)
    assert counts and all(for_w == for_b for for_w, for_b in counts), [c for c in counts if c[0] != c[1]][:5]
    left = 0.0 if w.gradient() is None else w.gradient().numpy()[0]
    assert sum(for_w for for_w, _ in counts) + left == passes


def test_a_parameter_listed_twice_is_stepped_once_at_its_first_place():
    w = Array([1.0, 2.0]).tracked()
    (w * 3.0).sum().backward()
    seen = []

    def step(position, value, gradient):
        seen.append(position)
        return value - 0.5 * gradient

    first, again = step_parameters([w, w], step)
    assert seen == [0] and again is w and first.numpy().tolist() == [-0.5, 0.5] and w.gradient() is None


class StepFailed(Exception):
    pass


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_a_failed_step_puts_every_taken_gradient_back(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    set_yield_point(_yielding)
    params = [Array(np.zeros(2)).tracked() for _ in range(4)]
    loss = (params[0] + params[1] * 2.0 + params[2] * 3.0 + params[3] * 4.0).sum()
    passes = 300
    kept = np.zeros((4, 2))  # what successful updates took
    outcomes = {"failed": 0, "stepped": 0, "fail_now": False}

    def step(position, value, gradient):
        if position == 2 and outcomes["fail_now"]:
            raise StepFailed("refused, after two gradients were taken")
        outcomes["pending"][position] += gradient
        return value

    def work(i):
        if i == 0:
            for _ in range(passes):
                loss.backward()
        else:
            while params[2].gradient() is None:  # the first update has something to fail on
                time.sleep(0.0001)
            for k in range(200):
                outcomes["fail_now"] = k % 3 == 0
                outcomes["pending"] = np.zeros((4, 2))
                try:
                    step_parameters(params, step)
                except StepFailed:
                    outcomes["failed"] += 1  # it counts nothing: its gradients went back
                else:
                    kept[:] += outcomes["pending"]
                    outcomes["stepped"] += 1

    run_threads(2, work)
    assert outcomes["failed"] >= 1 and outcomes["failed"] + outcomes["stepped"] == 200
    left = np.array([np.zeros(2) if p.gradient() is None else p.gradient().numpy() for p in params])
    assert (kept + left).tolist() == [[passes * k] * 2 for k in (1.0, 2.0, 3.0, 4.0)]


@pytest.mark.timeout(60)
def test_a_put_back_that_overflows_keeps_the_gradient():
    # An overflow while adding a taken gradient back gives inf (as the pass would have),
    # never a lost gradient, even when the step ran under np.errstate(over="raise").
    w = Array(np.array([1.0])).tracked()
    (w * 1e308).sum().backward()  # dw = 1e308
    taken = {}

    def step(position, value, gradient):
        taken["g"] = gradient.copy()
        (w * 1e308).sum().backward()  # another pass commits 1e308 meanwhile
        raise StepFailed("after a commit landed")

    with np.errstate(over="raise"), pytest.raises(StepFailed):
        step_parameters([w], step)
    assert taken["g"].tolist() == [1e308]
    assert w.gradient().numpy().tolist() == [np.inf]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_node_take_add_and_clear_race_commits_exactly(workers, fast_switching):
    # The engine alone, integer deltas: 4 threads commit passes, 2 take and put back
    # half of what they take, 1 adds directly. Every unit is accounted for.
    configure(workers=workers, handoff_cost=0)
    set_yield_point(_yielding)
    leaves = [Node(name=f"leaf{i}") for i in range(3)]
    roots = [Node(tuple(leaves), lambda d: (d, 2 * d, 3 * d), name=f"root{i}") for i in range(4)]
    passes, takes, adds = 200, 300, 300
    taken = [0, 0, 0]
    lock = threading.Lock()

    def work(i):
        if i < 4:
            for _ in range(passes):
                backward(roots[i], 1)
        elif i < 6:
            for k in range(takes):
                values = take_gradients(leaves)
                if k % 2:
                    add_gradients([n for n, v in zip(leaves, values) if v], [v for v in values if v])
                else:
                    with lock:
                        for j, value in enumerate(values):
                            taken[j] += value or 0
        else:
            for _ in range(adds):
                leaves[0].add_gradient(1)

    run_threads(7, work)
    left = [leaf.gradient or 0 for leaf in leaves]
    per_root = 4 * passes
    assert [t + l for t, l in zip(taken, left)] == [per_root + adds, 2 * per_root, 3 * per_root]

"""``corgi.no_grad()``: operations inside record nothing, for this thread only."""

from __future__ import annotations

import threading

import pytest
from concurrency import run_threads

from corgi import Array, arr, no_grad


def test_operations_under_no_grad_are_untracked_and_keep_their_values():
    w = arr(2.0, 3.0).tracked()
    with no_grad():
        y = (w * w).exp().sum()
    assert not y.is_tracked
    assert y == (arr(2.0, 3.0) * arr(2.0, 3.0)).exp().sum()
    assert w.is_tracked and (w * 1.0).is_tracked


def test_nested_and_reused_no_grad_restores_recording_on_the_way_out():
    w = arr(1.0).tracked()
    guard = no_grad()
    with guard:
        with guard:
            assert not (w * 2.0).is_tracked
        assert not (w * 2.0).is_tracked
    assert (w * 2.0).is_tracked


def test_an_exception_inside_no_grad_restores_recording():
    w = arr(1.0).tracked()
    with pytest.raises(ZeroDivisionError), no_grad():
        1 / 0
    assert (w * 2.0).is_tracked


def test_no_grad_decorates_functions_with_and_without_parentheses():
    w = arr(2.0).tracked()

    @no_grad
    def bare(x):
        return x * w

    @no_grad()
    def called(x):
        return x * w

    assert not bare(arr(1.0)).is_tracked
    assert not called(arr(1.0)).is_tracked
    assert bare.__name__ == "bare" and called.__name__ == "called"
    assert (w * 1.0).is_tracked


def test_no_grad_decorates_methods():
    class Model:
        def __init__(self):
            self.w = arr(3.0).tracked()

        @no_grad
        def predict(self, x):
            return x * self.w

    assert not Model().predict(arr(1.0)).is_tracked


def test_custom_operations_record_nothing_under_no_grad():
    x = arr(3.0).tracked()
    with no_grad():
        y = Array.op([x], lambda xs: xs[0] * xs[0], lambda xs, t, d: [2.0 * xs[0] * d])
    assert not y.is_tracked


@pytest.mark.timeout(60)
def test_no_grad_in_one_thread_never_stops_another_from_recording(fast_switching):
    w = arr(1.0, 2.0).tracked()
    guard = no_grad()  # one shared instance, entered by several threads at once
    inside = threading.Barrier(4)
    seen = {}

    def body(i):
        if i % 2:
            with guard:
                inside.wait(10)
                seen[i] = [(w * 2.0).is_tracked for _ in range(200)]
                inside.wait(10)
        else:
            inside.wait(10)
            seen[i] = [(w * 2.0).is_tracked for _ in range(200)]
            inside.wait(10)
        seen[i].append((w * 2.0).is_tracked)

    run_threads(4, body)
    for i in (1, 3):
        assert seen[i][:-1] == [False] * 200 and seen[i][-1] is True
    for i in (0, 2):
        assert seen[i] == [True] * 201
    assert (w * 2.0).is_tracked


def test_gradients_of_a_pass_are_unaffected_by_an_evaluation_under_no_grad():
    w = arr(2.0).tracked()
    loss = w * w
    with no_grad():
        _ = w * 100.0
    loss.backward()
    assert w.gradient() == arr(4.0)


def test_no_grad_called_with_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="no_grad"):
        no_grad()(1, 2)

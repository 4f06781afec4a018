"""A parent whose threads are stuck inside passes forks; each child must use corgi freely.

Run by ``tests/test_fork.py`` in a subprocess with a timeout (``python
tests/fork_scenario.py``). For each place the engine can be stopped in (each
yield point site, a worker inside a vjp, a thread inside a ready hook), the
parent parks threads there, forks, and waits for the child with a timeout.
The child runs new graphs (serial and with a fresh pool), runs passes
through the very nodes the parent's threads are stuck in, takes and clears
their gradients, traces a pass and registers a hook, checking every number.
Exit status 0 and one "ok" line per child, or the reason it failed.
"""

from __future__ import annotations

import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np

from corgi import (
    Array,
    engine,
)
from corgi.engine import Node, backward

COSTLY = 1 << 20
CHILD_TIMEOUT = 30.0


def graph(tag):
    """root -> 4 costly middles -> 3 leaves; leaf i gets 4 (i + 1) per pass of delta 1."""
    leaves = [Node(name=f"{tag}-leaf{i}") for i in range(3)]
    middles = [Node(tuple(leaves), lambda d: (d, 2 * d, 3 * d), name=f"{tag}-mid{k}", cost=COSTLY) for k in range(4)]
    return leaves, Node(tuple(middles), lambda d: (d,) * 4, name=f"{tag}-root")


def child(leaves, root):
    """Everything a forked child must be able to do, checked (each of 4 worker counts runs the shared graph once)."""
    before = [leaf.gradient or 0 for leaf in leaves]
    for workers in (0, 1, 2, 8):
        engine.configure(workers=workers, handoff_cost=0)
        fresh_leaves, fresh_root = graph("fresh")
        backward(fresh_root, 1)
        assert [leaf.gradient for leaf in fresh_leaves] == [4, 8, 12], "a new graph"
        backward(root, 1)  # through nodes the parent's threads were inside
        x = Array(np.linspace(-1.0, 1.0, 5000)).tracked()
        ((x * x).tanh() + x.exp()).sum().backward()
        assert x.gradient() is not None
    assert [leaf.gradient for leaf in leaves] == [b + 16 * k for b, k in zip(before, (1, 2, 3))], "the shared graph"
    if hasattr(leaves[0], "take_gradient"):
        assert leaves[0].take_gradient() == before[0] + 16 and leaves[0].gradient is None
        handle = engine.add_ready_hook(root, lambda node, total: None)
        handle.remove()
    leaves[1].clear_gradient()
    with engine.trace() as recorded:
        backward(root, 1)
    assert recorded.events[-1].detail == "done"
    assert leaves[1].gradient == 8


def park(site, parked, release):
    """A yield point that stops the first thread to reach ``site`` until ``release``."""
    taken = threading.Lock()

    def hook(where):
        if where == site and taken.acquire(blocking=False):
            parked.set()
            release.wait(60)

    return hook


def fork_and_wait(leaves, root):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child(leaves, root)
        except BaseException as error:  # noqa: BLE001 - report anything, then leave
            print(f"child failed: {type(error).__name__}: {error}", flush=True)
            code = 1
        os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"


def scenario(where):
    """Park a thread at ``where``, fork, check the child; then let the parent finish."""
    engine.configure(workers=2, handoff_cost=0)
    leaves, root = graph("shared")
    backward(root, 1)
    parked, release = threading.Event(), threading.Event()
    hook_handle = None
    if where == "vjp":  # a pool worker inside a costly node's vjp
        middle = root.inputs[0]
        plain = middle.vjp

        def stuck(delta):
            parked.set()
            release.wait(60)
            return plain(delta)

        middle.vjp = stuck
    elif where == "hook":  # a thread inside a gradient-ready hook
        if not hasattr(engine, "add_ready_hook"):
            return "skipped"

        def hook(node, total):
            parked.set()
            release.wait(60)

        hook_handle = engine.add_ready_hook(leaves[2], hook)
    else:  # a thread stopped at one of the engine's yield points
        engine.set_yield_point(park(where, parked, release))
    runner = threading.Thread(target=backward, args=(root, 1), name="parked")
    runner.start()
    if not parked.wait(30):
        return "never parked"
    if hook_handle is not None:
        hook_handle.remove()  # the child's own passes must not park
    engine.set_yield_point(None)
    if where == "vjp":
        root.inputs[0].vjp = plain
    outcome = fork_and_wait(leaves, root)
    release.set()
    runner.join(30)
    assert not runner.is_alive(), "the parent's parked pass never finished"
    return outcome


def main():
    failures = []
    for where in ("count", "report", "stage", "commit", "vjp", "hook"):
        outcome = scenario(where)
        print(f"{where}: {'ok' if outcome == 0 else outcome}", flush=True)
        if outcome not in (0, "skipped"):
            failures.append(where)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""A forked child can use corgi whatever the parent's threads were doing (issue 11, item 2).

The scenario (``tests/fork_scenario.py``) parks a parent thread inside a pass
at each place the engine can be stopped (every yield point, a vjp on a pool
worker, a ready hook), forks, and checks in the child that new graphs, the
very nodes the parent was inside, gradients, traces and hooks all work. It
runs in a subprocess with a timeout, and waits for each child with one, so a
hang is a failure and never a hung suite. Before, the table of node locks was
inherited as is: a child whose parent had a thread inside a report (under a
node lock) blocked forever on every node mapped to that lock: run against
the engine before issue 11, the scenario prints "report: hung" and
"commit: hung".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.timeout(300)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_child_forked_mid_pass_runs_new_and_old_graphs():
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "fork_scenario.py")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{where}: ok" for where in ("count", "report", "stage", "commit", "vjp", "hook")
    ], done.stdout + done.stderr

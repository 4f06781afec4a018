"""What the counter protocol leaves in memory, and that its shortcuts keep the canonical order."""

import sys

import pytest

from corgi import Array
from corgi.engine import Node
from corgi.engine.counting import SHRINK, count_consumers, report


def test_tokens_are_one_then_none():
    a = Node()
    root = Node((a, a, a))
    count_consumers(root, "p")
    assert a.pending["p"][1] == [1, None, None]


@pytest.mark.skipif(not SHRINK, reason="free-threaded build: emptied tables are kept (see counting.SHRINK)")
def test_a_pass_leaves_no_counter_tables_behind():
    w = Array([0.5]).tracked()
    x = Array([1.0])
    nodes = []
    for _ in range(50):
        x = x * w + w
        nodes.append(x._node)
    x.backward()
    empty = sys.getsizeof({})
    assert all(not node.pending and sys.getsizeof(node.pending) == empty for node in [*nodes, w._node])


@pytest.mark.parametrize("arrival", ["descending", "ascending", "shuffled"])
def test_reports_are_summed_in_key_order_whatever_order_they_arrive_in(arrival):
    values = [1e16, 1.0, -1e16, 1.0, 3.0]  # floating-point sums that depend on the order
    keys = [10 << 32, 11 << 32, 11 << 32 | 1, 12 << 32, 13 << 32]
    x = Node()
    root = Node(tuple([x] * len(values)))
    count_consumers(root, "p")
    order = {"descending": [4, 3, 2, 1, 0], "ascending": [0, 1, 2, 3, 4], "shuffled": [2, 0, 4, 1, 3]}[arrival]
    results = [report(x, "p", keys[i], values[i]) for i in order]
    expected = 0.0 + values[0]
    for v in values[1:]:
        expected += v
    assert results[-1] == expected and all(r is not None and str(r) == "WAITING" for r in results[:-1])

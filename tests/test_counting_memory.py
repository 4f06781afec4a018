"""What the counter protocol leaves in memory, and that its shortcuts keep the canonical order."""

import gc
import sys

import counters
import pytest

from corgi import Array
from corgi.array.nodes import OpNode
from corgi.engine import Node
from corgi.engine.counting import count_consumers, report


def test_tokens_are_one_then_none():
    a = Node()
    root = Node((a, a, a))
    counts = count_consumers(root, {})
    assert counts[a][0] == [1, None, None]


def test_a_pass_leaves_no_counters_and_nodes_carry_none():
    w = Array([0.5]).tracked()
    x = Array([1.0])
    nodes = []
    for _ in range(50):
        x = x * w + w
        nodes.append(x._node)
    x.backward()
    counters.assert_none_left()
    # the counters live in the pass's table: a node holds nothing for them between passes
    assert not any(hasattr(node, "pending") for node in [*nodes, w._node])
    assert not any(isinstance(r, dict) for node in nodes for r in gc.get_referents(node))


def test_a_node_is_a_small_object():
    # ten fields and the weak-reference slot: the per-node dict of pass counters (a slot and
    # 64 bytes for the dict) went into each pass's own table
    node = (Array([1.0]).tracked() * 2.0)._node
    assert type(node) is OpNode
    assert sys.getsizeof(node) <= 16 + 16 + 8 * 11


def test_a_node_subclass_may_not_redefine_equality():
    with pytest.raises(TypeError, match="compares by identity; it may not define __eq__"):
        type("ByValue", (Node,), {"__slots__": (), "__eq__": lambda self, other: True})


@pytest.mark.parametrize("arrival", ["descending", "ascending", "shuffled"])
def test_reports_are_summed_in_key_order_whatever_order_they_arrive_in(arrival):
    values = [1e16, 1.0, -1e16, 1.0, 3.0]  # floating-point sums that depend on the order
    keys = [10 << 32, 11 << 32, 11 << 32 | 1, 12 << 32, 13 << 32]
    x = Node()
    root = Node(tuple([x] * len(values)))
    counts = count_consumers(root, {})
    order = {"descending": [4, 3, 2, 1, 0], "ascending": [0, 1, 2, 3, 4], "shuffled": [2, 0, 4, 1, 3]}[arrival]
    results = [report(x, counts, keys[i], values[i]) for i in order]
    expected = 0.0 + values[0]
    for v in values[1:]:
        expected += v
    assert results[-1] == expected and all(r is not None and str(r) == "WAITING" for r in results[:-1])

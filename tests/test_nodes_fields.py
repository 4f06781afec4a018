"""``op_node`` builds its nodes without ``Node.__init__``: it must set exactly what ``__init__`` sets."""

import numpy as np

from corgi import Array, engine
from corgi.array.nodes import OpNode, op_node


def slots(cls):
    names = []
    for klass in cls.__mro__:
        names += [n for n in getattr(klass, "__slots__", ()) if n != "__weakref__"]
    return names


def test_op_node_sets_every_field_init_would():
    leaf = Array([1.0]).tracked()._node
    value = np.zeros((2, 3))
    node = op_node((leaf,), "mul", 6, value, (None,), ("saved",))
    reference = engine.Node((leaf,), None, "mul", 6)
    for name in slots(engine.Node):
        assert hasattr(node, name), name
        if name != "seq":
            assert getattr(node, name) == getattr(reference, name), name
    assert node.seq < reference.seq  # ids in creation order, from the same counter
    assert node.pending is not op_node((leaf,), "mul", 6, value, (None,), None).pending  # one dict each
    assert (node.shape, node.dtype, node.vjps, node.saved) == ((2, 3), np.dtype("float64"), (None,), ("saved",))
    assert all(hasattr(node, name) for name in slots(OpNode))


def test_operations_record_the_same_nodes_through_binary_and_apply():
    from corgi.array.operation import apply, binary

    x, w = Array([2.0, 3.0]).tracked(), Array([4.0, 5.0])
    for a, b in ((x, w), (w, x), (x, x), (x, 2.0), (2.0, x), (w, 2.0)):
        fast, general = binary("mul", a, b), apply("mul", (a, b))
        assert fast.numpy().tolist() == general.numpy().tolist()
        assert fast.is_tracked == general.is_tracked
        if fast.is_tracked:
            assert fast._node.inputs == general._node.inputs and fast._node.vjps == general._node.vjps
            assert all(s is t for s, t in zip(fast._node.saved, general._node.saved, strict=True))

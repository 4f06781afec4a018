"""``op_node`` builds its nodes without ``Node.__init__``: it must set exactly what ``__init__`` sets."""

import numpy as np

import corgi
from corgi import Array, engine
from corgi.array.nodes import OpNode, leaf_node, op_node


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


def test_leaf_node_sets_every_field_init_would():
    values = np.zeros((2, 3), dtype=np.float32)
    for name, label in ((None, "leaf"), ("w", "w")):
        node = leaf_node(values, name)
        reference = engine.Node() if name is None else engine.Node(name=name)
        for field in slots(engine.Node):
            assert hasattr(node, field), field
            if field != "seq":
                assert getattr(node, field) == getattr(reference, field), field
        assert (node.name, node.shape, node.dtype, node.is_leaf) == (label, (2, 3), np.dtype("float32"), True)


def test_unary_operations_record_what_the_general_path_records():
    from corgi.array import operation

    x = Array([[1.0, -2.0], [3.0, 0.5]]).tracked()
    for name, params in (("relu", None), ("exp", None), ("sum", {"axis": (0, 1), "shape": (1,)})):
        fast = operation.apply(name, (x,), params)
        raw = [x._values]
        assert fast.is_tracked and fast._node.inputs == (x._node,)
        assert fast._node.vjps == operation.PRIMITIVES[name].subsets[1]
        expected = operation.PRIMITIVES[name].forward(*raw, **(params or {}))[0]
        assert np.array_equal(fast.numpy(), np.asarray(expected).reshape(fast.dimensions))
        with corgi.no_grad():
            assert not operation.apply(name, (x,), params).is_tracked
    assert not operation.apply("relu", (Array([1.0]),)).is_tracked

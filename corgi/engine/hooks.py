"""Gradient-ready hooks: a callback as soon as a node's total delta for a pass is final.

Data-parallel training starts sending a gradient to the other processes
while the pass is still computing the rest; it needs to hear the moment a
parameter's total for the pass is known. ``add_ready_hook(node, callback)``
arranges that: in every pass that commits (``backward`` without
``targets``) and reaches ``node``, ``callback(node, total)`` is called once,
when the last consumer of ``node`` has reported, with the node's total
delta for that pass (None if the pass reached it but sent it no delta).

Ordering, for a node N in one pass:

- N's hooks run before the pass commits anything, and before N's own vjp
  runs (so before any node that N feeds becomes final). For a leaf that is
  simply "before the commit".
- They run on whichever thread completed N (the caller or a pool worker),
  outside every engine lock; hooks of different nodes may run at the same
  time on different threads, in an order that changes from run to run
  when workers > 0. With ``workers=0`` every hook runs on the caller, in
  the same order on every run.
- Several hooks on one node run in the order they were added.
- If a hook raises, the pass fails as a whole: nothing is committed and
  ``backward()`` raises that exception. Hooks of other nodes that already
  ran are not undone: a hook that starts work must cope with a pass that
  then fails.

A hook added or removed while a pass runs applies from the next pass on.
The registry holds the hook and a weak reference to the node, never the
node itself: when the node is freed its hooks go with it. Adding and
removing are indivisible steps (``atomic``), safe from any thread and from
finalizers and signal handlers. When no hook exists anywhere, a pass pays
one ``None`` check per node it completes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .atomic import publish

ReadyCallback = Callable[[Any, Any], object]


class ReadyHook:
    """The handle of one ready hook; ``remove()`` unregisters it (again is harmless).

    >>> from corgi.engine import Node, add_ready_hook, backward
    >>> x = Node(name="x"); seen = []
    >>> handle = add_ready_hook(x, lambda node, total: seen.append((node.name, total)))
    >>> backward(Node((x, x), lambda d: (2 * d, 3 * d)), 1)
    >>> handle.remove(); handle.remove()
    >>> backward(Node((x,), lambda d: (d,)), 1)
    >>> seen, x.gradient
    ([('x', 5)], 6)
    """

    __slots__ = ("__weakref__", "callback", "node_ref", "seq")

    def __init__(self, seq: int, callback: ReadyCallback, node_ref: weakref.ref[Any]) -> None:
        self.seq = seq
        self.callback = callback
        self.node_ref = node_ref

    def remove(self) -> None:
        """Stop calling this hook (from the next pass on).

        >>> from corgi.engine import Node, add_ready_hook
        >>> handle = add_ready_hook(Node(), print)
        >>> handle.remove() is None
        True
        """
        _edit(self.seq, lambda hooks: tuple(hook for hook in hooks if hook is not self))

    def __repr__(self) -> str:
        return f"ReadyHook(node #{self.seq}, {self.callback!r})"


class _Registry:
    """The module's one mutable cell: ``hooks`` maps a node's seq to its hooks; replaced, never changed."""

    __slots__ = ("hooks",)

    def __init__(self) -> None:
        self.hooks: dict[int, tuple[ReadyHook, ...]] = {}


_registry = _Registry()


def add_ready_hook(node: Any, callback: ReadyCallback) -> ReadyHook:
    """Call ``callback(node, total)`` in each committing pass, once ``node``'s total is final.

    See the module docstring for when and where it runs. Returns a handle
    whose ``remove()`` unregisters it.

    >>> from corgi.engine import Node, add_ready_hook, backward
    >>> w = Node(name="w"); totals = []
    >>> _ = add_ready_hook(w, lambda node, total: totals.append(total))
    >>> backward(Node((w,), lambda d: (10 * d,)), 2)
    >>> totals, w.gradient
    ([20], 20)
    """
    if not callable(callback):
        raise TypeError(f"add_ready_hook: callback must be callable, got {type(callback).__name__}")
    try:
        seq = node.seq
        ref = weakref.ref(node, _forget_node)
    except (AttributeError, TypeError):
        raise TypeError(f"add_ready_hook: node must be an engine Node, got {type(node).__name__}") from None
    hook = ReadyHook(seq, callback, ref)
    _edit(seq, lambda hooks: (*hooks, hook))
    return hook


def registered() -> dict[int, tuple[ReadyHook, ...]] | None:
    """The hooks a pass starting now will call (by node seq), or None if there are none.

    >>> registered() is None or isinstance(registered(), dict)
    True
    """
    return _registry.hooks or None


def _forget_node(ref: weakref.ref[Any]) -> None:
    # The node is gone: drop its hooks (a weakref callback, so it may run anywhere).
    _drop(lambda hook: hook.node_ref is ref)


def _edit(seq: int, change: Callable[[tuple[ReadyHook, ...]], tuple[ReadyHook, ...]]) -> None:
    """Replace the hooks of node ``seq`` by ``change(old hooks)``, in one indivisible step."""
    while True:
        old = _registry.hooks
        hooks = change(old.get(seq, ()))
        new = dict(old)
        if hooks:
            new[seq] = hooks
        else:
            new.pop(seq, None)
        if publish((_registry,), "hooks", (old,), (new,)):
            return


def _drop(unwanted: Callable[[ReadyHook], bool]) -> None:
    while True:
        old = _registry.hooks
        new = {}
        for seq, hooks in old.items():
            kept = tuple(hook for hook in hooks if not unwanted(hook))
            if kept:
                new[seq] = kept
        if publish((_registry,), "hooks", (old,), (new,)):
            return


def add_ready_hooks(nodes: Sequence[Any], callback: ReadyCallback) -> list[ReadyHook]:
    """``add_ready_hook(node, callback)`` for each of ``nodes``, all in one indivisible step.

    Returns one handle per node; ``remove_ready_hooks`` removes them all in
    one step too. (Data-parallel training watches every parameter anew at
    each step, since an update makes new parameters: one registry edit per
    node cost it 37 us a step for four parameters, one for all of them 5.5.)

    >>> from corgi.engine import Node, add_ready_hooks, backward, remove_ready_hooks
    >>> w, b = Node(name="w"), Node(name="b"); heard = []
    >>> hooks = add_ready_hooks([w, b], lambda node, total: heard.append((node.name, total)))
    >>> backward(Node((w, b), lambda d: (2 * d, 3 * d)), 1)
    >>> remove_ready_hooks(hooks)
    >>> backward(Node((w, b), lambda d: (2 * d, 3 * d)), 1)
    >>> sorted(heard)
    [('b', 3), ('w', 2)]
    """
    if not callable(callback):
        raise TypeError(f"add_ready_hooks: callback must be callable, got {type(callback).__name__}")
    made = []
    for position, node in enumerate(nodes):
        try:
            made.append(ReadyHook(node.seq, callback, weakref.ref(node, _forget_node)))
        except (AttributeError, TypeError):
            raise TypeError(
                f"add_ready_hooks: node {position} must be an engine Node, got {type(node).__name__}"
            ) from None
    while True:
        old = _registry.hooks
        new = dict(old)
        for hook in made:
            present = new.get(hook.seq)
            new[hook.seq] = (hook,) if present is None else (*present, hook)
        if publish((_registry,), "hooks", (old,), (new,)):
            return made


def remove_ready_hooks(hooks: Sequence[ReadyHook]) -> None:
    """Remove every one of ``hooks`` (from the next pass on), in one indivisible step; again is harmless.

    >>> from corgi.engine import Node, add_ready_hooks, remove_ready_hooks
    >>> hooks = add_ready_hooks([Node(), Node()], print)
    >>> remove_ready_hooks(hooks); remove_ready_hooks(hooks)
    """
    while True:
        old = _registry.hooks
        new = dict(old)
        for hook in hooks:
            present = new.get(hook.seq)
            if present is None:
                continue
            kept = () if present == (hook,) else tuple(other for other in present if other is not hook)
            if kept:
                new[hook.seq] = kept
            else:
                del new[hook.seq]
        if publish((_registry,), "hooks", (old,), (new,)):
            return

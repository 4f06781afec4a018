"""Recording passes, and drawing them as Mermaid sequence diagrams.

``with corgi.engine.trace() as t:`` collects the events of every pass that
starts inside the block, on any thread: the pass starting, the consumer
count of each node, each node firing, each delta sent, each node
completing, errors and the end. ``t.events`` holds the records and
``t.mermaid()`` renders them. Outside a ``trace`` block the engine records
nothing and pays one ``None`` check per event site.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from .atomic import publish


class Event(NamedTuple):
    """One thing that happened in a pass.

    ``kind`` is one of ``start``, ``count``, ``fire``, ``send``, ``complete``,
    ``error`` and ``end``. ``node`` and ``target`` are ``(name, sequence id)``
    pairs (``target`` only for ``send``); ``detail`` is the consumer count of
    ``count``, whether a ``send`` carried a delta, the exception type of
    ``error`` and ``"done"``/``"failed"`` for ``end``.

    >>> from corgi.engine import Node, backward
    >>> with trace() as t:
    ...     backward(Node(name="x"), 1)
    >>> first, last = t.events[0], t.events[-1]
    >>> first.kind, first.node[0], first.target, last.kind, last.detail
    ('start', 'x', None, 'end', 'done')
    """

    kind: str
    pass_id: int
    node: tuple[str, int] | None
    target: tuple[str, int] | None
    detail: Any
    thread: str


class Recorder:
    """What the scheduler calls; a ``Trace`` or several at once."""

    def __init__(self, traces: tuple[Trace, ...]) -> None:
        self.traces = traces

    def event(self, kind: str, pass_id: int, node: Any, target: Any = None, detail: Any = None) -> None:
        record = Event(
            kind,
            pass_id,
            None if node is None else (node.name, node.seq),
            None if target is None else (target.name, target.seq),
            detail,
            threading.current_thread().name,
        )
        for trace in self.traces:
            trace.events.append(record)


class Trace:
    """The events of the passes run inside one ``trace()`` block.

    >>> from corgi.engine import Node, backward, trace
    >>> x = Node(name="x")
    >>> y = Node((x,), lambda d: (2 * d,), name="double")
    >>> with trace() as t:
    ...     backward(y, 1)
    >>> [event.kind for event in t.events]
    ['start', 'count', 'count', 'fire', 'send', 'fire', 'complete', 'complete', 'end']
    >>> print(t.mermaid())
    sequenceDiagram
        participant P1 as backward() 1
        participant N1 as x 1
        participant N2 as double 2
        P1->>N2: delta (counted:<br/>x 1 waits for 1)
        activate N2
        Note right of N2: fired on caller 1
        N2->>N1: delta
        activate N1
        Note right of N1: fired on caller 1
        deactivate N1
        deactivate N2
        N2-->>P1: done
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def mermaid(self, threads: bool = True) -> str:
        """Render the events as a Mermaid ``sequenceDiagram``.

        Nodes are numbered by creation order and threads are named by role
        (``caller k`` for the thread that called pass k's ``backward()``,
        ``worker k`` for the others), so the same graph gives the same
        diagram on every run. ``threads=False`` leaves thread notes out.

        >>> from corgi.engine import Node, backward
        >>> x = Node(name="x")
        >>> with trace() as t:
        ...     backward(Node((x,), lambda d: (2 * d,), name="double"), 1)
        >>> print(t.mermaid(threads=False))
        sequenceDiagram
            participant P1 as backward() 1
            participant N1 as x 1
            participant N2 as double 2
            P1->>N2: delta (counted:<br/>x 1 waits for 1)
            activate N2
            N2->>N1: delta
            activate N1
            deactivate N1
            deactivate N2
            N2-->>P1: done
        """
        return _render(self.events, threads)


class _Recording:
    """The module's one mutable cell: the traces recording now and their recorder; replaced, never changed."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: tuple[tuple[Trace, ...], Recorder | None] = ((), None)


_recording = _Recording()


def active() -> Recorder | None:
    """The recorder for a pass starting now, or ``None`` outside any trace."""
    return _recording.current[1]


def _change(edit: Callable[[tuple[Trace, ...]], tuple[Trace, ...]]) -> None:
    # One indivisible step (``atomic``): safe from any thread, finalizer or signal handler.
    while True:
        old = _recording.current
        traces = edit(old[0])
        new = (traces, Recorder(traces) if traces else None)
        if publish((_recording,), "current", (old,), (new,)):
            return


@contextmanager
def trace() -> Iterator[Trace]:
    """Record every pass that starts inside the block (see ``Trace``).

    >>> from corgi.engine import Node, backward
    >>> x = Node(name="x")
    >>> with trace() as t:
    ...     backward(Node((x,), lambda d: (d,), name="copy"), 1)
    >>> sorted({event.node[0] for event in t.events})
    ['copy', 'x']
    >>> recorded = len(t.events)
    >>> backward(Node((x,), lambda d: (d,)), 1)    # after the block: nothing more is recorded
    >>> len(t.events) == recorded
    True
    """
    recording = Trace()
    _change(lambda traces: (*traces, recording))
    try:
        yield recording
    finally:
        _change(lambda traces: tuple(t for t in traces if t is not recording))


def _render(events: list[Event], threads: bool) -> str:
    nodes: dict[tuple[str, int], str] = {}
    passes: dict[int, str] = {}
    callers: dict[int, str] = {}  # pass id -> thread name of its caller
    roles: dict[str, str] = {}
    workers = [0]
    lines: list[str] = []
    counts: dict[int, list[str]] = {}

    # Nodes are numbered by creation (sequence id), not by when a thread first
    # mentioned them, so concurrent passes give the same labels on every run.
    seen = sorted({n for e in events for n in (e.node, e.target) if n is not None}, key=lambda n: n[1])
    for node in seen:
        nodes[node] = f"N{len(nodes) + 1}"

    def ref(node: tuple[str, int] | None) -> str:
        assert node is not None, "a fire, send, complete or end event names its node"
        return nodes[node]

    def label(node: tuple[str, int]) -> str:
        return f"{node[0]} {nodes[node][1:]}"

    def role(event: Event) -> str:
        if callers.get(event.pass_id) == event.thread:
            return f"caller {passes[event.pass_id][1:]}"
        if event.thread not in roles:
            workers[0] += 1
            roles[event.thread] = f"worker {workers[0]}"
        return roles[event.thread]

    for event in events:
        if event.kind == "start":
            passes[event.pass_id] = f"P{len(passes) + 1}"
            callers[event.pass_id] = event.thread
            counts[event.pass_id] = []
        elif event.kind == "count" and event.detail and event.node is not None:
            counts[event.pass_id].append(f"{label(event.node)} waits for {event.detail}")

    body: list[str] = []
    started: set[int] = set()
    for event in events:
        caller = passes.get(event.pass_id, "P?")
        if event.kind == "fire":
            target = ref(event.node)
            if event.pass_id not in started:
                started.add(event.pass_id)
                # one count a line: ";" would end a Mermaid statement
                counted = "<br/>".join(counts.get(event.pass_id, [])) or "no inputs"
                body.append(f"{caller}->>{target}: delta (counted:<br/>{counted})")
            body.append(f"activate {target}")
            if threads:
                body.append(f"Note right of {target}: fired on {role(event)}")
        elif event.kind == "send":
            arrow = "->>" if event.detail else "-->>"
            text = "delta" if event.detail else "no delta"
            body.append(f"{ref(event.node)}{arrow}{ref(event.target)}: {text}")
        elif event.kind == "complete":
            body.append(f"deactivate {ref(event.node)}")
        elif event.kind == "error":
            if event.node is not None:
                failed = nodes[event.node]
                body.append(f"Note over {failed}: {event.detail} raised here, pass cancelled")
                body.append(f"deactivate {failed}")
            else:
                body.append(f"Note over {caller}: {event.detail} raised, pass cancelled")
        elif event.kind == "end":
            arrow = "-->>" if event.detail == "done" else "--x"
            body.append(f"{ref(event.node)}{arrow}{caller}: {event.detail}")

    lines.append("sequenceDiagram")
    for name in passes.values():
        lines.append(f"    participant {name} as backward() {name[1:]}")
    for node, name in nodes.items():
        lines.append(f"    participant {name} as {label(node)}")
    lines.extend("    " + line for line in body)
    return "\n".join(lines)

"""corgi's threaded backward engine.

It knows nothing of numpy or of any operation: it walks ``Node`` objects,
counts consumers, delivers deltas without locks, fires a node on its last
report, runs fired nodes on the calling thread or on a small pool of worker
threads, and commits a pass's gradients in one indivisible step.
``docs/engine.md`` tells the whole story.
"""

from .debug import set_yield_point
from .gradients import add_gradients, replace_gradients, take_gradients
from .hooks import ReadyHook, add_ready_hook, add_ready_hooks, remove_ready_hooks
from .node import Node
from .pool import Settings, configure, settings
from .scheduler import backward
from .trace import Event, Trace, trace

__all__ = [
    "Event",
    "Node",
    "ReadyHook",
    "Settings",
    "Trace",
    "add_gradients",
    "add_ready_hook",
    "add_ready_hooks",
    "backward",
    "configure",
    "remove_ready_hooks",
    "replace_gradients",
    "set_yield_point",
    "settings",
    "take_gradients",
    "trace",
]

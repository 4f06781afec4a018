"""corgi's threaded backward engine.

It knows nothing of numpy or of any operation: it walks ``Node`` objects,
counts consumers, delivers deltas under each node's lock, fires a node on
its last report, and runs fired nodes on the calling thread or on a shared
``concurrent.futures`` pool. ``docs/engine.md`` tells the whole story.
"""

from .debug import set_yield_point
from .node import Node
from .pool import Settings, configure, settings
from .scheduler import backward
from .trace import Event, Trace, trace

__all__ = ["Node", "Settings", "backward", "configure", "settings", "set_yield_point", "trace", "Trace", "Event"]

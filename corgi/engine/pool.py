"""Worker threads: how many, and the one shared executor.

``configure(workers=N)`` or the ``CORGI_WORKERS`` environment variable sets
the count (default: the number of CPUs, at most 8). ``workers=0`` means no
pool at all: every pass runs on the thread that called ``backward()``, the
same algorithm with nobody to hand work to.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

# Work below this cost (about one unit per element or multiply-add) runs on
# the thread that made it ready: a hand-off to the pool costs 10-15 us, which
# only pays for itself once numpy releases the GIL for long enough.
DEFAULT_HANDOFF_COST = 1 << 16


def _default_workers() -> int:
    text = os.environ.get("CORGI_WORKERS", "").strip()
    if not text:  # unset or empty: the default
        return min(8, os.cpu_count() or 1)
    try:
        workers = int(text)
    except ValueError:
        raise ValueError(f"CORGI_WORKERS must be a whole number >= 0, got {text!r}") from None
    if workers < 0:
        raise ValueError(f"CORGI_WORKERS must be a whole number >= 0, got {text!r}")
    return workers


@dataclass(frozen=True)
class Settings:
    """The engine's configuration at one moment (``settings()``, ``configure()``); frozen.

    >>> s = Settings(workers=2, handoff_cost=0)
    >>> s.workers, s.handoff_cost, s == Settings(2, 0)
    (2, 0, True)
    >>> isinstance(settings(), Settings)
    True
    """

    workers: int
    handoff_cost: int


_lock = threading.Lock()
_settings = Settings(_default_workers(), DEFAULT_HANDOFF_COST)
_executor: Optional[ThreadPoolExecutor] = None


def configure(workers: Optional[int] = None, handoff_cost: Optional[int] = None) -> Settings:
    """Set the worker count and/or the hand-off threshold; return the new settings.

    Passes already running keep the pool they started with, so reconfiguring
    never strands their work.

    >>> import corgi.engine as engine
    >>> before = engine.settings()
    >>> engine.configure(workers=0).workers
    0
    >>> engine.configure(workers=before.workers, handoff_cost=before.handoff_cost) == before
    True
    """
    global _settings, _executor
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise ValueError(f"configure: workers must be a whole number >= 0, got {workers!r}")
    if handoff_cost is not None and (
        not isinstance(handoff_cost, int) or isinstance(handoff_cost, bool) or handoff_cost < 0
    ):
        raise ValueError(f"configure: handoff_cost must be a whole number >= 0, got {handoff_cost!r}")
    with _lock:
        new = Settings(
            _settings.workers if workers is None else workers,
            _settings.handoff_cost if handoff_cost is None else handoff_cost,
        )
        if new.workers != _settings.workers and _executor is not None:
            # Threads finish the tickets they hold; idle ones exit.
            _executor.shutdown(wait=False)
            _executor = None
        _settings = new
        return new


def settings() -> Settings:
    """The current settings.

    >>> import corgi.engine as engine
    >>> engine.settings().workers >= 0
    True
    """
    return _settings


def executor() -> Optional[ThreadPoolExecutor]:
    """The shared pool, created on first use; ``None`` when ``workers=0``."""
    global _executor
    pool = _executor
    if pool is not None or _settings.workers == 0:
        return pool
    with _lock:
        if _executor is None and _settings.workers > 0:
            _executor = ThreadPoolExecutor(_settings.workers, thread_name_prefix="corgi-worker")
        return _executor


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist in a forked child.
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

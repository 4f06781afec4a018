"""The counter tables of the backward passes a test runs, to check that no pass leaves counters behind.

A pass keeps what each node still waits for in a table of its own (``corgi.engine.counting``).
When ``backward()`` returns or raises, that table must be empty: every counted node ran, or the
failed pass forgot them all. ``conftest.py`` records every pass's table during each test (the
chaos harness records the yielding table it puts in its place).
"""

_tables: list[dict] = []


def record(table: dict) -> None:
    _tables.append(table)


def reset() -> None:
    _tables.clear()


def left_behind() -> int:
    """How many of the passes run so far in this test still hold counters."""
    return sum(1 for table in _tables if table)


def assert_none_left() -> None:
    """Fail if a pass of this test (returned or raised) still holds counters."""
    stale = [dict(list(table.items())[:3]) for table in _tables if table]
    assert not stale, f"{len(stale)} of {len(_tables)} passes kept counters, e.g. {stale[:2]}"

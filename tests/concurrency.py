"""Starting many backward() callers at once, for the concurrency tests."""

import threading


def run_threads(count, target, timeout=90):
    """Run ``target(i)`` on ``count`` threads released together by a barrier.

    Fails if a thread is still running after ``timeout`` seconds (a hung
    ``backward()``), and re-raises the first exception any thread raised.
    """
    barrier = threading.Barrier(count)
    errors = []

    def body(i):
        try:
            barrier.wait(timeout)
            target(i)
        except BaseException as error:  # noqa: BLE001 - hand everything to the test
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,), name=f"caller-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a backward() call never returned"
    if errors:
        raise errors[0]

"""Whether operations record a graph: ``no_grad()``, per thread and per task.

The switch is a context variable, so it belongs to the thread (or asyncio
task) that set it: one thread evaluating a model under ``no_grad()`` never
stops another thread from training. New threads start with recording on.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("corgi_recording", default=True)

# ``_apply`` reads the switch on every operation with a tracked operand.
is_recording = _recording.get

F = TypeVar("F", bound=Callable[..., Any])


class no_grad:
    """Operations inside record nothing: their results are untracked, whatever their inputs.

    A context manager and a decorator (``@no_grad`` or ``@no_grad()``). It
    holds for the thread (or asyncio task) that entered it only, and nests.
    Arrays keep their tracked flag; only the recording of new operations stops.

    >>> from corgi import arr, no_grad
    >>> w = arr(2.0).tracked()
    >>> with no_grad():
    ...     y = w * 3.0
    >>> y.is_tracked, (w * 3.0).is_tracked, w.is_tracked
    (False, True, True)
    >>> @no_grad
    ... def predict(x):
    ...     return x * w
    >>> predict(arr(1.0)).is_tracked
    False
    """

    def __init__(self, function: Callable[..., Any] | None = None) -> None:
        # one stack of tokens per thread: a shared instance may be entered by several at once
        self._tokens = threading.local()
        self._function = function
        if function is not None:
            functools.update_wrapper(self, function)

    def __enter__(self) -> no_grad:  # noqa: PYI034 - typing.Self needs Python 3.11
        stack = self._tokens.__dict__.setdefault("stack", [])
        stack.append(_recording.set(False))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _recording.reset(self._tokens.stack.pop())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._function is None:
            # ``@no_grad()``: the instance decorates the function it is given
            if len(args) != 1 or kwargs or not callable(args[0]):
                raise TypeError("no_grad() decorates one function; use it as @no_grad or @no_grad()")
            return no_grad(args[0])
        token = _recording.set(False)
        try:
            return self._function(*args, **kwargs)
        finally:
            _recording.reset(token)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # a decorated method binds like the function it wraps
        if instance is None or self._function is None:
            return self
        return functools.partial(self.__call__, instance)

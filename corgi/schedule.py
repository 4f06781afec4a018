"""Learning-rate schedules: a rate for each position of a training run, usable in any loop.

A schedule is a function of a whole number ``t`` (an epoch or a step: the
loop decides which it counts) returning a learning rate; ``apply(optimizer,
t)`` sets the optimizer's ``learning_rate`` to it. Schedules hold no
position of their own, so a loop resumes one by passing the same ``t``;
``to_dict()`` and ``Schedule.from_dict()`` carry a schedule through a
checkpoint as plain data.

>>> from corgi.optimizer import GradientDescent
>>> schedule = Warmup(Cosine(0.1, total=8), steps=2)
>>> [round(schedule(t), 4) for t in range(11)]
[0.01, 0.055, 0.1, 0.0962, 0.0854, 0.0691, 0.05, 0.0309, 0.0146, 0.0038, 0.0]
>>> optimizer = GradientDescent(0.5)
>>> schedule.apply(optimizer, 2), optimizer.learning_rate
(0.1, 0.1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from .checks import whole_number


def _rate(value: object, what: str, where: str) -> float:
    """``value`` as a finite float >= 0, or the error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {what} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"{where}: {what} must be a finite number >= 0, got {value!r}")
    return number


class Schedule:
    """A learning rate for each position ``t`` = 0, 1, 2, ...; each subclass defines ``rate(t)``.

    >>> class Halving(Schedule):
    ...     def rate(self, t):
    ...         return 1.0 / 2**t
    >>> Halving()(3)
    0.125
    """

    def rate(self, t: int) -> float:
        """The learning rate at position ``t`` (already checked to be a whole number >= 0).

        >>> Constant(0.1).rate(5)
        0.1
        """
        raise NotImplementedError(f"{type(self).__name__} does not define rate")

    def __call__(self, t: int) -> float:
        return self.rate(whole_number(t, "t", type(self).__name__))

    def apply(self, optimizer: Any, t: int) -> float:
        """Set ``optimizer.learning_rate`` to the rate at ``t``; returns the rate.

        >>> from corgi.optimizer import Momentum
        >>> optimizer = Momentum(1.0)
        >>> StepDecay(0.1, step_size=2, gamma=0.5).apply(optimizer, 3), optimizer.learning_rate
        (0.05, 0.05)
        """
        if not hasattr(optimizer, "learning_rate"):
            raise TypeError(f"{type(self).__name__}.apply: the optimizer has no learning_rate, got {optimizer!r}")
        rate = self(t)
        optimizer.learning_rate = rate
        return rate

    def to_dict(self) -> dict[str, Any]:
        """The schedule as plain data (JSON-able): its kind and settings.

        >>> Warmup(Constant(0.1), steps=3).to_dict()
        {'type': 'Warmup', 'then': {'type': 'Constant', 'rate': 0.1}, 'steps': 3, 'start': 0.1}
        """
        return {"type": type(self).__name__, **self._settings()}

    def _settings(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not define its settings")

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Schedule:
        """The schedule ``to_dict`` described (a ValueError or TypeError naming what is wrong).

        >>> Schedule.from_dict(Cosine(0.5, total=10).to_dict())
        Cosine(0.5, total=10, minimum=0.0)
        >>> Schedule.from_dict({"type": "Exponential", "rate": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: Schedule.from_dict: unknown schedule 'Exponential'; known: Constant, Cosine, StepDecay, Warmup
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"Schedule.from_dict: expects a mapping, got {type(data).__name__}")
        kinds: dict[str, type[Schedule]] = {kind.__name__: kind for kind in (Constant, Cosine, StepDecay, Warmup)}
        kind = kinds.get(str(data.get("type")))
        if kind is None:
            raise ValueError(
                f"Schedule.from_dict: unknown schedule {data.get('type')!r}; known: {', '.join(sorted(kinds))}"
            )
        settings = {name: value for name, value in data.items() if name != "type"}
        if kind is Warmup and isinstance(settings.get("then"), Mapping):
            settings["then"] = Schedule.from_dict(settings["then"])
        try:
            return kind(**settings)
        except TypeError as error:
            if "argument" not in str(error):
                raise
            raise ValueError(f"Schedule.from_dict: {kind.__name__} does not take {sorted(settings)}") from error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        settings = self._settings()
        first, *rest = settings.items()
        shown = [repr(first[1])] + [f"{name}={value!r}" for name, value in rest]
        return f"{type(self).__name__}({', '.join(shown)})"


class Constant(Schedule):
    """The same rate at every position.

    >>> [Constant(0.1)(t) for t in range(3)]
    [0.1, 0.1, 0.1]
    """

    def __init__(self, rate: float) -> None:
        self.base = _rate(rate, "rate", "Constant")

    def rate(self, t: int) -> float:
        """``rate``, whatever ``t``.

        >>> Constant(0.1).rate(1000)
        0.1
        """
        return self.base

    def _settings(self) -> dict[str, Any]:
        return {"rate": self.base}


class StepDecay(Schedule):
    """``rate * gamma ** (t // step_size)``: multiplied by ``gamma`` every ``step_size`` positions (PyTorch's ``StepLR``).

    >>> [StepDecay(1.0, step_size=2, gamma=0.5)(t) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    def __init__(self, rate: float, step_size: int, gamma: float = 0.1) -> None:
        self.base = _rate(rate, "rate", "StepDecay")
        self.step_size = whole_number(step_size, "step_size", "StepDecay", minimum=1)
        self.gamma = _rate(gamma, "gamma", "StepDecay")

    def rate(self, t: int) -> float:
        """``rate * gamma ** (t // step_size)``.

        >>> StepDecay(1.0, step_size=10, gamma=0.5).rate(25)
        0.25
        """
        return self.base * self.gamma ** (t // self.step_size)

    def _settings(self) -> dict[str, Any]:
        return {"rate": self.base, "step_size": self.step_size, "gamma": self.gamma}


class Cosine(Schedule):
    """Half a cosine from ``rate`` at 0 down to ``minimum`` at ``total``, then ``minimum`` (PyTorch's ``CosineAnnealingLR``).

    ``minimum + (rate - minimum) * (1 + cos(pi * t / total)) / 2`` for ``t < total``.

    >>> [round(Cosine(1.0, total=4)(t), 4) for t in range(6)]
    [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """

    def __init__(self, rate: float, total: int, minimum: float = 0.0) -> None:
        self.base = _rate(rate, "rate", "Cosine")
        self.total = whole_number(total, "total", "Cosine", minimum=1)
        self.minimum = _rate(minimum, "minimum", "Cosine")

    def rate(self, t: int) -> float:
        """The cosine's value at ``t``; ``minimum`` from ``total`` on.

        >>> Cosine(1.0, total=10, minimum=0.1).rate(5), Cosine(1.0, total=10, minimum=0.1).rate(12)
        (0.55, 0.1)
        """
        if t >= self.total:
            return self.minimum
        return self.minimum + (self.base - self.minimum) * 0.5 * (1.0 + math.cos(math.pi * t / self.total))

    def _settings(self) -> dict[str, Any]:
        return {"rate": self.base, "total": self.total, "minimum": self.minimum}


class Warmup(Schedule):
    """A linear warm-up over ``steps`` positions, then ``then`` from its own position 0.

    For ``t < steps`` the rate is ``then(0) * (start + (1 - start) * t / steps)``
    (rising from ``start`` times the first rate, as PyTorch's ``LinearLR``);
    from ``t = steps`` on it is ``then(t - steps)``. Any schedule composes.

    >>> [round(Warmup(Constant(1.0), steps=4, start=0.2)(t), 2) for t in range(6)]
    [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    """

    def __init__(self, then: Schedule, steps: int, start: float = 0.1) -> None:
        if not isinstance(then, Schedule):
            raise TypeError(f"Warmup: then must be a Schedule, got {type(then).__name__}")
        self.then = then
        self.steps = whole_number(steps, "steps", "Warmup", minimum=1)
        self.start = _rate(start, "start", "Warmup")
        if self.start > 1.0:
            raise ValueError(f"Warmup: start must be in [0, 1], got {start!r}")

    def rate(self, t: int) -> float:
        """The warm-up's rate at ``t``, then ``then``'s rate at ``t - steps``.

        >>> Warmup(StepDecay(1.0, step_size=1, gamma=0.5), steps=2, start=0.0).rate(1), Warmup(
        ...     StepDecay(1.0, step_size=1, gamma=0.5), steps=2).rate(3)
        (0.5, 0.5)
        """
        if t >= self.steps:
            return self.then(t - self.steps)
        return self.then(0) * (self.start + (1.0 - self.start) * t / self.steps)

    def _settings(self) -> dict[str, Any]:
        return {"then": self.then.to_dict(), "steps": self.steps, "start": self.start}

    def __repr__(self) -> str:
        return f"Warmup({self.then!r}, steps={self.steps}, start={self.start})"

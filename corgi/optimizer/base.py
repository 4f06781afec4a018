"""What every optimizer shares: new parameter Arrays from old ones and their gradients."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..array import Array, step_parameters

# The ``step`` methods of corgi's optimizers, which write into neither array they are handed
# and keep neither (``tests/test_optimizer.py`` checks it): ``update`` gives them the arrays themselves.
OWN_STEPS: set[Any] = set()


class Optimizer:
    """Turns parameters and their gradients into new, tracked parameter Arrays.

    ``update(parameters)`` returns one Array per parameter, in the same order:
    a new one for each parameter that has a gradient (its gradient is then
    cleared), the same one for a parameter without. The values of an Array
    are never changed. Stateful optimizers keep their state by position, so
    pass the parameters in the same order every time (corgi's rule).
    A subclass defines ``step(position, value, gradient) -> new value`` and
    names its numeric settings in ``hyperparameter_names``; one that keeps
    state per parameter (a velocity, moments) holds a ``State`` in
    ``self.state``. An update is all or nothing: if any step raises, no
    gradient is cleared and the state is as it was before the update.

    >>> from corgi import arr
    >>> class Halve(Optimizer):
    ...     def step(self, position, value, gradient):
    ...         return value / 2
    >>> w = arr(4.0).tracked()
    >>> (w * w).backward()
    >>> [new] = Halve().update([w])
    >>> new, w, w.gradient()
    (Array([2.], dimensions=(1,), tracked), Array([4.], dimensions=(1,), tracked), None)
    """

    hyperparameter_names: tuple[str, ...] = ()
    state: State | None = None

    def step(self, position: int, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """The new value of the parameter at ``position``; a subclass defines it (see the class example).

        >>> Optimizer().step(0, np.array([1.0]), np.array([2.0]))
        Traceback (most recent call last):
        ...
        NotImplementedError: Optimizer does not define step
        """
        raise NotImplementedError(f"{type(self).__name__} does not define step")

    def update(self, parameters: Sequence[Array]) -> list[Array]:
        """New parameter Arrays, one per parameter, in order; gradients are cleared.

        A parameter without a gradient comes back as the same Array. The
        steps' new state is published only once every step has succeeded.

        >>> from corgi import arr
        >>> from corgi.optimizer import GradientDescent
        >>> w, b = arr(1.0).tracked(), arr(5.0).tracked()
        >>> (w * 3.0).backward()                  # dw = 3; b gets no gradient
        >>> new_w, new_b = GradientDescent(0.5).update([w, b])
        >>> new_w, new_b is b, w.gradient()
        (Array([-0.5], dimensions=(1,), tracked), True, None)
        """
        where = f"{type(self).__name__}.update"
        # corgi's own steps neither write into the arrays they get nor keep them: no read-only views
        # for them (a subclass that overrides ``step`` gets the views again)
        views = type(self).step not in OWN_STEPS
        state = self.state
        if state is None:
            return step_parameters(parameters, self.step, where, views)
        with state.transaction():
            return step_parameters(parameters, self.step, where, views)

    # -- saving and restoring -------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's kind, settings and per-parameter state, as plain data and numpy arrays.

        ``{"type": name, "hyperparameters": {name: number}, "state": {position:
        {"step": count, slot: array}}}``; the arrays are copies.

        >>> from corgi import arr
        >>> from corgi.optimizer import Momentum
        >>> optimizer = Momentum(0.1, momentum=0.5)
        >>> w = arr(1.0).tracked()
        >>> (w * 2.0).backward()
        >>> _ = optimizer.update([w])
        >>> optimizer.state_dict()
        {'type': 'Momentum', 'hyperparameters': {'learning_rate': 0.1, 'momentum': 0.5}, 'state': {0: {'step': 1, 'momentum_buffer': array([2.])}}}
        """
        state = {} if self.state is None else self.state.to_dict()
        return {"type": type(self).__name__, "hyperparameters": self.hyperparameters(), "state": state}

    def hyperparameters(self) -> dict[str, float]:
        """The numeric settings by name (``learning_rate`` and the like).

        >>> from corgi.optimizer import Adam
        >>> Adam(0.01).hyperparameters()
        {'learning_rate': 0.01, 'beta1': 0.9, 'beta2': 0.999, 'epsilon': 1e-08}
        """
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    def load_state_dict(self, state: Mapping[str, Any], parameters: Sequence[Array] | None = None) -> None:
        """Restore what ``state_dict`` returned, checked in full first: all or nothing.

        With ``parameters``, each position's state must also fit the
        parameter at that position (dimensions and dtype). The settings are
        restored too, as PyTorch's ``load_state_dict`` does.

        >>> from corgi.optimizer import Adam, Momentum
        >>> Momentum(0.1).load_state_dict(Adam().state_dict())
        Traceback (most recent call last):
        ...
        ValueError: Momentum.load_state_dict: the state is of a Adam optimizer, not a Momentum
        """
        settings, entries = self._prepared(state, parameters)
        for name, value in settings.items():
            setattr(self, name, value)
        if self.state is not None:
            self.state.entries = entries

    def check_state_dict(self, state: Mapping[str, Any], parameters: Sequence[Array] | None = None) -> None:
        """Raise the error ``load_state_dict`` would raise, changing nothing.

        >>> from corgi.optimizer import GradientDescent
        >>> GradientDescent(0.1).check_state_dict({"type": "GradientDescent", "hyperparameters": {"learning_rate": -1},
        ...                                       "state": {}})
        Traceback (most recent call last):
        ...
        ValueError: GradientDescent: learning_rate must be in [0.0, inf), got -1
        """
        self._prepared(state, parameters)

    def _prepared(
        self, state: Mapping[str, Any], parameters: Sequence[Array] | None
    ) -> tuple[dict[str, float], dict[int, Entry]]:
        """The settings and entries ``state`` describes, every one checked."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{where}: expects a mapping of type, hyperparameters and state, got {type(state).__name__}")
        if set(state) != {"type", "hyperparameters", "state"}:
            raise ValueError(f"{where}: expects a mapping of type, hyperparameters and state, got {sorted(state)}")
        if state["type"] != type(self).__name__:
            raise ValueError(f"{where}: the state is of a {state['type']} optimizer, not a {type(self).__name__}")
        settings = state["hyperparameters"]
        if not isinstance(settings, Mapping) or set(settings) != set(self.hyperparameter_names):
            raise ValueError(
                f"{where}: expects hyperparameters {sorted(self.hyperparameter_names)}, got {settings!r}"
            )
        trial = type(self)(**settings)  # the constructor checks every setting
        if self.state is None:
            if state["state"]:
                raise ValueError(
                    f"{where}: a {type(self).__name__} keeps no state, got state for {len(state['state'])} parameters"
                )
            entries: dict[int, Entry] = {}
        else:
            entries = self.state.checked(state["state"], parameters, where)
        return {name: getattr(trial, name) for name in self.hyperparameter_names}, entries


def check_rate(value: object, what: str, where: str, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a float in [low, high), or a ValueError naming it.

    >>> check_rate(0.5, "momentum", "Momentum", high=1.0)
    0.5
    >>> check_rate(1.5, "momentum", "Momentum", high=1.0)
    Traceback (most recent call last):
    ...
    ValueError: Momentum: momentum must be in [0.0, 1.0), got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: {what} must be a number, got {value!r}")
    number = float(value)
    if not (low <= number < high):
        raise ValueError(f"{where}: {what} must be in [{low}, {high}), got {value!r}")
    return number


class Entry(NamedTuple):
    """One parameter's state: how many steps it has taken, and its slot arrays."""

    step: int
    slots: tuple[np.ndarray, ...]


class State:
    """Per-position state of an optimizer (step counts and named slot arrays), updated all or nothing.

    ``get`` returns a position's entry (zeros and step 0 the first time);
    ``put`` records its next entry. Inside ``transaction()`` the new entries
    are staged and published together, by one assignment, when the block
    ends without an exception; an exception discards them, so a failed
    update leaves every velocity, moment and step count as it was.

    >>> state = State("Example.update", ("velocity",))
    >>> value = np.array([1.0, 2.0])
    >>> try:
    ...     with state.transaction():
    ...         state.put(0, 1, (value * 2,))
    ...         raise FloatingPointError("step 1 overflowed")
    ... except FloatingPointError:
    ...     pass
    >>> state.entries, state.get(0, value)
    ({}, Entry(step=0, slots=(array([0., 0.]),)))
    >>> with state.transaction():
    ...     state.put(0, 1, (value * 2,))
    >>> state.get(0, value)
    Entry(step=1, slots=(array([2., 4.]),))
    """

    def __init__(self, where: str, slot_names: tuple[str, ...]) -> None:
        self.where = where
        self.slot_names = slot_names
        self.entries: dict[int, Entry] = {}
        self._staged: dict[int, Entry] | None = None

    def get(self, position: int, value: np.ndarray) -> Entry:
        """The entry at ``position``, as staged in this update if it is; zeros at step 0 the first time.

        >>> State("Example.update", ("velocity",)).get(3, np.zeros(2, np.float32))
        Entry(step=0, slots=(array([0., 0.], dtype=float32),))
        """
        entry = self._staged.get(position) if self._staged is not None else None
        if entry is None:
            entry = self.entries.get(position)
        if entry is None:
            return Entry(0, tuple(np.zeros(value.shape, dtype=value.dtype) for _ in self.slot_names))
        if entry.slots and entry.slots[0].shape != value.shape:
            raise ValueError(
                f"{self.where}: parameter {position} has dimensions {value.shape} but had {entry.slots[0].shape}; "
                "pass the parameters in the same order every update"
            )
        return entry

    def put(self, position: int, step: int, slots: tuple[np.ndarray, ...]) -> None:
        """Record the entry of ``position`` after a step: staged inside a transaction, at once outside.

        >>> state = State("Example.update", ("velocity",))
        >>> state.put(0, 1, (np.ones(2),)); state.entries[0].step
        1
        """
        entry = Entry(step, slots)
        if self._staged is not None:
            self._staged[position] = entry
        else:
            self.entries = {**self.entries, position: entry}

    def transaction(self) -> _Transaction:
        """A context manager: the entries ``put`` inside it are published together, or not at all.

        >>> state = State("Example.update", ("velocity",))
        >>> with state.transaction():
        ...     state.put(0, 1, (np.ones(1),))
        ...     state.entries
        {}
        >>> state.entries
        {0: Entry(step=1, slots=(array([1.]),))}
        """
        return _Transaction(self)

    def to_dict(self) -> dict[int, dict[str, Any]]:
        """``{position: {"step": count, slot name: copy of the array}}``.

        >>> state = State("Example.update", ("velocity",))
        >>> state.put(2, 1, (np.ones(1),)); state.to_dict()
        {2: {'step': 1, 'velocity': array([1.])}}
        """
        return {
            position: {"step": entry.step, **{name: np.array(slot) for name, slot in zip(self.slot_names, entry.slots)}}
            for position, entry in sorted(self.entries.items())
        }

    def checked(
        self, state: Mapping[Any, Any], parameters: Sequence[Array] | None, where: str
    ) -> dict[int, Entry]:
        """The entries ``state`` (as ``to_dict`` returns it) describes, or a ValueError naming the problem.

        >>> State("Example.update", ("velocity",)).checked({0: {"step": 1}}, None, "Example.load_state_dict")
        Traceback (most recent call last):
        ...
        ValueError: Example.load_state_dict: parameter 0 needs step and ['velocity'], got ['step']
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"{where}: the per-parameter state must be a mapping, got {type(state).__name__}")
        entries = {}
        expected = {"step", *self.slot_names}
        for key, saved in state.items():
            position = int(key) if isinstance(key, (int, np.integer, str)) and str(key).isdigit() else None
            if position is None:
                raise ValueError(f"{where}: positions are whole numbers, got {key!r}")
            if not isinstance(saved, Mapping) or set(saved) != expected:
                got = sorted(saved) if isinstance(saved, Mapping) else type(saved).__name__
                raise ValueError(f"{where}: parameter {position} needs step and {list(self.slot_names)}, got {got}")
            step = saved["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"{where}: parameter {position} has step {step!r}, not a whole number")
            slots = tuple(saved[name] for name in self.slot_names)
            for name, slot in zip(self.slot_names, slots):
                if not isinstance(slot, np.ndarray) or slot.dtype not in (np.float32, np.float64):
                    raise ValueError(f"{where}: parameter {position}'s {name} must be a float32 or float64 array")
                if parameters is not None:
                    if position >= len(parameters):
                        raise ValueError(f"{where}: state for parameter {position}, but there are {len(parameters)}")
                    parameter = parameters[position]
                    if slot.shape != parameter.dimensions or slot.dtype != parameter.dtype:
                        raise ValueError(
                            f"{where}: parameter {position}'s {name} is {slot.dtype} {slot.shape}, "
                            f"the parameter is {parameter.dtype} {parameter.dimensions}"
                        )
            entries[position] = Entry(int(step), tuple(np.array(slot) for slot in slots))
        return entries


class _Transaction:
    """Stages a State's entries; publishes them on a clean exit, drops them on an exception."""

    def __init__(self, state: State) -> None:
        self.state = state

    def __enter__(self) -> None:
        if self.state._staged is not None:
            raise RuntimeError(f"{self.state.where}: an update is already in progress on this optimizer")
        self.state._staged = {}

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        staged, self.state._staged = self.state._staged, None
        if kind is None and staged:
            # one assignment publishes every entry of the update at once
            self.state.entries = {**self.state.entries, **staged}

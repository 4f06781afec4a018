"""Argument checks shared by every package outside the engine.

One rule everywhere: a value of the wrong type is a ``TypeError``, a value
of the right type but out of range is a ``ValueError``, and both messages
name the function (``where``) and the argument (``what``). ``bool`` is not
a whole number here, although Python counts it as an ``int``: ``Dense(True,
3)`` is far more likely a slip than a layer of one input.

>>> whole_number(3, "batch_size", "Model.predict", minimum=1)
3
>>> whole_number(0, "batch_size", "Model.predict", minimum=1)
Traceback (most recent call last):
...
ValueError: Model.predict: batch_size must be a whole number >= 1, got 0
>>> whole_number(2.5, "batch_size", "Model.predict")
Traceback (most recent call last):
...
TypeError: Model.predict: batch_size must be a whole number, got 2.5 (float)
"""

from __future__ import annotations

import operator

# (numpy's integer types pass through ``operator.index``; floats, bools and strings do not)


def whole_number(value: object, what: str, where: str, minimum: int | None = 0) -> int:
    """``value`` as an ``int`` if it is a whole number >= ``minimum`` (``None``: any).

    Accepts Python and numpy integers. Anything else (floats, even 2.0;
    bools; strings) is a ``TypeError``; a whole number below ``minimum``
    a ``ValueError``.

    >>> import numpy as np
    >>> whole_number(np.int64(4), "size", "Dense")
    4
    >>> whole_number(True, "size", "Dense")
    Traceback (most recent call last):
    ...
    TypeError: Dense: size must be a whole number, got True (bool)
    """
    if isinstance(value, bool):
        number: int | None = None
    else:
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            number = None
    if number is None:
        raise TypeError(f"{where}: {what} must be a whole number, got {value!r} ({type(value).__name__})")
    if minimum is not None and number < minimum:
        raise ValueError(f"{where}: {what} must be a whole number >= {minimum}, got {number}")
    return number


def whole_numbers(
    values: object, what: str, where: str, count: int | None = None, minimum: int | None = 1
) -> tuple[int, ...]:
    """``values`` as a tuple of ``int``, each a whole number >= ``minimum`` (``None``: any); ``count`` of them if given.

    Without ``count``, an empty sequence passes (the caller knows whether
    that is allowed).

    Not a sequence, or a sequence holding a non-integer, is a ``TypeError``;
    the wrong count or a number below ``minimum`` a ``ValueError``.

    >>> whole_numbers((2, 2), "pool", "Pool", count=2)
    (2, 2)
    >>> whole_numbers((2, 0), "pool", "Pool", count=2)
    Traceback (most recent call last):
    ...
    ValueError: Pool: pool must be 2 whole numbers >= 1, got (2, 0)
    >>> whole_numbers(3, "pool", "Pool", count=2)
    Traceback (most recent call last):
    ...
    TypeError: Pool: pool must be a sequence of 2 whole numbers, got 3 (int)
    """
    amount = "" if count is None else f"{count} "
    items: tuple[object, ...] | None
    if isinstance(values, (str, bytes)):
        items = None
    else:
        try:
            items = tuple(values)  # type: ignore[arg-type]
        except TypeError:
            items = None
    if items is None:
        raise TypeError(
            f"{where}: {what} must be a sequence of {amount}whole numbers, got {values!r} ({type(values).__name__})"
        )
    numbers = []
    for item in items:
        if isinstance(item, bool):
            raise TypeError(f"{where}: {what} must hold whole numbers, got {values!r}")
        try:
            numbers.append(operator.index(item))  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{where}: {what} must hold whole numbers, got {values!r}") from None
    bound = "" if minimum is None else f" >= {minimum}"
    if count is not None and len(numbers) != count:
        raise ValueError(f"{where}: {what} must be {amount}whole numbers{bound}, got {values!r}")
    if minimum is not None and any(number < minimum for number in numbers):
        raise ValueError(f"{where}: {what} must be {amount}whole numbers{bound}, got {values!r}")
    return tuple(numbers)

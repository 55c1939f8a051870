"""Checks of numeric arguments and options, written once.

``True`` is an ``int`` to Python but never a count, a port or a number of seconds to
us, so every check here refuses ``bool`` first. Each check raises ``error`` (default
:class:`~cloudrift.core.exceptions.ConfigurationError`, for constructor options; call
sites pass their category's argument error, e.g. ``InvalidArgumentError``) with a
message naming the argument; a value of the wrong type is named by its type only
(it might be a secret given to the wrong option).
"""

from __future__ import annotations

import math
from typing import TypeGuard

from cloudrift.core.exceptions import ConfigurationError


def is_int(value: object) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """True for an ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounds(at_least: float | None, at_most: float | None, above: float | None, unit: str) -> str:
    suffix = f" ({unit})" if unit else ""
    if at_least is not None and at_most is not None:
        return f" from {at_least} to {at_most}{suffix}"
    if above is not None:
        return f" > {above}{suffix}"
    if at_least is not None:
        return f" >= {at_least}{suffix}"
    if at_most is not None:
        return f" <= {at_most}{suffix}"
    return suffix


def check_int(
    name: str,
    value: object,
    *,
    at_least: int | None = None,
    at_most: int | None = None,
    unit: str = "",
    hint: str = "",
    error: type[Exception] = ConfigurationError,
) -> int:
    """``value`` if it is an int (not a bool) within the bounds, else ``error`` naming it."""
    if (
        not is_int(value)
        or (at_least is not None and value < at_least)
        or (at_most is not None and value > at_most)
    ):
        got = repr(value) if is_number(value) else type(value).__name__
        extra = f"; {hint}" if hint else ""
        if at_least == 1 and at_most is None:
            what = f"a positive int{f' ({unit})' if unit else ''}"
        else:
            what = f"an int{_bounds(at_least, at_most, None, unit)}"
        raise error(f"{name} must be {what}, got {got}{extra}")
    return value


def check_number(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    unit: str = "",
    error: type[Exception] = ConfigurationError,
) -> float:
    """``value`` as a float if it is a finite int or float (not a bool) within the
    bounds (``above``: strictly greater), else ``error`` naming it."""
    if (
        not is_number(value)
        or not math.isfinite(value)
        or (above is not None and value <= above)
        or (at_least is not None and value < at_least)
        or (at_most is not None and value > at_most)
    ):
        got = repr(value) if is_number(value) else type(value).__name__
        if above == 0 and at_least is None and at_most is None:
            what = f"a positive number{f' of {unit}' if unit else ''}"
        else:
            what = f"a number{_bounds(at_least, at_most, above, unit)}"
        raise error(f"{name} must be {what}, got {got}")
    return float(value)


__all__ = ["check_int", "check_number", "is_int", "is_number"]

"""cloudrift.core.validation: the one place numeric arguments are checked."""

from __future__ import annotations

import math

import pytest

from cloudrift.core.exceptions import ConfigurationError, InvalidArgumentError
from cloudrift.core.validation import check_int, check_number, is_int, is_number


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None])
def test_bools_floats_and_strings_are_not_ints(value: object) -> None:
    """is_int refuses bool (an int to Python), floats and numeric strings."""
    assert not is_int(value)


@pytest.mark.parametrize("value", [True, "1.5", None])
def test_bools_and_strings_are_not_numbers(value: object) -> None:
    """is_number refuses bool and numeric strings."""
    assert not is_number(value)


def test_check_int_names_the_argument_and_bounds() -> None:
    """A value out of bounds raises the given error naming the argument and the bounds."""
    assert check_int("port", 80, at_least=1, at_most=65535) == 80
    with pytest.raises(ConfigurationError, match=r"port must be an int from 1 to 65535, got 0"):
        check_int("port", 0, at_least=1, at_most=65535)
    with pytest.raises(InvalidArgumentError, match="chunk_size must be a positive int, got -1"):
        check_int("chunk_size", -1, at_least=1, error=InvalidArgumentError)


def test_wrong_type_is_named_by_type_only() -> None:
    """A non-number is named by its type, never by its value (it may be a secret)."""
    with pytest.raises(ConfigurationError, match="got str") as info:
        check_int("port", "hunter2")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, True])
def test_check_number_refuses_non_positive_and_non_finite(value: object) -> None:
    """above=0 refuses zero, negatives, inf, nan and bool."""
    with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
        check_number("timeout", value, above=0)


def test_check_number_returns_a_float() -> None:
    """A valid int comes back as a float."""
    assert check_number("timeout", 2, above=0) == 2.0

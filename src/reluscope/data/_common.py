"""Small argument checks shared by the data modules (runtime validation, so they take ``object``)."""

from __future__ import annotations

import numbers

__all__ = ["check_fraction", "check_int"]


def check_int(value: object, name: str, minimum: int, *, example: int = 64) -> int:
    """Return ``int(value)`` if it is an integer (not a bool) >= ``minimum``; else a TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}; pass e.g. {name}={example}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}; pass {name}={minimum} or more")
    return int(value)


def check_fraction(value: object, name: str) -> float:
    """Return ``float(value)`` if it is a real number in [0, 1); else a TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}; e.g. 0.2 keeps 20% of the samples aside")
    return v

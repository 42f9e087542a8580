"""Small validation helpers shared by the remedies."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_fraction", "check_positive_int"]


def check_positive_int(value: Any, name: str, *, example: int = 100) -> int:
    """``int(value)`` if it is an integer >= 1 (not a bool); a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}={example}")
    return int(value)


def check_fraction(value: Any, name: str, *, allow_zero: bool = True, example: float = 0.1) -> float:
    """``float(value)`` if it is a number in [0, 1] ((0, 1] without ``allow_zero``); a ValueError otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    if not (0.0 < v <= 1.0 or (allow_zero and v == 0.0)):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be a fraction in {interval}, got {value!r}; e.g. {name}={example}")
    return v

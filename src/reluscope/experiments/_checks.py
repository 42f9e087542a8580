"""Checks shared by the experiment configs (the command-line lists are parsed in ``reluscope.cli._lists``)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["check_int", "dedupe"]


def dedupe(values: Iterable[Any]) -> tuple[Any, ...]:
    """The values in order, each once."""
    return tuple(dict.fromkeys(values))


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; TypeError for a non-integer (bools included), ValueError below it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)

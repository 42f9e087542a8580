"""Comma-separated option values (``--lrs 0.1,1,10``, ``--seeds 0,1,2``, ``--activations relu,leaky``) parsed into
tuples: numbers are checked here, names by the configs they feed. Imported inside the command bodies (it needs
numpy through ``reluscope._validate``), so ``--help`` stays light."""

from __future__ import annotations

from reluscope._validate import check_positive

__all__ = ["parse_float_list", "parse_int_list", "parse_name_list"]


def _split(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"{option} must be a comma-separated list without empty items, got {text!r}")
    return parts


def parse_float_list(text: str, option: str = "--lrs") -> tuple[float, ...]:
    """'0.1,1,10' -> (0.1, 1.0, 10.0); every value finite and > 0."""
    values = []
    for part in _split(text, option):
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"{option} must be comma-separated numbers such as 0.1,1,10, got {part!r}") from None
        values.append(check_positive(v, f"every value of {option}"))
    return tuple(values)


def parse_int_list(text: str, option: str = "--seeds", *, minimum: int = 0) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); every value an integer >= ``minimum``."""
    values = []
    for part in _split(text, option):
        try:
            v = int(part)
        except ValueError:
            raise ValueError(f"{option} must be comma-separated integers such as 0,1,2, got {part!r}") from None
        if v < minimum:
            raise ValueError(f"every value of {option} must be >= {minimum}, got {v}")
        values.append(v)
    return tuple(values)


def parse_name_list(text: str, option: str = "--activations") -> tuple[str, ...]:
    """'relu, leaky' -> ('relu', 'leaky') (names are checked by the caller)."""
    return tuple(p.lower() for p in _split(text, option))

"""Config dataclasses to and from JSON dicts; numbers that JSON can hold (the mean and spread of a series without
inf). Records are written as strict JSON by :func:`reluscope.io.save_json` / :func:`reluscope.io.strict_json`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any, TypeVar

import numpy as np

__all__ = ["config_from_dict", "config_to_dict", "finite_or_none", "mean_std"]

_C = TypeVar("_C")


# Strict JSON --------------------------------------------------------------------------------------------------------
def finite_or_none(value: float) -> float | None:
    """``float(value)`` if finite, else None."""
    return float(value) if math.isfinite(value) else None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; 0.0 for one value) of ``values``; ``(None, None)`` for none.

    A mean or std that overflows (losses near divergence can be ~1e300) is None, not inf.
    """
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return finite_or_none(mean), finite_or_none(std)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict: its fields, tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type[_C], d: Mapping[str, Any], what: str) -> _C:
    """Rebuild the config dataclass ``cls`` from :func:`config_to_dict`; lists become tuples, and keys that are not
    fields are a ValueError naming them (``what`` names the config in the message)."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; was the file written by another version?")
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kwargs)

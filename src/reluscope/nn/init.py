"""Weight initialisers. Each draws from the ``rng`` it is given (a ``numpy.random.Generator``, or a legacy
``RandomState`` to continue a CS231n-style ``np.random.seed`` stream) and never touches global RNG state.

=================  ==========================================================  =====================
name               distribution of each weight                                 meant for
=================  ==========================================================  =====================
``he``             normal(0, sqrt(2 / fan_in))       (He et al. 2015)          ReLU family
``xavier``         normal(0, sqrt(2 / (fan_in + fan_out)))  (Glorot 2010)      tanh / sigmoid
``xavier_uniform`` uniform(±sqrt(6 / (fan_in + fan_out)))                      tanh / sigmoid
``normal``         normal(0, std), e.g. CS231n's ``0.01 * randn``              teaching, small nets
=================  ==========================================================  =====================

Biases start at a constant (``bias_init``, default 0); a small positive value (e.g. 0.01 or 0.1) is the classic
trick against units born dead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reluscope._validate import check_positive
from reluscope.nn.functional import Array

__all__ = ["INITS", "check_init", "init_bias", "init_weight"]

INITS = ("he", "xavier", "xavier_uniform", "normal")
_ALIASES = {"kaiming": "he", "glorot": "xavier", "glorot_uniform": "xavier_uniform", "xavier_normal": "xavier"}

Rng = np.random.Generator | np.random.RandomState


def check_init(name: str) -> str:
    """Canonical name of an initialiser; a ValueError listing the choices otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"init must be a name such as 'he', got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in INITS:
        raise ValueError(f"unknown init {name!r}; choose one of {', '.join(INITS)} (or kaiming, glorot)")
    return key


def init_weight(
    name: str,
    fan_in: int,
    fan_out: int,
    *,
    rng: Rng,
    dtype: Any = np.float64,
    std: float = 0.01,
    count: int | None = None,
) -> Array:
    """A (fan_in, fan_out) weight matrix drawn with initialiser ``name``; ``std`` is used by ``normal`` only.

    ``count`` draws that many matrices in one call, shape (count, fan_in, fan_out) (the born-dead Monte Carlo
    draws its initialisations this way). Draws are made in float64 and cast, so float32 and float64 nets from one
    seed hold the same weights up to rounding.
    """
    key = check_init(name)
    shape = (fan_in, fan_out) if count is None else (count, fan_in, fan_out)
    if key == "xavier_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    else:
        if key == "he":
            scale = np.sqrt(2.0 / fan_in)
        elif key == "xavier":
            scale = np.sqrt(2.0 / (fan_in + fan_out))
        else:
            scale = check_positive(std, "init_std")
        w = rng.standard_normal(shape)
        w *= scale  # in place: the Monte Carlo's blocks are large
    return w.astype(dtype, copy=False)


def init_bias(fan_out: int, *, value: float = 0.0, dtype: Any = np.float64) -> Array:
    """A (fan_out,) bias vector filled with ``value`` (0 by default; > 0 shifts units towards firing)."""
    if not np.isfinite(value):
        raise ValueError(f"bias_init must be finite, got {value}")
    return np.full(fan_out, value, dtype=dtype)

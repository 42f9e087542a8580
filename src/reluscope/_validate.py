"""Input validation shared by the whole package: errors that say what was expected, what was given, and the fix.

The one module for argument checks used by more than one package (scikit-learn keeps its ``_param_validation``
the same way): numbers (:func:`check_positive`, :func:`check_int`, :func:`check_positive_int`,
:func:`check_fraction`, :func:`check_tau`), arrays and labels, dtypes and random generators. Everything here is
cheap (O(size) at worst) and is called at public entry points, never inside hot loops.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "NonFiniteError",
    "RNGLike",
    "as_rng",
    "check_finite_array",
    "check_fraction",
    "check_int",
    "check_labels",
    "check_memory",
    "check_positive",
    "check_positive_int",
    "check_tau",
    "memory_limit",
    "resolve_dtype",
]

RNGLike = int | np.random.Generator | np.random.RandomState


class NonFiniteError(ValueError):
    """Values computed from a network (activations, their sums) became NaN or inf although its input was finite.

    Raised by :meth:`reluscope.diagnose.ActivationStats.update`; during :func:`reluscope.train.fit` a callback
    raising it (a scan at the end of an epoch) means the run diverged, and ``fit`` reports it as a
    ``DivergenceError`` naming :attr:`site`.

    Attributes
    ----------
    site : str or None
        The site (layer name) whose values were not finite, None when not about one site.
    """

    def __init__(self, message: str, *, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site


_FLOAT_DTYPES: dict[str, np.dtype[np.floating[Any]]] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}


def resolve_dtype(dtype: Any) -> np.dtype[np.floating[Any]]:
    """Map "float32"/"float64" (or the numpy dtypes) to a numpy dtype; anything else is a ValueError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in _FLOAT_DTYPES.values():
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}; pass dtype='float32' or 'float64'")
    return _FLOAT_DTYPES[resolved.name]


def _is_bool(x: object) -> bool:
    return isinstance(x, bool | np.bool_)


def as_rng(seed: Any, *, name: str = "seed") -> np.random.Generator | np.random.RandomState:
    """An int seed becomes ``np.random.default_rng(seed)``; a Generator/RandomState is used as is.

    ``None`` is refused: every random choice in reluscope is reproducible, so pass an explicit seed.
    """
    if isinstance(seed, np.random.Generator | np.random.RandomState):
        return seed
    if isinstance(seed, numbers.Integral) and not _is_bool(seed):
        if seed < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"{name} must be an int or a numpy Generator, got {type(seed).__name__}; "
        f"pass e.g. {name}=0 or {name}=np.random.default_rng(0)"
    )


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is finite and > 0 (or >= 0 with ``allow_zero``); else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}; pass a value {bound}")
    return v


def check_int(value: object, name: str, minimum: int, *, example: int = 64) -> int:
    """Return ``int(value)`` if it is an integer (not a bool) >= ``minimum``; else a TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fix = f"pass e.g. {name}={example}"
        if isinstance(value, float) and value.is_integer():
            fix = f"pass {name}={int(value)}"
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}; {fix} (never truncated)")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}; pass {name}={minimum} or more")
    return int(value)


def check_positive_int(value: Any, name: str, *, example: int = 100) -> int:
    """``int(value)`` if it is an integer >= 1 (not a bool); a ValueError naming ``name`` otherwise.

    For counts given as keyword arguments (``batch_size``, ``every``, ``steps``): one ValueError whatever was
    wrong, with an example value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}={example}")
    return int(value)


def check_fraction(
    value: Any,
    name: str,
    *,
    allow_zero: bool = True,
    allow_one: bool = True,
    example: float = 0.1,
    hint: str | None = None,
) -> float:
    """``float(value)`` if it is a number in [0, 1]; ``allow_zero=False`` / ``allow_one=False`` open that end.

    Raises TypeError for a non-number (or a bool) and ValueError outside the interval; the message names the
    interval and ends with ``hint`` (default: ``e.g. name=example``).
    """
    interval = ("[" if allow_zero else "(") + "0, 1" + ("]" if allow_one else ")")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a fraction in {interval}, got {type(value).__name__}")
    v = float(value)
    inside = (v > 0.0 or (allow_zero and v == 0.0)) and (v < 1.0 or (allow_one and v == 1.0))
    if not inside:
        raise ValueError(f"{name} must be a fraction in {interval}, got {value!r}; {hint or f'e.g. {name}={example}'}")
    return v


def check_tau(tau: Any) -> float:
    """The dormancy threshold τ (Sokar et al. 2023) as a float, if it is a finite number >= 0; else a ValueError.

    ``tau = 0`` selects dead units only (fired on no sample); Sokar et al. use 0.025 to 0.1 for dormant ones.
    """
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(tau) or tau < 0:
        raise ValueError(
            f"tau must be a finite number >= 0, got {tau!r}; tau=0 selects dead units only, "
            "Sokar et al. use tau=0.025 to 0.1 for dormant ones"
        )
    return float(tau)


def check_finite_array(
    x: Any, name: str, *, ndim: int | tuple[int, ...] = 2, dtype: Any = None
) -> NDArray[np.floating[Any]]:
    """Validate a float array: numeric, the right number of dimensions, non-empty, no NaN/inf.

    Integer and bool arrays are converted to ``dtype`` (default float64). Float arrays keep their dtype unless
    ``dtype`` is given. Returns the (possibly converted) array.
    """
    if not isinstance(x, np.ndarray):
        if isinstance(x, list | tuple):
            x = np.asarray(x)
        else:
            raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}; convert it with np.asarray")
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}; convert it with {name}.astype(np.float64)")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        hint = f"; use {name}.reshape(len({name}), -1)" if 2 in ndims and x.ndim > 2 else ""
        hint = f"; use {name}[:, None] or {name}.reshape(1, -1)" if 2 in ndims and x.ndim == 1 else hint
        raise ValueError(f"{name} must be {want}, got shape {x.shape}{hint}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); pass at least one sample")
    if dtype is not None:
        x = x.astype(resolve_dtype(dtype), copy=False)
    elif x.dtype.kind != "f":
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{name} contains {bad} NaN/inf value(s); remove or impute them (e.g. np.nan_to_num) before passing it"
        )
    out: NDArray[np.floating[Any]] = x
    return out


def check_labels(y: Any, n_samples: int, n_classes: int | None = None, *, name: str = "y") -> NDArray[np.intp]:
    """Validate class labels: 1-D integers in [0, n_classes), one per sample. Returns them as an int array."""
    if not isinstance(y, np.ndarray):
        if isinstance(y, list | tuple):
            y = np.asarray(y)
        else:
            raise TypeError(f"{name} must be a numpy array of integer labels, got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == 1:
        raise ValueError(
            f"{name} must be 1-D with shape ({n_samples},), got shape {y.shape}; use {name}.ravel() "
            "(an (N, 1) column would broadcast silently)"
        )
    if y.ndim != 1:
        hint = f"; did you pass one-hot labels? use {name}.argmax(axis=1)" if y.ndim == 2 else ""
        raise ValueError(f"{name} must be 1-D with shape ({n_samples},), got shape {y.shape}{hint}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            hint = f"use {name}.astype(np.int64)"
        else:
            hint = "labels are class indices 0, 1, ..., n_classes-1"
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}; {hint}")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {y.shape[0]} labels but there are {n_samples} samples; pass one label per row of X"
        )
    if y.size == 0:
        raise ValueError(f"{name} is empty; pass at least one labelled sample")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise ValueError(f"{name} must be >= 0, got min label {lo}; labels are class indices 0, 1, ...")
    if n_classes is not None and hi >= n_classes:
        raise ValueError(
            f"{name} must be integers in [0, {n_classes}), got max label {hi}; "
            "did you pass one-hot labels or the wrong n_classes?"
        )
    labels: NDArray[np.intp] = y.astype(np.intp, copy=False)
    return labels


def memory_limit() -> int:
    """The machine's physical memory in bytes (``os.sysconf``), the most any single allocation plan may need.

    Physical memory rather than what is free right now: the limit is the same on every call, so a refusal is
    reproducible, and a plan over it cannot run here whatever else is running.
    """
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return 2**40


def _human(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_memory(nbytes: float, what: str, *, fix: str) -> None:
    """Refuse a plan that needs more than the machine's memory, before anything is allocated.

    ``nbytes`` is the estimate (an int or a float, which may exceed any int64 for absurd sizes), ``what`` says what
    needs it (e.g. "the network's parameters, gradients and optimizer state for sizes [2, 10000000000, 3]") and
    ``fix`` how to need less. Raises ValueError naming the estimate and the limit (:func:`memory_limit`).
    """
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(
            f"{what} would need about {_human(float(nbytes))}, more than this machine's memory "
            f"({_human(float(limit))}); {fix}"
        )

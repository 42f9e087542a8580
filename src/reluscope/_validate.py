"""Input validation shared by the whole package: errors that say what was expected, what was given, and the fix.

Everything here is cheap (O(size) at worst) and is called at public entry points, never inside hot loops.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RNGLike",
    "as_rng",
    "check_finite_array",
    "check_labels",
    "check_positive",
    "resolve_dtype",
]

RNGLike = int | np.random.Generator | np.random.RandomState

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

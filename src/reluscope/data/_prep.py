"""Preparing data for training: seeded stratified split, per-feature standardisation, minibatch indices."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import RNGLike, as_rng, check_finite_array, check_fraction, check_int, check_labels

__all__ = ["Standardizer", "minibatches", "standardize", "train_val_split"]

FloatArray = NDArray[np.floating[Any]]


def _n_val(n: int, val_fraction: float) -> int:
    """Round-half-up share of ``n`` for validation, leaving at least one sample for training."""
    return min(int(np.floor(val_fraction * n + 0.5)), n - 1)


def train_val_split(
    X: FloatArray,
    y: NDArray[np.integer[Any]],
    val_fraction: float = 0.2,
    *,
    seed: RNGLike = 0,
    stratify: bool = True,
) -> tuple[FloatArray, NDArray[np.int64], FloatArray, NDArray[np.int64]]:
    """Split into a training and a validation set, reproducibly, keeping class proportions.

    With ``stratify`` each class c of n_c samples sends ``round(val_fraction * n_c)`` of them (rounding
    half up) to validation, but always keeps at least one in training; without it the rule applies to the
    whole set. Both parts keep the original row order (shuffle per epoch with :func:`minibatches`).

    Parameters
    ----------
    X : ndarray, shape (N, D)
        Features (float32 or float64 is kept; integers become float64).
    y : ndarray of int, shape (N,)
        Non-negative integer labels.
    val_fraction : float
        Share of samples for validation, in [0, 1). ``0`` gives empty validation arrays, shapes (0, D), (0,).
    seed : int or numpy.random.Generator
        Seed (or stream) for choosing the validation samples.
    stratify : bool
        Split each class separately (default) or the whole set at once.

    Returns
    -------
    X_train : ndarray, shape (N_train, D)
    y_train : ndarray of int64, shape (N_train,)
    X_val : ndarray, shape (N_val, D)
    y_val : ndarray of int64, shape (N_val,)
        ``N_train + N_val == N``.
    """
    X = check_finite_array(X, "X")
    labels: NDArray[np.int64] = check_labels(y, X.shape[0]).astype(np.int64, copy=False)
    fraction = check_fraction(
        val_fraction, "val_fraction", allow_one=False, hint="e.g. 0.2 keeps 20% of the samples aside"
    )
    rng = as_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    val_parts = []
    for idx in groups:
        chosen = rng.permutation(len(idx))[: _n_val(len(idx), fraction)]
        val_parts.append(idx[chosen])
    is_val = np.zeros(X.shape[0], dtype=bool)
    is_val[np.concatenate(val_parts)] = True
    train_idx = np.flatnonzero(~is_val)
    val_idx = np.flatnonzero(is_val)
    if fraction > 0 and val_idx.size == 0:
        smallest = min(len(idx) for idx in groups)
        raise ValueError(
            f"val_fraction={fraction:g} puts no sample in the validation set ({len(labels)} samples, the smallest "
            f"{'class' if stratify else 'group'} has {smallest}); use more data or val_fraction=0"
        )
    return X[train_idx], labels[train_idx], X[val_idx], labels[val_idx]


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature standardisation ``(X - mean) / std`` with statistics from the training set.

    Build it with :meth:`fit`. A constant feature gets ``std = 1`` (and ``mean`` equal to its value), so it
    maps to exactly 0 instead of NaN.

    Attributes
    ----------
    mean : ndarray, shape (D,)
        Per-feature mean of the fitting data, in its dtype.
    std : ndarray, shape (D,)
        Per-feature standard deviation (ddof=0), 1 for constant features.
    """

    mean: FloatArray
    std: FloatArray

    def __post_init__(self) -> None:
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(
                f"mean and std must both have shape (D,), got {mean.shape} and {std.shape}; "
                "build a Standardizer with Standardizer.fit(X_train)"
            )
        if mean.dtype.kind != "f" or std.dtype.kind != "f" or not (np.isfinite(std) & (std > 0)).all():
            raise ValueError("std must be a finite float array > 0; build it with Standardizer.fit(X_train)")
        if not np.isfinite(mean).all():
            raise ValueError("mean must be finite (no NaN/inf); build it with Standardizer.fit(X_train)")

    @classmethod
    def fit(cls, X: FloatArray) -> Standardizer:
        """Statistics of X, shape (N, D); float32 stays float32 (computed in float64, then cast)."""
        X = check_finite_array(X, "X")
        X64 = X.astype(np.float64, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = X64.mean(axis=0)
            std = X64.std(axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            big = float(np.abs(X64).max())
            raise ValueError(
                f"X is too large to standardise: its values reach {big:.3g}, so their mean or variance overflows "
                f"float64; rescale the features first (e.g. divide them by {10.0 ** math.floor(math.log10(big)):g})"
            )
        constant = (X[0] == X).all(axis=0)
        mean[constant] = X64[0, constant]  # exact, so constant features map to exactly 0
        std[constant | (std == 0)] = 1.0
        return cls(mean=mean.astype(X.dtype), std=std.astype(X.dtype))

    @property
    def n_features(self) -> int:
        """D, the number of features the statistics were fitted on."""
        return int(self.mean.shape[0])

    def transform(self, X: FloatArray) -> FloatArray:
        """X: (M, D) -> (M, D) standardised, in X's float dtype (integers become float64). M may be 0."""
        X = self._check(X)
        mean = self.mean.astype(X.dtype, copy=False)
        std = self.std.astype(X.dtype, copy=False)
        out = np.subtract(X, mean)
        out /= std
        return out

    def inverse_transform(self, Z: FloatArray) -> FloatArray:
        """Z: (M, D) standardised -> (M, D) in the original units, in Z's float dtype."""
        Z = self._check(Z, name="Z")
        out = np.multiply(Z, self.std.astype(Z.dtype, copy=False))
        out += self.mean.astype(Z.dtype, copy=False)
        return out

    def _check(self, X: Any, name: str = "X") -> FloatArray:
        d = self.n_features
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] == 0 and X.shape[1] == d:
            empty: FloatArray = X if X.dtype.kind == "f" else X.astype(np.float64)  # an empty split is fine
            return empty
        checked = check_finite_array(X, name)
        if checked.shape[1] != d:
            raise ValueError(
                f"{name} has {checked.shape[1]} features but the Standardizer was fitted on {d}; "
                "transform data with the same columns as the training set"
            )
        return checked


def standardize(X_train: FloatArray, *others: FloatArray) -> tuple[FloatArray, ...]:
    """Fit a :class:`Standardizer` on ``X_train`` (N, D); apply it to it and to each of ``others`` (M_i, D).

    Returns ``(X_train_std, *others_std)``, each with its input's shape and float dtype.
    """
    scaler = Standardizer.fit(X_train)
    return (scaler.transform(X_train), *(scaler.transform(X) for X in others))


def minibatches(n_samples: int, batch_size: int, *, rng: RNGLike | None = None) -> Iterator[NDArray[np.intp]]:
    """Index arrays covering ``range(n_samples)`` exactly once, ``batch_size`` at a time.

    Parameters
    ----------
    n_samples : int
        N, number of samples (>= 0; 0 yields nothing).
    batch_size : int
        B > 0. The last batch holds the remaining ``N % B`` indices if non-zero; B >= N gives one batch.
    rng : numpy.random.Generator, RandomState or int, optional
        Shuffle: a fresh permutation per call (an int seeds a new Generator, so it repeats the same order).
        ``None`` keeps the order 0, 1, ..., N-1.

    Yields
    ------
    ndarray of intp, shape (B,) or smaller for the last batch
        Row indices, e.g. ``X[idx], y[idx]``.
    """
    n = check_int(n_samples, "n_samples", 0)
    b = check_int(batch_size, "batch_size", 1)
    order = np.arange(n, dtype=np.intp) if rng is None else as_rng(rng, name="rng").permutation(n).astype(np.intp)
    return (order[start : start + b] for start in range(0, n, b))

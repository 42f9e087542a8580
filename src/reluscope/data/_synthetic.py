"""Built-in datasets that need no download: the CS231n spiral and scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_int, check_memory

__all__ = ["digits", "spiral"]


def spiral(
    n_per_class: int = 100,
    n_classes: int = 3,
    *,
    seed: int = 0,
    rng: np.random.RandomState | np.random.Generator | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The CS231n spiral: ``n_classes`` interleaved arms of ``n_per_class`` 2-D points each.

    Bit-identical to the CS231n generator run after ``np.random.seed(seed)``, which draws ``randn`` from the global
    stream; here the same draws come from a local ``rs = np.random.RandomState(seed)``, so global state is untouched::

        for j in range(K):
            ix = range(N * j, N * (j + 1))
            r = np.linspace(0.0, 1, N)
            t = np.linspace(j * 4, (j + 1) * 4, N) + rs.randn(N) * 0.2
            X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
            y[ix] = j

    Parameters
    ----------
    n_per_class : int
        N, points per arm (>= 1).
    n_classes : int
        K, number of arms/classes (>= 1).
    seed : int
        Seed of the local ``RandomState``; ignored when ``rng`` is given.
    rng : numpy.random.RandomState or numpy.random.Generator, optional
        Draw the angle noise from this stream instead, so the caller can keep drawing from it afterwards
        (``rs = np.random.RandomState(0); X, y = spiral(rng=rs); W = 0.01 * rs.randn(2, 100)`` reproduces the
        CS231n case study). A RandomState gives the CS231n numbers; a Generator gives a different (still
        seeded) sample, drawn with ``standard_normal``.

    Returns
    -------
    X : ndarray of float64, shape (N*K, 2)
        Points, class 0 first, then class 1, ...
    y : ndarray of int64, shape (N*K,)
        Class of each point, ``y[N*j : N*(j+1)] == j``.
    """
    n = check_int(n_per_class, "n_per_class", 1, example=100)
    k = check_int(n_classes, "n_classes", 1, example=3)
    if rng is None:
        rng = np.random.RandomState(check_int(seed, "seed", 0, example=0))
    elif not isinstance(rng, np.random.RandomState | np.random.Generator):
        raise TypeError(
            f"rng must be a numpy RandomState or Generator, got {type(rng).__name__}; "
            "pass rng=np.random.RandomState(0), or use seed=0 instead"
        )
    # X (2 floats), y (one int) and the per-arm temporaries (r, t, noise, the stacked pair: about 5 floats)
    check_memory(n * k * 8 * 3 + n * 8 * 5, f"a spiral of {n} points per arm x {k} arms", fix="use fewer points")
    X = np.zeros((n * k, 2), dtype=np.float64)
    y = np.zeros(n * k, dtype=np.int64)
    for j in range(k):
        ix = slice(n * j, n * (j + 1))
        r = np.linspace(0.0, 1, n)
        noise = rng.randn(n) if isinstance(rng, np.random.RandomState) else rng.standard_normal(n)
        t = np.linspace(j * 4, (j + 1) * 4, n) + noise * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y


def digits(*, scale: bool = True) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``; no download).

    Parameters
    ----------
    scale : bool
        Divide the pixel values (integers 0..16) by 16 so that X lies in [0, 1].

    Returns
    -------
    X : ndarray of float64, shape (1797, 64)
        Flattened 8x8 images, in [0, 1] when ``scale`` else in [0, 16].
    y : ndarray of int64, shape (1797,)
        Digit 0..9.
    """
    from sklearn.datasets import load_digits  # lazy: importing reluscope.data must not import sklearn

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    if scale:
        X = X / 16.0
    y = np.asarray(bunch.target).astype(np.int64, copy=False)
    return X, y

"""Pure forward/backward pairs: the readable reference implementation of every layer.

Conventions (CS231n style): a ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)``
returns the gradients in the order of the forward's inputs. Nothing here keeps state or validates inputs beyond
what is cheap; batch first, ``N`` samples, ``D`` inputs, ``M`` outputs, ``C`` classes.

The derivative of ReLU at exactly 0 is taken to be **0**: a unit whose pre-activation is exactly 0 passes no
gradient (it did not fire). Leaky ReLU uses the leaky slope there, ELU uses ``alpha``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_labels

__all__ = [
    "Array",
    "dense_backward",
    "dense_forward",
    "elu_backward",
    "elu_forward",
    "l2_penalty",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "prelu_backward",
    "prelu_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
]

Array = NDArray[np.floating[Any]]


# Dense ------------------------------------------------------------------------------------------------------------
def dense_forward(x: Array, W: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
    """Affine layer. x: (N, D), W: (D, M), b: (M,) -> out: (N, M) = x @ W + b. Cache: (x, W)."""
    return x @ W + b, (x, W)


def dense_backward(dout: Array, cache: tuple[Array, Array]) -> tuple[Array, Array, Array]:
    """dout: (N, M) -> dx: (N, D) = dout @ W.T, dW: (D, M) = x.T @ dout, db: (M,) = sum of dout over N."""
    x, W = cache
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)


# Rectifiers -------------------------------------------------------------------------------------------------------
def relu_forward(x: Array) -> tuple[Array, NDArray[np.bool_]]:
    """x: (N, D) -> out: (N, D) = max(0, x). Cache: the mask x > 0 (the units that fired)."""
    mask = x > 0
    return x * mask, mask


def relu_backward(dout: Array, mask: NDArray[np.bool_]) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * [x > 0]. f'(0) is 0: a unit exactly at 0 passes no gradient."""
    return dout * mask


def leaky_relu_forward(x: Array, slope: float = 0.01) -> tuple[Array, tuple[NDArray[np.bool_], float]]:
    """x: (N, D) -> out: (N, D) = x if x > 0 else slope * x. Cache: (mask x > 0, slope)."""
    mask = x > 0
    return np.where(mask, x, x * x.dtype.type(slope)), (mask, slope)


def leaky_relu_backward(dout: Array, cache: tuple[NDArray[np.bool_], float]) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * (1 if x > 0 else slope); the slope is used at exactly 0."""
    mask, slope = cache
    return np.where(mask, dout, dout * dout.dtype.type(slope))


def prelu_forward(x: Array, alpha: Array) -> tuple[Array, tuple[Array, Array, NDArray[np.bool_]]]:
    """Parametric ReLU with a learnable slope per unit. x: (N, D), alpha: (D,) -> out: (N, D).

    out = x if x > 0 else alpha * x. Cache: (x, alpha, mask x > 0).
    """
    mask = x > 0
    return np.where(mask, x, x * alpha), (x, alpha, mask)


def prelu_backward(dout: Array, cache: tuple[Array, Array, NDArray[np.bool_]]) -> tuple[Array, Array]:
    """dout: (N, D) -> dx: (N, D), dalpha: (D,) = sum over N of dout * x where x <= 0."""
    x, alpha, mask = cache
    dx = np.where(mask, dout, dout * alpha)
    dalpha = np.where(mask, 0, dout * x).sum(axis=0).astype(alpha.dtype, copy=False)
    return dx, dalpha


def elu_forward(x: Array, alpha: float = 1.0) -> tuple[Array, tuple[Array, NDArray[np.bool_], float]]:
    """x: (N, D) -> out: (N, D) = x if x > 0 else alpha * (exp(x) - 1). Cache: (out, mask, alpha)."""
    mask = x > 0
    a = x.dtype.type(alpha)
    out = np.where(mask, x, a * np.expm1(np.minimum(x, 0)))
    return out, (out, mask, alpha)


def elu_backward(dout: Array, cache: tuple[Array, NDArray[np.bool_], float]) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * (1 if x > 0 else out + alpha)."""
    out, mask, alpha = cache
    return np.where(mask, dout, dout * (out + out.dtype.type(alpha)))


# Saturating -------------------------------------------------------------------------------------------------------
def sigmoid_forward(x: Array) -> tuple[Array, Array]:
    """x: (N, D) -> out: (N, D) = 1 / (1 + exp(-x)), computed without overflow. Cache: out."""
    # exp of a non-positive number never overflows: use exp(-|x|) on both branches.
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout: Array, out: Array) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * out * (1 - out)."""
    return dout * out * (1 - out)


def tanh_forward(x: Array) -> tuple[Array, Array]:
    """x: (N, D) -> out: (N, D) = tanh(x). Cache: out."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: Array, out: Array) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * (1 - out**2)."""
    return dout * (1 - out * out)


# Loss -------------------------------------------------------------------------------------------------------------
def softmax(scores: Array) -> Array:
    """scores: (N, C) -> probabilities: (N, C), rows sum to 1; stable (each row shifted by its max)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def softmax_cross_entropy(scores: Array, y: NDArray[np.integer[Any]]) -> tuple[float, Array]:
    """Mean softmax cross-entropy over the batch.

    scores: (N, C), y: (N,) integer labels in [0, C) -> loss (float), dscores: (N, C) = (softmax - onehot) / N.
    Computed stably via log-sum-exp of max-shifted scores.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, C), got shape {scores.shape}")
    n, c = scores.shape
    y = check_labels(y, n, c)
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    sums = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    log_p = shifted[rows, y] - np.log(sums[:, 0])
    loss = float(-log_p.mean())
    dscores = e / sums
    dscores[rows, y] -= 1
    dscores /= n
    return loss, dscores


def l2_penalty(W: Array, reg: float) -> tuple[float, Array]:
    """L2 weight decay on one weight matrix: loss = 0.5 * reg * sum(W**2), dW = reg * W. Not for biases."""
    return float(0.5 * reg * np.sum(W * W)), W * W.dtype.type(reg)

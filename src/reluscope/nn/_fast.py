"""The training fast path behind :class:`~reluscope.nn.MLP`: work buffers allocated once, in-place kernels.

This module does the same arithmetic as the reference pairs in :mod:`reluscope.nn.functional` (tests check it
equal to 1e-12 relative in float64; for ReLU, leaky ReLU, PReLU, ELU and tanh the scores and weight gradients are
bit for bit the same), arranged so that a training step at a fixed batch size allocates nothing as large as a
layer's activations:

- every array a step needs lives in a :class:`Workspace`, allocated for the largest batch seen and sliced
  (``buf[:n]`` is contiguous) for smaller ones, such as the last minibatch of an epoch;
- products go straight into their buffers with ``np.matmul(..., out=...)``; bias and activation run in place;
- each hidden layer's forward stores its **local derivative** ``f'(z)`` (N, H), so the backward of every
  activation is the same single multiply ``dz = dh * f'(z)``: for ReLU, ``f'(z)`` is the firing mask
  ``(z > 0)`` as 1.0/0.0, and ``relu(z) = z * mask`` is exactly ``z * (z > 0)`` as in the reference;
- masks are built with ``np.greater(z, 0, out=...)`` and selected by arithmetic, never with boolean-index
  assignment (``dh[z <= 0] = 0`` is ~10x slower at large sizes);
- small sums over an axis (bias gradients, softmax row sums) are BLAS products with a vector of ones
  (``ones @ dz`` for ``dz.sum(axis=0)``), about twice as fast as numpy's reduction at these sizes and as
  accurate; large ones stay numpy reductions (see :func:`sum_axis_into`);
- the first layer's input gradient ``dX`` is never computed (nothing needs it when training).

Where a value must be 1 where a unit fired and ``v`` where it did not, it is built as ``mask + (1 - mask) * v``,
which is exact in floating point (``1 + 0*v == 1`` and ``0 + 1*v == v``), so ``z * f'(z)`` reproduces
``np.where(z > 0, z, v * z)`` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope.nn.activations import Activation, get_spec
from reluscope.nn.functional import Array

__all__ = [
    "Batch",
    "HiddenBuffers",
    "Workspace",
    "activation_backward",
    "activation_forward",
    "softmax_cross_entropy_into",
    "sum_axis_into",
]

FEW_CLASSES = 16  # up to this many classes, the row max of the scores is taken column by column


@dataclass
class HiddenBuffers:
    """Buffers of one hidden layer for a batch of N samples (views of the workspace's arrays).

    out: (N, H) the pre-activation z, then (in place) the activation f(z).
    deriv: (N, H) the local derivative f'(z), so that the backward is ``dz = dh * deriv``.
    dh: (N, H) the gradient of the loss with respect to ``out``; scratch space during the forward.
    extra: (N, H) for PReLU ``min(z, 0)``, kept for the slope gradient ``sum(dh * min(z, 0))`` over N; for ELU
        forward scratch; None for the other activations.
    """

    out: Array
    deriv: Array
    dh: Array
    extra: Array | None = None


@dataclass
class Batch:
    """Every buffer a training step needs for a batch of N samples, plus what the last forward cached."""

    n: int
    hidden: list[HiddenBuffers]
    scores: Array  # (N, C)
    probs: Array  # (N, C) softmax, then dscores
    rowmax: Array  # (N, 1)
    rowsum: Array  # (N, 1)
    logsum: Array  # (N,)
    row_offsets: NDArray[np.intp]  # (N,) = arange(N) * C: flat index of each row of probs
    score_columns: list[Array]  # the C columns (N,) of scores, as views
    ones_classes: Array  # (C,) of 1.0: ``p @ ones_classes`` is p.sum(axis=1)
    ones: Array  # (N,) of 1.0: ``ones @ dz`` is the bias gradient dz.sum(axis=0)
    probs_flat: Array  # (N * C,) view of probs
    outs: list[Array] = field(default_factory=list)  # each layer's output: hidden[l].out ..., then scores
    x: Array | None = None  # the forward's input (N, D), kept for dW1 = x.T @ dz1
    weights: list[Array | None] = field(default_factory=list)  # the W_l the forward used, for dh = dz @ W.T
    slopes: list[Array | None] = field(default_factory=list)  # PReLU slopes the forward used, per hidden layer


class Workspace:
    """Work buffers of one network, allocated for ``capacity`` samples and reused by every smaller batch.

    ``batch(n)`` returns the buffers for n samples (cached per n); a batch larger than the capacity reallocates
    everything at the new size. Nothing here is returned to users except through :class:`~reluscope.nn.MLP`,
    which copies what it hands out (scores) or documents the reuse (grads).
    """

    def __init__(self, sizes: list[int], dtype: np.dtype[Any], activation: str, capacity: int) -> None:
        self.sizes = sizes
        self.dtype = dtype
        self.capacity = capacity
        extra = get_spec(activation).needs_extra  # a third (N, H) buffer per hidden layer
        hidden = sizes[1:-1]
        self._c = c = sizes[-1]
        self._out = [np.empty((capacity, h), dtype) for h in hidden]
        self._deriv = [np.empty((capacity, h), dtype) for h in hidden]
        self._dh = [np.empty((capacity, h), dtype) for h in hidden]
        self._extra = [np.empty((capacity, h), dtype) if extra else None for h in hidden]
        self._scores = np.empty((capacity, c), dtype)
        self._probs = np.empty((capacity, c), dtype)
        self._rowmax = np.empty((capacity, 1), dtype)
        self._rowsum = np.empty((capacity, 1), dtype)
        self._logsum = np.empty(capacity, dtype)
        self._row_offsets = np.arange(capacity, dtype=np.intp) * c
        self._ones = np.ones(capacity, dtype)
        self._ones_classes = np.ones(c, dtype)
        self._batches: dict[int, Batch] = {}
        self.last: Batch | None = None  # the batch of the last forward, None before any

    def batch(self, n: int) -> Batch:
        """The buffers for a batch of ``n <= capacity`` samples: contiguous leading slices ``[:n]``."""
        b = self._batches.get(n)
        if b is None:
            if len(self._batches) >= 8:  # many batch sizes (unusual): keep the view sets from piling up
                self._batches.clear()
            hidden = [
                HiddenBuffers(out[:n], deriv[:n], dh[:n], None if extra is None else extra[:n])
                for out, deriv, dh, extra in zip(self._out, self._deriv, self._dh, self._extra, strict=True)
            ]
            b = Batch(
                n=n,
                hidden=hidden,
                scores=self._scores[:n],
                probs=self._probs[:n],
                rowmax=self._rowmax[:n],
                rowsum=self._rowsum[:n],
                logsum=self._logsum[:n],
                row_offsets=self._row_offsets[:n],
                score_columns=[self._scores[:n, j] for j in range(self._c)],
                ones_classes=self._ones_classes,
                ones=self._ones[:n],
                probs_flat=self._probs[:n].reshape(-1),
            )
            b.outs = [layer.out for layer in hidden] + [b.scores]
            b.weights = [None] * len(b.outs)
            b.slopes = [None] * len(hidden)
            self._batches[n] = b
        return b

    @property
    def nbytes(self) -> int:
        """Bytes held by the work buffers."""
        arrays = [*self._out, *self._deriv, *self._dh, *(e for e in self._extra if e is not None)]
        arrays += [self._scores, self._probs, self._rowmax, self._rowsum, self._logsum, self._row_offsets]
        arrays += [self._ones, self._ones_classes]
        return sum(a.nbytes for a in arrays)


SMALL_SUM = 8192
"""Arrays up to this many entries are summed by a BLAS matrix-vector product with ones. OpenBLAS runs such a
product on one thread below 2304 * 4 entries; above, it wakes its worker threads, and on a busy machine waiting
for them costs far more than the sum (milliseconds), while numpy's reduction never waits for anyone."""


def sum_axis_into(a: Array, axis: int, ones: Array, out: Array) -> None:
    """out = a.sum(axis=axis) for a 2-D ``a``; ``ones`` has the length of that axis."""
    if a.size <= SMALL_SUM:
        if axis == 0:
            np.matmul(ones, a, out=out)
        else:
            np.matmul(a, ones, out=out)
    else:
        np.add.reduce(a, axis=axis, out=out)


def activation_forward(act: Activation, layer: HiddenBuffers, slope: Array | None) -> None:
    """In place: ``layer.out`` holds z (N, H) on entry and f(z) on exit; ``layer.deriv`` receives f'(z).

    Runs the registry entry's fast kernel (:attr:`reluscope.nn.activations.ActivationSpec.fast`); ``layer.dh`` is
    free during the forward and serves as scratch. ``slope`` is PReLU's (H,) slope vector. Matches the reference
    pairs in :mod:`reluscope.nn.functional`, including f'(0) = 0 for ReLU (a unit exactly at 0 did not fire) and
    the leaky slope at exactly 0.
    """
    act.spec.fast(act, layer.out, layer.deriv, layer.dh, layer.extra, slope)


def activation_backward(layer: HiddenBuffers, dslope: Array | None, ones: Array) -> None:
    """In place: ``layer.dh`` (N, H) becomes dz = dh * f'(z). For PReLU, ``dslope`` (H,) receives
    ``sum over N of dh * min(z, 0)`` (the slope's gradient), computed before dh is overwritten. ``ones`` is (N,)."""
    if dslope is not None:
        assert layer.extra is not None
        # min(z, 0) is not needed after this step: reuse its buffer for the product
        np.multiply(layer.dh, layer.extra, out=layer.extra)
        sum_axis_into(layer.extra, 0, ones, dslope)
    np.multiply(layer.dh, layer.deriv, out=layer.dh)


def softmax_cross_entropy_into(b: Batch, y: NDArray[np.integer[Any]]) -> float:
    """Mean softmax cross-entropy of ``b.scores`` (N, C) against labels y (N,); ``b.probs`` receives dscores.

    The same operations as :func:`reluscope.nn.functional.softmax_cross_entropy` (stable: rows shifted by their
    max), written into the workspace; ``p[rows, y]`` is addressed as ``p.ravel()[rows * C + y]``, the cheaper
    equivalent. ``y`` must already be valid labels in [0, C).
    """
    n = b.n
    scores, p = b.scores, b.probs
    if len(b.score_columns) <= FEW_CLASSES:  # a reduction along a short axis is slow: take columns pairwise
        rowmax = b.rowmax[:, 0]
        np.copyto(rowmax, b.score_columns[0])
        for column in b.score_columns[1:]:
            np.maximum(rowmax, column, out=rowmax)
    else:
        np.maximum.reduce(scores, axis=1, keepdims=True, out=b.rowmax)
    np.subtract(scores, b.rowmax, out=p)
    at_label = b.row_offsets + y  # flat index of each sample's class in p
    flat = b.probs_flat
    picked = flat[at_label]  # (N,) shifted score of each sample's class
    np.exp(p, out=p)
    sum_axis_into(p, 1, b.ones_classes, b.rowsum[:, 0])
    np.log(b.rowsum[:, 0], out=b.logsum)
    np.subtract(picked, b.logsum, out=picked)  # log-probability of each sample's class
    loss = float(-(np.add.reduce(picked) / n))  # the mean, computed as ndarray.mean does
    np.divide(p, b.rowsum, out=p)
    flat[at_label] -= 1
    np.divide(p, n, out=p)
    return loss

"""Comparing results of different BLAS calls: rigorous rounding bounds instead of bit equality."""

from __future__ import annotations

import numpy as np


# Results of *different* BLAS calls --------------------------------------------------------------------------------
# A batched scan and one big forward, numpy and torch, or two batch sizes run different BLAS kernels (blocking, SIMD
# width and summation order depend on the shapes, the CPU and OPENBLAS_CORETYPE), so their float results may differ
# in the last bits: a 1-ulp difference in float32 was seen between batch sizes 64 and 301 under the Haswell kernel.
# Comparing such results bit for bit is a test of the CPU, not of reluscope. These helpers bound the difference
# rigorously instead: a K-term dot product computed in floating point is within K·u·Σ|x_i·w_i| of the exact value
# (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 3.5, u = eps/2), so two kernels differ by
# at most 2·K·u·Σ|x_i·w_i| = K·eps·(|x| @ |W|) per layer, plus the previous layer's bound carried through |W| (every
# activation used here is 1-Lipschitz). Counts that our own code merges, and results of the same call, stay exact.
def rounding_bounds(net, X: np.ndarray) -> list[np.ndarray]:
    """(N, H_l) per hidden layer of a reluscope MLP: how far two BLAS kernels' pre-activations may be apart."""
    eps, tiny = float(np.finfo(net.dtype).eps), float(np.finfo(net.dtype).tiny)
    bounds, h = [], np.abs(np.asarray(X, dtype=np.float64))
    carried = np.zeros_like(h)  # the previous layer's bound: |δh| <= |δz| for a 1-Lipschitz activation
    for layer, (_, act) in enumerate(net.hidden_outputs(X), start=1):
        W, b = np.abs(net.params[f"W{layer}"].astype(np.float64)), np.abs(net.params[f"b{layer}"].astype(np.float64))
        # K products and the bias add; a factor 2 of margin because |h| is itself one side's rounded value;
        # never 0, so a pre-activation at exactly 0 counts as ambiguous
        bound = 2.0 * ((W.shape[0] + 1) * eps * (h @ W + b) + carried @ W) + 4 * tiny
        bounds.append(bound)
        h, carried = np.abs(act.astype(np.float64)), bound
    return bounds


def assert_fire_counts_within_rounding(got: np.ndarray, pre: np.ndarray, bound: np.ndarray) -> None:
    """got: (H,) fire counts measured through another BLAS call than pre: (N, H). A sample counts as surely firing
    when pre > bound and surely not when pre <= -bound; in between, either side of the kink is right."""
    sure, maybe = (pre > bound).sum(axis=0), (pre > -bound).sum(axis=0)
    assert ((sure <= got) & (got <= maybe)).all(), f"fire counts {got} outside [{sure}, {maybe}]"


def assert_dead_masks_within_rounding(got: np.ndarray, pre: np.ndarray, bound: np.ndarray) -> None:
    """got: (H,) dead mask measured through another BLAS call than pre: (N, H); units whose largest pre-activation is
    within rounding of 0 may go either way, and this test data must leave at most one such unit."""
    surely_dead, surely_alive = (pre <= -bound).all(axis=0), (pre > bound).any(axis=0)
    assert (got[surely_dead]).all() and not (got[surely_alive]).any()
    assert (~surely_dead & ~surely_alive).sum() <= 1, "test data too close to the kink to say anything"

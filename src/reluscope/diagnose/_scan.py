"""Whole-dataset scans of a numpy :class:`~reluscope.nn.MLP`: batched, never holding all activations."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive_int
from reluscope.diagnose._stats import ActivationStats

if TYPE_CHECKING:
    from reluscope.nn.model import MLP

__all__ = ["Progress", "dead_units", "scan"]

Progress = Callable[[int, int], None]
"""``progress(n_done, n_total)``, called after every batch (e.g. to advance a rich progress bar)."""


def scan(
    net: MLP,
    X: NDArray[Any],
    batch_size: int = 256,
    *,
    progress: Progress | None = None,
    stats: ActivationStats | None = None,
) -> ActivationStats:
    """Run X (N, D) through ``net`` in batches and stream every hidden layer into an :class:`ActivationStats`.

    Memory is one batch of activations plus O(units) counters. ``progress(n_done, n_total)`` is called after each
    batch; ``stats`` continues existing statistics instead of starting new ones. Sites are ``net.hidden_names``.

    Raises ValueError if X is not (N, D) finite numbers with D = ``net.sizes[0]``, or the net has no hidden layer.
    """
    bs = check_positive_int(batch_size, "batch_size", example=256)
    names = net.hidden_names
    if not names:
        raise ValueError(f"MLP{net.sizes} has no hidden layer, so there are no units to diagnose")
    X = net.check_input(X)
    n = X.shape[0]
    stats = ActivationStats() if stats is None else stats
    nonneg = net.activation.spec.nonnegative  # |act| == act: the abs pass can be skipped
    for start in range(0, n, bs):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by stats.update as an error
            hidden = net.hidden_outputs(X[start : start + bs])
        for name, (pre, act) in zip(names, hidden, strict=True):
            stats.update(name, pre, act, assume_nonnegative=nonneg)
        if progress is not None:
            progress(min(start + bs, n), n)
    return stats


def dead_units(net: MLP, X: NDArray[Any], batch_size: int = 256) -> dict[str, NDArray[np.bool_]]:
    """``{"hidden1": bool (units,), ...}``: True for units whose pre-activation is <= 0 on every row of X."""
    stats = scan(net, X, batch_size)
    return {name: stats.dead_mask(name) for name in stats.names}

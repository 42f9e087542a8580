"""Leaky swap for the numpy MLP, and the *stuck* view that shows why it works.

A leaky ReLU unit can sit below zero on every sample — it never *fires*, so the firing statistics still count it
as dead — but its derivative there is ``slope > 0``, so its incoming weights keep receiving gradient and it can
come back. :func:`stuck_units` finds the *stuck* units (docs/glossary.md): activation derivative 0 on every
sample, so gradient descent cannot revive them from the data. For ReLU stuck equals dead; for leaky ReLU
(slope > 0) no unit is stuck, by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive, check_positive_int
from reluscope.nn import REGISTRY
from reluscope.nn.model import MLP

__all__ = ["dead_by_gradient", "leaky_swap", "stuck_units"]


def leaky_swap(net: MLP, slope: float = 0.01) -> MLP:
    """A copy of ``net`` with leaky ReLU (negative slope ``slope``) instead of ReLU, and the same weights.

    Parameters
    ----------
    net
        An MLP with ``relu`` (or ``leaky``, to change the slope) activation. It is not modified.
    slope
        Negative slope, > 0 (0.01 by default, as ``torch.nn.LeakyReLU``).

    Returns
    -------
    MLP
        Same sizes, init settings, dtype and parameters (copied); outputs equal ``net``'s wherever no hidden
        unit is negative.

    Raises
    ------
    ValueError
        The activation is not ReLU/leaky (PReLU's learned slopes, ELU, sigmoid, tanh have no ReLU to swap), or
        the slope is not a finite number > 0.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a reluscope.nn.MLP, got {type(net).__name__}; for torch use swap_relu_to_leaky")
    slope = check_positive(slope, "slope")
    leaky = net.activation.spec.leaky
    if leaky is None:
        swappable = [name for name, spec in REGISTRY.items() if spec.leaky is not None]
        raise ValueError(
            f"leaky_swap converts ReLU networks, got activation {net.activation.name!r}; "
            f"build MLP(..., activation='leaky') instead, or swap only a {' or '.join(swappable)} network"
        )
    config = {**net.config(), "activation": leaky, "slope": slope}
    return MLP.from_params(config, net.params)


def stuck_units(net: MLP, X: NDArray[Any], batch_size: int = 1024) -> dict[str, NDArray[np.bool_]]:
    """``{"hidden1": bool (units,), ...}``: the *stuck* units, activation derivative 0 on every row of X (N, D).

    Such a unit passes no gradient from the data to its incoming weights and bias (only L2 or optimizer momentum
    can move them). For ReLU this is "pre-activation <= 0 everywhere" (the firing view); for leaky ReLU with a
    positive slope, for ELU, sigmoid and tanh it is empty. Scanned in batches, O(units) memory.
    """
    bs = check_positive_int(batch_size, "batch_size", example=1024)
    names = net.hidden_names
    if not names:
        raise ValueError(f"MLP{net.sizes} has no hidden layer, so there are no units to diagnose")
    X = net.check_input(X)
    alive = [np.zeros(net.sizes[layer], dtype=bool) for layer in range(1, len(names) + 1)]
    for start in range(0, X.shape[0], bs):
        hidden = net.hidden_outputs(X[start : start + bs])
        for layer, (pre, _) in enumerate(hidden, start=1):
            _, cache = net.activation.forward(pre, net.params.get(f"a{layer}"))
            deriv, _ = net.activation.backward(np.ones_like(pre), cache)
            alive[layer - 1] |= (deriv != 0).any(axis=0)
    return {name: ~a for name, a in zip(names, alive, strict=True)}


dead_by_gradient = stuck_units
"""The earlier name of :func:`stuck_units` ("dead by gradient"), kept for existing callers and records."""

"""Continual Backprop (Dohare et al., Nature 2024, "Loss of plasticity in deep continual learning") for the numpy
:class:`~reluscope.nn.MLP`.

Every hidden unit ``i`` of layer ``l`` carries, updated on every training batch (decay ``eta``):

* ``age[i]``: steps since it was (re)initialised;
* ``mean[i]``: running average of its activation ``h_i`` (``f`` in the paper);
* ``utility[i]``: running average of its *contribution utility* ``|h_i| * sum_k |W{l+1}[i, k]|`` (Dohare et al.
  2024, Methods, "contribution utility"); the batch mean of ``|h_i|`` is used for a minibatch.

After each update, a fraction ``replacement_rate`` of the *mature* units (``age > maturity``) of every layer is
replaced (the fraction accumulates across steps, so 1e-4 of 100 units is one unit every 100 steps): the mature units
with the lowest utility get

* new incoming weights ``W{l}[:, i]`` from the network's own initialiser, bias ``b{l}[i] = net.bias_init`` (and a
  PReLU slope back to its initial value);
* zero outgoing weights ``W{l+1}[i, :]``, so the fresh unit does not disturb the output, and, with
  ``bias_correction`` (default), its mean contribution folded into the next layer's bias:
  ``b{l+1} += mean[i] * W{l+1}[i, :]`` (the paper's mean-corrected replacement, Dohare et al. 2021 arXiv v1 §4).
  The output then moves only by the residual ``-(h_i(x) - mean[i]) * W{l+1}[i, :]`` instead of
  ``-h_i(x) * W{l+1}[i, :]``;
* ``age = utility = mean = 0``, and exactly those entries of the optimizer state zeroed (as :func:`redo` does:
  ``W{l}[:, i]``, ``b{l}[i]``, ``a{l}[i]``, ``W{l+1}[i, :]``); ``optimizer.t`` and every other entry are kept.
  The shifted bias ``b{l+1}`` keeps its optimizer state.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import RNGLike, as_rng, check_fraction
from reluscope.nn.model import MLP
from reluscope.nn.optim import Optimizer
from reluscope.remedies._redo import UnitCounts, reinit_incoming, zero_state

__all__ = ["CBPReport", "ContinualBackprop", "check_cbp_options"]


def check_cbp_options(replacement_rate: Any, maturity: Any, decay: Any) -> tuple[float, int, float]:
    """Validate CBP's hyper-parameters; returns them as ``(float, int, float)`` or raises ValueError saying how."""
    rate = check_fraction(replacement_rate, "replacement_rate", example=1e-4)
    if isinstance(maturity, bool) or not isinstance(maturity, numbers.Integral) or maturity < 0:
        raise ValueError(f"maturity must be an integer >= 0 (steps a unit is protected), got {maturity!r}; e.g. 100")
    ok = not isinstance(decay, bool) and isinstance(decay, numbers.Real) and math.isfinite(float(decay))
    if not ok or not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"decay must be a number in [0, 1), got {decay!r}; Dohare et al. use decay=0.99")
    return rate, int(maturity), float(decay)


@dataclass(frozen=True)
class CBPReport(UnitCounts):
    """What one :meth:`ContinualBackprop.step` replaced.

    Attributes
    ----------
    step : int
        The step count after this step (1 for the first).
    units : dict[str, list[int]]
        Per hidden layer (``"hidden1"``, ...), the indices of the replaced units (empty when none).
    counts : dict[str, int]
        Per hidden layer, how many units were replaced (``total``: over all layers).
    """

    step: int
    units: dict[str, list[int]]
    counts: dict[str, int] = field(init=False)


class ContinualBackprop:
    """Continual Backprop's per-unit bookkeeping and replacement for one :class:`~reluscope.nn.MLP`.

    Parameters
    ----------
    net
        The network (at least one hidden layer). Modified in place by :meth:`step`.
    replacement_rate
        Fraction of the mature units of each layer replaced per step, in [0, 1] (paper: 1e-4 on Permuted MNIST).
    maturity
        A unit is protected for this many steps after (re)initialisation (paper: 100).
    decay
        Decay ``eta`` of the running averages of activation and utility, in [0, 1) (paper: 0.99).
    bias_correction
        Fold a replaced unit's mean contribution into the next layer's bias (see the module docstring).
    seed
        An int or ``numpy.random.Generator`` for the new incoming weights.

    Examples
    --------
    >>> cbp = ContinualBackprop(net, replacement_rate=1e-4, maturity=100)
    >>> for xb, yb in batches:
    ...     loss, grads = net.loss(xb, yb); opt.step(net.params, grads)
    ...     cbp.observe([h for _, h in net.hidden_outputs(xb)])
    ...     cbp.step(opt)
    """

    def __init__(
        self,
        net: MLP,
        *,
        replacement_rate: float = 1e-4,
        maturity: int = 100,
        decay: float = 0.99,
        bias_correction: bool = True,
        seed: RNGLike = 0,
    ) -> None:
        if not isinstance(net, MLP):
            raise TypeError(f"net must be a reluscope.nn.MLP, got {type(net).__name__}; for torch use reluscope.torch")
        if not net.hidden_names:
            raise ValueError(f"MLP{net.sizes} has no hidden layer, so there are no units to replace")
        self.net = net
        self.replacement_rate, self.maturity, self.decay = check_cbp_options(replacement_rate, maturity, decay)
        self.bias_correction = bool(bias_correction)
        self.rng = as_rng(seed)
        hidden = net.sizes[1:-1]
        self.age: list[NDArray[np.int64]] = [np.zeros(h, dtype=np.int64) for h in hidden]
        self.mean: list[NDArray[np.float64]] = [np.zeros(h) for h in hidden]
        self.utility: list[NDArray[np.float64]] = [np.zeros(h) for h in hidden]
        self._owed: list[float] = [0.0 for _ in hidden]
        self.steps = 0
        self.replaced = 0

    def observe(self, activations: list[NDArray[Any]]) -> None:
        """Update the running mean activation and contribution utility from one batch.

        ``activations``: one (N, H_l) array of post-activations per hidden layer (``h`` of
        ``net.hidden_outputs(xb)``), computed with the parameters the utilities should describe.
        """
        if len(activations) != len(self.age):
            raise ValueError(
                f"observe needs one activation array per hidden layer ({len(self.age)}), got {len(activations)}"
            )
        eta = self.decay
        p = self.net.params
        for layer, h in enumerate(activations, start=1):
            h = np.asarray(h)
            if h.ndim != 2 or h.shape[1] != self.age[layer - 1].shape[0]:
                raise ValueError(
                    f"activations of hidden layer {layer} must be (N, {self.age[layer - 1].shape[0]}), got {h.shape}"
                )
            out_w = np.abs(p[f"W{layer + 1}"]).sum(axis=1, dtype=np.float64)
            m = self.mean[layer - 1]
            u = self.utility[layer - 1]
            m *= eta
            m += (1 - eta) * h.mean(axis=0, dtype=np.float64)
            u *= eta
            u += (1 - eta) * np.abs(h).mean(axis=0, dtype=np.float64) * out_w

    def select(self) -> list[NDArray[np.intp]]:
        """Age every unit by one step and return, per hidden layer, the units to replace now (lowest utility among
        the mature ones; ties broken by index). Called by :meth:`step`."""
        chosen: list[NDArray[np.intp]] = []
        for k, age in enumerate(self.age):
            age += 1
            mature = np.flatnonzero(age > self.maturity)
            self._owed[k] += self.replacement_rate * mature.size
            n = min(int(self._owed[k]), mature.size)
            if n == 0:
                chosen.append(np.empty(0, dtype=np.intp))
                continue
            self._owed[k] -= n
            order = np.argsort(self.utility[k][mature], kind="stable")[:n]
            chosen.append(np.sort(mature[order]))
        return chosen

    def replace(self, optimizer: Optimizer | None, units: list[NDArray[np.intp]]) -> None:
        """Replace ``units`` (one index array per hidden layer) as described in the module docstring."""
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a reluscope.nn.Optimizer or None, got {type(optimizer).__name__}; "
                "for torch models use reluscope.torch.ContinualBackprop"
            )
        net, p = self.net, self.net.params
        for layer, idx in enumerate(units, start=1):
            if idx.size:
                reinit_incoming(net, optimizer, layer, idx, self.rng)
        # outgoing weights last, so every replaced unit ends with zero outgoing weights
        for layer, idx in enumerate(units, start=1):
            if idx.size == 0:
                continue
            w_out = p[f"W{layer + 1}"]
            if self.bias_correction:
                shift = self.mean[layer - 1][idx] @ w_out[idx, :].astype(np.float64)
                p[f"b{layer + 1}"] += shift.astype(net.dtype)
            w_out[idx, :] = 0
            zero_state(optimizer, f"W{layer + 1}", (idx, slice(None)))
            self.age[layer - 1][idx] = 0
            self.mean[layer - 1][idx] = 0
            self.utility[layer - 1][idx] = 0
            self.replaced += int(idx.size)

    def step(self, optimizer: Optimizer | None) -> CBPReport:
        """One CBP step after an optimizer step and :meth:`observe`: age, select, replace. Returns what changed."""
        self.steps += 1
        units = self.select()
        self.replace(optimizer, units)
        return CBPReport(
            step=self.steps, units={n: u.tolist() for n, u in zip(self.net.hidden_names, units, strict=True)}
        )

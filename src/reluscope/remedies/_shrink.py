"""Shrink & Perturb (Ash & Adams 2020, "On warm-starting neural network training", §4) for the numpy MLP.

Every weight matrix ``W{l}`` becomes ``shrink * W{l} + noise * E`` with ``E`` a fresh draw from the layer's own
initialiser (``net.init``, ``net.init_std``, its fan-in and fan-out); biases become ``shrink * b{l}`` (their
initialiser is the constant ``net.bias_init``, so the perturbation of a bias is ``noise * bias_init``); PReLU slopes
are left alone. The optimizer state is not touched, so it works with any optimizer.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from reluscope._validate import RNGLike, as_rng
from reluscope.nn.init import init_weight
from reluscope.nn.model import MLP
from reluscope.remedies._common import check_positive_int

__all__ = ["ShrinkPerturb", "StepSchedule", "check_shrink_options", "shrink_perturb"]


def check_shrink_options(shrink: Any, noise: Any) -> tuple[float, float]:
    """``(shrink, noise)`` as floats if shrink is in (0, 1] and noise >= 0, both finite; ValueError otherwise."""
    for name, v in (("shrink", shrink), ("noise", noise)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}; e.g. shrink=0.9, noise=0.01")
    if not 0.0 < float(shrink) <= 1.0:
        raise ValueError(f"shrink must be in (0, 1] (1 = no shrinking), got {shrink!r}; Ash & Adams use 0.3 to 0.9")
    if float(noise) < 0:
        raise ValueError(f"noise must be >= 0 (the scale of the init draw added), got {noise!r}; e.g. noise=0.01")
    return float(shrink), float(noise)


def shrink_perturb(net: MLP, *, shrink: float = 0.9, noise: float = 0.01, seed: RNGLike = 0) -> None:
    """Apply θ ← shrink·θ + noise·ε in place to every parameter of ``net`` (ε from the layer's initialiser).

    Parameters
    ----------
    net
        The MLP. Weights ``W{l}`` (fan_in, fan_out) and biases ``b{l}`` change; PReLU slopes do not.
    shrink
        λ in (0, 1]; 1 keeps the weights (perturb only).
    noise
        σ >= 0; 0 shrinks only.
    seed
        An int or ``numpy.random.Generator`` for ε (pass a Generator when calling repeatedly).
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a reluscope.nn.MLP, got {type(net).__name__}; for torch use reluscope.torch")
    lam, sigma = check_shrink_options(shrink, noise)
    rng = as_rng(seed)
    p = net.params
    f = net.dtype.type
    for layer, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True), start=1):
        W = p[f"W{layer}"]
        W *= f(lam)
        if sigma:
            eps = init_weight(net.init, fan_in, fan_out, rng=rng, dtype=net.dtype, std=net.init_std)
            eps *= f(sigma)
            W += eps
        b = p[f"b{layer}"]
        b *= f(lam)
        if sigma and net.bias_init:
            b += f(sigma * net.bias_init)


class StepSchedule:
    """Counts optimizer steps and acts on every ``every``-th one: call :meth:`step` after each ``optimizer.step()``.

    The schedule of both Shrink & Perturb classes (this module's for the numpy MLP, ``reluscope.torch``'s for
    PyTorch models); a subclass implements :meth:`apply`. ``steps`` counts the steps, ``applied`` the applications.

    Raises
    ------
    ValueError
        ``every`` is not a positive integer.
    """

    def __init__(self, every: int) -> None:
        self.every = check_positive_int(every, "every", example=1000)
        self.steps = 0
        self.applied = 0

    def apply(self) -> None:
        """What happens every ``every`` steps."""
        raise NotImplementedError

    def step(self) -> bool:
        """Count one step; :meth:`apply` when the count reaches a multiple of ``every``. True if applied."""
        self.steps += 1
        if self.steps % self.every:
            return False
        self.apply()
        self.applied += 1
        return True


class ShrinkPerturb(StepSchedule):
    """Shrink & Perturb on a schedule: call :meth:`step` after every optimizer step; every ``every`` steps it
    applies :func:`shrink_perturb`. ``applied`` counts the applications."""

    def __init__(self, net: MLP, *, every: int, shrink: float = 0.9, noise: float = 0.01, seed: RNGLike = 0) -> None:
        super().__init__(every)
        self.net = net
        self.shrink, self.noise = check_shrink_options(shrink, noise)
        self.rng = as_rng(seed)

    def apply(self) -> None:
        """:func:`shrink_perturb` with this schedule's settings and generator."""
        shrink_perturb(self.net, shrink=self.shrink, noise=self.noise, seed=self.rng)

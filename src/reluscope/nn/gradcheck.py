"""Numerical gradient checks: centred finite differences in float64, aware of ReLU kinks.

``(f(x + h) - f(x - h)) / 2h`` is accurate to O(h²) where f is smooth. At a ReLU kink it is not: if nudging a
parameter by ±h moves some pre-activation across 0, the two sides see different slopes and the estimate is
meaningless there. :func:`check_gradients` detects those entries (the set of firing units differs between the
perturbed passes and the unperturbed one) and reports them separately instead of failing on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import RNGLike, as_rng
from reluscope.nn.functional import Array
from reluscope.nn.model import MLP

__all__ = ["GradCheckReport", "ParamCheck", "check_gradients", "numerical_gradient", "numerical_gradient_array"]


def numerical_gradient(f: Callable[[Array], float], x: Array, h: float = 1e-5) -> Array:
    """Gradient of a scalar function f at x (any shape) by centred differences; x is perturbed in place and
    restored."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f: Callable[[Array], Array], x: Array, dout: Array, h: float = 1e-5) -> Array:
    """Vector-Jacobian product dout · ∂f/∂x by centred differences, for array-valued f (a layer's forward)."""
    return numerical_gradient(lambda v: float(np.sum(f(v) * dout)), x, h)


def relative_error(a: NDArray[Any], b: NDArray[Any], floor: float = 1e-8) -> float:
    """Norm-wise relative error ||a - b|| / max(||a|| + ||b||, floor).

    The floor keeps a gradient that is exactly 0 (a dead unit's) from scoring 1.0 against a numerical estimate of
    rounding size (~1e-17): such a pair scores ~1e-9 instead, while a real mismatch still scores large.
    """
    den = max(float(np.linalg.norm(a) + np.linalg.norm(b)), floor)
    return float(np.linalg.norm(a - b) / den)


@dataclass
class ParamCheck:
    """Result for one parameter: errors over the entries checked away from kinks, and the kink entries apart."""

    key: str
    checked: int
    kinks: int
    rel_error: float
    max_abs_error: float
    kink_rel_error: float | None
    analytic: list[float] = field(repr=False, default_factory=list)
    numeric: list[float] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "checked": self.checked,
            "kinks": self.kinks,
            "rel_error": self.rel_error,
            "max_abs_error": self.max_abs_error,
            "kink_rel_error": self.kink_rel_error,
        }


@dataclass
class GradCheckReport:
    """Per-parameter results of :func:`check_gradients`; ``passed`` uses ``tol`` away from kinks.

    The one rule, used by every caller (``explain`` included): a parameter is ok when at least one of its entries
    was checked away from kinks and its relative error is below ``tol`` (or its absolute error is at most
    ``abs_tol``, for gradients that are 0 up to rounding, where a relative error means nothing); the check passed
    when every parameter is ok. A parameter whose entries all sat on kinks was not checked at all, so it fails.
    """

    params: dict[str, ParamCheck]
    tol: float
    h: float
    abs_tol: float = 0.0

    def ok(self, key: str) -> bool:
        """Parameter ``key`` had an entry checked, and agreed within ``tol`` (or ``abs_tol``)."""
        p = self.params[key]
        return p.checked > 0 and (p.rel_error < self.tol or p.max_abs_error <= self.abs_tol)

    @property
    def unchecked(self) -> list[str]:
        """Parameters with no entry checked (every sampled entry sat on a kink)."""
        return [k for k, p in self.params.items() if p.checked == 0]

    @property
    def max_rel_error(self) -> float:
        return max((p.rel_error for p in self.params.values()), default=0.0)

    @property
    def total_kinks(self) -> int:
        return sum(p.kinks for p in self.params.values())

    @property
    def passed(self) -> bool:
        """Every parameter had at least one entry checked away from kinks, all within ``tol`` (see the class)."""
        return all(self.ok(k) for k in self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tol": self.tol,
            "abs_tol": self.abs_tol,
            "h": self.h,
            "passed": self.passed,
            "max_rel_error": self.max_rel_error,
            "unchecked": self.unchecked,
            "params": {k: {**p.to_dict(), "ok": self.ok(k)} for k, p in self.params.items()},
        }


def check_gradients(
    net: MLP,
    X: Array,
    y: NDArray[np.integer[Any]],
    *,
    reg: float = 0.0,
    h: float = 1e-5,
    tol: float = 1e-7,
    abs_tol: float = 0.0,
    max_checks: int | None = None,
    seed: RNGLike = 0,
) -> GradCheckReport:
    """Compare ``net.loss``'s analytic gradients with centred differences, every parameter, in float64.

    The check runs on a float64 copy of ``net`` (the net itself is untouched). ``max_checks`` limits the entries
    checked per parameter (chosen with ``seed``); ``None`` checks all of them. Entries whose ±h perturbation
    changes which units fire (a kink crossing) are counted in ``kinks`` and excluded from ``rel_error``.
    ``abs_tol`` accepts a parameter whose absolute error is at most it (gradients 0 up to rounding); see
    :class:`GradCheckReport` for the rule that decides ``passed``.
    """
    net64 = net.copy(dtype="float64")
    X64 = net64.check_input(X)
    _, grads = net64.loss(X64, y, reg)
    analytic = {k: g.copy() for k, g in grads.items()}
    kinked = net64.activation.spec.kinked(net64.activation)  # f' jumps at 0: look for kink crossings

    def firing() -> list[NDArray[np.bool_]]:
        return [pre > 0 for pre in net64.preactivations(X64)]

    base = firing() if kinked else []
    rng = as_rng(seed)
    results: dict[str, ParamCheck] = {}
    for key, p in net64.params.items():
        flat = p.reshape(-1)
        n = flat.size
        idx = np.arange(n) if max_checks is None or max_checks >= n else rng.choice(n, max_checks, replace=False)
        num = np.empty(len(idx))
        kink = np.zeros(len(idx), dtype=bool)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + h
            plus = net64.loss(X64, y, reg)[0]
            crossed = kinked and any((a != b).any() for a, b in zip(firing(), base, strict=True))
            flat[i] = old - h
            minus = net64.loss(X64, y, reg)[0]
            crossed = crossed or (kinked and any((a != b).any() for a, b in zip(firing(), base, strict=True)))
            flat[i] = old
            num[j] = (plus - minus) / (2 * h)
            kink[j] = crossed
        ana = analytic[key].reshape(-1)[idx]
        smooth = ~kink
        results[key] = ParamCheck(
            key=key,
            checked=int(smooth.sum()),
            kinks=int(kink.sum()),
            rel_error=relative_error(ana[smooth], num[smooth]),
            max_abs_error=float(np.max(np.abs(ana[smooth] - num[smooth]), initial=0.0)),
            kink_rel_error=relative_error(ana[kink], num[kink]) if kink.any() else None,
            analytic=ana.tolist(),
            numeric=num.tolist(),
        )
    return GradCheckReport(results, tol=tol, h=h, abs_tol=abs_tol)

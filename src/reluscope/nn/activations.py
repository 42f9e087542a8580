"""The activation registry: one entry per activation, the only place that knows the family.

An entry (:class:`ActivationSpec`) holds everything reluscope needs about one nonlinearity: its reference
forward/backward pair, the derivative's convention at 0, the in-place fast kernel of :mod:`reluscope.nn._fast`,
the "fires" predicate, its leaky counterpart, its PyTorch twin and its display name. Every other module asks the
registry (:func:`get_spec`, :data:`REGISTRY`) instead of testing names, so **adding an activation is one
:func:`register` call in this file** (plus its tests); see ``softplus`` at the bottom for the pattern.

An :class:`Activation` is a configured entry (``MLP(..., activation="leaky")`` builds one with the slope).
Whatever the activation, a unit *fires* on a sample when its pre-activation is > 0 (:func:`fires`); that is
what the dead-unit statistics count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive
from reluscope.nn import functional as F
from reluscope.nn.functional import Array

__all__ = [
    "ACTIVATIONS",
    "REGISTRY",
    "Activation",
    "ActivationSpec",
    "FastKernel",
    "fires",
    "get_activation",
    "get_spec",
    "register",
    "softplus_backward",
    "softplus_forward",
]

Cache = Any
Forward = Callable[[Array, "Activation", "Array | None"], tuple[Array, Cache]]
Backward = Callable[[Array, Cache], tuple[Array, "Array | None"]]
FastKernel = Callable[["Activation", Array, Array, Array, "Array | None", "Array | None"], None]
"""``kernel(act, z, deriv, tmp, extra, slope)``, all (N, H) buffers except ``slope`` (H,): in place, ``z`` holds
the pre-activation on entry and f(z) on exit, ``deriv`` receives f'(z); ``tmp`` is scratch; ``extra`` exists when
the entry sets ``needs_extra`` (PReLU keeps ``min(z, 0)`` there for its slope gradient)."""


def fires(z: NDArray[Any]) -> NDArray[np.bool_]:
    """The firing predicate, shared by every activation: a unit fires on a sample when its pre-activation z > 0.

    z: any shape -> bool, same shape. A unit exactly at 0 did not fire (ReLU's f'(0) = 0 convention).
    """
    return np.asarray(z) > 0


def _never(act: Activation) -> bool:
    return False


def _always(act: Activation) -> bool:
    return True


@dataclass(frozen=True)
class ActivationSpec:
    """One registry entry: everything reluscope knows about one activation.

    Attributes
    ----------
    name : str
        The key (``"relu"``); also what ``MLP.config()`` records.
    display : str
        Human name for tables and plots (``"ReLU"``).
    colour : str
        Its colour in every figure (a hex RGB string): ReLU red (the one that dies), leaky blue.
    forward, backward
        The reference pair: ``forward(x, act, param) -> (out, cache)`` with x (N, H) and ``param`` PReLU's (H,)
        slopes or None; ``backward(dout, cache) -> (dx, dparam or None)``.
    fast : FastKernel
        The in-place training kernel (see :data:`FastKernel`); must agree with the pair to 1e-12 in float64.
    formula, derivative : str
        f(z) and f'(z) as text; ``{slope}``/``{alpha}`` are filled in; ``out`` in the derivative means f(z).
    at_zero : Callable
        ``at_zero(act) -> float``: the derivative's convention at exactly z = 0 (0 for ReLU, as PyTorch; the
        slope for leaky ReLU). For PReLU, the unit's slope (its initial value ``act.slope``).
    torch_twin : str
        The PyTorch module computing the same function (``"torch.nn.ReLU"``).
    torch_module : Callable
        ``torch_module(act, param) -> torch.nn.Module``, importing torch lazily (the numpy core never does).
    leaky : str or None
        The leaky counterpart a leaky swap converts this activation to, with the same weights; None when none is
        meaningful.
    aliases : tuple of str
        Other spellings :func:`get_activation` accepts.
    learnable : bool
        True when the activation has a parameter per unit (PReLU's slope, key ``"a{l}"``).
    needs_extra : bool
        True when the fast kernel needs a third (N, H) buffer per hidden layer.
    kinked : Callable
        ``kinked(act)``: True when f' jumps at 0, so finite differences across 0 are meaningless there.
    stuck_off : Callable
        ``stuck_off(act)``: True when f'(z) is exactly 0 wherever the unit does not fire, so a unit that fires on
        no sample gets no gradient from the data (dead = stuck for this activation).
    no_gate : str or None
        For activations with f'(z) > 0 everywhere: how their gradient shrinks (explain's note); None otherwise.
    nonnegative : bool
        True when f(z) >= 0 for every z, so |f(z)| == f(z) and the statistics skip the abs pass.
    negative_side_sign : float
        The sign of f(z) for z <= 0, where a dead unit lives: 0 when f is 0 there (ReLU), +1 when f is positive
        there (sigmoid, softplus), -1 when negative (the leaky family, ELU, tanh). Pruning a dead unit folds
        ``sign * mean |f|`` into the next layer's bias.
    fires : Callable
        The firing predicate (:func:`fires`; the same for every activation by design).
    """

    name: str
    display: str
    colour: str
    forward: Forward
    backward: Backward
    fast: FastKernel
    formula: str
    derivative: str
    at_zero: Callable[[Activation], float]
    torch_twin: str
    torch_module: Callable[[Activation, NDArray[Any] | None], Any]
    leaky: str | None = None
    aliases: tuple[str, ...] = ()
    learnable: bool = False
    needs_extra: bool = False
    kinked: Callable[[Activation], bool] = _always
    stuck_off: Callable[[Activation], bool] = _never
    no_gate: str | None = None
    nonnegative: bool = False
    negative_side_sign: float = -1.0
    fires: Callable[[NDArray[Any]], NDArray[np.bool_]] = fires


REGISTRY: dict[str, ActivationSpec] = {}
"""Every activation, by name, in registration order."""
_ALIASES: dict[str, str] = {}
ACTIVATIONS: tuple[str, ...] = ()
"""The registered names, in order. This module's global is refreshed by :func:`register`; a copy imported
elsewhere (``reluscope.nn.ACTIVATIONS``) holds the built-in entries, so code that must see later registrations
iterates :data:`REGISTRY`."""


def register(spec: ActivationSpec) -> ActivationSpec:
    """Add ``spec`` to :data:`REGISTRY` (and its aliases); a name already taken raises ValueError."""
    global ACTIVATIONS
    for key in (spec.name, *spec.aliases):
        if key in REGISTRY or key in _ALIASES:
            raise ValueError(f"activation name {key!r} is already registered; pick another name or alias")
    REGISTRY[spec.name] = spec
    _ALIASES.update(dict.fromkeys(spec.aliases, spec.name))
    ACTIVATIONS = tuple(REGISTRY)
    return spec


def get_spec(name: str) -> ActivationSpec:
    """The registry entry of ``name`` (or an alias, any case); unknown names raise ValueError listing the known."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name such as 'relu', got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    spec = REGISTRY.get(key)
    if spec is None:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(REGISTRY)}")
    return spec


@dataclass(frozen=True)
class Activation:
    """A configured activation. ``slope`` is leaky ReLU's negative slope and PReLU's initial slope; ``alpha`` is
    ELU's saturation value."""

    name: str
    slope: float = 0.01
    alpha: float = 1.0
    formula: str = field(default="", compare=False)
    derivative: str = field(default="", compare=False)

    @property
    def spec(self) -> ActivationSpec:
        """The registry entry."""
        return REGISTRY[self.name]

    @property
    def learnable(self) -> bool:
        """True when the activation has a parameter per unit (PReLU's slope, key ``"a{l}"``)."""
        return self.spec.learnable

    def forward(self, x: Array, param: Array | None = None) -> tuple[Array, Any]:
        """x: (N, H) -> (out: (N, H), cache). ``param`` is PReLU's slope vector (H,)."""
        return self.spec.forward(x, self, param)

    def backward(self, dout: Array, cache: Any) -> tuple[Array, Array | None]:
        """dout: (N, H) -> (dx: (N, H), dparam: (H,) for PReLU else None)."""
        return self.spec.backward(dout, cache)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``get_activation(**d)`` rebuilds it."""
        return {"name": self.name, "slope": self.slope, "alpha": self.alpha}


def get_activation(name: str | Activation, *, slope: float = 0.01, alpha: float = 1.0) -> Activation:
    """Look an activation up by name (any of :data:`ACTIVATIONS` or an alias such as ``leaky_relu``)."""
    if isinstance(name, Activation):
        return name
    spec = get_spec(name)
    slope = check_positive(slope, "slope", allow_zero=True)
    alpha = check_positive(alpha, "alpha")
    return Activation(
        spec.name,
        slope=slope,
        alpha=alpha,
        formula=spec.formula.format(slope=slope, alpha=alpha),
        derivative=spec.derivative.format(slope=slope, alpha=alpha),
    )


# Fast kernels -----------------------------------------------------------------------------------------------------
def _fired_or(deriv: Array, value: Any, tmp: Array) -> None:
    """deriv holds the firing mask (1.0/0.0); make it exactly 1 where fired and ``value`` where not, in place.

    ``mask + (1 - mask) * value`` is exact: ``1 + 0*v == 1`` and ``0 + 1*v == v`` for finite v. ``value`` is a
    scalar, a (H,) vector or an (N, H) array; ``tmp`` is (N, H) scratch.
    """
    np.subtract(1, deriv, out=tmp)
    np.multiply(tmp, value, out=tmp)
    np.add(deriv, tmp, out=deriv)


def _relu_fast(act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None) -> None:
    np.greater(z, 0, out=deriv)  # the firing mask, 1.0/0.0 in the layer's dtype
    np.multiply(z, deriv, out=z)  # z * mask, exactly as the reference z * (z > 0)


def _leaky_fast(act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None) -> None:
    np.greater(z, 0, out=deriv)
    _fired_or(deriv, act.slope, tmp)
    np.multiply(z, deriv, out=z)  # z if fired else slope * z


def _prelu_fast(act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None) -> None:
    assert slope is not None and extra is not None
    np.greater(z, 0, out=deriv)
    np.minimum(z, 0, out=extra)  # kept for the slope gradient
    _fired_or(deriv, slope, tmp)
    np.multiply(z, deriv, out=z)


def _elu_fast(act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None) -> None:
    # out = z if z > 0 else alpha * expm1(min(z, 0)); f'(z) = 1 if z > 0 else out + alpha
    assert extra is not None
    a = act.alpha
    np.minimum(z, 0, out=tmp)
    np.expm1(tmp, out=tmp)
    np.multiply(tmp, a, out=tmp)  # the negative branch; exactly 0 where z > 0
    np.greater(z, 0, out=deriv)
    np.maximum(z, 0, out=z)
    np.add(z, tmp, out=z)  # z + 0 where fired, 0 + negative branch where not
    np.add(tmp, a, out=tmp)  # out + alpha (used where not fired)
    _fired_or(deriv, tmp, extra)


def _sigmoid_fast(
    act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None
) -> None:
    # out = 1/(1+e) if z >= 0 else e/(1+e), e = exp(-|z|) (never overflows); f'(z) = out * (1 - out)
    np.abs(z, out=tmp)
    np.negative(tmp, out=tmp)
    np.exp(tmp, out=tmp)  # e
    np.greater_equal(z, 0, out=deriv)  # 1.0 where z >= 0
    np.subtract(1, deriv, out=z)  # z is no longer needed: numerator = mask + (1 - mask) * e, exactly
    np.multiply(z, tmp, out=z)
    np.add(z, deriv, out=z)
    np.add(tmp, 1, out=tmp)
    np.divide(z, tmp, out=z)
    np.subtract(1, z, out=deriv)
    np.multiply(deriv, z, out=deriv)


def _tanh_fast(act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None) -> None:
    np.tanh(z, out=z)  # f'(z) = 1 - out**2
    np.multiply(z, z, out=deriv)
    np.subtract(1, deriv, out=deriv)


# Torch twins (torch imported lazily: the numpy core never needs it) -----------------------------------------------
def _torch_module(cls: str, **options: Callable[[Activation], Any]) -> Callable[[Activation, Any], Any]:
    def build(act: Activation, param: NDArray[Any] | None) -> Any:
        from torch import nn

        return getattr(nn, cls)(*(get(act) for get in options.values()))

    return build


def _prelu_torch(act: Activation, param: NDArray[Any] | None) -> Any:
    import torch
    from torch import nn

    if param is None:
        raise ValueError("the PReLU twin needs the layer's slope vector; pass param=net.params['a{layer}']")
    a = torch.from_numpy(np.array(param, copy=True))
    module = nn.PReLU(num_parameters=a.shape[0], dtype=a.dtype)
    with torch.no_grad():
        module.weight.copy_(a)
    return module


def _prelu_forward(x: Array, act: Activation, param: Array | None) -> tuple[Array, Cache]:
    if param is None:
        raise ValueError("prelu needs its slope vector; pass param=alpha of shape (H,)")
    return F.prelu_forward(x, param)


def _no_param(backward: Callable[[Array, Cache], Array]) -> Backward:
    def wrapped(dout: Array, cache: Cache) -> tuple[Array, Array | None]:
        return backward(dout, cache), None

    return wrapped


# The entries ------------------------------------------------------------------------------------------------------
register(
    ActivationSpec(
        name="relu",
        display="ReLU",
        colour="#d62728",
        forward=lambda x, act, param: F.relu_forward(x),
        backward=_no_param(F.relu_backward),
        fast=_relu_fast,
        formula="max(0, z)",
        derivative="1 if z > 0 else 0  (0 at z == 0)",
        at_zero=lambda act: 0.0,
        torch_twin="torch.nn.ReLU",
        torch_module=_torch_module("ReLU"),
        nonnegative=True,
        negative_side_sign=0.0,
        leaky="leaky",
        stuck_off=_always,
    )
)
register(
    ActivationSpec(
        name="leaky",
        display="leaky ReLU",
        colour="#1f77b4",
        forward=lambda x, act, param: F.leaky_relu_forward(x, act.slope),
        backward=_no_param(F.leaky_relu_backward),
        fast=_leaky_fast,
        formula="z if z > 0 else {slope}*z",
        derivative="1 if z > 0 else {slope}",
        at_zero=lambda act: act.slope,
        torch_twin="torch.nn.LeakyReLU",
        torch_module=_torch_module("LeakyReLU", slope=lambda act: act.slope),
        leaky="leaky",
        aliases=("leaky_relu", "leakyrelu"),
        stuck_off=lambda act: act.slope == 0,
    )
)
register(
    ActivationSpec(
        name="prelu",
        display="PReLU",
        colour="#2ca02c",
        forward=_prelu_forward,
        backward=F.prelu_backward,
        fast=_prelu_fast,
        formula="z if z > 0 else a*z  (a learned per unit)",
        derivative="1 if z > 0 else a",
        at_zero=lambda act: act.slope,
        torch_twin="torch.nn.PReLU",
        torch_module=_prelu_torch,
        learnable=True,
        needs_extra=True,
    )
)
register(
    ActivationSpec(
        name="elu",
        display="ELU",
        colour="#9467bd",
        forward=lambda x, act, param: F.elu_forward(x, act.alpha),
        backward=_no_param(F.elu_backward),
        fast=_elu_fast,
        formula="z if z > 0 else {alpha}*(exp(z) - 1)",
        derivative="1 if z > 0 else out + {alpha}",
        at_zero=lambda act: act.alpha,  # continuous when alpha == 1
        torch_twin="torch.nn.ELU",
        torch_module=_torch_module("ELU", alpha=lambda act: act.alpha),
        needs_extra=True,
        kinked=lambda act: act.alpha != 1,  # f' is continuous at 0 exactly when alpha == 1
    )
)
register(
    ActivationSpec(
        name="sigmoid",
        display="sigmoid",
        colour="#ff7f0e",
        forward=lambda x, act, param: F.sigmoid_forward(x),
        backward=_no_param(F.sigmoid_backward),
        fast=_sigmoid_fast,
        formula="1 / (1 + exp(-z))",
        derivative="out * (1 - out)",
        at_zero=lambda act: 0.25,
        torch_twin="torch.nn.Sigmoid",
        torch_module=_torch_module("Sigmoid"),
        nonnegative=True,
        negative_side_sign=1.0,
        aliases=("logistic",),
        kinked=_never,
        no_gate="large |z1| saturates it and shrinks the gradient, but never to exactly 0",
    )
)
register(
    ActivationSpec(
        name="tanh",
        display="tanh",
        colour="#8c564b",
        forward=lambda x, act, param: F.tanh_forward(x),
        backward=_no_param(F.tanh_backward),
        fast=_tanh_fast,
        formula="tanh(z)",
        derivative="1 - out**2",
        at_zero=lambda act: 1.0,
        torch_twin="torch.nn.Tanh",
        torch_module=_torch_module("Tanh"),
        kinked=_never,
        no_gate="large |z1| saturates it and shrinks the gradient, but never to exactly 0",
    )
)


# Softplus: the whole activation in one place (pair, kernel, twin, entry) ------------------------------------------
def softplus_forward(x: Array) -> tuple[Array, Array]:
    """x: (N, D) -> out: (N, D) = log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) (never overflows).
    Cache: out. Dugas et al. 2001, "Incorporating second-order functional knowledge for better option pricing"."""
    out = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    return out, out


def softplus_backward(dout: Array, out: Array) -> Array:
    """dout: (N, D) -> dx: (N, D) = dout * sigmoid(x), with sigmoid(x) = 1 - exp(-out) taken as -expm1(-out)
    (accurate where out is tiny). f'(0) = 1/2; f'(z) > 0 everywhere."""
    return dout * -np.expm1(-out)


def _softplus_fast(
    act: Activation, z: Array, deriv: Array, tmp: Array, extra: Array | None, slope: Array | None
) -> None:
    np.abs(z, out=tmp)  # the same ufuncs as softplus_forward, so the same bits
    np.negative(tmp, out=tmp)
    np.exp(tmp, out=tmp)
    np.log1p(tmp, out=tmp)
    np.maximum(z, 0, out=z)
    np.add(z, tmp, out=z)
    np.negative(z, out=deriv)  # f'(z) = -expm1(-out)
    np.expm1(deriv, out=deriv)
    np.negative(deriv, out=deriv)


register(
    ActivationSpec(
        name="softplus",
        display="softplus",
        colour="#e377c2",
        forward=lambda x, act, param: softplus_forward(x),
        backward=_no_param(softplus_backward),
        fast=_softplus_fast,
        formula="log(1 + exp(z))",
        derivative="1 - exp(-out)  (= sigmoid(z))",
        at_zero=lambda act: 0.5,
        torch_twin="torch.nn.Softplus",
        torch_module=_torch_module("Softplus"),
        nonnegative=True,
        negative_side_sign=1.0,
        kinked=_never,
        no_gate="very negative z1 shrinks its gradient toward 0 (f'(z) = sigmoid(z)), but never to exactly 0",
    )
)

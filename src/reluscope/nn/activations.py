"""The activation family as one-line swaps: ``MLP(..., activation="leaky")``.

An :class:`Activation` bundles a forward/backward pair from :mod:`reluscope.nn.functional` with its options.
Whatever the activation, a unit *fires* on a sample when its pre-activation is > 0; that is what the dead-unit
statistics count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reluscope._validate import check_positive
from reluscope.nn import functional as F
from reluscope.nn.functional import Array

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]

ACTIVATIONS = ("relu", "leaky", "prelu", "elu", "sigmoid", "tanh")
_ALIASES = {"leaky_relu": "leaky", "leakyrelu": "leaky", "logistic": "sigmoid"}


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity. ``slope`` is leaky ReLU's negative slope and PReLU's initial slope;
    ``alpha`` is ELU's saturation value."""

    name: str
    slope: float = 0.01
    alpha: float = 1.0
    formula: str = field(default="", compare=False)
    derivative: str = field(default="", compare=False)

    @property
    def learnable(self) -> bool:
        """True when the activation has a parameter per unit (PReLU's slope, key ``"a{l}"``)."""
        return self.name == "prelu"

    def forward(self, x: Array, param: Array | None = None) -> tuple[Array, Any]:
        """x: (N, H) -> (out: (N, H), cache). ``param`` is PReLU's slope vector (H,)."""
        if self.name == "relu":
            return F.relu_forward(x)
        if self.name == "leaky":
            return F.leaky_relu_forward(x, self.slope)
        if self.name == "prelu":
            if param is None:
                raise ValueError("prelu needs its slope vector; pass param=alpha of shape (H,)")
            return F.prelu_forward(x, param)
        if self.name == "elu":
            return F.elu_forward(x, self.alpha)
        if self.name == "sigmoid":
            return F.sigmoid_forward(x)
        return F.tanh_forward(x)

    def backward(self, dout: Array, cache: Any) -> tuple[Array, Array | None]:
        """dout: (N, H) -> (dx: (N, H), dparam: (H,) for PReLU else None)."""
        if self.name == "relu":
            return F.relu_backward(dout, cache), None
        if self.name == "leaky":
            return F.leaky_relu_backward(dout, cache), None
        if self.name == "prelu":
            return F.prelu_backward(dout, cache)
        if self.name == "elu":
            return F.elu_backward(dout, cache), None
        if self.name == "sigmoid":
            return F.sigmoid_backward(dout, cache), None
        return F.tanh_backward(dout, cache), None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``get_activation(**d)`` rebuilds it."""
        return {"name": self.name, "slope": self.slope, "alpha": self.alpha}


_TEXT = {
    "relu": ("max(0, z)", "1 if z > 0 else 0  (0 at z == 0)"),
    "leaky": ("z if z > 0 else {slope}*z", "1 if z > 0 else {slope}"),
    "prelu": ("z if z > 0 else a*z  (a learned per unit)", "1 if z > 0 else a"),
    "elu": ("z if z > 0 else {alpha}*(exp(z) - 1)", "1 if z > 0 else out + {alpha}"),
    "sigmoid": ("1 / (1 + exp(-z))", "out * (1 - out)"),
    "tanh": ("tanh(z)", "1 - out**2"),
}


def get_activation(name: str | Activation, *, slope: float = 0.01, alpha: float = 1.0) -> Activation:
    """Look an activation up by name: one of relu, leaky (leaky_relu), prelu, elu, sigmoid, tanh."""
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name such as 'relu', got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    slope = check_positive(slope, "slope", allow_zero=True)
    alpha = check_positive(alpha, "alpha")
    formula, derivative = _TEXT[key]
    return Activation(
        key,
        slope=slope,
        alpha=alpha,
        formula=formula.format(slope=slope, alpha=alpha),
        derivative=derivative.format(slope=slope, alpha=alpha),
    )

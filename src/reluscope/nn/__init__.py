"""The numpy engine: pure forward/backward pairs (:mod:`~reluscope.nn.functional`), activations, initialisers,
optimizers, the :class:`MLP`, and gradient checks (:mod:`~reluscope.nn.gradcheck`)."""

from reluscope.nn import functional
from reluscope.nn.activations import (
    ACTIVATIONS,
    REGISTRY,
    Activation,
    ActivationSpec,
    fires,
    get_activation,
    get_spec,
    register,
)
from reluscope.nn.init import INITS, init_bias, init_weight
from reluscope.nn.model import MLP
from reluscope.nn.optim import OPTIMIZERS, SGD, Adam, Optimizer, get_optimizer

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "OPTIMIZERS",
    "REGISTRY",
    "SGD",
    "Activation",
    "ActivationSpec",
    "Adam",
    "Optimizer",
    "fires",
    "functional",
    "get_activation",
    "get_optimizer",
    "get_spec",
    "init_bias",
    "init_weight",
    "register",
]

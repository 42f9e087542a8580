"""The PyTorch twin of a numpy :class:`reluscope.nn.MLP`: same weights, same site names."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from reluscope.nn import MLP

__all__ = ["from_mlp"]


def _activation(net: MLP, layer: int) -> nn.Module:
    act = net.activation
    module: nn.Module = act.spec.torch_module(act, net.params.get(f"a{layer}"))
    return module


def from_mlp(net: MLP) -> nn.Sequential:
    """The ``nn.Sequential`` computing exactly what ``net`` computes, with copies of its weights.

    Children are named ``fc1, hidden1, fc2, hidden2, ..., fc{L}``, so :func:`reluscope.torch.scan` names its sites
    ``hidden1, hidden2, ...`` like :func:`reluscope.diagnose.scan` does for the numpy net. Weights are transposed
    (reluscope's ``W`` is ``(D_in, D_out)``, ``nn.Linear.weight`` is ``(out, in)``) and keep the net's dtype.
    Sigmoid/tanh nets convert too, but they have no rectifier sites.

    Examples
    --------
    >>> twin = from_mlp(MLP([2, 100, 3], seed=0))
    >>> twin(torch.from_numpy(X)).detach().numpy()     # == net.scores(X) up to BLAS rounding
    """
    from reluscope.nn import MLP

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a reluscope.nn.MLP, got {type(net).__name__}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in range(1, net.n_layers + 1):
        W = torch.from_numpy(net.params[f"W{layer}"].copy())
        b = torch.from_numpy(net.params[f"b{layer}"].copy())
        fc = nn.Linear(W.shape[0], W.shape[1], dtype=W.dtype)
        with torch.no_grad():
            fc.weight.copy_(W.T)
            fc.bias.copy_(b)
        layers[f"fc{layer}"] = fc
        if layer < net.n_layers:
            layers[f"hidden{layer}"] = _activation(net, layer)
    return nn.Sequential(layers)

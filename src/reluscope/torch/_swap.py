"""Leaky swap for PyTorch models: replace ``nn.ReLU`` modules with ``nn.LeakyReLU``, and point at what cannot be.

Only modules can be swapped. ``F.relu(x)`` / ``torch.relu(x)`` / ``x.relu()`` written inside a ``forward`` are code,
not attributes: :func:`swap_relu_to_leaky` finds them by running one example batch and reports their call-site
names (the same names :func:`reluscope.torch.scan` uses) so you can edit them into ``F.leaky_relu(x, slope)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reluscope._validate import check_positive
from reluscope.torch._locate import check_model, find_sites

__all__ = ["SwapReport", "swap_relu_to_leaky"]


@dataclass(frozen=True)
class SwapReport:
    """What :func:`swap_relu_to_leaky` did.

    Attributes
    ----------
    swapped : list[str]
        Paths of the ``nn.ReLU`` modules replaced by ``nn.LeakyReLU``.
    functional : list[str]
        Site names of ReLU calls made in code (``F.relu``, ``torch.relu``, ``x.relu_()``) that could not be
        swapped; empty when no example was given.
    checked : bool
        Whether an example batch was run to look for functional calls.
    """

    swapped: list[str]
    functional: list[str] = field(default_factory=list)
    checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"swapped": list(self.swapped), "functional": list(self.functional), "checked": self.checked}


def swap_relu_to_leaky(model: nn.Module, slope: float = 0.01, *, example: Any = None) -> SwapReport:
    """Replace every ``nn.ReLU`` submodule of ``model`` (in place) with ``nn.LeakyReLU(slope)``.

    Parameters
    ----------
    model
        An eager ``nn.Module``. ``inplace=True`` is kept; a ReLU module reused at several places is replaced
        everywhere it is registered. ``ReLU6`` and other rectifiers are left alone.
    slope
        Negative slope, > 0 (0.01 default).
    example
        An input batch (tensor or tuple of positional arguments). When given, the model runs once on it (eval
        mode, no grad, train/eval flags restored) and the ReLU calls still executed afterwards — functional calls
        in ``forward`` that no module swap can change — are reported by site name in ``functional``.

    Returns
    -------
    SwapReport
        The swapped module paths and the functional call sites left.
    """
    model = check_model(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("swap_relu_to_leaky needs an eager nn.Module, not TorchScript; swap before scripting")
    slope = check_positive(slope, "slope")
    swapped: list[str] = []
    replacements: dict[int, nn.LeakyReLU] = {}
    for parent_path, parent in list(model.named_modules()):
        # parent._modules, not named_children(): the latter lists a child registered under two names only once
        for child_name, child in list(parent._modules.items()):
            if type(child) is not nn.ReLU:
                continue
            new = replacements.get(id(child))
            if new is None:
                new = replacements[id(child)] = nn.LeakyReLU(slope, inplace=child.inplace)
            setattr(parent, child_name, new)
            swapped.append(f"{parent_path}.{child_name}" if parent_path else child_name)
    functional: list[str] = []
    if example is not None:
        sites = find_sites(model, *(example if isinstance(example, tuple) else (example,)))  # eval, no_grad
        functional = [s.name for s in sites if s.function == "relu"]
    return SwapReport(swapped=swapped, functional=functional, checked=example is not None)

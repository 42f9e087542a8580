"""Shrink & Perturb (Ash & Adams 2020) for PyTorch models: θ ← λθ + σ·ε, ε drawn from the layer's initialiser.

Applied to every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` (or the modules named in ``modules``): the weight's ε is
PyTorch's default draw ``kaiming_uniform_(a=sqrt(5))`` (or ``init(weight, generator)``), the bias's is
``uniform(±1/sqrt(fan_in))``, as in their ``reset_parameters``. Other parameters (norm layers, PReLU slopes,
embeddings) and the optimizer state are not touched, so it works with any optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from reluscope.remedies import StepSchedule, check_shrink_options
from reluscope.torch._locate import check_model
from reluscope.torch._redo import Init, _as_generator

__all__ = ["ShrinkPerturb", "shrink_perturb"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def shrink_perturb(
    model: nn.Module,
    *,
    shrink: float = 0.9,
    noise: float = 0.01,
    modules: Iterable[str] | None = None,
    init: Init | None = None,
    seed: int | torch.Generator = 0,
) -> list[str]:
    """Apply Shrink & Perturb in place; returns the paths of the modules changed (in ``named_modules`` order).

    Raises ValueError for shrink outside (0, 1], negative noise, or a named module that is not Linear/Conv.
    """
    model = check_model(model)
    lam, sigma = check_shrink_options(shrink, noise)
    gen = _as_generator(seed)
    named = dict(model.named_modules())
    if modules is None:
        paths = [p for p, m in named.items() if isinstance(m, _LAYERS)]
    else:
        paths = list(modules)
        for p in paths:
            if not isinstance(named.get(p), _LAYERS):
                raise ValueError(
                    f"module {p!r} is not a Linear/Conv of the model; layers: "
                    f"{[q for q, m in named.items() if isinstance(m, _LAYERS)]}"
                )
    with torch.no_grad():
        for p in paths:
            m = named[p]
            w = m.weight
            eps = torch.empty(w.shape, dtype=w.dtype)
            if init is None:
                nn.init.kaiming_uniform_(eps, a=math.sqrt(5), generator=gen)
            else:
                init(eps, gen)
            w.mul_(lam).add_(sigma * eps.to(w.device))
            if m.bias is not None:
                fan_in = w[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                eb = torch.empty(m.bias.shape, dtype=m.bias.dtype).uniform_(-bound, bound, generator=gen)
                m.bias.mul_(lam).add_(sigma * eb.to(m.bias.device))
    return paths


class ShrinkPerturb(StepSchedule):
    """Call :meth:`step` after every ``optimizer.step()``; every ``every`` steps it applies :func:`shrink_perturb`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int,
        shrink: float = 0.9,
        noise: float = 0.01,
        modules: Iterable[str] | None = None,
        init: Init | None = None,
        seed: int | torch.Generator = 0,
    ) -> None:
        super().__init__(every)
        self.model = check_model(model)
        self.shrink, self.noise = check_shrink_options(shrink, noise)
        self.modules = None if modules is None else list(modules)
        self.init = init
        self.generator = _as_generator(seed)

    def apply(self) -> None:
        """:func:`shrink_perturb` with this schedule's settings and generator."""
        shrink_perturb(
            self.model,
            shrink=self.shrink,
            noise=self.noise,
            modules=self.modules,
            init=self.init,
            seed=self.generator,
        )

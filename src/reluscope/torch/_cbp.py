"""Continual Backprop (Dohare et al., Nature 2024) for PyTorch models, on the structure map of
:func:`reluscope.torch.redo_plan`.

Every mapped site (a rectifier whose pre-activation comes from a ``Linear``/``Conv`` and whose output feeds exactly
one ``Linear``/``Conv``, see :mod:`reluscope.torch._redo`) carries per unit an age, a running mean of the consumer's
input features and a running contribution utility ``|h_i| * sum |consumer weights from i|`` (Dohare et al. 2024,
Methods). The activations are read by a forward pre-hook on each consumer (so for ``Linear`` after a flatten, the
``H*W`` features of a channel; for a ``Conv`` consumer, the channel's mean over positions). Dropout between the
site and its consumer is seen as applied.

:meth:`ContinualBackprop.step`, called after ``optimizer.step()``, ages every unit, replaces ``replacement_rate``
of the mature ones (lowest utility first) through :func:`reluscope.torch.redo`, which redraws the incoming weights
with the layer's initialiser, zeroes the outgoing ones and resets exactly those optimizer-state entries. Before
that, with ``bias_correction``, each replaced unit's mean contribution is folded into the consumer's bias:
``bias += W[:, cols(i)] @ mean[cols(i)]`` for a ``Linear`` consumer (exact on the mean input); for a ``Conv``
consumer ``bias += sum_{kernel} W[:, i] * mean_i`` (exact away from zero-padded borders).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reluscope.diagnose import ActivationStats
from reluscope.remedies import CBPReport, check_cbp_options
from reluscope.torch._locate import check_model
from reluscope.torch._redo import Init, SitePlan, _as_generator, check_optimizer, consumer_shift, redo, redo_plan

__all__ = ["ContinualBackprop"]


class _Tracked:
    """Per-site CBP state: float64 CPU tensors, one entry per unit (``mean`` per consumer input feature)."""

    def __init__(self, sp: SitePlan) -> None:
        self.plan = sp
        self.age = torch.zeros(sp.units, dtype=torch.long)
        self.utility = torch.zeros(sp.units, dtype=torch.float64)
        self.mean = torch.zeros(sp.units * sp.block, dtype=torch.float64)
        self.unit_abs: Tensor | None = None  # batch mean |h| per unit, from the last forward
        self.feat_mean: Tensor | None = None
        self.owed = 0.0


class ContinualBackprop:
    """Continual Backprop for an eager ``nn.Module`` trained with a ``torch.optim`` optimizer.

    Parameters
    ----------
    model, optimizer
        The model and its optimizer (``None`` for none); optimizer state of replaced units is reset as
        :func:`reluscope.torch.redo` does.
    example
        One input batch to map the model's structure (:func:`reluscope.torch.redo_plan`).
    replacement_rate, maturity, decay
        As in :class:`reluscope.remedies.ContinualBackprop` (paper: 1e-4, 100, 0.99).
    bias_correction
        Fold the replaced units' mean contribution into the consumer's bias (module docstring).
    sites
        Sites to track (default: every mappable site; output-layer sites are never touched).
    init
        ``init(weight, generator)`` for new incoming weights; default PyTorch's Linear/Conv initialiser.
    seed
        An int or ``torch.Generator``.

    Examples
    --------
    >>> cbp = ContinualBackprop(model, opt, example=x[:2])
    >>> for x, y in loader:
    ...     opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    ...     cbp.step()
    >>> cbp.remove()
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        example: Any,
        replacement_rate: float = 1e-4,
        maturity: int = 100,
        decay: float = 0.99,
        bias_correction: bool = True,
        sites: Iterable[str] | None = None,
        init: Init | None = None,
        seed: int | torch.Generator = 0,
    ) -> None:
        self.model = check_model(model)
        self.optimizer = check_optimizer(self.model, optimizer)
        self.example = example
        self.replacement_rate, self.maturity, self.decay = check_cbp_options(replacement_rate, maturity, decay)
        self.bias_correction = bool(bias_correction)
        self.init = init
        self.generator = _as_generator(seed)
        plan = redo_plan(self.model, example)
        names = list(plan.sites) if sites is None else list(sites)
        for name in names:
            if name not in plan.sites:
                why = plan.refused.get(name, "it is an output-layer site or not a site of this model")
                raise ValueError(f"cannot track site {name!r}: {why}; mappable sites: {list(plan.sites)}")
        if not names:
            raise ValueError(f"the model has no site CBP can map (refused: {plan.refused})")
        self.sites: dict[str, _Tracked] = {n: _Tracked(plan.sites[n]) for n in names}
        modules = dict(self.model.named_modules())
        self._hooks = []
        for tr in self.sites.values():
            cons = modules[tr.plan.consumer]
            self._hooks.append(cons.register_forward_pre_hook(self._capture(tr)))
        self.steps = 0
        self.replaced = 0

    def _capture(self, tr: _Tracked) -> Any:
        units, block = tr.plan.units, tr.plan.block

        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], Tensor):
                return
            x = args[0].detach()
            with torch.no_grad():
                if isinstance(module, nn.Linear):
                    feats = x.reshape(-1, units * block).to(torch.float64)
                    tr.feat_mean = feats.mean(0).cpu()
                    tr.unit_abs = feats.abs().reshape(-1, units, block).mean((0, 2)).cpu()
                else:  # Conv: (N, C, *spatial)
                    flat = x.to(torch.float64).transpose(0, 1).reshape(units, -1)
                    tr.feat_mean = flat.mean(1).cpu()
                    tr.unit_abs = flat.abs().mean(1).cpu()

        return hook

    def remove(self) -> None:
        """Remove the activation hooks (idempotent)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> ContinualBackprop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _out_weight(self, tr: _Tracked, w: Tensor) -> Tensor:
        """Per unit, sum |consumer weight| over everything it feeds."""
        a = w.detach().abs().to(torch.float64).cpu()
        if a.dim() == 2:  # Linear (out, units*block)
            return a.reshape(a.shape[0], tr.plan.units, tr.plan.block).sum((0, 2))
        return a.transpose(0, 1).reshape(tr.plan.units, -1).sum(1)  # Conv (out, C, *k)

    def step(self) -> CBPReport:
        """After ``optimizer.step()``: update utilities from the forward since the last step (none: no update), age,
        replace. Returns what changed."""
        self.steps += 1
        modules = dict(self.model.named_modules())
        eta = self.decay
        chosen: dict[str, list[int]] = {}
        for name, tr in self.sites.items():
            if tr.unit_abs is not None and tr.feat_mean is not None:
                cons_w = modules[tr.plan.consumer].weight
                tr.utility.mul_(eta).add_((1 - eta) * tr.unit_abs * self._out_weight(tr, cons_w))
                tr.mean.mul_(eta).add_((1 - eta) * tr.feat_mean)
                tr.unit_abs = tr.feat_mean = None  # each forward counts once, however often step() is called
            tr.age += 1
            mature = torch.nonzero(tr.age > self.maturity).flatten()
            tr.owed += self.replacement_rate * int(mature.numel())
            n = min(int(tr.owed), int(mature.numel()))
            idx: list[int] = []
            if n:
                tr.owed -= n
                order = torch.argsort(tr.utility[mature], stable=True)[:n]
                idx = sorted(int(i) for i in mature[order])
            chosen[name] = idx
        todo = {n: i for n, i in chosen.items() if i}
        if todo:
            self._replace(todo, modules)
        return CBPReport(step=self.steps, units=chosen)

    def _replace(self, todo: dict[str, list[int]], modules: dict[str, nn.Module]) -> None:
        with torch.no_grad():
            if self.bias_correction:
                for name, idx in todo.items():
                    tr = self.sites[name]
                    cons = modules[tr.plan.consumer]
                    bias, w = cons.bias, cons.weight
                    if not isinstance(bias, Tensor) or not isinstance(w, Tensor):
                        continue
                    block = tr.plan.block
                    cols = [u * block + k for u in idx for k in range(block)]
                    bias += consumer_shift(cons, tr.plan, torch.tensor(idx), tr.mean[cols].to(w.dtype))
        # a synthetic window in which exactly the chosen units never fired: redo(tau=0) recycles exactly them
        stats = ActivationStats()
        for name, idx in todo.items():
            pre = np.ones((1, self.sites[name].plan.units))
            pre[0, idx] = -1.0
            stats.update(name, pre, np.maximum(pre, 0.0))
        redo(
            self.model,
            self.optimizer,
            stats,
            0.0,
            example=self.example,
            sites=list(todo),
            init=self.init,
            seed=self.generator,
        )
        for name, idx in todo.items():
            tr = self.sites[name]
            units = torch.tensor(idx, dtype=torch.long)
            tr.age[units] = 0
            tr.utility[units] = 0
            block = tr.plan.block
            feats = torch.tensor([u * block + k for u in idx for k in range(block)], dtype=torch.long)
            tr.mean[feats] = 0
            self.replaced += len(idx)

"""Optimizers: a loop over the params dict, updating in place.

Per-parameter state lives in ``optimizer.state[key]`` (a dict of arrays shaped like ``params[key]``, e.g.
``{"velocity": ...}`` or ``{"m": ..., "v": ...}``), so later code (ReDo) can reset the entries of single units.
Update rules follow PyTorch's ``torch.optim`` so the two can be compared step by step.

Every update is written with ``out=`` ufuncs into one or two private scratch arrays per parameter (allocated at
the first step, not part of ``state``), so a step allocates nothing and never modifies ``grads``; the arithmetic
is the same, operation for operation, as the formulas in the docstrings (``p -= lr * g`` and so on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reluscope._validate import check_positive
from reluscope.nn.functional import Array

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Optimizer", "get_optimizer"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place. ``lr`` may be changed between steps."""

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        self.lr = check_positive(lr, "lr")
        self.state: dict[str, dict[str, Array]] = {}
        self.t = 0  # number of steps taken
        self._work: dict[str, list[Array | None]] = {}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        if params.keys() != grads.keys():
            raise ValueError(f"params and grads must have the same keys, got {sorted(params)} and {sorted(grads)}")
        self.t += 1
        for key, p in params.items():
            self._update(key, p, grads[key])

    def _update(self, key: str, p: Array, g: Array) -> None:
        raise NotImplementedError

    def _buffer(self, key: str, name: str, like: Array) -> Array:
        slot = self.state.setdefault(key, {})
        if name not in slot:
            slot[name] = np.zeros_like(like)
        return slot[name]

    def _scratch(self, key: str, like: Array, which: int = 0) -> Array:
        """Private work array ``which`` (0 or 1) shaped like ``like``, reused by every step (not in ``state``)."""
        pair = self._work.get(key)
        if pair is None:
            pair = self._work[key] = [None, None]
        s = pair[which]
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = pair[which] = np.empty_like(like)
        return s

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.lr}


class SGD(Optimizer):
    """Plain SGD, optionally with (Nesterov) momentum and coupled L2 weight decay, as ``torch.optim.SGD``.

    v <- momentum * v + g;  p <- p - lr * (g + momentum * v if nesterov else v). With momentum 0: p <- p - lr * g.
    """

    def __init__(self, lr: float, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, e.g. momentum=0.9")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.name = "nesterov" if nesterov else ("momentum" if momentum else "sgd")

    def _update(self, key: str, p: Array, g: Array) -> None:
        f = p.dtype.type
        s = self._scratch(key, p)
        if self.weight_decay:  # g <- g + weight_decay * p
            np.multiply(p, f(self.weight_decay), out=s)
            np.add(s, g, out=s)
            g = s
        if self.momentum:  # v <- momentum * v + g
            v = self._buffer(key, "velocity", p)
            np.multiply(v, f(self.momentum), out=v)
            np.add(v, g, out=v)
            if self.nesterov:  # step = g + momentum * v
                t = self._scratch(key, p, 1)
                np.multiply(v, f(self.momentum), out=t)
                np.add(g, t, out=t)
                g = t
            else:  # step = v
                g = v
        np.multiply(g, f(self.lr), out=s)  # p <- p - lr * step
        np.subtract(p, s, out=p)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam``; ``decoupled=True`` gives AdamW.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g²;  p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
    Adam adds ``weight_decay * p`` to g; AdamW instead shrinks p by ``lr * weight_decay`` before the step.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(lr)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive(eps, "eps")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.decoupled = bool(decoupled)
        self.name = "adamw" if decoupled else "adam"

    def _update(self, key: str, p: Array, g: Array) -> None:
        f = p.dtype.type
        s = self._scratch(key, p)
        t = self._scratch(key, p, 1)
        if self.weight_decay:
            if self.decoupled:  # AdamW: p <- p * (1 - lr * weight_decay)
                np.multiply(p, f(1 - self.lr * self.weight_decay), out=p)
            else:  # Adam: g <- g + weight_decay * p
                np.multiply(p, f(self.weight_decay), out=s)
                np.add(s, g, out=s)
                g = s
        m = self._buffer(key, "m", p)
        v = self._buffer(key, "v", p)
        np.multiply(m, f(self.beta1), out=m)  # m <- b1 m + (1 - b1) g
        np.multiply(g, f(1 - self.beta1), out=t)
        np.add(m, t, out=m)
        np.multiply(v, f(self.beta2), out=v)  # v <- b2 v + (1 - b2) g²
        np.multiply(g, g, out=t)
        np.multiply(t, f(1 - self.beta2), out=t)
        np.add(v, t, out=v)
        bias1 = 1 - self.beta1**self.t
        bias2 = 1 - self.beta2**self.t
        np.sqrt(v, out=t)  # denom = sqrt(v) / sqrt(1 - b2^t) + eps
        np.divide(t, f(np.sqrt(bias2)), out=t)
        np.add(t, f(self.eps), out=t)
        np.multiply(m, f(self.lr / bias1), out=s)  # p <- p - lr / (1 - b1^t) * m / denom
        np.divide(s, t, out=s)
        np.subtract(p, s, out=p)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }


def get_optimizer(name: str | Optimizer, lr: float, **kwargs: Any) -> Optimizer:
    """Build an optimizer by name: sgd, momentum (0.9), nesterov (0.9), adam, adamw. Extra kwargs are passed on."""
    if isinstance(name, Optimizer):
        return name
    key = str(name).lower()
    if key == "sgd":
        return SGD(lr, **kwargs)
    if key in ("momentum", "nesterov"):
        kwargs.setdefault("momentum", 0.9)
        return SGD(lr, nesterov=key == "nesterov", **kwargs)
    if key in ("adam", "adamw"):
        if key == "adamw":
            kwargs.setdefault("weight_decay", 1e-2)
        return Adam(lr, decoupled=key == "adamw", **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")

"""The example input ``scan``/``monitor`` saw, kept per model for the structure map of ``redo``/``prune_dead``.

A module of its own so that the recorders (``_scan``, ``_monitor``) and the remedies (``_redo``, ``_prune``) share it
without importing each other.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import Tensor, nn

__all__ = ["recorded_example", "remember_example"]

_EXAMPLES: weakref.WeakKeyDictionary[nn.Module, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def remember_example(model: nn.Module, args: tuple[Any, ...]) -> None:
    """Keep two rows of the positional arguments ``model`` ran on (cloned, same device), so that
    :func:`reluscope.torch.redo` and :func:`reluscope.torch.prune_dead` can map its structure later without an
    ``example=``. Called by ``scan`` (first batch) and ``monitor`` (first forward); a model already remembered keeps
    its first example."""
    if model in _EXAMPLES or not any(isinstance(a, Tensor) for a in args):
        return  # already remembered, or a keyword-only call: nothing to replay
    _EXAMPLES[model] = tuple((a[:2] if a.ndim else a).detach().clone() if isinstance(a, Tensor) else a for a in args)


def recorded_example(model: nn.Module) -> tuple[Any, ...] | None:
    """The example remembered for ``model`` by ``scan``/``monitor``/``redo_plan``, or None."""
    return _EXAMPLES.get(model)

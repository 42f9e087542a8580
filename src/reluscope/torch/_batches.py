"""Batches and devices: the helpers shared by :mod:`._scan` and :mod:`._script` (kept apart: no import cycle)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["batch_rows", "check_flag", "default_call", "model_device", "resolve_device", "to_device", "total_samples"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_device(device: Any, model: nn.Module) -> torch.device:
    if device is None:
        return model_device(model)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None


def to_device(obj: Any, device: torch.device) -> Any:
    """Move every tensor (numpy arrays become tensors) of a nested tuple/list/dict batch to ``device``."""
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(item, device) for item in obj)
    if isinstance(obj, dict):
        return {key: to_device(item, device) for key, item in obj.items()}
    return obj


def default_call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Tensor):
        return model(batch)
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return model(batch[0])  # (x, y, ...) from a DataLoader: the first element is the input
    raise TypeError(
        f"batches must yield tensors or (x, y, ...) tuples, got {type(batch).__name__}; for other batches pass "
        "call=lambda model, batch: model(**batch) (or whatever runs your forward)"
    )


def batch_rows(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (0 if it has none)."""
    if isinstance(batch, Tensor | np.ndarray):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, list | tuple) and batch:
        return batch_rows(batch[0])
    if isinstance(batch, dict) and batch:
        return batch_rows(next(iter(batch.values())))
    return 0


def total_samples(batches: Iterable[Any]) -> int | None:
    """Samples in the whole iterable when it is knowable without iterating (a DataLoader, a list), else None."""
    dataset = getattr(batches, "dataset", None)
    if dataset is not None:
        try:
            return len(dataset)
        except TypeError:
            return None
    if isinstance(batches, list | tuple):
        return sum(batch_rows(b) for b in batches)
    if isinstance(batches, Tensor | np.ndarray):
        return None
    return None


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value

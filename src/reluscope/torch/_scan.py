"""Whole-dataset scans of a PyTorch model: every rectifier site, exact per-unit counts, O(units) memory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reluscope.diagnose import ActivationStats
from reluscope.torch._locate import Site, _Recorder, check_model, eval_mode, stats_from_accs

__all__ = ["Progress", "scan", "scan_with_sites"]

Progress = Callable[[int, "int | None"], None]
"""``progress(n_samples_done, n_samples_total)``, called after every batch; the total is None when unknown."""

Call = Callable[[nn.Module, Any], Any]
"""``call(model, batch)`` runs one forward pass on a batch already moved to the device."""


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _resolve_device(device: Any, model: nn.Module) -> torch.device:
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


def _default_call(model: nn.Module, batch: Any) -> Any:
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


def scan(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    device: Any = None,
    progress: Progress | None = None,
    stats: ActivationStats | None = None,
    per_position: bool = False,
    channels_last: bool = False,
    call: Call | None = None,
) -> ActivationStats:
    """Run every batch through ``model`` and stream every rectifier site into an :class:`ActivationStats`.

    The forward passes run under ``torch.no_grad()`` with the model in eval mode (BatchNorm uses its running
    statistics, dropout is off); every submodule's own train/eval flag is restored afterwards, also when a batch
    raises. The model's parameters are not touched and nothing is moved. Memory is one batch of activations plus
    O(units) counters on the activations' device (one host transfer at the end).

    Parameters
    ----------
    model
        Any ``nn.Module``, including models ``torch.fx`` cannot trace (data-dependent control flow), or a
        TorchScript module (``torch.jit.load``; sites inside its ``if``/loops are not instrumented).
    batches
        Any iterable of tensors ``(N, ...)`` or ``(x, y, ...)`` tuples, e.g. a ``DataLoader`` (numpy arrays
        are converted). Each batch is moved to ``device``.
    device
        Where batches go; default: the device of the model's parameters (the model itself is never moved).
    progress
        ``progress(n_done, n_total)`` after each batch, counting samples (``n_total`` None when unknown).
    stats
        Continue these statistics instead of starting new ones (merged in place and returned).
    per_position
        Conv sites ``(N, C, H, W)`` are counted per channel (a channel fires on a sample when any position is
        > 0). False (default) records them as ``(C,)`` sites; True keeps per-position fire counts too
        (``ActivationStats.position_frequency``, kind ``"conv"``), for ~5-15% more time on conv-heavy models, and
        needs the same spatial size in every batch.
    channels_last
        Activations are ``(N, *S, C)`` (NHWC, or a transformer's ``(N, L, F)``): units along the last dimension.
    call
        ``call(model, batch)`` for batches that are not a tensor or an ``(x, y)`` tuple, e.g.
        ``lambda m, b: m(**b)``.

    Returns
    -------
    ActivationStats
        One site per rectifier call site (named as :mod:`reluscope.torch` describes), in order of first execution.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``, a batch has an unsupported type.
    ValueError
        ``batches`` yields nothing, a site changes its per-sample shape, or the activations hold NaN/inf.
    """
    if stats is not None and not isinstance(stats, ActivationStats):
        raise TypeError(f"stats must be an ActivationStats or None, got {type(stats).__name__}")
    stats_out, _ = scan_with_sites(
        model,
        batches,
        device=device,
        progress=progress,
        per_position=per_position,
        channels_last=channels_last,
        call=call,
    )
    return stats_out if stats is None else stats.merge(stats_out)


def scan_with_sites(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    device: Any = None,
    progress: Progress | None = None,
    per_position: bool = False,
    channels_last: bool = False,
    call: Call | None = None,
) -> tuple[ActivationStats, list[Site]]:
    """:func:`scan`, also returning the sites (function names, module paths) in order."""
    model = check_model(model)
    per_position = check_flag(per_position, "per_position")
    channels_last = check_flag(channels_last, "channels_last")
    if isinstance(model, torch.jit.ScriptModule):
        if call is not None:
            raise TypeError(
                "call= is not supported for TorchScript models (their forward runs in C++ with one tensor input); "
                "scan the eager nn.Module instead, or pass batches the scripted forward accepts"
            )
        from reluscope.torch._script import scan_script

        return scan_script(
            model,
            batches,
            device=_resolve_device(device, model),
            progress=progress,
            per_position=per_position,
            channels_last=channels_last,
        )
    run = _default_call if call is None else call
    dev = _resolve_device(device, model)
    total = total_samples(batches)
    rec = _Recorder(model, per_position=per_position, channels_last=channels_last)
    n_done = 0
    n_batches = 0
    try:
        with eval_mode(model):
            for batch in batches:
                batch = to_device(batch, dev)
                rec.begin_pass(full=True)
                with rec:
                    run(model, batch)
                n_batches += 1
                n_done += batch_rows(batch)
                if progress is not None:
                    progress(n_done, total)
    finally:
        rec.forget_model()
    if n_batches == 0:
        raise ValueError("batches yielded no batch; pass a non-empty iterable of tensors or (x, y) tuples")
    return stats_from_accs(list(rec.accs.values())), rec.sites()

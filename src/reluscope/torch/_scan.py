"""Whole-dataset scans of a PyTorch model: every rectifier site, exact per-unit counts, O(units) memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from reluscope.diagnose import ActivationStats
from reluscope.torch._batches import (
    batch_rows,
    check_flag,
    default_call,
    resolve_device,
    to_device,
    total_samples,
)
from reluscope.torch._examples import remember_example
from reluscope.torch._locate import (
    NoRectifierError,
    Site,
    _Recorder,
    check_model,
    eval_mode,
    is_compiled,
    seen_functions,
    stats_from_accs,
)
from reluscope.torch._script import scan_script

__all__ = ["Progress", "scan", "scan_with_sites"]

Progress = Callable[[int, "int | None"], None]
"""``progress(n_samples_done, n_samples_total)``, called after every batch; the total is None when unknown."""

Call = Callable[[nn.Module, Any], Any]
"""``call(model, batch)`` runs one forward pass on a batch already moved to the device."""


def scan(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    device: Any = None,
    progress: Progress | None = None,
    stats: ActivationStats | None = None,
    per_position: bool = False,
    channels_last: bool = False,
    unit_axis: Mapping[str, int] | None = None,
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
        Any ``nn.Module``, including models ``torch.fx`` cannot trace (data-dependent control flow), a
        ``torch.compile``d module (its original eager module ``_orig_mod`` runs, so the statistics and site names
        are the eager model's), or a TorchScript module (``torch.jit.load``; sites inside its ``if``/loops are not
        instrumented).
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
        Sugar for the fallback rule only: sites whose values no Linear/Conv produced (reshaped or permuted
        tensors, inputs) read rank >= 3 activations along the last dimension instead of dim 1. Linear outputs
        already use their last dimension and Conv outputs dim 1, whatever this flag.
    unit_axis
        ``{site name: axis}``: the dimension holding the units at that site (e.g. ``{"mlp.1": -1}``), overriding
        the producer and the rule (recorded as ``axis_source="user"``). ValueError if a name is not a site.
    call
        ``call(model, batch)`` for batches that are not a tensor or an ``(x, y)`` tuple, e.g.
        ``lambda m, b: m(**b)`` (for a compiled model it receives the eager ``_orig_mod``).

    Returns
    -------
    ActivationStats
        One site per rectifier call site (named as :mod:`reluscope.torch` describes), in order of first execution,
        each with its unit axis, why that axis (``stats.axis_source(name)``) and what a sample is
        (``stats.describe_samples(name)``: ``"64×9 positions"`` for token activations).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``, a batch has an unsupported type.
    NoRectifierError
        (a ValueError) no rectifier ran: the message lists the torch functions that did and how to register a
        custom rectifier (:func:`reluscope.torch.register_rectifier`).
    ValueError
        ``batches`` yields nothing, a site changes its per-sample shape, the activations hold NaN/inf, a
        ``unit_axis`` key names no site or its axis does not fit.
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
        unit_axis=unit_axis,
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
    unit_axis: Mapping[str, int] | None = None,
    call: Call | None = None,
) -> tuple[ActivationStats, list[Site]]:
    """:func:`scan`, also returning the sites (function, module path, unit axis and its source) in order."""
    name = type(model).__name__
    if is_compiled(model):
        name = type(model._orig_mod).__name__
    model = check_model(model)
    per_position = check_flag(per_position, "per_position")
    channels_last = check_flag(channels_last, "channels_last")
    if isinstance(model, torch.jit.ScriptModule):
        if call is not None:
            raise TypeError(
                "call= is not supported for TorchScript models (their forward runs in C++ with one tensor input); "
                "scan the eager nn.Module instead, or pass batches the scripted forward accepts"
            )
        return scan_script(
            model,
            batches,
            device=resolve_device(device, model),
            progress=progress,
            per_position=per_position,
            channels_last=channels_last,
            unit_axis=unit_axis,
        )
    run = default_call if call is None else call
    dev = resolve_device(device, model)
    total = total_samples(batches)
    rec = _Recorder(model, per_position=per_position, channels_last=channels_last, unit_axis=unit_axis)
    n_done = 0
    n_batches = 0
    try:
        with eval_mode(model):
            for batch in batches:
                batch = to_device(batch, dev)
                if n_batches == 0 and call is None:  # redo/prune_dead map the structure from it later
                    x = batch if isinstance(batch, Tensor) else (batch[0] if isinstance(batch, list | tuple) else None)
                    if isinstance(x, Tensor):
                        remember_example(model, (x,))
                rec.start(full=True)
                done = False
                try:
                    run(model, batch)
                    done = True
                finally:
                    # hooked batches only for the default call (a custom one may run rectifiers outside modules)
                    rec.stop(learn=done and call is None)
                n_batches += 1
                n_done += batch_rows(batch)
                if progress is not None:
                    progress(n_done, total)
    finally:
        rec.forget_model()
    if n_batches == 0:
        raise ValueError("batches yielded no batch; pass a non-empty iterable of tensors or (x, y) tuples")
    check_overrides(rec)
    if not rec.accs:
        raise NoRectifierError(name, seen_functions(rec))
    return stats_from_accs(list(rec.accs.values())), rec.sites()


def check_overrides(rec: _Recorder) -> None:
    """ValueError when a ``unit_axis`` key names no site that ran."""
    unknown = sorted(set(rec.unit_axis) - set(rec.accs))
    if unknown:
        raise ValueError(
            f"unit_axis names {unknown}, which ran as no site; the sites are {list(rec.accs) or 'none'} "
            "(see reluscope.torch.find_sites)"
        )

"""Prune the dead units of a PyTorch model: smaller Linear/Conv/BatchNorm layers, the output kept.

For every site that ReDo's structure map handles (see :mod:`reluscope.torch._redo`: a ``Linear``/``Conv``
producer, optionally through a ``BatchNorm``, whose activation reaches exactly one ``Linear``/``Conv`` through
dropout, pooling or a flatten; or a transformer MLP ``Linear -> act -> dropout -> Linear`` over the last
dimension) the removed units' rows go from the producer (weight, bias, BatchNorm entries, per-unit PReLU slopes) and
their columns / input channels (the ``H*W`` block each channel became after a flatten) from the consumer. Each
removed unit's mean output ``m_u`` over the scanned data is folded into the consumer's bias:
``b += W[:, removed] @ m`` for a Linear, ``b[o] += sum_c m_c * sum_k W[o, c, k]`` for a conv. For a dead ReLU
``m = 0``, so the pruned model computes the same function (up to the rounding of a shorter dot product); for
GELU/SiLU/leaky units the output varies a little around ``m`` and the change is measured and reported.

A conv consumer with zero padding sees the padded border as 0, not ``m``: the fold (a bias) adds ``m``'s
contribution at the border too. That is exact when ``m = 0`` (dead ReLU) and otherwise part of the measured
``max_abs_delta`` (the site's ``note`` says so); pass ``fold="none"`` to drop the units without folding.

The scan's per-channel |activation| sums of a conv site (or a ``(N, L, F)`` Linear site) run over all positions;
the mean per position divides by the positions per sample of the mapped example, so inputs of varying spatial
size / sequence length make the folded mean approximate (exact again for dead ReLUs, whose mean is 0).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reluscope.diagnose import ActivationStats
from reluscope.remedies import PrunedLayer, PrunedSite, PruneReport, check_fold, check_tau, recycle_mask, unit_means
from reluscope.torch._examples import recorded_example, remember_example
from reluscope.torch._locate import check_model, eval_mode, iter_tensors
from reluscope.torch._redo import ReDoPlan, SitePlan, _cached_plan, _FlowTracer, _run_example, consumer_shift

__all__ = ["load_pruned", "prune_dead"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _as_args(example: Any) -> tuple[Any, ...]:
    return example if isinstance(example, tuple) else (example,)


def _rows(args: tuple[Any, ...]) -> int:
    for a in args:
        if isinstance(a, Tensor) and a.ndim:
            return int(a.shape[0])
    return 1


def _macs(model: nn.Module, args: tuple[Any, ...]) -> dict[str, int]:
    """Multiply-adds per sample of every Linear/Conv call while ``model`` runs ``args`` (traced, eval mode)."""
    tracer = _FlowTracer(model)
    with eval_mode(model):
        _run_example(model, args, tracer)
    modules = dict(model.named_modules())
    total: dict[str, int] = {}
    for node in tracer.nodes:
        if node.kind not in ("linear", "conv") or node.module is None or node.out_shape is None:
            continue
        mod = modules[node.module]
        out = math.prod(node.out_shape)
        if node.kind == "linear":
            k = node.in_shape[-1] if node.in_shape else 0
        elif isinstance(mod, _CONVS):
            k = mod.in_channels // mod.groups * math.prod(mod.kernel_size)
        else:  # pragma: no cover - conv calls come from nn.Conv modules in practice
            continue
        total[node.module] = total.get(node.module, 0) + out * k
    rows = _rows(args)
    return {path: round(v / rows) for path, v in total.items()}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, list | tuple):
        return type(obj)(_to(item, device) for item in obj)
    return obj


def _input(batch: Any) -> Tensor:
    """The model input of a batch as ``scan`` reads it: the tensor, or the first element of ``(x, y, ...)``."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"data must yield tensors or (x, y, ...) tuples, got {type(batch).__name__}")


def _positions_per_sample(stats: ActivationStats, name: str, sp: SitePlan) -> int:
    """Positions each counted sample's |activation| sum ran over, to turn it into a mean per position: ``H*W`` for a
    conv site counted per channel; for a Linear over the last dimension, its other non-batch positions, unless the
    stats counted every position as a sample (stats that record a unit axis do)."""
    if stats.kind(name) != "dense" or sp.positions <= 1:
        return 1  # per-position counts: the mean is already per position
    if sp.last_dim and stats.unit_axis(name) is not None:  # every (batch, position) row counted as a sample
        return 1
    return sp.positions


def _outputs(model: nn.Module, batches: list[Any], is_example: bool) -> list[Tensor]:
    dev = _device(model)
    outs = []
    with eval_mode(model):
        for batch in batches:
            b = _to(batch, dev)
            out = model(*b) if is_example else model(_input(b))
            outs.append(torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in iter_tensors(out)]))
    return outs


def _set(module: nn.Module, name: str, value: Tensor | None, like: Any) -> None:
    if value is None:
        return
    if isinstance(like, nn.Parameter) or like is None:
        requires_grad = like.requires_grad if isinstance(like, nn.Parameter) else True
        setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=requires_grad))
    else:
        setattr(module, name, value.contiguous())


def _resize(
    module: nn.Module,
    out_keep: Tensor | None,
    in_cols: Tensor | None,
    bias_add: Tensor | None,
) -> None:
    """Replace ``module``'s parameters by the kept rows/columns (and folded bias); update its size attributes."""
    with torch.no_grad():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert out_keep is not None
            for name in ("weight", "bias", "running_mean", "running_var"):
                old = getattr(module, name)
                if old is not None:
                    _set(module, name, old.detach()[out_keep.to(old.device)].clone(), old)
            module.num_features = int(out_keep.numel())
            return
        if isinstance(module, nn.PReLU):
            assert out_keep is not None
            _set(module, "weight", module.weight.detach()[out_keep.to(module.weight.device)].clone(), module.weight)
            module.num_parameters = int(out_keep.numel())
            return
        assert isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
        w = module.weight.detach()
        bias = module.bias
        new_bias = None if bias is None else bias.detach().to(torch.float64)
        if bias_add is not None and bool((bias_add != 0).any()):
            add = bias_add.to(w.device)
            new_bias = add if new_bias is None else new_bias + add
        if out_keep is not None:
            k = out_keep.to(w.device)
            w = w[k]
            new_bias = None if new_bias is None else new_bias[k]
        if in_cols is not None:
            w = w[:, in_cols.to(w.device)]
        _set(module, "weight", w.clone(), module.weight)
        if new_bias is not None:
            _set(module, "bias", new_bias.to(module.weight.dtype), bias)
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = int(w.shape[0]), int(w.shape[1])
        else:
            module.out_channels, module.in_channels = int(w.shape[0]), int(w.shape[1])


def prune_dead(
    model: nn.Module,
    stats: ActivationStats,
    tau: float = 0.0,
    *,
    example: Any = None,
    data: Iterable[Any] | None = None,
    fold: str = "mean",
    inplace: bool = False,
) -> PruneReport:
    """Remove the dead (or τ-dormant) units of a PyTorch model, folding their mean output into the next layer's bias.

    Parameters
    ----------
    model
        An eager ``nn.Module`` (see the module docstring for the structures handled).
    stats
        Its statistics over a dataset, keyed by the adapter's site names: ``reluscope.torch.scan(model, loader)``
        (units on the last dimension of a transformer's ``(N, L, F)`` MLP, as scan finds them). For non-ReLU
        sites the fold uses the
        |activation| sums, so use a scan or a monitor's ``full_stats``, not a monitor's cheap window.
    tau
        0 (default): units that fired on no sample. ``tau > 0``: also τ-dormant ones (Sokar et al. 2023); those
        that fired are pruned only for never-negative activations (ReLU, ReLU6), where their mean is known.
    example
        An input batch (tensor or tuple of positional arguments) to map the structure and count multiply-adds;
        not needed after ``scan``/``monitor`` ran the model (they remember two rows of their first input).
    data
        Batches (tensors or ``(x, y, ...)`` tuples, like ``scan``'s) on which to measure |pruned output - original
        output|, e.g. the scanned data or a held-out set; kept as a list while measuring. Default: the example.
    fold
        ``"mean"`` (default) or ``"none"`` (drop the units without touching the consumer's bias).
    inplace
        False (default): prune a ``copy.deepcopy`` of ``model``; True: change ``model`` itself.

    Returns
    -------
    PruneReport
        Units per site before/after, parameters and Linear/Conv multiply-adds per sample before/after (whole
        model and per changed layer), max and mean |output change|, refused sites with the reason.
        ``report.model`` is the pruned model. Resized layers get new ``nn.Parameter`` tensors, so an optimizer
        built on the original is not carried over: make a new one for the pruned model.

    Raises
    ------
    ValueError
        No example given nor recorded; ``stats`` do not match the model; bad ``tau``/``fold``.
    """
    model = check_model(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("prune_dead needs an eager nn.Module, not TorchScript: prune the Python model, then script it")
    if not isinstance(stats, ActivationStats):
        raise TypeError(
            f"stats must be an ActivationStats, got {type(stats).__name__}; use reluscope.torch.scan(model, loader)"
        )
    tau = check_tau(tau)
    fold = check_fold(fold)
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    plan: ReDoPlan = _cached_plan(model, example)
    args = _as_args(example) if example is not None else recorded_example(model)
    if args is None:  # pragma: no cover - _cached_plan records the example it maps with
        raise ValueError("prune_dead needs example=x[:2] (or scan the model first)")
    modules = dict(model.named_modules())
    known = set(plan.sites) | set(plan.output_sites) | set(plan.refused)
    refused: dict[str, str] = {}
    chosen: list[tuple[SitePlan, Tensor, Tensor, Tensor, int, float]] = []
    kept_count: dict[str, int] = {}
    for name in stats.names:
        if name not in known:
            raise ValueError(
                f"stats site {name!r} is not a site of this model (its sites: {sorted(known)}); were the stats "
                "computed on another model?"
            )
        if name in plan.refused:
            refused[name] = plan.refused[name]
            continue
        if name in plan.output_sites:
            refused[name] = "its output is the model's output (the output layer)"
            continue
        sp = plan.sites[name]
        if stats.n_units(name) != sp.units:
            hint = (
                " (a Linear over the last dimension: were the stats scanned with another unit_axis?)"
                if sp.last_dim
                else ""
            )
            raise ValueError(
                f"stats site {name!r} has {stats.n_units(name)} units but {sp.producer!r} produces {sp.units}{hint}; "
                "were the stats computed on another model?"
            )
        candidates = recycle_mask(stats, name, tau)
        slope = None
        if sp.function == "prelu":
            if sp.prelu is None:
                refused[name] = "a PReLU without one slope per unit: the sign of a dead unit's output is not known"
                continue
            prelu = modules[sp.prelu]
            assert isinstance(prelu, nn.PReLU)
            slope = prelu.weight.detach().cpu().double().numpy()
        means, ok = unit_means(stats, name, sp.function, candidates, slope)
        means = means / _positions_per_sample(stats, name, sp)
        remove = candidates & ok
        if remove.all():
            refused[name] = (
                f"all {sp.units} units are candidates: the layer's output is constant, and pruning it would leave "
                "a layer with no units"
            )
            continue
        idx = torch.from_numpy(np.flatnonzero(remove)).long()
        keep = torch.from_numpy(np.flatnonzero(~remove)).long()
        m = torch.from_numpy(np.ascontiguousarray(means[remove], dtype=np.float64))
        kept_count[name] = int(np.count_nonzero(candidates & ~ok))
        max_fold = float(m.abs().max()) if m.numel() and fold == "mean" else 0.0
        chosen.append((sp, idx, keep, m, sp.units, max_fold))

    # measure the original before anything changes
    batches: list[Any] = [args] if data is None else list(data)
    is_example = data is None
    macs_before = _macs(model, args)
    outs_before = _outputs(model, batches, is_example)
    params_before = sum(p.numel() for p in model.parameters())
    per_module_params = {path: _n_params(mod) for path, mod in modules.items()}

    target = model if inplace else copy.deepcopy(model)
    tmods = dict(target.named_modules())
    out_keep: dict[str, Tensor] = {}
    in_cols: dict[str, Tensor] = {}
    bias_add: dict[str, Tensor] = {}
    sites: list[PrunedSite] = []
    for sp, idx, keep, m, units, max_fold in chosen:
        note = ""
        if idx.numel():
            out_keep[sp.producer] = keep
            for path in (sp.batch_norm, sp.prelu):
                if path is not None:
                    out_keep[path] = keep
            cols = keep
            if sp.block > 1:
                cols = (keep[:, None] * sp.block + torch.arange(sp.block)[None, :]).reshape(-1)
            in_cols[sp.consumer] = cols
            consumer = modules[sp.consumer]
            if fold == "mean" and bool((m != 0).any()):
                add = consumer_shift(consumer, sp, idx, m)
                bias_add[sp.consumer] = bias_add.get(sp.consumer, torch.zeros_like(add)) + add
                padding = getattr(consumer, "padding", 0)
                if isinstance(consumer, _CONVS) and (padding == "same" or any(p != 0 for p in _tuple(padding))):
                    note = (
                        "the consumer conv zero-pads: at its border the fold adds the removed units' mean where the "
                        "original saw padding (0); the error is part of max_abs_delta"
                    )
        sites.append(
            PrunedSite(
                sp.site,
                units,
                int(keep.numel()),
                [int(i) for i in idx],
                kept=kept_count.get(sp.site, 0),
                producer=sp.producer,
                consumer=sp.consumer,
                max_fold=max_fold,
                note=note,
            )
        )
    for path in dict.fromkeys([*out_keep, *in_cols, *bias_add]):
        _resize(tmods[path], out_keep.get(path), in_cols.get(path), bias_add.get(path))
    remember_example(target, args)

    macs_after = _macs(target, args)
    outs_after = _outputs(target, batches, is_example)
    changed = list(dict.fromkeys([*out_keep, *in_cols]))
    layers = [
        PrunedLayer(
            path,
            per_module_params[path],
            _n_params(tmods[path]),
            macs_before.get(path, 0),
            macs_after.get(path, 0),
        )
        for path in changed
    ]
    report = PruneReport(
        sites=sites,
        layers=layers,
        refused=refused,
        tau=tau,
        fold=fold,
        params_before=params_before,
        params_after=sum(p.numel() for p in target.parameters()),
        macs_before=sum(macs_before.values()),
        macs_after=sum(macs_after.values()),
        model=target,
    )
    diffs = [(a - b).abs() for a, b in zip(outs_after, outs_before, strict=True)]
    n = sum(d.numel() for d in diffs)
    if n:
        report.max_abs_delta = float(max(float(d.max()) for d in diffs if d.numel()))
        report.mean_abs_delta = float(sum(float(d.sum()) for d in diffs) / n)
        report.max_abs_output = float(max(float(o.abs().max()) for o in outs_before if o.numel()))
        report.delta_samples = sum(_rows(_as_args(b)) if is_example else _rows((_input(b),)) for b in batches)
        report.delta_on = "example" if is_example else "data"
    return report


def _tuple(padding: Any) -> tuple[int, ...]:
    return tuple(padding) if isinstance(padding, tuple | list) else (int(padding),)


def load_pruned(model: nn.Module, path: Any) -> nn.Module:
    """Load a model written by ``reluscope diagnose --prune-out FILE`` into ``model``, a fresh instance of the
    original architecture (e.g. from the same factory): the layers named in ``FILE.arch.json`` are resized to the
    noted sizes (new, uninitialised parameters), then the state dict is loaded (``torch.load(weights_only=True)``,
    or safetensors for a ``.safetensors`` FILE; nothing is unpickled). Returns ``model``, changed in place.

    Raises
    ------
    FileNotFoundError
        FILE or its ``.arch.json`` note is missing.
    ValueError
        The note is not a reluscope architecture note, names a layer ``model`` lacks or of another type, or the
        state dict does not fit.
    """
    import json
    from pathlib import Path

    model = check_model(model)
    path = Path(path)
    note_path = path.with_name(path.name + ".arch.json")
    try:
        note = json.loads(note_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{note_path} is not valid JSON ({exc}); write it again with --prune-out") from None
    if not isinstance(note, dict) or note.get("format") != "reluscope.PrunedArchitecture":
        raise ValueError(f"{note_path} is not a reluscope.PrunedArchitecture note; write it with --prune-out")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, spec in note["layers"].items():
            mod = modules.get(name)
            if mod is None or type(mod).__name__ != spec.get("type"):
                found = "no such module" if mod is None else type(mod).__name__
                raise ValueError(
                    f"{note_path}: layer {name!r} should be a {spec.get('type')} but the model has {found}; "
                    "pass a fresh instance of the model the pruned one came from"
                )
            _reshape(mod, spec)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, weights_only=True, map_location="cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path} does not fit the resized model: {first}") from None
    return model


def _reshape(mod: nn.Module, spec: dict[str, Any]) -> None:
    """Give ``mod`` empty parameters of the sizes in ``spec`` (values come from the state dict afterwards)."""

    def empty(like: Tensor, *shape: int) -> Tensor:
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        n = int(spec["num_features"])
        for key in ("weight", "bias", "running_mean", "running_var"):
            old = getattr(mod, key)
            if old is not None:
                _set(mod, key, empty(old, n), old)
        mod.num_features = n
    elif isinstance(mod, nn.PReLU):
        n = int(spec["num_parameters"])
        _set(mod, "weight", empty(mod.weight, n), mod.weight)
        mod.num_parameters = n
    elif isinstance(mod, nn.Linear):
        o, i = int(spec["out_features"]), int(spec["in_features"])
        _set(mod, "weight", empty(mod.weight, o, i), mod.weight)
        mod.out_features, mod.in_features = o, i
        if spec.get("bias"):
            _set(mod, "bias", empty(mod.weight, o), mod.bias)
    elif isinstance(mod, _CONVS):
        o, i = int(spec["out_channels"]), int(spec["in_channels"])
        _set(mod, "weight", empty(mod.weight, o, i // mod.groups, *mod.kernel_size), mod.weight)
        mod.out_channels, mod.in_channels = o, i
        if spec.get("bias"):
            _set(mod, "bias", empty(mod.weight, o), mod.bias)
    else:
        raise ValueError(f"cannot resize a {type(mod).__name__}; prune_dead only resizes Linear/Conv/BatchNorm/PReLU")

"""Find every rectifier-family nonlinearity that ``model(x)`` executes, and stream its firing statistics.

How it works
------------
A :class:`torch.overrides.TorchFunctionMode` sees every torch function called while it is active: module
activations (``nn.ReLU`` calls ``F.relu``), functional calls (``F.relu``, ``torch.relu``, ``F.gelu``), tensor methods
(``x.relu()``, ``x.relu_()``) and their in-place variants. No tracing is involved, so data-dependent Python control
flow (``if h.sum() > 0: ...``) is no obstacle: only the calls that actually run are seen.

For a rectifier call the recorder reads the *input* (the pre-activation) **before** the function runs, so an
in-place ``relu_`` / ``nn.ReLU(inplace=True)`` / ``leaky_relu_`` / ``elu_`` cannot hide it, then reads the output
(for |activation| sums) after. Nothing else is intercepted: every other call runs unchanged.

Site names
----------
A *site* is one call site of a nonlinearity: the module that is executing when it is called (the innermost
``self`` on the Python call stack that is a submodule of the model), plus the call order within one forward pass:

- an activation module is named by its path: ``features.2``, ``layer1.0.relu``;
- a functional call inside a module's code is named ``<module path>.<function>``: ``block1.relu``, ``gelu`` (root);
- the k-th call (k >= 2) of the same name in one forward pass gets ``#k``: a ``self.act`` module reused after
  ``fc1`` and ``fc2`` gives sites ``act`` and ``act#2``.

Names depend on the code path taken, not on the data values, except when control flow skips a call that precedes
another call of the same name (then the later one is numbered differently in that pass); give such calls their
own modules to keep them apart.

Which values count
------------------
The first dimension is the sample dimension. ``(N, U)`` outputs (``nn.Linear``) are per feature. ``(N, C, H, W)``
(``nn.Conv2d``, ``BatchNorm2d``) are per channel: a channel fires on a sample when any position is > 0; the
per-position fire counts are kept too (``per_position=True``). Other ``(N, C, *S)`` shapes are treated like conv
outputs (``channels_last=True`` reads ``(N, *S, C)``, e.g. a transformer's ``(N, L, F)``). A 1-D tensor is one
unbatched sample. Calls on ``nn.Parameter`` tensors (e.g. ``F.relu(self.scale)``) are not sites.

A unit *fires* when its pre-activation is > 0, for every function here, not only ReLU: GELU, SiLU, Mish,
Hardswish, ELU, SELU, CELU, leaky/randomised/parametric ReLU are all positive exactly where their input is
positive, so "fired" means "was on the positive (identity-like) side". GELU/SiLU/Mish pass a (small) gradient for
negative inputs as well, so a "dead" GELU unit is one that never reached the positive side, not one that passes
no gradient.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from reluscope.diagnose import ActivationStats

__all__ = ["RECTIFIER_FUNCTIONS", "RECTIFIER_MODULES", "Site", "find_sites"]

# Activation modules named by their own path (no ".relu" suffix). Hardtanh counts when min_val == 0 (ReLU6 is one).
RECTIFIER_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
)

# function name -> the objects the TorchFunctionMode may see for it (functional, torch.*, torch._C._nn.*, methods)
_FUNCTION_NAMES: dict[str, tuple[str, ...]] = {
    "relu": ("F.relu", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_"),
    "relu6": ("F.relu6", "_nn.relu6", "_nn.relu6_"),
    "hardtanh": ("F.hardtanh", "F.hardtanh_", "_nn.hardtanh", "_nn.hardtanh_"),
    "leaky_relu": ("F.leaky_relu", "F.leaky_relu_", "_nn.leaky_relu", "_nn.leaky_relu_"),
    "prelu": ("F.prelu", "torch.prelu", "Tensor.prelu"),
    "rrelu": ("F.rrelu", "F.rrelu_", "torch.rrelu", "torch.rrelu_", "_nn.rrelu_with_noise"),
    "elu": ("F.elu", "F.elu_", "_nn.elu", "_nn.elu_"),
    "celu": ("F.celu", "torch.celu", "torch.celu_"),
    "selu": ("F.selu", "torch.selu", "torch.selu_"),
    "gelu": ("F.gelu", "_nn.gelu"),
    "silu": ("F.silu", "_nn.silu", "_nn.silu_"),
    "mish": ("F.mish", "_nn.mish", "_nn.mish_"),
    "hardswish": ("F.hardswish", "_nn.hardswish", "_nn.hardswish_"),
}
# per-batch position counts accumulate in int16 over at most this many rows
_INT16_ROWS = 32767
# output != 0 exactly where the pre-activation is > 0: the fire mask is read from the output
_MASK_FROM_OUTPUT = frozenset({"relu", "relu6"})
# outputs never negative: |act| == act, skip the abs pass
_NONNEGATIVE = frozenset({"relu", "relu6", "hardtanh"})


def _resolve(dotted: str) -> Any:
    owner_name, attr = dotted.split(".", 1)
    owner = {"F": F, "torch": torch, "Tensor": torch.Tensor, "_nn": torch._C._nn}[owner_name]
    return getattr(owner, attr, None)


# ATen operators called directly from Python (torch.ops.aten.relu.default), e.g. by fx GraphModules
_ATEN_NAMES: dict[str, tuple[str, ...]] = {
    "relu": ("relu", "relu_"),
    "relu6": ("relu6", "relu6_"),
    "hardtanh": ("hardtanh", "hardtanh_"),
    "leaky_relu": ("leaky_relu", "leaky_relu_"),
    "prelu": ("prelu", "_prelu_kernel"),
    "rrelu": ("rrelu", "rrelu_", "rrelu_with_noise", "rrelu_with_noise_"),
    "elu": ("elu", "elu_"),
    "celu": ("celu", "celu_"),
    "selu": ("selu", "selu_"),
    "gelu": ("gelu", "gelu_"),
    "silu": ("silu", "silu_"),
    "mish": ("mish", "mish_"),
    "hardswish": ("hardswish", "hardswish_"),
}


def _build_table() -> dict[Any, str]:
    table: dict[Any, str] = {}
    for label, names in _FUNCTION_NAMES.items():
        for dotted in names:
            fn = _resolve(dotted)
            if fn is not None:  # older torch versions lack a few in-place variants
                table[fn] = label
    for label, ops in _ATEN_NAMES.items():
        for op in ops:
            packet = getattr(torch.ops.aten, op, None)
            overload = getattr(packet, "default", None) if packet is not None else None
            if overload is not None:
                table[overload] = label
    return table


_TABLE = _build_table()
RECTIFIER_FUNCTIONS: frozenset[str] = frozenset(_FUNCTION_NAMES)
"""Names of the nonlinearities found (``hardtanh`` only with ``min_val == 0``, i.e. ReLU6-like)."""


def _hardtanh_label(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """``relu6`` for hardtanh(0, 6), ``hardtanh`` for other min_val == 0, None otherwise (not a rectifier)."""
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    if lo != 0:
        return None
    return "relu6" if hi == 6 else "hardtanh"


@dataclass(frozen=True)
class Site:
    """One call site of a rectifier-family nonlinearity found by :func:`find_sites`.

    Attributes
    ----------
    name : str
        The statistics name: ``"features.2"``, ``"block1.relu"``, ``"act#2"``.
    function : str
        ``"relu"``, ``"gelu"``, ``"leaky_relu"``, ... (see :data:`RECTIFIER_FUNCTIONS`).
    module : str
        Path of the module executing the call (``""`` for the model itself).
    call : int
        1 for the first call of this name in a forward pass, 2 for the second, ...
    kind : str
        ``"dense"`` (per feature) or ``"conv"`` (per channel, positions reduced).
    shape : tuple[int, ...]
        Per-sample shape of the pre-activation as recorded: ``(U,)`` or ``(C, *S)``.
    """

    name: str
    function: str
    module: str
    call: int
    kind: str
    shape: tuple[int, ...]

    @property
    def units(self) -> int:
        """Units (features, or channels for conv sites)."""
        return self.shape[0]


_Pending = tuple[int, Tensor, "Tensor | None", "Tensor | None"]


# Device-side accumulators -------------------------------------------------------------------------------------------
def _two_sum_(hi: Tensor, lo: Tensor, x: Tensor) -> None:
    """(hi, lo) += x, Knuth's TwoSum elementwise in place (the same arithmetic as ActivationStats)."""
    s = hi + x
    bb = s - hi
    err = (hi - (s - bb)) + (x - bb)
    hi.copy_(s)
    lo.add_(err)


def _renormalise_(hi: Tensor, lo: Tensor) -> None:
    """FastTwoSum: hi becomes the rounded hi + lo and lo the exact remainder (canonical pair)."""
    s = hi + lo
    err = lo - (s - hi)
    hi.copy_(s)
    lo.copy_(err)


class _SiteAcc:
    """Per-site counters, kept on the device of the activations; no host sync until :meth:`to_dict`.

    ``n_seen``/``run_max`` cover every recorded pass (cheap or full); the others only the fully counted passes.
    """

    def __init__(self, name: str, function: str, module: str, call: int, shape: tuple[int, ...], ref: Tensor):
        self.name = name
        self.function = function
        self.module = module
        self.call = call
        self.shape = shape  # (U,) or (C, *S) when positions are kept; (C,) conv without positions is dense
        self.conv_positions = len(shape) > 1
        units = shape[0]
        dev = ref.device
        self.device = dev
        self.n_seen = 0
        self.n_full = 0
        self.run_max = torch.full((units,), -math.inf, dtype=torch.float64, device=dev)
        self.full_max = torch.full((units,), -math.inf, dtype=torch.float64, device=dev)
        self.fire_count = torch.zeros(units, dtype=torch.int64, device=dev)
        self.abs_hi = torch.zeros(units, dtype=torch.float64, device=dev)
        self.abs_lo = torch.zeros(units, dtype=torch.float64, device=dev)
        self.pos_count = torch.zeros(shape, dtype=torch.int64, device=dev) if self.conv_positions else None
        self._buffers: dict[str, Tensor] = {}  # reused work buffers, not statistics

    def buffer(self, key: str, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
        """A work buffer of ``shape`` (rows may be fewer than allocated), reused between batches.

        Fresh multi-megabyte tensors cost page faults on every batch on CPU; reusing them is ~2x faster.
        """
        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._buffers[key] = torch.empty(tuple(shape), dtype=dtype, device=self.device)
        return buf[: shape[0]]

    def reset(self) -> None:
        self.n_seen = 0
        self.n_full = 0
        self.run_max.fill_(-math.inf)
        self.full_max.fill_(-math.inf)
        self.fire_count.zero_()
        self.abs_hi.zero_()
        self.abs_lo.zero_()
        if self.pos_count is not None:
            self.pos_count.zero_()

    def site(self) -> Site:
        kind = "conv" if self.conv_positions else "dense"
        return Site(self.name, self.function, self.module, self.call, kind, self.shape)

    def stats_shape(self) -> tuple[int, ...]:
        """The ActivationStats shape: (U,) dense or (C, H, W) with the spatial dims folded into two."""
        if not self.conv_positions:
            return self.shape
        c, *spatial = self.shape
        if len(spatial) == 1:
            return (c, 1, spatial[0])
        return (c, math.prod(spatial[:-1]), spatial[-1])

    def to_dict(self, *, window: bool) -> dict[str, Any]:
        """One site of an ActivationStats dict (one host transfer).

        ``window=False``: the fully counted passes only (exact). ``window=True``: every recorded pass; fire counts
        are the full counts raised to 1 for units that fired only in cheap passes (so ``dead_mask`` is exact) and
        the maxima cover every pass.
        """
        n = self.n_seen if window else self.n_full
        max_pre = (self.run_max if window else self.full_max).cpu().numpy()
        if np.isnan(max_pre).any() or np.isposinf(max_pre).any() or (n and np.isneginf(max_pre).any()):
            raise ValueError(
                f"site {self.name!r} saw NaN or inf pre-activations; the model has probably diverged (lower the "
                "learning rate) or its input holds NaN"
            )
        fire = self.fire_count.cpu().numpy()
        if window:
            fire = np.maximum(fire, (max_pre > 0).astype(np.int64))
        hi = self.abs_hi.cpu().numpy()
        lo = self.abs_lo.cpu().numpy()
        if not (np.isfinite(hi).all() and np.isfinite(lo).all()):
            raise ValueError(f"site {self.name!r} saw inf activations; the model has probably diverged")
        shape = self.stats_shape()
        pos = None
        if self.pos_count is not None:
            pos = self.pos_count.cpu().numpy().reshape(shape).ravel().tolist()
        return {
            "name": self.name,
            "shape": list(shape),
            "n_samples": int(n),
            "fire_count": fire.tolist(),
            "abs_sum": hi.tolist(),
            "abs_sum_lo": lo.tolist(),
            "max_pre": [v if math.isfinite(v) else None for v in max_pre.tolist()],
            "position_fire_count": pos,
        }


def stats_from_accs(accs: list[_SiteAcc], *, window: bool = False) -> ActivationStats:
    """An :class:`ActivationStats` built from the accumulators (sites with no samples are left out)."""
    sites = [acc.to_dict(window=window) for acc in accs if (acc.n_seen if window else acc.n_full)]
    return ActivationStats.from_dict({"format": "reluscope.ActivationStats", "version": 1, "sites": sites})


# The recorder ----------------------------------------------------------------------------------------------------
class _Recorder(TorchFunctionMode):
    """A TorchFunctionMode that turns every rectifier call into per-site counter updates.

    Use :meth:`begin_pass` before each forward pass (it resets the call-order counters and chooses cheap or full
    recording), then run the forward with the mode active.
    """

    def __init__(self, model: nn.Module, *, per_position: bool, channels_last: bool) -> None:
        super().__init__()
        # id -> (module, path); the module is kept to guard against id reuse
        self._paths: dict[int, tuple[nn.Module, str]] = {id(m): (m, p) for p, m in model.named_modules()}
        self.per_position = per_position
        self.channels_last = channels_last
        self.accs: dict[str, _SiteAcc] = {}
        self.full = True
        self._calls: dict[str, int] = {}

    def begin_pass(self, *, full: bool) -> None:
        self._calls.clear()
        self.full = full

    def forget_model(self) -> None:
        """Drop the references to the model's modules (after the recorder is detached)."""
        self._paths = {}

    # naming
    def _owner(self) -> nn.Module | None:
        """The innermost submodule of the model whose code is on the Python stack (None: outside the model)."""
        paths = self._paths
        frame: FrameType | None = sys._getframe(2)
        while frame is not None:
            code = frame.f_code
            if code.co_argcount and code.co_varnames[0] == "self":
                owner = frame.f_locals.get("self")
                entry = paths.get(id(owner))
                if entry is not None and entry[0] is owner:
                    return owner
            frame = frame.f_back
        return None

    def _name(self, owner: nn.Module | None, label: str) -> tuple[str, str, int]:
        path = "" if owner is None else self._paths[id(owner)][1]
        if owner is not None and isinstance(owner, RECTIFIER_MODULES) and path:
            base = path
        else:
            base = f"{path}.{label}" if path else label
        k = self._calls.get(base, 0) + 1
        self._calls[base] = k
        return (base if k == 1 else f"{base}#{k}"), path, k

    # recording
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if kwargs is None:
            kwargs = {}
        label: str | None = _TABLE.get(func)
        if label == "hardtanh":
            label = _hardtanh_label(args, kwargs)
        if label is None:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs.get("input", kwargs.get("self"))
        if (
            not isinstance(x, Tensor)
            or isinstance(x, nn.Parameter)
            or not x.is_floating_point()
            or x.ndim == 0
            or x.numel() == 0
        ):
            return func(*args, **kwargs)
        name, path, call = self._name(self._owner(), label)
        acc = self.site_acc(name, label, path, call, x)
        if not self.full:
            self.cheap(acc, x)
            return func(*args, **kwargs)
        pending = self.reduce_pre(acc, x, label)  # before func runs: an in-place call overwrites x
        out = func(*args, **kwargs)
        self.commit(acc, label, pending, out)
        return out

    # the reductions (also used by the TorchScript path)
    def site_acc(self, name: str, label: str, path: str, call: int, x: Tensor) -> _SiteAcc:
        """The accumulator of site ``name``, created on first use; checks the per-sample shape."""
        pre = self._layout(x)
        shape = tuple(pre.shape[1:]) if (pre.ndim == 2 or self.per_position) else (pre.shape[1],)
        acc = self.accs.get(name)
        if acc is None:
            acc = self.accs[name] = _SiteAcc(name, label, path, call, shape, pre)
        elif acc.shape != shape:
            raise ValueError(
                f"site {name!r} ({label} in {path or 'the model'}): per-sample shape changed from {acc.shape} to "
                f"{shape}. Inputs of varying spatial size need per_position=False; otherwise another call took "
                "this site's name (data-dependent control flow skipped an earlier call): move it into its own module"
            )
        return acc

    def cheap(self, acc: _SiteAcc, x: Tensor) -> None:
        """Running per-unit maximum: one reduction (two small ones for conv) and one tiny maximum, no host sync."""
        pre = self._layout(x.detach())
        if pre.ndim > 2:  # reducing the contiguous spatial dims first is several times faster than (0, 2, 3)
            pre = pre.amax(dim=tuple(range(2, pre.ndim)))
        torch.maximum(acc.run_max, pre.amax(0), out=acc.run_max)
        acc.n_seen += pre.shape[0]

    @staticmethod
    def _count_into(total: Tensor, mask: Tensor, acc: _SiteAcc) -> None:
        """``total += mask.sum(0)`` for a bool mask, fast.

        The mask's bytes are summed into int16 (exact for up to 32767 rows, so in chunks of that many) in a
        reused scratch buffer: on CPU ~10x faster than summing bool into int64; a fresh output buffer of each
        call costs as much again.
        """
        rows = mask.view(torch.uint8)
        buf = acc.buffer(f"count{total.ndim}", (1, *rows.shape[1:]), torch.int16)[0]
        for chunk in torch.split(rows, _INT16_ROWS) if rows.shape[0] > _INT16_ROWS else (rows,):
            torch.sum(chunk, 0, dtype=torch.int16, out=buf)
            total.add_(buf)

    def reduce_pre(self, acc: _SiteAcc, x: Tensor, label: str) -> _Pending:
        """The reductions that need the pre-activation (run before an in-place call overwrites it).

        Returns (rows, per-unit batch maxima, the (N, C) channel maxima of a conv site or None, and the fire
        mask when it cannot be read from the output). The mask is ``clamp(pre, min=0)`` converted to bool: on
        CPU ~3x faster than ``pre > 0`` (comparisons into bool are not vectorised) and equal to it except for NaN,
        which is reported when the statistics are read. For ReLU/ReLU6 the output already is that mask.
        """
        pre = self._layout(x.detach())
        n = pre.shape[0]
        need_mask = label not in _MASK_FROM_OUTPUT and (pre.ndim == 2 or self.per_position)
        mask = None
        if need_mask:
            positive = torch.clamp(pre, min=0, out=acc.buffer("positive", pre.shape, pre.dtype))
            mask = acc.buffer("mask", pre.shape, torch.bool).copy_(positive)
        if pre.ndim == 2:
            return n, pre.amax(0), None, mask
        nc_max = pre.amax(dim=tuple(range(2, pre.ndim)))  # (N, C): a channel fires if any position is > 0
        return n, nc_max.amax(0), nc_max, mask

    def commit(self, acc: _SiteAcc, label: str, pending: _Pending, out: Any) -> None:
        """Add one fully counted batch: the pre-activation reductions, fire counts, |activation| sums of ``out``.

        Sums run in the activation's dtype within a sample (float32 for half types) and in float64 across samples
        and batches, like ActivationStats (float32 input: ~1e-6 relative; float64: ~1e-15).
        """
        n, bmax, nc_max, mask = pending
        act = self._layout(out.detach()) if isinstance(out, Tensor) and out.is_floating_point() else None
        if mask is None and act is not None and (nc_max is None or self.per_position):
            mask = acc.buffer("mask", act.shape, torch.bool).copy_(act)  # ReLU/ReLU6: out != 0 exactly where pre > 0
        if nc_max is None:
            if mask is not None:
                self._count_into(acc.fire_count, mask, acc)
        else:
            self._count_into(acc.fire_count, nc_max > 0, acc)
            if self.per_position and mask is not None and acc.pos_count is not None:
                self._count_into(acc.pos_count, mask, acc)
        sums = None
        if act is not None:
            if label not in _NONNEGATIVE:
                act = act.abs()
            if act.dtype in (torch.float16, torch.bfloat16):
                act = act.float()
            if act.ndim > 2:
                act = act.sum(dim=tuple(range(2, act.ndim)))  # (N, C), contiguous inner dims: fast
            sums = act.sum(0).to(torch.float64) if act.dtype != torch.float64 else act.sum(0)
        if sums is None or sums.shape != acc.abs_hi.shape:  # pragma: no cover - rectifiers keep their input's shape
            sums = torch.zeros_like(acc.abs_hi)
        acc.n_seen += n
        acc.n_full += n
        torch.maximum(acc.run_max, bmax, out=acc.run_max)
        torch.maximum(acc.full_max, bmax, out=acc.full_max)
        _two_sum_(acc.abs_hi, acc.abs_lo, sums)
        _renormalise_(acc.abs_hi, acc.abs_lo)

    def _layout(self, t: Tensor) -> Tensor:
        """(N, U) or (N, C, *S) view: 1-D is one unbatched sample; channels_last moves the last dim to 1."""
        if t.ndim == 1:
            return t.unsqueeze(0)
        if t.ndim > 2 and self.channels_last:
            return t.movedim(-1, 1)
        return t

    def sites(self) -> list[Site]:
        return [acc.site() for acc in self.accs.values()]


def iter_tensors(obj: Any) -> Iterator[Tensor]:
    """Every tensor in a (nested) tuple/list/dict batch."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; for a reluscope.nn.MLP use "
            "reluscope.diagnose.scan, or convert it with reluscope.torch.from_mlp"
        )
    return model


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode and ``torch.no_grad`` for the body; each module's own train/eval flag is restored
    on exit, also when the body raises. The flags are set directly, so modules that override train()/eval() are
    covered too."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        for module, _ in modes:
            module.training = False
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def find_sites(model: nn.Module, *inputs: Any, channels_last: bool = False, **kw_inputs: Any) -> list[Site]:
    """Run ``model(*inputs, **kw_inputs)`` once and list the rectifier sites it executes.

    The pass runs in eval mode under ``torch.no_grad()`` (no BatchNorm buffer update, no dropout draw), and every
    submodule's train/eval flag is restored afterwards: the model is left exactly as it was.

    Parameters
    ----------
    model
        Any ``nn.Module`` (eager; no tracing, so data-dependent control flow is fine).
    inputs, kw_inputs
        One example batch, e.g. ``find_sites(model, torch.randn(2, 3, 32, 32))``.
    channels_last
        Read ``(N, *S, C)`` activations (transformers' ``(N, L, F)``, NHWC) per last-dimension unit.

    Returns
    -------
    list of Site
        In order of first execution; only the calls that ran for this input (a branch not taken is absent).
    """
    model = check_model(model)
    rec = _Recorder(model, per_position=True, channels_last=channels_last)
    rec.begin_pass(full=False)
    try:
        with eval_mode(model), rec:
            model(*inputs, **kw_inputs)
    finally:
        rec.forget_model()
    return rec.sites()

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

Later passes of :func:`~reluscope.torch.scan` and :func:`~reluscope.torch.monitor` skip the mode when they can:
if the first pass found only rectifier *modules* (``nn.ReLU``, ``nn.GELU``, ...), every rectifier module of the
model ran, and the model's code can call no rectifier function and branches on configuration only (checked from
its source, conservatively: anything unproven keeps the mode), the same modules' forward hooks record the same
tensors with the same reductions, and no other torch call of the forward goes through Python. The per-site
reductions never read a value on the host (no device sync per step); the fully counted sites' maxima and
compensated sums are folded in once per pass.

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

Which rectifiers
----------------
Rectifiers are recognised by what they compute, not by their name: ``relu``/``relu_``, ``clamp(min=0)``,
``clamp_min(0)``, ``clamp(0, None)``, ``x.clamp(0)``, ``clip(min=0)`` and their in-place forms,
``maximum``/``max`` with an all-zero other operand, ``threshold(x, 0, 0)`` (``nn.Threshold(0, 0)``) all compute
``max(x, 0)`` and are sites of function ``"relu"`` (named after the call: ``block.clamp``, ``maximum``);
``hardtanh(0, c)``, ``relu6`` and ``clamp(0, c)`` are ``"relu6"`` (c = 6) or ``"hardtanh"``; leaky/randomised/
parametric ReLU, ELU, CELU, SELU, GELU, SiLU, Mish and Hardswish are found by their functions. A clamp with another
lower bound (``clamp(min=0.5)``) is not a rectifier. Whether a tensor operand of ``maximum``/``clamp`` is zero is
known without a device sync when it was made in the forward pass (``zeros_like``, ``zeros``, ``new_zeros``);
another tensor (a buffer) is checked once per version of it. Anything else (your own function or module) is
registered with :func:`register_rectifier`.

Which axis holds the units
--------------------------
The unit axis of a site comes from the layer that produced its pre-activation, followed back through
shape-preserving calls (BatchNorm/LayerNorm/GroupNorm, dropout, residual ``+``, scaling):

- ``nn.Linear`` / ``F.linear`` / ``matmul`` / ``@`` / ``bmm``: the **last** dimension, whatever the rank. Every
  other index is a sample: a transformer MLP's ``(N, L, F)`` is F units over N*L token positions
  (``axis_source="linear"``);
- ``Conv1d/2d/3d`` (and transposed): dimension 1 (channels), whatever the memory format (channels-last tensors are
  still ``(N, C, *S)`` logically); a channel fires on a sample when any of its positions is > 0, and the
  per-position fire counts are kept with ``per_position=True`` (``axis_source="conv"``);
- no producer found (a reshape, a permute, an input): the **rule**: dimension 1 of an ``(N, U)`` or
  ``(N, C, *S)`` tensor, or the last dimension with ``channels_last=True`` (``axis_source="rule"``);
- a 1-D tensor ``(U,)`` is **one unbatched sample of U units**, as ``nn.Linear`` reads a 1-D input (it is viewed as
  ``(1, U)``; ``axis_source="unbatched"``), never U samples of one unit: pass ``x[:, None]`` for that;
- ``unit_axis={"site": axis}`` overrides any of them (``axis_source="user"``).

Axis 1 of a tensor of rank >= 3 is read per channel (positions reduced within a sample); any other axis is read
with every index of the other dimensions as a sample. Calls on
``nn.Parameter`` tensors (e.g. ``F.relu(self.scale)``) are not sites.

A unit *fires* when its pre-activation is > 0, for every function here, not only ReLU: GELU, SiLU, Mish,
Hardswish, ELU, SELU, CELU, leaky/randomised/parametric ReLU are all positive exactly where their input is
positive, so "fired" means "was on the positive (identity-like) side". GELU/SiLU/Mish pass a (small) gradient for
negative inputs as well, so a "dead" GELU unit is one that never reached the positive side, not one that passes
no gradient.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from reluscope.diagnose import ActivationStats

__all__ = [
    "AXIS_SOURCES",
    "RECTIFIER_FUNCTIONS",
    "RECTIFIER_MODULES",
    "NoRectifierError",
    "RectifierRegistration",
    "Site",
    "find_sites",
    "register_rectifier",
]

# Activation modules named by their own path (no ".relu" suffix). Hardtanh counts when min_val == 0 (ReLU6 is one),
# Threshold when threshold == value == 0.
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
    nn.Threshold,
)

AXIS_SOURCES = ("linear", "conv", "rule", "unbatched", "user")
"""Where a site's unit axis came from: the producing Linear/matmul, the producing Conv, the fallback rule, a 1-D
tensor read as one unbatched sample, or the ``unit_axis=`` override."""
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
"""The ``Site.function`` values of built-in rectifiers (``hardtanh`` only with ``min_val == 0``, i.e. ReLU6-like;
``relu`` also for ``clamp(min=0)``, ``maximum(x, 0)``, ``threshold(x, 0, 0)``)."""

# Other spellings of max(x, 0): call name -> the objects the mode may see for it. Which of their calls are
# rectifiers depends on the arguments (see _spelled).
_SPELLING_NAMES: dict[str, tuple[str, ...]] = {
    "clamp": (
        "torch.clamp",
        "torch.clamp_",
        "torch.clip",
        "torch.clip_",
        "Tensor.clamp",
        "Tensor.clamp_",
        "Tensor.clip",
        "Tensor.clip_",
    ),
    "clamp_min": ("torch.clamp_min", "torch.clamp_min_", "Tensor.clamp_min", "Tensor.clamp_min_"),
    "maximum": ("torch.maximum", "Tensor.maximum", "torch.max", "Tensor.max", "torch.fmax", "Tensor.fmax"),
    "threshold": ("F.threshold", "F.threshold_", "torch.threshold", "torch.threshold_", "_nn.threshold"),
}
_SPELLINGS: dict[Any, str] = {}
for _kind, _names in _SPELLING_NAMES.items():
    for _dotted in _names:
        _fn = _resolve(_dotted)
        if _fn is not None:
            _SPELLINGS[_fn] = _kind

# Producers of unit axes and the shape-preserving calls that keep their producer's axis (matched by function name)
_LINEAR_PRODUCERS = frozenset(
    {"linear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "bilinear"}
)
_CONV_PRODUCERS = frozenset(
    {
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "convolution",
        "_convolution",
    }
)
_KEEP_AXIS = frozenset(
    {
        "batch_norm",
        "layer_norm",
        "group_norm",
        "instance_norm",
        "rms_norm",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "add",
        "add_",
        "__add__",
        "__iadd__",
        "__radd__",
        "sub",
        "sub_",
        "__sub__",
        "__isub__",
        "mul",
        "mul_",
        "__mul__",
        "__imul__",
        "__rmul__",
        "div",
        "div_",
        "__truediv__",
        "__itruediv__",
        "contiguous",
        "clone",
        "to",
        "float",
        "double",
        "half",
        "bfloat16",
    }
)
_ZERO_FACTORIES = frozenset({"zeros", "zeros_like", "new_zeros"})
_AXIS_TAG = "_reluscope_axis"
_ZERO_TAG = "_reluscope_zero"
# names of attribute access and of the mode's own bookkeeping: not shown in the list of executed functions
_NOT_SHOWN = frozenset({"__get__", "__set__", "__getitem__", "__setitem__", "__len__", "__format__", "__repr__"})


def _is_zero(v: Any) -> bool:
    """True when ``v`` is the number 0 or a tensor of zeros (one device sync per new tensor version, cached)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return v == 0
    if not isinstance(v, Tensor) or v.numel() == 0:
        return False
    try:
        version: int | None = v._version
    except RuntimeError:  # inference tensors have no version counter
        version = None
    tag = getattr(v, _ZERO_TAG, None)
    if tag is not None and version is not None and tag[0] == version:
        return bool(tag[1])
    zero = bool((v == 0).all())  # a sync, once per version of this tensor
    if version is not None:
        setattr(v, _ZERO_TAG, (version, zero))
    return zero


def _upper_label(hi: Any) -> str | None:
    """The label of a clamp/hardtanh with lower bound 0 and upper bound ``hi`` (None: unbounded)."""
    if hi is None:
        return "relu"
    if isinstance(hi, bool) or not isinstance(hi, int | float):
        return None  # a tensor bound: not recognised
    if hi == math.inf:
        return "relu"
    if hi > 0:
        return "relu6" if hi == 6 else "hardtanh"
    return None


def _broadcasts_to(small: torch.Size, big: torch.Size) -> bool:
    """True when a tensor of shape ``small`` broadcasts to ``big`` without enlarging it."""
    return len(small) <= len(big) and all(s in (1, b) for s, b in zip(reversed(small), reversed(big), strict=False))


def _spelled(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any] | None:
    """(label, pre-activation) when a clamp/maximum/threshold call computes a rectifier, else None."""
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    if kind == "clamp":
        lo = args[1] if len(args) > 1 else kwargs.get("min")
        hi = args[2] if len(args) > 2 else kwargs.get("max")
        if lo is None or not _is_zero(lo):
            return None
        if isinstance(lo, Tensor) and lo.numel() != 1:
            return None
        label = _upper_label(hi)
        return None if label is None else (label, x)
    if kind == "clamp_min":
        lo = args[1] if len(args) > 1 else kwargs.get("min")
        if lo is None or not _is_zero(lo) or (isinstance(lo, Tensor) and lo.numel() != 1):
            return None
        return "relu", x
    if kind == "maximum":
        other = args[1] if len(args) > 1 else kwargs.get("other")
        if not (isinstance(x, Tensor) and isinstance(other, Tensor)):
            return None  # torch.max(x) / torch.max(x, dim): reductions
        for value, zero in ((x, other), (other, x)):
            if _broadcasts_to(zero.shape, value.shape) and _is_zero(zero):
                return "relu", value
        return None
    # threshold(input, threshold, value, inplace=False): y = x if x > threshold else value
    th = args[1] if len(args) > 1 else kwargs.get("threshold")
    fill = args[2] if len(args) > 2 else kwargs.get("value")
    if th is None or fill is None or not (_is_zero(th) and _is_zero(fill)):
        return None
    return "relu", x


def _hardtanh_label(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """``relu6`` for hardtanh(0, 6), ``hardtanh`` for other min_val == 0, None otherwise (not a rectifier)."""
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    if lo != 0:
        return None
    return "relu6" if hi == 6 else "hardtanh"


def rectifier_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Tensor] | None:
    """``(Site.function, pre-activation)`` when a call of ``func`` with these arguments is a rectifier site, else
    None: a built-in rectifier, another spelling of max(x, 0) (``clamp(min=0)``, ``maximum(x, zeros)``,
    ``threshold(x, 0, 0)``, ...) or a function given to :func:`register_rectifier` -- the recorder's decision, for
    the structure map of :func:`reluscope.torch.redo_plan`. Registered modules are seen by hooks, not here."""
    label: str | None
    if func in _CUSTOM_FUNCTIONS:
        label = _CUSTOM_FUNCTIONS[func].label
        x = args[0] if args else next(iter(kwargs.values()), None)
    elif func in _TABLE:
        label = _TABLE[func]
        if label == "hardtanh":
            label = _hardtanh_label(args, kwargs)
        x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    elif func in _SPELLINGS:
        found = _spelled(_SPELLINGS[func], args, kwargs)
        if found is None:
            return None
        label, x = found
    else:
        return None
    if label is None or not _recordable(x):
        return None
    return label, cast(Tensor, x)


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


def _unit_max(pre: Tensor, acc: _SiteAcc) -> Tensor:
    """Per-unit maximum of a (rows, U) or (N, C, *S) layout: ``(U,)`` / ``(C,)``, in the activation's dtype.

    For conv layouts the cheaper order is taken: the positions first (an inner reduction, vectorised when a row of
    positions is long and a multiple of the vector width) or the batch first (an outer reduction into a reused
    ``(C, *S)`` buffer; ~5-10x faster for 2x2, 4x4 or 7x7 maps). The maximum is exact in either order.
    """
    if pre.ndim == 2:
        return pre.amax(0)
    positions = math.prod(pre.shape[2:])
    if positions >= 64 and positions % 16 == 0:
        return pre.amax(dim=tuple(range(2, pre.ndim))).amax(0)
    per_pos = torch.amax(pre, 0, out=acc.buffer("unit_max", (1, *pre.shape[1:]), pre.dtype)[0])
    return per_pos.amax(dim=tuple(range(1, per_pos.ndim)))


def _position_sums(act: Tensor, acc: _SiteAcc) -> Tensor:
    """(N, C) sums over the positions of an (N, C, *S) activation, in its dtype.

    An inner ``sum`` over a short row of positions (2x2, 4x4 maps) is slow on CPU (~3x a matrix-vector product);
    for those the rows are multiplied by a vector of ones (``torch.mv``: x * 1 is exact and the terms are summed
    without cancellation, so a sum of non-negative outputs is > 0 exactly when one of them is).
    """
    n, c = act.shape[:2]
    positions = math.prod(act.shape[2:])
    if positions > 16 or not act.is_contiguous() or act.dtype not in (torch.float32, torch.float64):
        return act.sum(dim=tuple(range(2, act.ndim)))
    ones = acc.ones.get((positions, act.dtype))
    if ones is None:
        ones = acc.ones[(positions, act.dtype)] = torch.ones(positions, dtype=act.dtype, device=act.device)
    return torch.mv(act.view(n * c, positions), ones).view(n, c)


# the built-in rectifier module classes themselves (a subclass may override forward: it is not hooked)
_EXACT_MODULES = frozenset(RECTIFIER_MODULES)


class _MonitorLike:
    """Marker base of reluscope objects whose forward hooks only run a recorder (see ``_monitor.Monitor``)."""


def _module_rectifies(m: nn.Module) -> bool:
    """Whether a rectifier-module instance computes a rectifier with its configuration (Hardtanh: min 0;
    Threshold: threshold 0 and value 0); the other classes always do."""
    if isinstance(m, nn.Hardtanh):
        return bool(m.min_val == 0)
    if isinstance(m, nn.Threshold):
        return bool(m.threshold == 0 and m.value == 0)
    return True


# Custom rectifiers ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Custom:
    label: str
    fires: float


_CUSTOM_FUNCTIONS: dict[Any, _Custom] = {}
_CUSTOM_MODULES: dict[type[nn.Module], _Custom] = {}
_REGISTRY = [0]  # bumped on every (un)registration: recorders drop their cached roles

# what the recorder does with a call (compared by identity)
_PASS = "pass"
_TABLED = "rectifier"
_SPELLED = "spelling"
_CUSTOM = "custom"
_LINEAR_OUT = "linear"
_CONV_OUT = "conv"
_KEEP = "keep"
_ZERO_OUT = "zero"


class RectifierRegistration:
    """What :func:`register_rectifier` returns: ``function`` to call in the model, ``remove()`` to unregister.

    ``remove()`` is idempotent; ``with register_rectifier(...) as reg:`` unregisters on exit.
    """

    def __init__(self, target: Any, function: Any, custom: _Custom) -> None:
        self.target = target
        self.function = function
        self.label = custom.label
        self.fires = custom.fires
        self._removed = False

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        if isinstance(self.target, type):
            _CUSTOM_MODULES.pop(self.target, None)
        else:
            _CUSTOM_FUNCTIONS.pop(self.function, None)
        _REGISTRY[0] += 1

    def __enter__(self) -> RectifierRegistration:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else "registered"
        return f"RectifierRegistration({self.label!r}, fires > {self.fires:g}, {state})"


def _torch_visible(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped so that a TorchFunctionMode sees its calls (like a torch function) with its tensor args."""
    import functools

    from torch.overrides import handle_torch_function, has_torch_function

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tensors = tuple(a for a in (*args, *kwargs.values()) if isinstance(a, Tensor))
        if wrapped in _CUSTOM_FUNCTIONS and tensors and has_torch_function(tensors):  # unregistered: transparent
            return handle_torch_function(wrapped, tensors, *args, **kwargs)
        return fn(*args, **kwargs)

    return wrapped


def register_rectifier(
    target: Callable[..., Any] | type[nn.Module], *, fires: float = 0.0, name: str | None = None
) -> RectifierRegistration:
    """Make reluscope count a rectifier it cannot recognise: your own function or ``nn.Module`` class.

    Parameters
    ----------
    target
        - an ``nn.Module`` subclass: every instance in a scanned/monitored model is a site, named by its path; its
          first positional argument is the pre-activation, its output the activation (calls inside it are not
          sites of their own);
        - a torch function (``torch.sigmoid``, an op): its calls are sites;
        - a Python function ``f(x, ...)``: TorchFunctionModes cannot see plain Python functions, so use the
          returned ``registration.function`` (a wrapper with the same behaviour) in the model, e.g.
          ``act = register_rectifier(my_act).function``.
    fires
        A unit fires when its pre-activation is > ``fires`` (0 for max(x, 0)-like functions; 1.0 for
        ``max(x - 1, 0)``). The recorded pre-activation is ``x - fires``, so "dead" keeps meaning "never > 0".
    name
        The site label (``Site.function``); default: the function's ``__name__`` or the class name in lower case.

    Returns
    -------
    RectifierRegistration
        ``.function`` (what to call), ``.remove()`` (idempotent), a context manager.

    Raises
    ------
    TypeError
        ``target`` is neither callable nor an ``nn.Module`` subclass, ``fires`` is not a finite number.
    """
    if isinstance(fires, bool) or not isinstance(fires, int | float) or not math.isfinite(fires):
        raise TypeError(f"fires must be a finite number (a unit fires where pre-activation > fires), got {fires!r}")
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise TypeError(f"target must be an nn.Module subclass or a function, got the class {target.__name__}")
        custom = _Custom(name or target.__name__.lower(), float(fires))
        _CUSTOM_MODULES[target] = custom
        _REGISTRY[0] += 1
        return RectifierRegistration(target, target, custom)
    if not callable(target):
        raise TypeError(f"target must be a function or an nn.Module subclass, got {type(target).__name__}")
    label = name or getattr(target, "__name__", "custom").strip("_") or "custom"
    custom = _Custom(label, float(fires))
    is_torch = (
        target in _TABLE
        or target in _SPELLINGS
        or type(target).__name__ in ("builtin_function_or_method", "method_descriptor", "OpOverload")
        or getattr(target, "__module__", "").startswith("torch")
    )
    function = target if is_torch else _torch_visible(target)
    _CUSTOM_FUNCTIONS[function] = custom
    _REGISTRY[0] += 1
    return RectifierRegistration(target, function, custom)


class NoRectifierError(ValueError):
    """No rectifier site ran. The message lists what did run and how to register a custom rectifier."""

    def __init__(self, model: str, functions: list[str]) -> None:
        self.functions = functions
        shown = ", ".join(functions[:20]) + (f", ... ({len(functions) - 20} more)" if len(functions) > 20 else "")
        saw = (
            f"saw {len(functions)} torch functions, none of them a rectifier: {shown}"
            if functions
            else "saw no torch function at all (does its forward run in C++ or outside torch?)"
        )
        super().__init__(
            f"found no rectifier in {model}(x): reluscope {saw}. If one of them, or your own function or module, "
            "acts as a rectifier, register it: reluscope.torch.register_rectifier(fn_or_module_class, fires=0.0)"
        )


@dataclass(frozen=True)
class Site:
    """One call site of a rectifier-family nonlinearity found by :func:`find_sites`.

    Attributes
    ----------
    name : str
        The statistics name: ``"features.2"``, ``"block1.relu"``, ``"act#2"``.
    function : str
        ``"relu"``, ``"gelu"``, ``"leaky_relu"``, ... (see :data:`RECTIFIER_FUNCTIONS`), or a registered label.
    module : str
        Path of the module executing the call (``""`` for the model itself).
    call : int
        1 for the first call of this name in a forward pass, 2 for the second, ...
    kind : str
        ``"dense"`` (per unit, every non-unit index a sample) or ``"conv"`` (per channel, positions reduced).
    shape : tuple[int, ...]
        Per-sample shape as recorded: ``(U,)`` or ``(C, *S)``.
    unit_axis : int
        The dimension of the rectifier's input tensor (batch dimension 0 included) that holds the units.
    axis_source : str
        ``"linear"``, ``"conv"``, ``"rule"``, ``"unbatched"`` (a 1-D tensor: one sample) or ``"user"`` (see
        :data:`AXIS_SOURCES`).
    sample_shape : tuple[int, ...] | None
        Dimensions besides the batch that count as samples: ``(9,)`` for ``(N, 9, F)`` token activations,
        ``()`` when a sample is one batch row, None when it varied between calls.
    """

    name: str
    function: str
    module: str
    call: int
    kind: str
    shape: tuple[int, ...]
    unit_axis: int = 1
    axis_source: str = "rule"
    sample_shape: tuple[int, ...] | None = ()

    @property
    def units(self) -> int:
        """Units (features, or channels for conv sites)."""
        return self.shape[0]


_Pending = tuple[int, Tensor, "Tensor | None", "Tensor | None"]


class _SiteAcc:
    """Per-site counters, kept on the device of the activations; no host sync until :meth:`to_dict`.

    ``n_seen``/``run_max`` cover every recorded pass (cheap or full); the others only the fully counted passes.
    The layout (which axis holds the units, what a sample is) is fixed when the site is first seen.
    """

    def __init__(
        self,
        name: str,
        function: str,
        module: str,
        call: int,
        x: Tensor,
        *,
        axis: int,
        source: str,
        per_position: bool,
        fires: float = 0.0,
    ):
        self.name = name
        self.function = function
        self.module = module
        self.call = call
        self.axis = axis
        self.axis_source = source
        self.fires = fires
        self.ndim = x.ndim
        self.conv = x.ndim >= 3 and axis == 1  # per channel, positions reduced within a sample
        self.sample_shape: tuple[int, ...] | None = self._sample_shape(x)
        units = int(x.shape[axis])
        pre = self.layout(x)
        # (U,) or (C, *S) when positions are kept; (C,) conv without positions is dense
        self.shape: tuple[int, ...] = tuple(pre.shape[1:]) if (self.conv and per_position) else (units,)
        self.conv_positions = len(self.shape) > 1
        dev = x.device
        self.device = dev
        self.n_seen = 0
        self.n_full = 0
        self.run_max = torch.full((units,), -math.inf, dtype=torch.float64, device=dev)
        self.full_max = torch.full((units,), -math.inf, dtype=torch.float64, device=dev)
        self.fire_count = torch.zeros(units, dtype=torch.int64, device=dev)
        self.abs_hi = torch.zeros(units, dtype=torch.float64, device=dev)
        self.abs_lo = torch.zeros(units, dtype=torch.float64, device=dev)
        self.pos_count = torch.zeros(self.shape, dtype=torch.int64, device=dev) if self.conv_positions else None
        self._buffers: dict[str, Tensor] = {}  # reused work buffers, not statistics
        self.ones: dict[tuple[int, torch.dtype], Tensor] = {}  # vectors of ones for _position_sums

    def _sample_shape(self, x: Tensor) -> tuple[int, ...]:
        if x.ndim <= 2 or self.conv:
            return ()
        return tuple(int(s) for i, s in enumerate(x.shape) if i not in (0, self.axis))

    def layout(self, t: Tensor) -> Tensor:
        """(rows, U) or (N, C, *S) view of an activation tensor of this site."""
        if t.ndim == 1:
            return t.unsqueeze(0)
        if self.conv or (t.ndim == 2 and self.axis == 1):
            return t
        if self.axis != t.ndim - 1:
            t = t.movedim(self.axis, -1)
        return t.reshape(-1, t.shape[-1])

    def check(self, x: Tensor) -> None:
        """Raise if ``x`` does not fit this site's layout; note a varying number of positions per sample."""
        units = self.shape[0]
        if x.ndim != self.ndim or int(x.shape[self.axis]) != units:
            raise ValueError(
                f"site {self.name!r} ({self.function} in {self.module or 'the model'}): its activations changed "
                f"from rank {self.ndim} with {units} units on dim {self.axis} to shape {tuple(x.shape)}; another "
                "call took this site's name (data-dependent control flow skipped an earlier call): move it into its "
                "own module"
            )
        if self.conv_positions and tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"site {self.name!r} ({self.function} in {self.module or 'the model'}): per-sample shape changed "
                f"from {self.shape} to {tuple(x.shape[1:])}. Inputs of varying spatial size need per_position=False"
            )
        if self.sample_shape and self._sample_shape(x) != self.sample_shape:
            self.sample_shape = None  # e.g. sequences of varying length: still exact, only the description changes

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
        return Site(
            self.name,
            self.function,
            self.module,
            self.call,
            kind,
            self.shape,
            self.axis,
            self.axis_source,
            self.sample_shape,
        )

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
            "unit_axis": self.axis,
            "axis_source": self.axis_source,
            "sample_shape": None if self.sample_shape is None else list(self.sample_shape),
        }


def stats_from_accs(accs: list[_SiteAcc], *, window: bool = False) -> ActivationStats:
    """An :class:`ActivationStats` built from the accumulators (sites with no samples are left out)."""
    sites = [acc.to_dict(window=window) for acc in accs if (acc.n_seen if window else acc.n_full)]
    return ActivationStats.from_dict({"format": "reluscope.ActivationStats", "version": 1, "sites": sites})


def _func_name(func: Any) -> str:
    name = getattr(func, "__name__", None)
    if not isinstance(name, str):
        name = type(func).__name__
    return name


def _check_unit_axis(unit_axis: Any) -> dict[str, int]:
    if unit_axis is None:
        return {}
    if not isinstance(unit_axis, Mapping):
        raise TypeError(f"unit_axis must be a dict {{site name: axis}}, e.g. {{'mlp.1': -1}}, got {unit_axis!r}")
    out: dict[str, int] = {}
    for key, value in unit_axis.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"unit_axis maps site names to integer axes, e.g. {{'mlp.1': -1}}, got {key!r}: {value!r}")
        out[key] = int(value)
    return out


class _Recorder(TorchFunctionMode):
    """A TorchFunctionMode that turns every rectifier call into per-site counter updates.

    Use :meth:`begin_pass` before each forward pass (it resets the call-order counters and chooses cheap or full
    recording), then run the forward with the mode active.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        per_position: bool,
        channels_last: bool = False,
        unit_axis: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        # id -> (module, path); the module is kept to guard against id reuse
        self._paths: dict[int, tuple[nn.Module, str]] = {id(m): (m, p) for p, m in model.named_modules()}
        self.per_position = per_position
        self.channels_last = channels_last
        self.unit_axis = _check_unit_axis(unit_axis)
        self.accs: dict[str, _SiteAcc] = {}
        self.full = True
        self.seen: dict[str, None] = {}  # names of the torch functions executed, in order (an ordered set)
        self._calls: dict[str, int] = {}
        self._roles: dict[Any, str] = {}  # func -> what to do with its calls
        self._registry = _REGISTRY[0]
        self._on = False
        self._inside_custom = 0
        self._hooks = []
        for m in model.modules():
            custom = _CUSTOM_MODULES.get(type(m))
            if custom is not None:
                self._hooks.append(m.register_forward_pre_hook(self._custom_pre))
                self._hooks.append(m.register_forward_hook(self._custom_post, always_call=True))
        self._pending_custom: list[tuple[_SiteAcc | None, _Pending | None]] = []
        self._staged: list[tuple[_SiteAcc, Tensor, Tensor]] = []  # (site, batch maxima, sums) until flush()
        # hooked passes (see start): the sites of the last learning pass, recorded by hooks on their modules
        self._model: nn.Module | None = model
        self.allow_plan = True
        self._plan: dict[str, str] | None = None  # site name -> label, while passes may run without the mode
        self._plan_labels: dict[int, str] = {}  # id(rectifier module) -> its sites' label
        self._plan_hooks: list[Any] = []
        self._fixed: bool | None = None  # fixed_structure(model), computed once
        self._hooking = False
        self._hook_stack: list[tuple[_SiteAcc, str, _Pending] | None] = []
        self._pass_names: set[str] = set()  # sites recorded in the current pass
        self.hooked_passes = 0  # passes recorded by hooks alone (for tests and benchmarks)

    def __enter__(self) -> _Recorder:
        self._on = True
        super().__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, *exc: Any) -> None:
        self._on = False
        super().__exit__(*exc)  # type: ignore[no-untyped-call]

    def begin_pass(self, *, full: bool) -> None:
        self.flush()
        self._calls.clear()
        self._pass_names.clear()
        self.full = full

    def forget_model(self) -> None:
        """Drop the references to the model's modules (after the recorder is detached)."""
        self._paths = {}
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._drop_plan()
        self._model = None

    # passes: the mode, or hooks alone once the sites are known and cannot change
    def start(self, *, full: bool) -> None:
        """Begin one recorded forward pass.

        The first pass (and any pass while no plan holds) runs under the TorchFunctionMode, which sees every torch
        call. When that pass shows that every site is a rectifier module and :func:`fixed_structure` proves that
        no later pass can run another site, later passes are recorded by forward hooks on those modules alone: the
        same reductions on the same tensors (the module's input before it runs, its output after), without a
        Python call for every other torch function of the forward.
        """
        self.begin_pass(full=full)
        if self._plan is not None and self._registry != _REGISTRY[0]:
            self._drop_plan()  # register_rectifier changed what counts
        if self._plan is not None:
            self._hooking = True
            self._hook_stack.clear()
        else:
            self.__enter__()

    def stop(self, *, learn: bool, interrupted: bool = False) -> None:
        """End the pass begun by :meth:`start` (also after an exception; ``learn=False`` then).

        ``interrupted``: the forward never returned (a BaseException skipped the hooks): the mode is popped only
        if it is still the innermost one.
        """
        if self._hooking:
            self._hooking = False
            self.hooked_passes += 1
            if self._plan is not None and self._pass_names != set(self._plan):
                self._drop_plan()  # cannot happen for a fixed structure; the next pass learns again
        elif self._on:
            if interrupted:
                from torch.overrides import _get_current_function_mode_stack

                stack = _get_current_function_mode_stack()  # type: ignore[no-untyped-call]
                if stack and stack[-1] is self:
                    self.__exit__(None, None, None)
                self._on = False
            else:
                self.__exit__(None, None, None)
            if learn and self.allow_plan and self._plan is None:
                self._make_plan()
        self.flush()

    def _make_plan(self) -> None:
        """Allow hooked passes when the pass just ended shows the sites, all of them rectifier modules."""
        model = self._model
        if model is None or _CUSTOM_FUNCTIONS or _CUSTOM_MODULES or set(self.accs) != self._pass_names:
            return
        by_path = {p: m for p, m in model.named_modules()}
        labels: dict[int, str] = {}
        plan: dict[str, str] = {}
        for name in self._pass_names:
            acc = self.accs[name]
            module = by_path.get(acc.module)
            if (
                module is None
                or not acc.module
                or type(module) not in _EXACT_MODULES
                or (name != acc.module and not name.startswith(acc.module + "#"))
                or labels.get(id(module), acc.function) != acc.function
            ):
                return  # a functional site, a subclass with its own forward, the model itself as a site
            labels[id(module)] = acc.function
            plan[name] = acc.function
        for m in model.modules():
            if isinstance(m, RECTIFIER_MODULES) and _module_rectifies(m) and id(m) not in labels:
                return  # a rectifier module that did not run: a later pass may run it
        from reluscope.torch._plan import fixed_structure, has_foreign_hooks

        if has_foreign_hooks(model, lambda h: isinstance(getattr(h, "__self__", None), _Recorder | _MonitorLike)):
            return
        if self._fixed is None:
            self._fixed = fixed_structure(model)
        if not self._fixed:
            return
        for m in model.modules():
            if id(m) in labels:
                self._plan_hooks.append(m.register_forward_pre_hook(self._hook_pre, with_kwargs=True))
                self._plan_hooks.append(m.register_forward_hook(self._hook_post, always_call=True))
        self._plan = plan
        self._plan_labels = labels

    def _drop_plan(self) -> None:
        for h in self._plan_hooks:
            h.remove()
        self._plan_hooks = []
        self._plan = None
        self._plan_labels = {}

    def _hook_pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self._hooking:
            return
        x = args[0] if args else kwargs.get("input")
        if not _recordable(x):
            self._hook_stack.append(None)
            return
        label = self._plan_labels[id(module)]
        name, path, call = self._name(module, label)
        xt = cast(Tensor, x)
        # checks the shape like the mode path; a new name cannot happen for a fixed structure (it would be counted
        # with the rule's axis, and the plan dropped at the end of the pass)
        acc = self.site_acc(name, label, path, call, xt)
        self._pass_names.add(name)
        if not self.full:
            self.cheap(acc, xt)
            self._hook_stack.append(None)
        else:
            self._hook_stack.append((acc, label, self.reduce_pre(acc, xt, label)))

    def _hook_post(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._hooking or not self._hook_stack:
            return
        entry = self._hook_stack.pop()
        if entry is not None:
            acc, label, pending = entry
            self.commit(acc, label, pending, output)

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
        if owner is not None and path and isinstance(owner, RECTIFIER_MODULES + tuple(_CUSTOM_MODULES)):
            base = path
        else:
            base = f"{path}.{label}" if path else label
        k = self._calls.get(base, 0) + 1
        self._calls[base] = k
        return (base if k == 1 else f"{base}#{k}"), path, k

    # custom rectifier modules (forward hooks; only while the mode is active)
    def _custom_pre(self, module: nn.Module, args: Any) -> None:
        x = args[0] if isinstance(args, tuple) and args else None
        if not self._on or self._inside_custom or not _recordable(x):
            self._pending_custom.append((None, None))
            self._inside_custom += 1
            return
        self._inside_custom += 1  # the module's own torch calls (and ours below) are not sites
        custom = _CUSTOM_MODULES[type(module)]
        entry = self._paths.get(id(module))
        path = "" if entry is None else entry[1]
        base = path or custom.label
        k = self._calls.get(base, 0) + 1
        self._calls[base] = k
        name = base if k == 1 else f"{base}#{k}"
        self._pass_names.add(name)
        xt = cast(Tensor, x)
        pre: Tensor = xt - custom.fires if custom.fires else xt
        acc = self.site_acc(name, custom.label, path, k, pre, fires=custom.fires)
        if not self.full:
            self.cheap(acc, pre)
            self._pending_custom.append((None, None))
            return
        self._pending_custom.append((acc, self.reduce_pre(acc, pre, custom.label, builtin=False)))

    def _custom_post(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._pending_custom:
            return
        acc, pending = self._pending_custom.pop()
        if acc is not None and pending is not None and isinstance(output, Tensor):
            self.commit(acc, acc.function, pending, output)
        self._inside_custom -= 1

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
        role = self._roles.get(func)
        if role is None or self._registry != _REGISTRY[0]:
            role = self._role(func)
        if role is _PASS or self._inside_custom:
            return func(*args, **kwargs)
        if role is _LINEAR_OUT or role is _CONV_OUT or role is _KEEP or role is _ZERO_OUT:
            out = func(*args, **kwargs)
            if isinstance(out, Tensor):
                self._tag(role, args, out)
            return out
        label: str | None = None
        fires = 0.0
        x: Any = None
        key: str | None = None
        if role is _TABLED:
            label = key = _TABLE[func]
            if label == "hardtanh":
                label = key = _hardtanh_label(args, kwargs)
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
        elif role is _SPELLED:
            kind = _SPELLINGS[func]
            found = _spelled(kind, args, kwargs)
            if found is not None:
                label, x = found
                key = kind if label == "relu" else label
        else:  # _CUSTOM
            custom = _CUSTOM_FUNCTIONS[func]
            label = key = custom.label
            fires = custom.fires
            x = args[0] if args else next(iter(kwargs.values()), None)
        if label is None or key is None or not _recordable(x):
            return func(*args, **kwargs)
        xt = cast(Tensor, x)
        name, path, call = self._name(self._owner(), key)
        self._pass_names.add(name)
        pre: Tensor = xt - fires if fires else xt
        acc = self.site_acc(name, label, path, call, pre, fires=fires)
        if not self.full:
            self.cheap(acc, pre)
            out = func(*args, **kwargs)
        else:
            pending = self.reduce_pre(acc, pre, label)  # before func runs: an in-place call overwrites x
            out = func(*args, **kwargs)
            self.commit(acc, label, pending, out)
        tag = getattr(xt, _AXIS_TAG, None)
        if tag is not None and isinstance(out, Tensor) and out is not xt and out.shape == xt.shape:
            setattr(out, _AXIS_TAG, tag)
        return out

    def _role(self, func: Any) -> str:
        """What to do with calls of ``func`` (cached per recorder; recomputed after register_rectifier changes)."""
        if self._registry != _REGISTRY[0]:
            self._roles.clear()
            self._registry = _REGISTRY[0]
        fname = _func_name(func)
        if fname not in _NOT_SHOWN:
            self.seen[fname] = None  # the first call of each function: what ran, for "found no rectifier among"
        if func in _CUSTOM_FUNCTIONS:
            role = _CUSTOM
        elif func in _TABLE:
            role = _TABLED
        elif func in _SPELLINGS:
            role = _SPELLED
        elif fname in _LINEAR_PRODUCERS:
            role = _LINEAR_OUT
        elif fname in _CONV_PRODUCERS:
            role = _CONV_OUT
        elif fname in _KEEP_AXIS:
            role = _KEEP
        elif fname in _ZERO_FACTORIES:
            role = _ZERO_OUT
        else:
            role = _PASS
        self._roles[func] = role
        return role

    @staticmethod
    def _tag(role: str, args: tuple[Any, ...], out: Tensor) -> None:
        """Mark outputs of Linear/Conv (their unit axis), pass the mark through shape-preserving calls."""
        if role is _LINEAR_OUT:
            setattr(out, _AXIS_TAG, "linear")
        elif role is _CONV_OUT:
            setattr(out, _AXIS_TAG, "conv")
        elif role is _KEEP:
            for a in args:
                if isinstance(a, Tensor) and a.shape == out.shape:
                    tag = getattr(a, _AXIS_TAG, None)
                    if tag is not None:
                        if a is not out:
                            setattr(out, _AXIS_TAG, tag)
                        return
        else:  # a zeros factory
            with contextlib.suppress(RuntimeError):  # inference tensors have no version counter
                setattr(out, _ZERO_TAG, (out._version, True))

    # the reductions (also used by the TorchScript path)
    def _axis(self, name: str, x: Tensor) -> tuple[int, str]:
        """(unit axis, its source) of a new site whose values are ``x`` (rank >= 2: a 1-D x is viewed as (1, U))."""
        nd = x.ndim
        if name in self.unit_axis:
            a = self.unit_axis[name]
            if not -nd <= a < nd or a % nd == 0:
                raise ValueError(
                    f"unit_axis[{name!r}] = {a} does not fit this site's activations of shape {tuple(x.shape)}: "
                    f"dim 0 is the batch; pass an axis in 1..{nd - 1} (or -1 for the last)"
                )
            return a % nd, "user"
        tag = getattr(x, _AXIS_TAG, None)
        if tag == "linear":
            return nd - 1, "linear"
        if tag == "conv" and nd >= 3:
            return 1, "conv"
        if nd >= 3 and self.channels_last:
            return nd - 1, "rule"
        return 1, "rule"

    def site_acc(self, name: str, label: str, path: str, call: int, x: Tensor, *, fires: float = 0.0) -> _SiteAcc:
        """The accumulator of site ``name``, created on first use (choosing its unit axis); checks the shape."""
        acc = self.accs.get(name)
        unbatched = x.ndim == 1
        if unbatched:  # one unbatched sample (U,), as nn.Linear reads a 1-D input: viewed as (1, U)
            tag = getattr(x, _AXIS_TAG, None)
            x = x.unsqueeze(0)
            if tag is not None:
                setattr(x, _AXIS_TAG, tag)
        if acc is None:
            axis, source = self._axis(name, x)
            if unbatched and source != "user":
                source = "unbatched"  # the site record says it: its U values are the units of one sample
            acc = self.accs[name] = _SiteAcc(
                name, label, path, call, x, axis=axis, source=source, per_position=self.per_position, fires=fires
            )
        else:
            acc.check(x)
        return acc

    def cheap(self, acc: _SiteAcc, x: Tensor) -> None:
        """Running per-unit maximum: one reduction over the activation (two for conv) and one tiny maximum; no
        host sync, no value-dependent Python branch."""
        pre = acc.layout(x.detach())
        torch.maximum(acc.run_max, _unit_max(pre, acc), out=acc.run_max)
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

    def reduce_pre(self, acc: _SiteAcc, x: Tensor, label: str, *, builtin: bool = True) -> _Pending:
        """The reductions that need the pre-activation (run before an in-place call overwrites it).

        Returns (rows, per-unit batch maxima, the (N, C) channel maxima of a conv site or None, and the fire
        mask when it cannot be read from the output). The mask is ``clamp(pre, min=0)`` converted to bool: on
        CPU ~3x faster than ``pre > 0`` (comparisons into bool are not vectorised) and equal to it except for NaN,
        which is reported when the statistics are read. For ReLU/ReLU6 the output already is that mask.

        A conv site of a built-in ReLU/ReLU6/hardtanh(0, c) needs no (N, C) maxima: its output is >= 0 and > 0
        exactly where the pre-activation is, so a channel fired on a sample exactly when the sum of its outputs
        (computed anyway for the |activation| sums) is > 0; only the per-channel maximum is read here.
        """
        pre = acc.layout(x.detach())
        n = pre.shape[0]
        need_mask = label not in _MASK_FROM_OUTPUT and (pre.ndim == 2 or self.per_position)
        mask = None
        if need_mask:
            positive = torch.clamp(pre, min=0, out=acc.buffer("positive", pre.shape, pre.dtype))
            mask = acc.buffer("mask", pre.shape, torch.bool).copy_(positive)
        if pre.ndim == 2 or (builtin and label in _NONNEGATIVE):
            return n, _unit_max(pre, acc), None, mask
        nc_max = pre.amax(dim=tuple(range(2, pre.ndim)))  # (N, C): a channel fires if any position is > 0
        return n, nc_max.amax(0), nc_max, mask

    def commit(self, acc: _SiteAcc, label: str, pending: _Pending, out: Any) -> None:
        """Add one fully counted batch: the pre-activation reductions, fire counts, |activation| sums of ``out``.

        Sums run in the activation's dtype within a sample (float32 for half types) and in float64 across samples
        and batches, like ActivationStats (float32 input: ~1e-6 relative; float64: ~1e-15).
        """
        n, bmax, nc_max, mask = pending
        act = acc.layout(out.detach()) if isinstance(out, Tensor) and out.is_floating_point() else None
        if mask is None and act is not None and (act.ndim == 2 or self.per_position):
            mask = acc.buffer("mask", act.shape, torch.bool).copy_(act)  # ReLU/ReLU6: out != 0 exactly where pre > 0
        sums = None
        nc_sum = None
        if act is not None:
            if label not in _NONNEGATIVE:
                act = act.abs()
            if act.dtype in (torch.float16, torch.bfloat16):
                act = act.float()
            if act.ndim > 2:
                act = nc_sum = _position_sums(act, acc)  # (N, C)
            sums = act.sum(0).to(torch.float64) if act.dtype != torch.float64 else act.sum(0)
        if nc_max is not None:
            self._count_into(acc.fire_count, nc_max > 0, acc)
        elif nc_sum is not None:  # ReLU-like conv site: output sums > 0 exactly where some position fired
            self._count_into(acc.fire_count, nc_sum > 0, acc)
        elif mask is not None and mask.ndim == 2:
            self._count_into(acc.fire_count, mask, acc)
        if acc.conv_positions and self.per_position and mask is not None and acc.pos_count is not None:
            self._count_into(acc.pos_count, mask, acc)
        if sums is None or sums.shape != acc.abs_hi.shape:  # pragma: no cover - rectifiers keep their input's shape
            sums = torch.zeros_like(acc.abs_hi)
        acc.n_seen += n
        acc.n_full += n
        # the per-unit vectors of every site are folded in together at the end of the pass (flush): a dozen
        # foreach calls per pass instead of fifteen tiny kernels per site
        self._staged.append((acc, bmax, sums))  # bmax in the activation's dtype: maximum promotes it exactly

    def flush(self) -> None:
        """Fold the staged batch maxima and |activation| sums of every fully counted site into its counters.

        The same elementwise float64 arithmetic as one ``maximum`` and one TwoSum + FastTwoSum per site
        (:func:`_two_sum_`, :func:`_renormalise_`), as ``torch._foreach_*`` calls over all sites at once (fused
        kernels on CUDA, one C++ loop on CPU). Called at the end of every pass and before the statistics are read.
        """
        staged, self._staged = self._staged, []
        while staged:  # a site staged twice (a pass that never ended) is folded in twice, in order
            seen: set[int] = set()
            now: list[tuple[_SiteAcc, Tensor, Tensor]] = []
            later: list[tuple[_SiteAcc, Tensor, Tensor]] = []
            for item in staged:
                (later if id(item[0]) in seen else now).append(item)
                seen.add(id(item[0]))
            self._fold(now)
            staged = later

    @staticmethod
    def _fold(staged: list[tuple[_SiteAcc, Tensor, Tensor]]) -> None:
        bmax = [b for _, b, _ in staged]
        torch._foreach_maximum_([a.run_max for a, _, _ in staged], bmax)
        torch._foreach_maximum_([a.full_max for a, _, _ in staged], bmax)
        hi = [a.abs_hi for a, _, _ in staged]
        lo = [a.abs_lo for a, _, _ in staged]
        x = [s for _, _, s in staged]
        # TwoSum: s = hi + x; bb = s - hi; err = (hi - (s - bb)) + (x - bb); hi = s; lo += err
        total = torch._foreach_add(hi, x)
        bb = torch._foreach_sub(total, hi)
        err = torch._foreach_sub(hi, torch._foreach_sub(total, bb))
        torch._foreach_add_(err, torch._foreach_sub(x, bb))
        torch._foreach_copy_(hi, total)
        torch._foreach_add_(lo, err)
        # FastTwoSum: s = hi + lo; lo = lo - (s - hi); hi = s
        total = torch._foreach_add(hi, lo)
        rest = torch._foreach_sub(lo, torch._foreach_sub(total, hi))
        torch._foreach_copy_(hi, total)
        torch._foreach_copy_(lo, rest)

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


def _recordable(x: Any) -> bool:
    return (
        isinstance(x, Tensor)
        and not isinstance(x, nn.Parameter)
        and x.is_floating_point()
        and x.ndim > 0
        and x.numel() > 0
    )


def is_compiled(model: Any) -> bool:
    """True for what ``torch.compile(module)`` returns (an ``OptimizedModule`` wrapping ``_orig_mod``)."""
    return type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module)


def check_model(model: Any, *, unwrap: bool = True) -> nn.Module:
    """The ``nn.Module`` to instrument: ``model`` itself, or the eager module inside a ``torch.compile`` wrapper
    (its ``_orig_mod``: same parameters, same site names as the eager model)."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; for a reluscope.nn.MLP use "
            "reluscope.diagnose.scan, or convert it with reluscope.torch.from_mlp"
        )
    if unwrap and is_compiled(model):
        return cast(nn.Module, model._orig_mod)
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


def find_sites(
    model: nn.Module,
    *inputs: Any,
    channels_last: bool = False,
    unit_axis: Mapping[str, int] | None = None,
    **kw_inputs: Any,
) -> list[Site]:
    """Run ``model(*inputs, **kw_inputs)`` once and list the rectifier sites it executes.

    The pass runs in eval mode under ``torch.no_grad()`` (no BatchNorm buffer update, no dropout draw), and every
    submodule's train/eval flag is restored afterwards: the model is left exactly as it was.

    Parameters
    ----------
    model
        Any ``nn.Module`` (eager; no tracing, so data-dependent control flow is fine); a ``torch.compile``d module
        runs its original eager module.
    inputs, kw_inputs
        One example batch, e.g. ``find_sites(model, torch.randn(2, 3, 32, 32))``.
    channels_last
        The fallback rule (sites with no Linear/Conv producer) reads rank >= 3 activations along the last dim.
    unit_axis
        ``{site name: axis}`` overrides (see the module docs).

    Returns
    -------
    list of Site
        In order of first execution; only the calls that ran for this input (a branch not taken is absent).
    """
    model = check_model(model)
    rec = _Recorder(model, per_position=True, channels_last=channels_last, unit_axis=unit_axis)
    rec.begin_pass(full=False)
    try:
        with eval_mode(model), rec:
            model(*inputs, **kw_inputs)
    finally:
        rec.forget_model()
    return rec.sites()


def seen_functions(rec: _Recorder) -> list[str]:
    """Names of the torch functions the recorder saw executed (for "found no rectifier among ...")."""
    return list(rec.seen)

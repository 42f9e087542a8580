"""Build the step-by-step explanation of one forward/backward pass through ``D -> H -> C``.

Everything here is computed with the reference forward/backward pairs of :mod:`reluscope.nn.functional` (through
the network's :class:`~reluscope.nn.Activation`), one call per line of the explanation, and returned as plain data:
dataclasses holding numpy arrays and text. Nothing here prints or imports rich; the renderers in
:mod:`reluscope.explain._render` turn an :class:`Explanation` into terminal output, markdown or JSON.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._npz import read_npz
from reluscope._validate import as_rng, check_finite_array, check_labels, check_memory, check_positive
from reluscope.explain._format import fmt
from reluscope.nn import MLP, REGISTRY, SGD, Activation, get_activation
from reluscope.nn import functional as F
from reluscope.nn.functional import Array
from reluscope.nn.gradcheck import check_gradients

__all__ = [
    "DEFAULTS",
    "PARAM_KEYS",
    "SUPPORTED_ACTIVATIONS",
    "ColumnForm",
    "Explanation",
    "Gate",
    "GateEntry",
    "SGDStep",
    "Step",
    "check_params",
    "explain",
    "explain_net",
    "load_weights",
]

BoolArray = NDArray[np.bool_]

#: Activations ``explain`` can narrate (PReLU's learned slope would add a parameter; it is not covered).
SUPPORTED_ACTIVATIONS = tuple(name for name, spec in REGISTRY.items() if not spec.learnable)
"""Every registered activation without a learned parameter (the walkthrough shows W1, b1, W2, b2 only)."""
#: The seed architecture's small defaults: 3 inputs, 4 hidden units, 3 classes, 2 samples.
DEFAULTS: dict[str, int] = {"inputs": 3, "hidden": 4, "classes": 3, "samples": 2}
#: Keys a ``--weights`` file must hold.
PARAM_KEYS = ("W1", "b1", "W2", "b2")
_MODEL_CONFIG_KEY = "__reluscope_config__"  # present in model.npz files written by `reluscope train --out`
_GRADCHECK_MAX_ENTRIES = 200  # entries checked per parameter (all of them for the small defaults)
_MAX_SAMPLE_NOTES = 6  # per-sample gate notes written out before summarising
_GRADCHECK_ABS_TOL = 1e-10  # finite differences of a loss of order 1 with h = 1e-5 are good to ~1e-11


# Data structures ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One line of the forward or backward pass: its formula, shape and values.

    ``value`` has shape ``shape`` (0-d for the loss); ``axes`` names each dimension (``"sample"``, ``"input"``,
    ``"unit"``, ``"class"``) so renderers can label rows and columns.
    """

    key: str
    phase: str
    title: str
    formula: str
    value: Array
    axes: tuple[str, ...]
    note: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.value.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "phase": self.phase,
            "title": self.title,
            "formula": self.formula,
            "shape": list(self.shape),
            "axes": list(self.axes),
            "value": self.value.tolist(),
            "note": self.note,
        }


@dataclass(frozen=True)
class GateEntry:
    """A hidden unit that did not fire on one sample (pre-activation ``z <= 0``) and what reached it.

    ``dW1`` (D,) is this sample's contribution to the unit's incoming weights ``W1[:, unit]`` (``x[n] * dz``),
    ``db1`` its contribution to ``b1[unit]`` and ``dW2`` (C,) its contribution to the outgoing weights
    ``W2[unit, :]`` (``h[n, unit] * dscores[n]``). For ReLU all three are exactly zero.
    """

    sample: int
    unit: int
    z: float
    at_zero: bool
    local_grad: float
    upstream: float
    dz: float
    dW1: Array
    db1: float
    dW2: Array

    @property
    def exactly_zero(self) -> bool:
        """True when this sample sent exactly no gradient into the unit's incoming weights and bias."""
        return self.dz == 0.0 and not np.any(self.dW1) and self.db1 == 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "unit": self.unit,
            "z": self.z,
            "at_zero": self.at_zero,
            "local_grad": self.local_grad,
            "upstream": self.upstream,
            "dz": self.dz,
            "dW1": self.dW1.tolist(),
            "db1": self.db1,
            "dW2": self.dW2.tolist(),
            "exactly_zero": self.exactly_zero,
        }


@dataclass(frozen=True)
class Gate:
    """The activation's gate over the batch: which units fired on which sample, and what that did to gradients.

    ``fired``, ``at_zero`` and ``local_grad`` (= f'(z1)) are (N, H). ``off`` lists every (sample, unit) with
    ``z1 <= 0``; ``dead_units`` fired on no sample of the batch (their whole-batch gradients are in
    ``dead_dW1`` (D, len(dead_units)) and ``dead_db1``); ``silent_samples`` are samples on which no unit fired.
    ``alternatives`` shows the one backprop line that changes with the activation.
    """

    activation: str
    formula: str
    derivative: str
    convention: str
    fired: BoolArray
    at_zero: BoolArray
    local_grad: Array
    off: list[GateEntry]
    dead_units: list[int]
    dead_dW1: Array
    dead_db1: Array
    silent_samples: list[int]
    notes: list[str]
    alternatives: list[dict[str, Any]]

    @property
    def closes(self) -> bool:
        """True when the activation passes exactly zero gradient where ``z <= 0`` (ReLU, or leaky with slope 0)."""
        return bool(np.all(self.local_grad[~self.fired] == 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "formula": self.formula,
            "derivative": self.derivative,
            "convention": self.convention,
            "closes": self.closes,
            "fired": self.fired.tolist(),
            "at_zero": self.at_zero.tolist(),
            "local_grad": self.local_grad.tolist(),
            "off": [e.to_dict() for e in self.off],
            "dead_units": list(self.dead_units),
            "dead_dW1": self.dead_dW1.tolist(),
            "dead_db1": self.dead_db1.tolist(),
            "silent_samples": list(self.silent_samples),
            "notes": list(self.notes),
            "alternatives": [dict(a) for a in self.alternatives],
        }


@dataclass(frozen=True)
class ColumnForm:
    """One sample in the seed blog's column-vector notation, next to the batch form.

    ``W = W1.T`` (H, D), ``x`` (D,), ``b = b1`` (H,); ``a = W·x + b`` (H,), ``z = f(a)`` (H,);
    ``local = outer(f'(a), x)`` (H, D) — for ReLU ``outer(z > 0, x)``; ``upstream = dh[sample]`` (H,);
    ``dz = upstream ⊙ f'(a)`` (H,); ``dW = outer(dz, x)`` (H, D). ``batch_T`` is the batch form's contribution of
    this sample to dW1, transposed: ``outer(X[sample], dz1[sample]).T``. ``max_abs_diff`` compares the two, and
    ``sum_max_abs_diff`` compares ``sum over samples of outer(dz_n, x_n)`` with ``(dW1 - reg*W1).T``.
    ``dW2`` (H, C) is this sample's share of the data gradient of W2, ``outer(h[sample], dscores[sample])`` (zero
    in the rows of units that did not fire on it, for ReLU): the scalar circuit labels its output wires with it.
    """

    sample: int
    x: Array
    W: Array
    b: Array
    a: Array
    z: Array
    mask: Array
    local: Array
    upstream: Array
    dz: Array
    dW: Array
    batch_T: Array
    max_abs_diff: float
    sum_max_abs_diff: float
    dW2: Array

    @property
    def matches(self) -> bool:
        """True when the column form equals the batch form's per-sample contribution transposed (to rounding)."""
        scale = 1.0 + float(np.max(np.abs(self.batch_T), initial=0.0))
        return self.max_abs_diff <= 1e-12 * scale and self.sum_max_abs_diff <= 1e-12 * scale

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sample": self.sample}
        for key in ("x", "W", "b", "a", "z", "mask", "local", "upstream", "dz", "dW", "batch_T", "dW2"):
            out[key] = getattr(self, key).tolist()
        out["max_abs_diff"] = self.max_abs_diff
        out["sum_max_abs_diff"] = self.sum_max_abs_diff
        out["matches"] = self.matches
        return out


@dataclass(frozen=True)
class SGDStep:
    """One plain SGD step ``p <- p - lr * grad`` on every parameter and its effect on the loss.

    ``frozen_units`` (the record's name) are hidden units whose incoming weights and bias did not move at all: no
    gradient from any of the N samples shown. With ReLU and no L2 every dead unit is among them (it is stuck: f' = 0
    on every sample); a unit that fires can get there too, when the gradient reaching it is exactly 0 (e.g. equal
    outgoing weights to every class: softmax ignores a shift of all scores).
    ``fired_after`` (N, H) is the gate after the step.
    """

    lr: float
    loss_before: float
    loss_after: float
    params_after: dict[str, Array]
    frozen_units: list[int]
    fired_after: BoolArray

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "loss_change": self.loss_after - self.loss_before,
            "params_after": {k: v.tolist() for k, v in self.params_after.items()},
            "frozen_units": list(self.frozen_units),
            "fired_after": self.fired_after.tolist(),
        }


@dataclass(frozen=True)
class Explanation:
    """Everything ``reluscope explain`` shows, as data. Build it with :func:`explain` or :func:`explain_net`.

    ``X`` (N, D), ``y`` (N,), ``params`` ``{"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}``; ``steps`` are
    the forward steps (z1, h, scores, p, loss) then the backward steps (dscores, dW2, db2, dh, dz1, dW1, db1).
    ``engine_max_abs_diff`` compares the step-by-step gradients with ``MLP.loss``'s.
    """

    sizes: tuple[int, int, int]
    activation: dict[str, Any]
    reg: float
    X: Array
    y: NDArray[np.intp]
    params: dict[str, Array]
    steps: list[Step]
    gate: Gate
    column: ColumnForm
    gradcheck: dict[str, Any]
    engine_max_abs_diff: float
    sgd: SGDStep
    warnings: list[str]
    source: dict[str, str] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    def step(self, key: str) -> Step:
        """The step named ``key`` (``"z1"``, ``"dW1"``, ...); KeyError names the known keys."""
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(f"no step {key!r}; steps are {[s.key for s in self.steps]}")

    @property
    def forward(self) -> list[Step]:
        return [s for s in self.steps if s.phase == "forward"]

    @property
    def backward(self) -> list[Step]:
        return [s for s in self.steps if s.phase == "backward"]

    def grads(self) -> dict[str, Array]:
        """The parameter gradients shown, keyed like ``params``."""
        return {key: self.step(f"d{key}").value for key in PARAM_KEYS}

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the HTML page's content (circuit, steps, gate, check) as a fragment."""
        from reluscope.explain._html import html_fragment

        return html_fragment(self)

    def _repr_markdown_(self) -> str:
        """Jupyter's markdown display (and any markdown-aware front end): :func:`render_markdown`'s text."""
        from reluscope.explain._render import render_markdown

        return render_markdown(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every array as nested lists, every number a Python float/int/bool."""
        D, H, C = self.sizes
        return {
            "version": 1,
            "sizes": {"inputs": D, "hidden": H, "classes": C, "samples": self.n_samples},
            "activation": dict(self.activation),
            "reg": self.reg,
            "source": dict(self.source),
            "X": self.X.tolist(),
            "y": [int(v) for v in self.y],
            "params": {k: v.tolist() for k, v in self.params.items()},
            "steps": [s.to_dict() for s in self.steps],
            "gate": self.gate.to_dict(),
            "column": self.column.to_dict(),
            "gradcheck": self.gradcheck,
            "engine_max_abs_diff": self.engine_max_abs_diff,
            "sgd": self.sgd.to_dict(),
            "warnings": list(self.warnings),
        }


# Validation and loading ---------------------------------------------------------------------------------------
def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(
            f"{name} (--{name}) must be a positive integer, got {value}; e.g. --{name} {DEFAULTS.get(name, 3)}"
        )
    return int(value)


def _check_activation(name: str | Activation, slope: float) -> Activation:
    act = get_activation(name, slope=slope)
    if act.name not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"explain covers the activations {', '.join(SUPPORTED_ACTIVATIONS)}, got {act.name!r} "
            "(PReLU's learned slope adds a parameter the walkthrough does not show); use --activation leaky"
        )
    return act


def check_params(params: Mapping[str, Any], *, source: str = "weights") -> dict[str, Array]:
    """Validate a one-hidden-layer parameter dict: keys W1 b1 W2 b2, consistent shapes, finite numbers.

    Returns float64 copies ``{"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}``.
    """
    keys = set(params) - {_MODEL_CONFIG_KEY}
    missing = [k for k in PARAM_KEYS if k not in keys]
    extra = sorted(keys - set(PARAM_KEYS))
    if missing or extra:
        deeper = any(k[:1] in "Wb" and k[1:].isdigit() and int(k[1:]) > 2 for k in extra)
        hint = (
            "explain walks one hidden layer (D -> H -> C); a deeper network's weights do not fit"
            if deeper
            else "save them with np.savez(path, W1=W1, b1=b1, W2=W2, b2=b2)"
        )
        raise ValueError(
            f"{source} must hold exactly the arrays W1, b1, W2, b2; missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}; {hint}"
        )
    out: dict[str, Array] = {}
    for key in PARAM_KEYS:
        value = params[key]
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        ndim = 2 if key.startswith("W") else 1
        out[key] = check_finite_array(arr, f"{source}: {key}", ndim=ndim, dtype="float64").copy()
    D, H = out["W1"].shape
    H2, C = out["W2"].shape
    expect = {"b1": (H,), "W2": (H, C), "b2": (C,)}
    if H2 != H:
        raise ValueError(
            f"{source}: W2 must have shape (H, C) with H = {H} rows (W1 is {D}x{H}), got {out['W2'].shape}; "
            "W1 is (inputs, hidden) and W2 is (hidden, classes)"
        )
    for key in ("b1", "b2"):
        if out[key].shape != expect[key]:
            raise ValueError(
                f"{source}: {key} must have shape {expect[key]} to match W1 {out['W1'].shape} and "
                f"W2 {out['W2'].shape}, got {out[key].shape}; one bias per unit of its layer"
            )
    return out


def load_weights(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Load ``W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)`` from an ``.npz`` file, never unpickling.

    A ``model.npz`` written by ``reluscope train --out`` with one hidden layer works too (its config is ignored).
    """
    fix = f"np.savez({Path(path).name!r}, W1=W1, b1=b1, W2=W2, b2=b2)"
    arrays = read_npz(path, what="weights file", fix=fix)
    # a reluscope model.npz also holds its config and standardizer under "__...__" keys: not parameters
    arrays = {k: v for k, v in arrays.items() if not k.startswith("__")}
    return check_params(arrays, source=str(path))


# The walkthrough ----------------------------------------------------------------------------------------------
def explain(
    X: Any = None,
    y: Any = None,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: int | None = None,
    hidden: int | None = None,
    classes: int | None = None,
    samples: int | None = None,
    activation: str | Activation = "relu",
    slope: float = 0.01,
    lr: float = 0.5,
    reg: float = 0.0,
    seed: int = 0,
    sample: int | None = None,
    source: Mapping[str, str] | None = None,
) -> Explanation:
    """Explain one forward/backward pass, one SGD step and a gradient check through ``D -> H -> C``.

    Parameters
    ----------
    X, y
        Inputs (N, D) and integer labels (N,); both or neither. ``None``: N samples of standard normal inputs
        rounded to 2 decimals and balanced labels, drawn from ``seed``.
    params
        ``{"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}`` (see :func:`load_weights`). ``None``: an
        ``MLP([D, H, C], activation, seed=...)`` (He init, zero biases) with its weights rounded to 2 decimals so
        the arithmetic can be followed by hand.
    inputs, hidden, classes, samples
        D, H, C, N. Default 3, 4, 3, 2, or whatever ``params``/``X`` imply; given together, they must agree.
        Without ``params`` and ``classes``, labels ``y`` imply ``C = max(y) + 1`` (at least 2).
    activation, slope
        relu (default), leaky (with ``slope``), or any other name in :data:`SUPPORTED_ACTIVATIONS`.
    lr
        Learning rate of the SGD step shown at the end.
    reg
        L2 strength: the loss adds ``0.5 * reg * (sum(W1**2) + sum(W2**2))``.
    seed
        Seeds one generator used, in order, for X, then y, then the weights (only those not given).
        With the defaults, seed 0 gives an instructive case: units 0 and 2 fire on neither sample (dead for the
        batch) and unit 1 fires on sample 1 only.
    sample
        Which sample to show in column-vector form; ``None`` picks the first sample with a unit at ``z1 <= 0``.
    source
        Where the weights/inputs came from, e.g. ``{"weights": "w.npz"}``, shown in the header (overrides the
        default descriptions).
    """
    act = _check_activation(activation, slope)
    sizes = {
        name: None if value is None else _check_size(value, name)
        for name, value in (("inputs", inputs), ("hidden", hidden), ("classes", classes), ("samples", samples))
    }
    lr = check_positive(lr, "lr")
    reg = check_positive(reg, "reg", allow_zero=True)
    rng = as_rng(seed)
    if (X is None) != (y is None):
        raise ValueError("pass inputs X and labels y together (or neither, to draw them from the seed)")

    origin: dict[str, str] = {}
    given = check_params(params) if params is not None else None

    def agree(name: str, implied: int, by: str) -> int:
        chosen = sizes[name]
        if chosen is not None and chosen != implied:
            raise ValueError(f"--{name} is {chosen} but {by} implies {implied}; drop --{name} or make them agree")
        return implied

    D = H = C = None
    if given is not None:
        D, H = (int(s) for s in given["W1"].shape)
        C = int(given["W2"].shape[1])
        for name, implied in (("inputs", D), ("hidden", H), ("classes", C)):
            agree(name, implied, "the weights")

    X_arr: Array | None = None
    y_arr: NDArray[np.intp] | None = None
    if X is not None:
        X_arr = check_finite_array(X, "X", ndim=2, dtype="float64")
        if D is not None and X_arr.shape[1] != D:
            raise ValueError(
                f"X has {X_arr.shape[1]} features per sample but W1 expects {D} (W1 is {D}x{H}); "
                f"give each sample {D} numbers"
            )
        D = agree("inputs", int(X_arr.shape[1]), f"X with {X_arr.shape[1]} columns")
        agree("samples", int(X_arr.shape[0]), f"X with {X_arr.shape[0]} rows")
        y_arr = check_labels(y, int(X_arr.shape[0]), C)
        if C is None:
            C = sizes["classes"] if sizes["classes"] is not None else max(2, int(y_arr.max()) + 1)
            y_arr = check_labels(y_arr, int(X_arr.shape[0]), C)
        origin["inputs"] = "given"

    D = D if D is not None else (sizes["inputs"] or DEFAULTS["inputs"])
    H = H if H is not None else (sizes["hidden"] or DEFAULTS["hidden"])
    C = C if C is not None else (sizes["classes"] or DEFAULTS["classes"])
    if C < 2:
        raise ValueError(
            f"classes must be at least 2, got {C}: a softmax over one class is always 1, so the loss and every "
            "gradient are 0; use --classes 2 or more"
        )
    if X_arr is None or y_arr is None:
        N = sizes["samples"] or DEFAULTS["samples"]
        _check_walk_memory(N, D, H, C)
        X_arr = np.round(rng.standard_normal((N, D)), 2)
        y_arr = rng.permutation(np.arange(N) % C).astype(np.intp)
        origin["inputs"] = f"standard normal with seed {seed}, rounded to 2 decimals; balanced labels"
    net = MLP([D, H, C], act, seed=rng, dtype="float64")
    if given is not None:
        net.set_params(given)
        origin.setdefault("weights", "given")
    else:
        net.set_params({k: np.round(v, 2) for k, v in net.params.items()})
        origin["weights"] = f"He init with seed {seed} (zero biases), rounded to 2 decimals"
    origin.update(source or {})
    return explain_net(net, X_arr, y_arr, lr=lr, reg=reg, sample=sample, source=origin)


def _h_formula(act: Activation) -> str:
    if act.name == "relu":
        return "h = max(0, z1)"
    return f"h = f(z1),  f(z) = {act.formula}"


def _dz1_formula(act: Activation) -> str:
    if act.name == "relu":
        return "dz1 = dh ⊙ [z1 > 0]"
    derivative = act.derivative.replace("out", "h")
    return f"dz1 = dh ⊙ f'(z1),  f'(z) = {derivative}"


def _alternatives(chosen: Activation) -> list[dict[str, Any]]:
    rows = []
    for name in SUPPORTED_ACTIVATIONS:
        act = chosen if name == chosen.name else get_activation(name, slope=chosen.slope, alpha=chosen.alpha)
        rows.append(
            {
                "activation": name,
                "f": act.formula,
                "derivative": act.derivative,
                "dz1": _dz1_formula(act),
                "chosen": name == chosen.name,
            }
        )
    return rows


def _units(units: list[int]) -> str:
    return ", ".join(str(u) for u in units)


def _gate_notes(
    act: Activation, gate_off: list[GateEntry], dead: list[int], silent: list[int], n: int, reg: float
) -> list[str]:
    notes: list[str] = []
    by_sample: dict[int, list[GateEntry]] = {}
    for e in gate_off:
        by_sample.setdefault(e.sample, []).append(e)
    if not gate_off:
        notes.append(
            "every hidden unit fired (z1 > 0) on every sample: the gate was open everywhere, so this pass is "
            "the same as a linear network's; try another --seed to see units that did not fire"
        )
    for shown, (s, entries) in enumerate(by_sample.items()):
        if shown == _MAX_SAMPLE_NOTES:
            rest = len(by_sample) - shown
            notes.append(
                f"... and {rest} more sample{'s' if rest > 1 else ''} with units that did not fire (see the table)"
            )
            break
        units = [e.unit for e in entries]
        plural = "s" if len(units) > 1 else ""
        zeros = all(e.exactly_zero for e in entries)
        if zeros and shown:
            notes.append(
                f"sample {s}: unit{plural} {_units(units)} did not fire: again exactly 0 from this sample to "
                "their W1[:, j], b1[j] and W2[j, :]"
            )
        elif zeros:
            notes.append(
                f"sample {s}: unit{plural} {_units(units)} did not fire (z1 <= 0), so f'(z1) = 0 and dz1 = 0 exactly "
                f"there: sample {s} adds exactly 0 to the incoming weights W1[:, j] and bias b1[j] of "
                f"unit{plural} {_units(units)} (and, since h = 0, to the outgoing weights W2[j, :]). "
                f"Not firing on one sample is not dead: the other units, and these units on samples where they "
                f"fire, still learn from it, so gradient descent is not killed"
            )
        else:
            lg = ", ".join(f"{fmt(e.local_grad)}" for e in entries)
            notes.append(
                f"sample {s}: unit{plural} {_units(units)} did not fire (z1 <= 0), but {act.name} passes "
                f"f'(z1) = {lg} of the gradient there, so the incoming weights W1[:, j] and bias b1[j] still get "
                "a (smaller) non-zero gradient from this sample: the unit keeps learning and can come back"
            )
    for e in gate_off:
        if e.at_zero:
            if act.name == "relu":
                notes.append(
                    f"sample {e.sample}, unit {e.unit}: z1 is exactly 0. ReLU's derivative at 0 is taken as 0 "
                    "(PyTorch does the same), so the unit counts as not firing and passes no gradient; any nudge "
                    "of its weights would make it fire or not, which is why the gradient check reports kinks"
                )
            else:
                notes.append(
                    f"sample {e.sample}, unit {e.unit}: z1 is exactly 0; {act.name}'s derivative there is "
                    f"{fmt(e.local_grad)} (f'(z) = {act.derivative})"
                )
    if dead:
        many = len(dead) > 1
        which = f"units {_units(dead)}" if many else f"unit {dead[0]}"
        j = "j" if many else str(dead[0])
        if act.spec.stuck_off(act):
            l2 = (
                f" (only the L2 term reg * W1[:, {j}] moves {'their' if many else 'its'} weights, toward 0)"
                if reg
                else ", so one step of gradient descent leaves them unchanged"
            )
            notes.append(
                f"{which} fired on none of the {n} samples: dW1[:, {j}] and db1[{j}] get exactly 0 from the whole "
                f"batch{l2}. A unit that never fires on any sample of the dataset is dead: no gradient ever "
                "reaches its incoming weights or bias, and plain gradient descent cannot revive it"
            )
        else:
            notes.append(
                f"{which} fired on none of the {n} samples, but {act.name} still passes a gradient where "
                f"z1 <= 0: {'they are' if many else 'it is'} not dead and can recover"
            )
    for s in silent:
        if act.name == "relu":
            notes.append(
                f"sample {s}: no hidden unit fired, so h[{s}] = 0 and scores[{s}] = b2: the output is constant "
                "for this sample and nothing before the output layer learns from it"
            )
    if act.spec.no_gate is not None:
        notes.append(
            f"{act.name} has no gate: f'(z) > 0 for every z, so every unit passes some gradient on every sample; "
            f"{act.spec.no_gate}"
        )
    return notes


def _check_walk_memory(N: int, D: int, H: int, C: int) -> None:
    """The walk keeps, per sample, its share of dW1 and dW2 and a few dozen (D + H + C)-vectors (forward values,
    gradients, the SGD step, the gradient check's copies): refuse before allocating when that exceeds memory."""
    check_memory(
        N * (D * H + H * C + 40 * (D + H + C)) * 8,
        f"explaining {N} samples through a {D}-{H}-{C} network",
        fix="explain a few samples (--samples 2 to 20 is what a walk-through can show)",
    )


def _check_magnitudes(net: MLP, X: Array, y: NDArray[np.intp], *, lr: float, reg: float) -> None:
    """Refuse numbers whose products overflow float64 anywhere in the walk (forward, backward, the SGD step and
    the loss after it), before anything is printed: a ValueError saying how large they are and what to do."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, grads = net.loss(X, y, reg)
        after = net.copy()
        SGD(lr).step(after.params, {k: g.copy() for k, g in grads.items()})
        loss_after = after.loss(X, y, reg)[0]
        finite = (
            math.isfinite(loss)
            and math.isfinite(loss_after)
            and all(np.isfinite(g).all() for g in grads.values())
            and all(np.isfinite(p).all() for p in after.params.values())
        )
    if not finite:
        big_x = float(np.max(np.abs(X)))
        big_w = max(float(np.max(np.abs(p))) for p in net.params.values())
        raise ValueError(
            f"the numbers are too large to walk through: inputs up to {big_x:.3g} and weights up to {big_w:.3g} "
            f"(lr {lr:g}) make the forward pass, the gradients or the SGD step overflow float64; scale the inputs "
            "and weights to values of order 1"
        )


def explain_net(
    net: MLP,
    X: Any,
    y: Any,
    *,
    lr: float = 0.5,
    reg: float = 0.0,
    sample: int | None = None,
    source: Mapping[str, str] | None = None,
) -> Explanation:
    """Walk ``net`` (one hidden layer, ``MLP([D, H, C])``) forward and backward on X (N, D), y (N,).

    Every intermediate comes from the reference pairs in :mod:`reluscope.nn.functional`; the network is copied
    to float64 and never modified. See :func:`explain` for the parameters.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a reluscope.nn.MLP, got {type(net).__name__}")
    if len(net.sizes) != 3:
        raise ValueError(
            f"explain walks a network with exactly one hidden layer, MLP([D, H, C]), got sizes {net.sizes}"
        )
    act = _check_activation(net.activation, net.activation.slope)
    lr = check_positive(lr, "lr")
    reg = check_positive(reg, "reg", allow_zero=True)
    net = net.copy(dtype="float64")
    Xa: Array = net.check_input(X).astype(np.float64, copy=True)
    N = int(Xa.shape[0])
    ya = check_labels(y, N, net.n_classes)
    if sample is None:
        candidates = np.flatnonzero(~(net.preactivations(Xa)[0] > 0).all(axis=1))
        sample = int(candidates[0]) if candidates.size else 0
    chosen: Any = sample
    if isinstance(chosen, bool) or not isinstance(chosen, numbers.Integral) or not 0 <= int(chosen) < N:
        raise ValueError(f"sample must be an index in [0, {N}), got {sample!r}; samples are numbered from 0")
    sample = int(chosen)
    D, H, C = net.sizes
    W1, b1, W2, b2 = (net.params[k] for k in PARAM_KEYS)

    _check_walk_memory(N, *net.sizes)
    _check_magnitudes(net, Xa, ya, lr=lr, reg=reg)

    # Forward: the reference pairs, one call per line.
    z1, dense1_cache = F.dense_forward(Xa, W1, b1)
    h, act_cache = act.forward(z1)
    scores, dense2_cache = F.dense_forward(h, W2, b2)
    probs = F.softmax(scores)
    data_loss, dscores = F.softmax_cross_entropy(scores, ya)
    reg_loss = F.l2_penalty(W1, reg)[0] + F.l2_penalty(W2, reg)[0]
    loss = data_loss + reg_loss
    if not (np.isfinite(scores).all() and np.isfinite(loss)):
        raise ValueError(
            "the forward pass overflowed (non-finite scores or loss); scale the weights or inputs down, "
            "e.g. to values of order 1"
        )
    # Backward.
    dh, dW2_data, db2 = F.dense_backward(dscores, dense2_cache)
    dz1, _ = act.backward(dh, act_cache)
    _dX, dW1_data, db1 = F.dense_backward(dz1, dense1_cache)
    local_grad, _ = act.backward(np.ones_like(z1), act_cache)
    dW1 = dW1_data + F.l2_penalty(W1, reg)[1] if reg else dW1_data
    dW2 = dW2_data + F.l2_penalty(W2, reg)[1] if reg else dW2_data

    rows = ("sample", "unit")
    plus_reg = " + reg · {W}" if reg else ""
    # −log p[n, y_n] = logsumexp(scores[n]) − scores[n, y_n], from max-shifted scores: finite even where p rounds
    # to 0 (the + 0.0 turns −0 into 0)
    shifted = scores - scores.max(axis=1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(N), ya] + 0.0
    per_sample = ", ".join(f"{v:.4g}" for v in nll)
    loss_formula = "loss = −(1/N) Σ_n log p[n, y_n]" + ("  +  ½·reg·(ΣW1² + ΣW2²)" if reg else "")
    loss_note = f"per-sample −log p[n, y_n]: {per_sample}"
    if reg:
        loss_note += f"; data loss {data_loss:.6g} + L2 penalty {reg_loss:.6g}"
    steps = [
        Step(
            "z1",
            "forward",
            "hidden pre-activations",
            "z1 = X · W1 + b1",
            z1,
            rows,
            "one row per sample, one column per hidden unit; b1 is added to every row",
        ),
        Step(
            "h",
            "forward",
            f"hidden activations ({act.name})",
            _h_formula(act),
            h,
            rows,
            "where z1 <= 0, ReLU outputs exactly 0: that unit did not fire on that sample"
            if act.name == "relu"
            else f"{act.name} is applied to every entry of z1",
        ),
        Step(
            "scores",
            "forward",
            "class scores",
            "scores = h · W2 + b2",
            scores,
            ("sample", "class"),
            "a unit with h = 0 contributes nothing to the scores of that sample",
        ),
        Step(
            "p",
            "forward",
            "softmax probabilities",
            "p = exp(scores) / Σ_c exp(scores)  (row by row)",
            probs,
            ("sample", "class"),
            "computed stably: each row is shifted by its max first; rows sum to 1",
        ),
        Step("loss", "forward", "cross-entropy loss", loss_formula, np.asarray(loss, dtype=np.float64), (), loss_note),
        Step(
            "dscores",
            "backward",
            "gradient at the scores",
            "dscores = (p − onehot(y)) / N",
            dscores,
            ("sample", "class"),
            f"subtract 1 at each sample's true class, divide by N = {N} (the loss is a mean)",
        ),
        Step(
            "dW2",
            "backward",
            "gradient of W2",
            "dW2 = hᵀ · dscores" + plus_reg.format(W="W2"),
            dW2,
            ("unit", "class"),
            "row j collects h[n, j] · dscores[n] over samples: 0 from samples where h[n, j] = 0",
        ),
        Step("db2", "backward", "gradient of b2", "db2 = Σ_n dscores[n]", db2, ("class",), ""),
        Step(
            "dh",
            "backward",
            "gradient at the hidden outputs",
            "dh = dscores · W2ᵀ",
            dh,
            rows,
            "what arrives at each hidden unit's output, before the activation's gate",
        ),
        Step(
            "dz1",
            "backward",
            "gradient at the pre-activations (the gate)",
            _dz1_formula(act),
            dz1,
            rows,
            "the only line of backprop that depends on the activation"
            + ("; where z1 <= 0 the gradient is exactly 0" if act.name == "relu" else ""),
        ),
        Step(
            "dW1",
            "backward",
            "gradient of W1",
            "dW1 = Xᵀ · dz1" + plus_reg.format(W="W1"),
            dW1,
            ("input", "unit"),
            "column j is Σ_n X[n] · dz1[n, j]: samples where dz1[n, j] = 0 add nothing",
        ),
        Step("db1", "backward", "gradient of b1", "db1 = Σ_n dz1[n]", db1, ("unit",), ""),
    ]

    # The gate.
    fired = z1 > 0
    at_zero = z1 == 0
    off = [
        GateEntry(
            sample=int(n),
            unit=int(j),
            z=float(z1[n, j]),
            at_zero=bool(at_zero[n, j]),
            local_grad=float(local_grad[n, j]),
            upstream=float(dh[n, j]),
            dz=float(dz1[n, j]),
            dW1=Xa[n] * dz1[n, j],
            db1=float(dz1[n, j]),
            dW2=h[n, j] * dscores[n],
        )
        for n, j in zip(*np.nonzero(~fired), strict=True)
    ]
    dead = [int(j) for j in np.flatnonzero(~fired.any(axis=0))]
    silent = [int(n) for n in np.flatnonzero(~fired.any(axis=1))]
    convention = (
        "ReLU: f'(z) = 1 if z > 0 else 0, and at exactly z = 0 the derivative is taken as 0 (as in PyTorch): "
        "a unit at 0 did not fire and passes no gradient"
        if act.name == "relu"
        else f"{act.name}: f'(z) = {act.derivative}; a unit fires when z > 0 (the dead-unit statistics count that)"
    )
    gate = Gate(
        activation=act.name,
        formula=act.formula,
        derivative=act.derivative,
        convention=convention,
        fired=fired,
        at_zero=at_zero,
        local_grad=local_grad,
        off=off,
        dead_units=dead,
        dead_dW1=dW1_data[:, dead],
        dead_db1=db1[dead],
        silent_samples=silent,
        notes=_gate_notes(act, off, dead, silent, N, reg),
        alternatives=_alternatives(act),
    )

    # The seed blog's column-vector form for one sample.
    x = Xa[sample]
    W = W1.T
    a = W @ x + b1
    zc, col_cache = act.forward(a[None, :])
    mask = act.backward(np.ones_like(a)[None, :], col_cache)[0][0]
    upstream = dh[sample]
    dz_col = act.backward(upstream[None, :], col_cache)[0][0]
    dW_col = np.outer(dz_col, x)
    batch_T = np.outer(Xa[sample], dz1[sample]).T
    summed = np.zeros((H, D))
    for n in range(N):
        summed += np.outer(dz1[n], Xa[n])
    column = ColumnForm(
        sample=sample,
        x=x.copy(),
        W=W.copy(),
        b=b1.copy(),
        a=a,
        z=zc[0],
        mask=mask,
        local=np.outer(mask, x),
        upstream=upstream.copy(),
        dz=dz_col,
        dW=dW_col,
        batch_T=batch_T,
        max_abs_diff=float(np.max(np.abs(dW_col - batch_T))),
        sum_max_abs_diff=float(np.max(np.abs(summed - dW1_data.T))),
        dW2=np.outer(h[sample], dscores[sample]),
    )

    # The engine agrees, the finite differences agree, and one SGD step.
    grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    engine_loss, engine_grads = net.loss(Xa, ya, reg)
    engine_diff = max(float(np.max(np.abs(engine_grads[k] - grads[k]))) for k in PARAM_KEYS)
    engine_diff = max(engine_diff, abs(engine_loss - loss))
    # A relative error is meaningless where both gradients are 0 up to rounding (e.g. db2 when every score is b2
    # and the labels are balanced): the library's rule accepts an absolute error below _GRADCHECK_ABS_TOL too, and
    # fails a parameter none of whose entries could be checked (all on kinks).
    report = check_gradients(
        net, Xa, ya, reg=reg, abs_tol=_GRADCHECK_ABS_TOL, max_checks=_GRADCHECK_MAX_ENTRIES, seed=0
    )
    gradcheck = report.to_dict()
    gradcheck["total_kinks"] = report.total_kinks
    gradcheck["ok"] = report.passed  # the same verdict under the name the renderers read

    after = net.copy()
    SGD(lr).step(after.params, {k: g.copy() for k, g in grads.items()})
    loss_after = after.loss(Xa, ya, reg)[0]
    frozen = [
        j for j in range(H) if np.array_equal(after.params["W1"][:, j], W1[:, j]) and after.params["b1"][j] == b1[j]
    ]
    sgd = SGDStep(
        lr=lr,
        loss_before=float(loss),
        loss_after=float(loss_after),
        params_after={k: v.copy() for k, v in after.params.items()},
        frozen_units=frozen,
        fired_after=after.preactivations(Xa)[0] > 0,
    )

    warnings: list[str] = []
    if H == 1:
        if act.name == "relu":
            where = f" (here on sample{'s' if len(silent) > 1 else ''} {_units(silent)})" if silent else ""
            warnings.append(
                "the hidden layer has a single unit, the 'single ReLU' bottleneck: on every sample where it is "
                f"<= 0{where} the output is the constant b2 and nothing before the output layer learns; if it is "
                "<= 0 on every sample the network is stuck. Use more hidden units (--hidden 4) or --activation leaky"
            )
        else:
            warnings.append(
                "the hidden layer has a single unit: every prediction has to pass through one number, which "
                "limits what the network can learn; use more hidden units (--hidden 4)"
            )
    elif act.name == "relu" and len(dead) == H:
        warnings.append(
            f"no hidden unit fired on any of the {N} samples: the scores are b2 for every sample and W1, b1 get "
            "exactly zero gradient; the whole layer is dead for this batch (use --activation leaky, or a positive "
            "bias, to give it a way back)"
        )

    return Explanation(
        sizes=(D, H, C),
        activation={**act.to_dict(), "formula": act.formula, "derivative": act.derivative},
        reg=reg,
        X=Xa,
        y=ya,
        params={k: v.copy() for k, v in net.params.items()},
        steps=steps,
        gate=gate,
        column=column,
        gradcheck=gradcheck,
        engine_max_abs_diff=float(engine_diff),
        sgd=sgd,
        warnings=warnings,
        source=dict(source or {}),
    )

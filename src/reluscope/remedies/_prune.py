"""Prune dead units: a smaller network whose outputs match the original's, and a record of what it saved.

A unit that never fires over a dataset contributes a constant to the next layer: exactly 0 for ReLU, a small,
barely varying value for leaky ReLU/ELU/GELU. Removing it (its column of the producing layer, its row of the
consuming layer) and adding its mean output times its outgoing weights to the consumer's bias keeps the output:
up to rounding for ReLU, up to a measured amount for the others (Voita et al. 2023, "Neurons in Large Language
Models: Dead, N-gram, Positional", prune such neurons from ReLU FFNs).

Mean output of a removed unit, from the statistics alone (no second pass over the data):

* activations that are never negative (ReLU, ReLU6, sigmoid): the mean |activation|, exact for every unit;
* a dead unit (never fired: every pre-activation <= 0) of any rectifier: ``f`` has one sign on ``x <= 0``
  (<= 0 for leaky ReLU, PReLU with a positive slope, ELU, tanh, GELU, SiLU), so the mean is that sign times the
  mean |activation|, exact;
* a τ-dormant unit (``tau > 0``) that did fire, of an activation with both signs: the mean is not known from
  |activation| sums, so the unit is kept and counted in ``PrunedSite.kept``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope.diagnose import ActivationStats
from reluscope.nn import MLP, ActivationSpec, get_spec
from reluscope.remedies._redo import check_tau, recycle_mask

__all__ = ["PruneReport", "PrunedLayer", "PrunedSite", "check_fold", "prune_dead"]

_FORMAT = "reluscope.PruneReport"
_VERSION = 1
FOLDS = ("mean", "none")


def check_fold(fold: Any) -> str:
    """``fold`` if it is ``"mean"`` or ``"none"``; a ValueError that says what each means otherwise."""
    if fold not in FOLDS:
        raise ValueError(
            f"fold must be 'mean' (add each removed unit's mean output, times its outgoing weights, to the next "
            f"layer's bias) or 'none' (drop it), got {fold!r}"
        )
    return str(fold)


@dataclass(frozen=True)
class PrunedSite:
    """One site (hidden layer) of a pruning.

    Attributes
    ----------
    name : str
        Site name (``"hidden1"``, or a torch site such as ``"features.2"``).
    units_before, units_after : int
        Units (features or channels) before and after.
    removed : list[int]
        Indices (in the original numbering) of the removed units.
    kept : int
        τ-dormant units kept because their mean output is not known from the statistics (see the module notes).
    producer, consumer : str
        The layers whose output rows / input columns were removed (``"W1"``/``"W2"``, or module paths).
    max_fold : float
        Largest |mean output| of a removed unit that was folded into the consumer's bias (0 for dead ReLUs).
    note : str
        Anything worth knowing, e.g. that a zero-padded conv consumer sees the fold at its borders too.
    """

    name: str
    units_before: int
    units_after: int
    removed: list[int]
    kept: int = 0
    producer: str = ""
    consumer: str = ""
    max_fold: float = 0.0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "units_before": self.units_before,
            "units_after": self.units_after,
            "removed": list(self.removed),
            "kept": self.kept,
            "producer": self.producer,
            "consumer": self.consumer,
            "max_fold": self.max_fold,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrunedSite:
        return cls(
            name=str(d["name"]),
            units_before=int(d["units_before"]),
            units_after=int(d["units_after"]),
            removed=[int(i) for i in d["removed"]],
            kept=int(d.get("kept", 0)),
            producer=str(d.get("producer", "")),
            consumer=str(d.get("consumer", "")),
            max_fold=float(d.get("max_fold", 0.0)),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True)
class PrunedLayer:
    """Parameters and multiply-adds per sample of one changed layer (a Linear/Conv/BatchNorm/PReLU, or ``W1``)."""

    name: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrunedLayer:
        return cls(
            str(d["name"]),
            int(d["params_before"]),
            int(d["params_after"]),
            int(d["macs_before"]),
            int(d["macs_after"]),
        )


@dataclass
class PruneReport:
    """What :func:`prune_dead` (numpy) or :func:`reluscope.torch.prune_dead` removed, saved and changed.

    Attributes
    ----------
    sites : list[PrunedSite]
        Every pruned (or examined) site, in order.
    layers : list[PrunedLayer]
        Every layer whose size changed.
    refused : dict[str, str]
        Sites left untouched, with the reason (residual add, shared producer, output layer, all units dead ...).
    tau : float
        Units with fire count 0 (``tau=0``) or dormant score <= ``tau`` were candidates.
    fold : str
        ``"mean"`` or ``"none"``.
    params_before, params_after : int
        Parameters of the whole model (torch: ``sum(p.numel())``; numpy: every array in ``net.params``).
    macs_before, macs_after : int
        Multiply-adds per sample of the model's Linear/Conv layers (dense layers for the numpy MLP); for torch,
        counted by tracing the example and divided by its first dimension. Only ``linear``/``conv`` calls the
        trace sees count: a fused call such as ``F.multi_head_attention_forward`` (nn.MultiheadAttention's
        projections) is one opaque call and is left out.
    max_abs_delta, mean_abs_delta : float or None
        Max and mean |pruned output - original output| over ``delta_samples`` samples (None if not measured).
    delta_samples : int
        Samples the difference was measured on.
    delta_on : str
        ``"data"`` (the batches given), ``"example"`` (the recorded/given example rows) or ``""`` (not measured).
    max_abs_output : float or None
        Max |original output| on the same samples (for a relative reading of the delta).
    model : Any
        The pruned model (a new ``MLP``, or the torch module); not part of :meth:`to_dict`.
    """

    sites: list[PrunedSite]
    layers: list[PrunedLayer]
    refused: dict[str, str]
    tau: float
    fold: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    max_abs_delta: float | None = None
    mean_abs_delta: float | None = None
    delta_samples: int = 0
    delta_on: str = ""
    max_abs_output: float | None = None
    model: Any = field(default=None, compare=False, repr=False)

    @property
    def units_removed(self) -> int:
        """Units removed over all sites."""
        return sum(len(s.removed) for s in self.sites)

    @property
    def units_before(self) -> int:
        return sum(s.units_before for s in self.sites)

    @property
    def params_saved(self) -> int:
        return self.params_before - self.params_after

    @property
    def macs_saved(self) -> int:
        return self.macs_before - self.macs_after

    def summary(self) -> str:
        """One line: units, parameters and multiply-adds saved, and the measured output change."""

        def pct(a: int, b: int) -> str:
            return f"{a / b:.1%}" if b else "0%"

        line = (
            f"pruning would remove {self.units_removed} of {self.units_before} units "
            f"({pct(self.units_removed, self.units_before)}), {self.params_saved} of {self.params_before} parameters "
            f"({pct(self.params_saved, self.params_before)}), {self.macs_saved} of {self.macs_before} multiply-adds "
            f"per sample ({pct(self.macs_saved, self.macs_before)})"
        )
        if self.max_abs_delta is not None:
            line += f"; max |output change| {self.max_abs_delta:.3g} on {self.delta_samples} samples ({self.delta_on})"
        if self.refused:
            line += f"; {len(self.refused)} site(s) refused"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no NaN/inf); :meth:`from_dict` rebuilds an equal report (without ``model``)."""

        def finite(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "format": _FORMAT,
            "version": _VERSION,
            "sites": [s.to_dict() for s in self.sites],
            "layers": [layer.to_dict() for layer in self.layers],
            "refused": dict(self.refused),
            "tau": self.tau,
            "fold": self.fold,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "max_abs_delta": finite(self.max_abs_delta),
            "mean_abs_delta": finite(self.mean_abs_delta),
            "delta_samples": self.delta_samples,
            "delta_on": self.delta_on,
            "max_abs_output": finite(self.max_abs_output),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneReport:
        """Rebuild a report written by :meth:`to_dict`; ValueError on anything malformed."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(
                f"not a PruneReport dict (expected format {_FORMAT!r}); build it with PruneReport.to_dict()"
            )
        if d.get("version") != _VERSION:
            raise ValueError(f"unsupported PruneReport version {d.get('version')!r}; this reluscope reads {_VERSION}")
        try:

            def opt(v: Any) -> float | None:
                return None if v is None else float(v)

            return cls(
                sites=[PrunedSite.from_dict(s) for s in d["sites"]],
                layers=[PrunedLayer.from_dict(x) for x in d["layers"]],
                refused={str(k): str(v) for k, v in d["refused"].items()},
                tau=float(d["tau"]),
                fold=check_fold(d["fold"]),
                params_before=int(d["params_before"]),
                params_after=int(d["params_after"]),
                macs_before=int(d["macs_before"]),
                macs_after=int(d["macs_after"]),
                max_abs_delta=opt(d.get("max_abs_delta")),
                mean_abs_delta=opt(d.get("mean_abs_delta")),
                delta_samples=int(d.get("delta_samples", 0)),
                delta_on=str(d.get("delta_on", "")),
                max_abs_output=opt(d.get("max_abs_output")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"PruneReport dict is malformed ({exc!r})") from None


# numpy MLP ----------------------------------------------------------------------------------------------------
def _spec(function: str) -> ActivationSpec | None:
    """The registry entry of a numpy activation name or a torch label that names the same function, else None."""
    try:
        return get_spec(function)
    except ValueError:
        return None


def unit_means(
    stats: ActivationStats, name: str, function: str, candidates: NDArray[np.bool_], slope: NDArray[Any] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(means (units,), known (units,) bool): each candidate unit's mean output over the scanned samples where the
    statistics determine it (see the module notes). ``function`` is a numpy activation name or a torch rectifier
    label; ``slope`` is PReLU's per-unit slope. Positions of a conv site count as samples (per-channel mean)."""
    mean_abs = stats.mean_abs_activation(name)
    dead = stats.dead_mask(name)
    spec = _spec(function)
    if (spec is not None and spec.nonnegative) or function in ("relu6", "hardtanh"):  # torch-only rectifiers
        return mean_abs, np.ones_like(dead)
    if function == "prelu" and slope is not None:
        sign = -np.sign(np.broadcast_to(np.asarray(slope, np.float64), mean_abs.shape))
    else:  # the sign of f where a dead unit lives, from the registry; -1 for a torch-only function (GELU, SiLU)
        sign = np.full_like(mean_abs, -1.0 if spec is None else spec.negative_side_sign)
    known = dead | ~candidates
    return np.where(dead, sign * mean_abs, 0.0), known


def _count(sizes: list[int], slopes: bool) -> tuple[int, int]:
    """(parameters, multiply-adds per sample) of an MLP with these sizes."""
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    if slopes:
        params += sum(sizes[1:-1])
    macs = sum(a * b for a, b in itertools.pairwise(sizes))
    return params, macs


def prune_dead(
    net: MLP,
    stats: ActivationStats,
    tau: float = 0.0,
    *,
    X: NDArray[Any] | None = None,
    fold: str = "mean",
) -> PruneReport:
    """A copy of ``net`` without its dead (or τ-dormant) hidden units; their mean output folded into the next bias.

    Parameters
    ----------
    net
        The numpy :class:`~reluscope.nn.MLP` (``W{l}``: ``(D_in, D_out)``, ``b{l}``: ``(D_out,)``).
    stats
        Its statistics over a dataset, sites ``hidden1``... (``reluscope.diagnose.scan`` or ``dead_units``'s stats).
    tau
        0 (default): units that fired on no sample. ``tau > 0``: also τ-dormant ones (Sokar et al. 2023); those
        that fired are pruned only where their mean output is known (see the module notes).
    X
        ``(N, D)`` samples on which to measure |pruned output - original output| (scores); None: not measured.
    fold
        ``"mean"``: ``b_{l+1} += m @ W_{l+1}[removed, :]`` with ``m`` the removed units' mean outputs (exact for
        dead ReLUs: ``m = 0``); ``"none"``: drop them.

    Returns
    -------
    PruneReport
        ``report.model`` is the new, smaller ``MLP`` (``net`` is not changed). A hidden layer whose every unit is
        a candidate is refused (it would have no units left; the output is then constant).

    Raises
    ------
    ValueError
        ``stats`` lack a hidden layer of ``net`` or have another width; bad ``tau``/``fold``/``X``.
    """
    if not isinstance(net, MLP):
        raise TypeError(
            f"net must be a reluscope.nn.MLP, got {type(net).__name__}; for torch use reluscope.torch.prune_dead"
        )
    if not isinstance(stats, ActivationStats):
        raise TypeError(f"stats must be an ActivationStats, got {type(stats).__name__}; use reluscope.diagnose.scan")
    tau = check_tau(tau)
    fold = check_fold(fold)
    act = net.activation.name
    params = {k: v.copy() for k, v in net.params.items()}
    sizes = list(net.sizes)
    sites: list[PrunedSite] = []
    refused: dict[str, str] = {}
    for layer, name in enumerate(net.hidden_names, start=1):
        units = net.sizes[layer]
        if name not in stats:
            raise ValueError(f"stats have no site {name!r} (they have {stats.names}); scan this network's data first")
        if stats.n_units(name) != units:
            raise ValueError(
                f"stats site {name!r} has {stats.n_units(name)} units but {net!r} has {units} there; "
                "were the stats computed on another network?"
            )
        candidates = recycle_mask(stats, name, tau)
        slope = params.get(f"a{layer}")
        means, known = unit_means(stats, name, act, candidates, slope)
        remove = candidates & known
        if remove.all():
            refused[name] = (
                f"all {units} units are candidates: the layer's output is constant, so is everything after it; "
                "pruning it would leave a layer with no units"
            )
            continue
        idx = np.flatnonzero(remove)
        keep = np.flatnonzero(~remove)
        w_out = params[f"W{layer + 1}"]
        max_fold = float(np.max(np.abs(means[idx]), initial=0.0))
        if fold == "mean" and idx.size:
            params[f"b{layer + 1}"] = params[f"b{layer + 1}"] + (means[idx] @ w_out[idx, :]).astype(w_out.dtype)
        params[f"W{layer}"] = params[f"W{layer}"][:, keep]
        params[f"b{layer}"] = params[f"b{layer}"][keep]
        if slope is not None:
            params[f"a{layer}"] = slope[keep]
        params[f"W{layer + 1}"] = w_out[keep, :]
        sizes[layer] = int(keep.size)
        sites.append(
            PrunedSite(
                name,
                units,
                int(keep.size),
                [int(i) for i in idx],
                kept=int(np.count_nonzero(candidates & ~known)),
                producer=f"W{layer}",
                consumer=f"W{layer + 1}",
                max_fold=max_fold if fold == "mean" else 0.0,
            )
        )
    cfg = net.config()
    cfg["sizes"] = sizes
    pruned = MLP.from_params(cfg, params)
    slopes = net.activation.learnable
    p0, m0 = _count(net.sizes, slopes)
    p1, m1 = _count(sizes, slopes)
    layers = []
    for layer in range(1, net.n_layers + 1):
        a0, b0 = net.sizes[layer - 1], net.sizes[layer]
        a1, b1 = sizes[layer - 1], sizes[layer]
        if (a0, b0) != (a1, b1):
            extra0 = b0 if slopes and layer < net.n_layers else 0
            extra1 = b1 if slopes and layer < net.n_layers else 0
            layers.append(PrunedLayer(f"W{layer}", a0 * b0 + b0 + extra0, a1 * b1 + b1 + extra1, a0 * b0, a1 * b1))
    report = PruneReport(sites, layers, refused, tau, fold, p0, p1, m0, m1, model=pruned)
    if X is not None:
        X = net.check_input(X)
        if len(X):
            before = net.scores(X)
            after = pruned.scores(X)
            diff = np.abs(after.astype(np.float64) - before.astype(np.float64))
            report.max_abs_delta = float(diff.max())
            report.mean_abs_delta = float(diff.mean())
            report.max_abs_output = float(np.abs(before).max())
            report.delta_samples = len(X)
            report.delta_on = "data"
    return report

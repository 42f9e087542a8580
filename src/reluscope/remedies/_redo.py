"""ReDo (Sokar et al. 2023) for the numpy :class:`~reluscope.nn.MLP`: recycle dead or dormant hidden units.

For every recycled unit ``u`` of hidden layer ``l`` (parameters ``W{l}`` (H_{l-1}, H_l), ``b{l}`` (H_l,)):

* its incoming weights ``W{l}[:, u]`` are redrawn with the network's own initialiser (``net.init``,
  ``net.init_std``, the layer's fan-in and fan-out), its bias ``b{l}[u]`` is set back to ``net.bias_init``
  (0 by default) and a PReLU slope ``a{l}[u]`` back to its initial value;
* its outgoing weights ``W{l+1}[u, :]`` are set to zero, so the unit contributes nothing downstream: on data on
  which it never activated (a dead ReLU unit) the network's output is bit-identical right after the reset;
* exactly those entries of the optimizer state are zeroed (Adam/AdamW ``m``/``v``, SGD ``velocity``); the step
  count ``optimizer.t`` and every other entry are left alone.

The output layer's units (columns of ``W{L}``, ``b{L}``) are never recycled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import RNGLike, as_rng, check_positive_int
from reluscope._validate import check_tau as check_tau  # kept importable from here for existing callers
from reluscope.diagnose import ActivationStats, scan
from reluscope.nn.init import init_weight
from reluscope.nn.model import MLP
from reluscope.nn.optim import Optimizer
from reluscope.train import Callback, TrainState

__all__ = [
    "ReDoCallback",
    "ReDoReport",
    "UnitCounts",
    "default_redo_until",
    "recycle_mask",
    "redo",
    "reinit_incoming",
    "zero_state",
]


def recycle_mask(stats: ActivationStats, name: str, tau: float) -> NDArray[np.bool_]:
    """(units,) bool: the units of site ``name`` that ReDo recycles at threshold ``tau``.

    A unit qualifies when it is dead (fired on no sample) or, for ``tau > 0``, τ-dormant: its mean |activation|
    over the layer's mean is <= ``tau`` (Sokar et al. 2023). ``tau = 0`` is the "dead" view. For ReLU a dead unit
    is exactly 0 on every sample; a leaky/PReLU unit that never fires is not (its negative side leaks).

    Raises
    ------
    ValueError
        ``tau > 0`` but the stats lack |activation| sums for units that fired (e.g. a torch monitor's cheap-path
        window ``monitor.stats``): dormant scores would be meaningless there.
    """
    tau = check_tau(tau)
    dead: NDArray[np.bool_] = stats.dead_mask(name)
    if tau == 0:
        return dead
    unrecorded = ~dead & (stats.mean_abs_activation(name) == 0)
    if unrecorded.any():
        raise ValueError(
            f"site {name!r}: {int(unrecorded.sum())} unit(s) fired but have no recorded |activation|, so dormant "
            "scores cannot be computed; with a torch monitor pass monitor.full_stats (needs full_every=...), "
            "or use tau=0 to recycle dead units only"
        )
    mask: NDArray[np.bool_] = dead | stats.dormant_mask(name, tau)
    return mask


class UnitCounts:
    """What ReDo's and Continual Backprop's reports share: ``units`` (site -> indices), ``counts`` (site -> how
    many) and ``total``. A mixin for frozen dataclasses that declare ``units`` and ``counts = field(init=False)``."""

    units: dict[str, list[int]]
    counts: dict[str, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", {name: len(idx) for name, idx in self.units.items()})

    @property
    def total(self) -> int:
        """Units selected (recycled, replaced) over all sites."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class ReDoReport(UnitCounts):
    """What one :func:`redo` call recycled.

    Attributes
    ----------
    units : dict[str, list[int]]
        Per site (``"hidden1"``, ..., or a torch site name), the indices of the recycled units (empty when none).
    sizes : dict[str, int]
        Per site, its number of units.
    tau : float
        The dormancy threshold used.
    samples : dict[str, str]
        Per site, what the statistics behind the choice counted as samples, in words (``"300 samples"``;
        ``"40×9 positions"`` for a transformer MLP whose every token position is a sample; see
        :meth:`reluscope.diagnose.ActivationStats.describe_samples`). Empty for reports built without it.
    counts : dict[str, int]
        Per site, how many units were recycled.
    """

    units: dict[str, list[int]]
    sizes: dict[str, int]
    tau: float
    samples: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(init=False)

    def summary(self) -> str:
        """One line per site: ``"mlp.act: 12 of 32 units recycled (dead over 40×9 positions)"``."""
        view = "dead" if self.tau == 0 else f"τ-dormant (τ = {self.tau:g})"
        lines = []
        for name, n in self.counts.items():
            over = f" ({view} over {self.samples[name]})" if name in self.samples else f" ({view})"
            lines.append(f"{name}: {n} of {self.sizes.get(name, '?')} units recycled{over}")
        return "\n".join(lines) if lines else "no site to recycle"

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"tau", "units": {site: [indices]}, "counts": {site: n}, "sizes", "total"}``, and
        ``"samples": {site: words}`` when known."""
        d: dict[str, Any] = {
            "tau": self.tau,
            "units": {k: list(v) for k, v in self.units.items()},
            "counts": dict(self.counts),
            "sizes": dict(self.sizes),
            "total": self.total,
        }
        if self.samples:
            d["samples"] = dict(self.samples)
        return d


def _check_stats(net: MLP, stats: Any) -> ActivationStats:
    if not isinstance(stats, ActivationStats):
        raise TypeError(
            f"stats must be an ActivationStats, got {type(stats).__name__}; "
            "compute it with reluscope.diagnose.scan(net, X)"
        )
    names = net.hidden_names
    if not names:
        raise ValueError(f"MLP{net.sizes} has no hidden layer, so there are no units to recycle")
    for layer, name in enumerate(names, start=1):
        if name not in stats:
            raise ValueError(
                f"stats have no site {name!r} (they have {stats.names}); they must come from this network: "
                "stats = reluscope.diagnose.scan(net, X)"
            )
        want = net.sizes[layer]
        if stats.n_units(name) != want or stats.kind(name) != "dense":
            raise ValueError(
                f"stats site {name!r} has {stats.n_units(name)} {stats.kind(name)} units but layer {layer} of "
                f"MLP{net.sizes} has {want}; were the stats computed on another network?"
            )
        if stats.n_samples(name) == 0:
            raise ValueError(f"stats site {name!r} has seen no samples; scan some data first: scan(net, X)")
    return stats


def zero_state(optimizer: Optimizer | None, key: str, index: tuple[Any, ...]) -> None:
    """Zero ``optimizer.state[key][*][index]`` for every buffer (Adam m/v, SGD velocity, ...)."""
    if optimizer is None:
        return
    for buf in optimizer.state.get(key, {}).values():
        buf[index] = 0


def reinit_incoming(
    net: MLP, optimizer: Optimizer | None, layer: int, idx: NDArray[np.intp], rng: np.random.Generator | Any
) -> None:
    """Give units ``idx`` of hidden layer ``layer`` (1-based) fresh incoming weights, in place.

    Column ``idx`` of ``W{layer}`` is drawn with the net's initialiser (a whole (fan_in, fan_out) matrix is drawn
    from ``rng`` and its columns taken, so the stream does not depend on which units), ``b{layer}[idx]`` is reset to
    ``bias_init``, a PReLU slope to its initial value, and the optimizer state of all of them is zeroed. The one
    "recycle a unit's input side" step of ReDo and Continual Backprop; the outgoing side differs between them.
    """
    p = net.params
    fan_in, fan_out = net.sizes[layer - 1], net.sizes[layer]
    fresh = init_weight(net.init, fan_in, fan_out, rng=rng, dtype=net.dtype, std=net.init_std)
    p[f"W{layer}"][:, idx] = fresh[:, idx]
    p[f"b{layer}"][idx] = net.bias_init
    zero_state(optimizer, f"W{layer}", (slice(None), idx))
    zero_state(optimizer, f"b{layer}", (idx,))
    if f"a{layer}" in p:
        p[f"a{layer}"][idx] = net.activation.slope
        zero_state(optimizer, f"a{layer}", (idx,))


def redo(
    net: MLP,
    optimizer: Optimizer | None,
    stats: ActivationStats,
    *,
    tau: float = 0.1,
    seed: RNGLike = 0,
    bias_correction: bool = False,
) -> ReDoReport:
    """Recycle the dead/τ-dormant hidden units of ``net`` in place (ReDo, Sokar et al. 2023).

    Parameters
    ----------
    net
        The MLP to modify in place (hidden layers ``hidden1`` .. ``hidden{L-1}``).
    optimizer
        The optimizer training ``net`` (or ``None``): the state entries of the recycled units are zeroed,
        ``optimizer.t`` and all other entries are kept.
    stats
        Statistics of ``net`` over some data, keyed by ``net.hidden_names``, e.g. ``scan(net, X)``.
    tau
        Dormancy threshold (see :func:`recycle_mask`): dead units are recycled, and for ``tau > 0`` also units
        whose dormant score is <= ``tau``. ``tau=0`` is the "dead" view; 0.1 (default, as in the torch adapter)
        the "dormant" one.
    seed
        An int or ``numpy.random.Generator`` for the new incoming weights. Pass a Generator when calling
        repeatedly, so each call draws fresh weights.
    bias_correction
        Fold each recycled unit's mean activation over the stats' data into the next layer's bias,
        ``b{l+1} += mean_h[u] * W{l+1}[u, :]``, before zeroing ``W{l+1}[u, :]`` (as Continual Backprop does,
        Dohare et al. 2024). With ``tau > 0`` the output then moves only by ``-(h_u(x) - mean_h[u]) * W{l+1}[u, :]``
        instead of ``-h_u(x) * W{l+1}[u, :]``. ReLU only (the stats hold mean |activation|, which is the mean
        activation only for non-negative activations); dead units have mean 0, so ``tau=0`` is unaffected.

    Returns
    -------
    ReDoReport
        The recycled unit indices per layer.

    Notes
    -----
    Outgoing weights are zeroed, so on any input the recycled units contribute nothing right after the reset.
    The output is therefore bit-identical on the data the stats came from whenever the recycled units were
    zero on all of it: dead ReLU units (``tau=0``). A dormant unit that was slightly active, or a leaky/PReLU
    unit that is dead (fired on no sample, but its negative side leaks), loses its small contribution.
    """
    stats = _check_stats(net, stats)
    tau = check_tau(tau)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a reluscope.nn.Optimizer or None, got {type(optimizer).__name__}; "
            "for torch models use reluscope.torch.redo"
        )
    if bias_correction and net.activation.name != "relu":
        raise ValueError(
            f"bias_correction needs the mean activation, which the stats record only for ReLU (mean |activation|); "
            f"this network uses {net.activation.name!r}: pass bias_correction=False"
        )
    rng = as_rng(seed)
    p = net.params
    units: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    chosen: list[NDArray[np.intp]] = []
    for layer, name in enumerate(net.hidden_names, start=1):
        idx = np.flatnonzero(recycle_mask(stats, name, tau))
        chosen.append(idx)
        units[name] = idx.tolist()
        sizes[name] = net.sizes[layer]
    # 1) incoming weights, bias, PReLU slope (and their optimizer state) of every recycled unit
    for layer, idx in enumerate(chosen, start=1):
        if idx.size:
            reinit_incoming(net, optimizer, layer, idx, rng)
    # 2) outgoing weights last, so every recycled unit ends with zero outgoing weights
    for layer, idx in enumerate(chosen, start=1):
        if idx.size == 0:
            continue
        if bias_correction:
            mean_h = stats.mean_abs_activation(net.hidden_names[layer - 1])[idx]
            p[f"b{layer + 1}"] += (mean_h @ p[f"W{layer + 1}"][idx, :].astype(np.float64)).astype(net.dtype)
        p[f"W{layer + 1}"][idx, :] = 0
        zero_state(optimizer, f"W{layer + 1}", (idx, slice(None)))
    return ReDoReport(units=units, sizes=sizes, tau=tau, samples={n: stats.describe_samples(n) for n in units})


def default_redo_until(epochs: int) -> int:
    """The last epoch ReDo recycles at unless told otherwise: the end of the first half of training (at least 1).

    The second half then trains without resets, so a measurement at the end sees trained units rather than units
    just re-initialised. ``reluscope train --redo``, sweep cells with ``--remedies redo`` and remedy comparisons
    all use this rule.
    """
    return max(1, check_positive_int(epochs, "epochs", example=2000) // 2)


class ReDoCallback(Callback):
    """A :func:`reluscope.train.fit` callback that scans ``X`` and recycles units every ``every`` epochs.

    Each recycle appends ``{"epoch", "step", "counts": {layer: n recycled}, "total"}`` to
    ``history.extra["redo"]``.

    Parameters
    ----------
    X
        (N, D) data the dead/dormant statistics are computed on; ``None`` uses the training set given to ``fit``.
    every
        Recycle after every this many epochs (with full-batch training, one epoch is one step).
    tau
        Dormancy threshold passed to :func:`redo` (0 = dead units only).
    batch_size
        Rows per forward pass of the scan.
    until
        Last epoch at which to recycle (``None``: no limit). Stopping some epochs before the end lets recycled
        units train before the final measurement, rather than measuring fresh units that were just reset.
    seed
        Seeds the Generator all recycles draw their new weights from.

    Examples
    --------
    >>> cb = ReDoCallback(X, every=100, tau=0.0)
    >>> history = fit(net, X, y, lr=3.0, epochs=2000, callbacks=[cb])
    >>> history.extra["redo"][0]["counts"]
    {'hidden1': 42}
    """

    def __init__(
        self,
        X: NDArray[Any] | None = None,
        *,
        every: int = 100,
        tau: float = 0.1,
        batch_size: int = 1024,
        until: int | None = None,
        seed: RNGLike = 0,
    ) -> None:
        self.X = X
        self.every = check_positive_int(every, "every")
        self.tau = check_tau(tau)
        self.batch_size = check_positive_int(batch_size, "batch_size", example=1024)
        self.until = None if until is None else check_positive_int(until, "until", example=1500)
        self.rng = as_rng(seed)
        self.reports: list[ReDoReport] = []

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every != 0 or (self.until is not None and state.epoch > self.until):
            return
        X = state.X if self.X is None else self.X
        stats = scan(state.net, X, self.batch_size)
        report = redo(state.net, state.optimizer, stats, tau=self.tau, seed=self.rng)
        self.reports.append(report)
        state.history.extra.setdefault("redo", []).append(
            {"epoch": state.epoch, "step": state.step, "counts": dict(report.counts), "total": report.total}
        )

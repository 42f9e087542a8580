"""Learning-rate guidance: a short range test for dead units, and a "death spike" detector for training.

Too large a step can push a unit's weights so far that it never fires again. :func:`lr_range_test` trains the same
initial network briefly at increasing learning rates and recommends the largest one that keeps the dead fraction
at most a threshold; :class:`DeathSpikeDetector` watches a training run and records every update after which the
dead fraction of a layer jumped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_finite_array, check_fraction, check_labels, check_positive, check_positive_int
from reluscope.diagnose import ActivationStats, scan
from reluscope.nn.model import MLP
from reluscope.nn.optim import Optimizer, get_optimizer
from reluscope.train import Callback, DivergenceError, TrainState, fit

__all__ = ["DeathSpikeDetector", "LRRangeResult", "LRTrial", "lr_range_test", "overall_dead_fraction"]


def overall_dead_fraction(stats: ActivationStats) -> float:
    """Dead units over all sites / units over all sites (0.0 for stats without sites)."""
    units = sum(stats.n_units(n) for n in stats.names)
    dead = sum(int(np.count_nonzero(stats.dead_mask(n))) for n in stats.names)
    return dead / units if units else 0.0


@dataclass(frozen=True)
class LRTrial:
    """One learning rate of a range test.

    Attributes
    ----------
    lr : float
        The learning rate.
    losses : list[float]
        Training loss at every step (the batch loss before the update); shorter than ``steps`` if it diverged.
    final_loss : float
        Last finite entry of ``losses`` (NaN if none).
    accuracy : float
        Training accuracy at the end (of the last finite weights if it diverged).
    dead_fraction : float
        Fraction of all hidden units that never fired on the data at the end.
    dead_fraction_per_layer : dict[str, float]
        The same per hidden layer.
    diverged : bool
        Loss or weights became NaN/inf.
    diverged_at_step : int or None
        The step at which it did.
    ok : bool
        Not diverged and ``dead_fraction <= threshold``.
    """

    lr: float
    losses: list[float]
    final_loss: float
    accuracy: float
    dead_fraction: float
    dead_fraction_per_layer: dict[str, float]
    diverged: bool
    diverged_at_step: int | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["final_loss"] = None if not math.isfinite(self.final_loss) else self.final_loss
        return d


@dataclass(frozen=True)
class LRRangeResult:
    """The outcome of :func:`lr_range_test`.

    Attributes
    ----------
    trials : list[LRTrial]
        One per learning rate, in increasing order.
    threshold : float
        Largest acceptable dead fraction.
    steps : int
        Optimizer steps per learning rate.
    recommended_lr : float or None
        ``margin`` trial rates below ``largest_ok_lr`` (the smallest tried rate if there are fewer);
        ``None`` when even the smallest failed.
    lowest_loss_lr : float or None
        The learning rate with the lowest final loss among the trials that are ``ok``.
    largest_ok_lr : float or None
        The largest learning rate below the first one that failed (diverged or left more than ``threshold``
        of the units dead); ``None`` when even the smallest failed.
    first_failure_lr : float or None
        The smallest learning rate that failed; ``None`` when none did.
    margin : int
        Trial rates stepped back from ``largest_ok_lr`` to get ``recommended_lr``.
    """

    trials: list[LRTrial]
    threshold: float
    steps: int
    recommended_lr: float | None
    lowest_loss_lr: float | None
    largest_ok_lr: float | None = None
    first_failure_lr: float | None = None
    margin: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no NaN)."""
        return {
            "threshold": self.threshold,
            "steps": self.steps,
            "recommended_lr": self.recommended_lr,
            "lowest_loss_lr": self.lowest_loss_lr,
            "largest_ok_lr": self.largest_ok_lr,
            "first_failure_lr": self.first_failure_lr,
            "margin": self.margin,
            "trials": [t.to_dict() for t in self.trials],
        }


class _LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, state: TrainState) -> None:
        self.losses.append(float(state.loss))


def _check_lrs(lrs: Any, lr_min: float, lr_max: float, n_lrs: int) -> list[float]:
    if lrs is None:
        lo = check_positive(lr_min, "lr_min")
        hi = check_positive(lr_max, "lr_max")
        n = check_positive_int(n_lrs, "n_lrs", example=7)
        if hi <= lo:
            raise ValueError(f"lr_max must be larger than lr_min, got lr_min={lo:g}, lr_max={hi:g}")
        return [float(v) for v in np.geomspace(lo, hi, n)] if n > 1 else [lo]
    if isinstance(lrs, str) or not isinstance(lrs, Sequence | np.ndarray) or len(lrs) == 0:
        raise ValueError(f"lrs must be a non-empty list of learning rates, got {lrs!r}; e.g. lrs=[0.1, 1.0, 10.0]")
    values = sorted(check_positive(v, "every learning rate in lrs") for v in lrs)
    if len(set(values)) != len(values):
        raise ValueError(f"lrs contains duplicates: {list(lrs)}; list each learning rate once")
    return values


def lr_range_test(
    X: NDArray[Any],
    y: NDArray[np.integer[Any]],
    net: MLP | None = None,
    *,
    hidden: Sequence[int] = (100,),
    activation: str = "relu",
    init: str = "he",
    init_std: float = 0.01,
    lrs: Sequence[float] | None = None,
    lr_min: float = 1e-2,
    lr_max: float = 10.0,
    n_lrs: int = 7,
    steps: int = 200,
    threshold: float = 0.1,
    margin: int = 1,
    optimizer: str | Callable[[float], Optimizer] = "sgd",
    reg: float = 1e-3,
    batch_size: int | None = None,
    scan_batch_size: int = 1024,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> LRRangeResult:
    """Train the same initial network briefly at increasing learning rates and measure the units each one kills.

    Parameters
    ----------
    X, y
        Training data (N, D) and integer labels (N,).
    net
        The initial network; every learning rate trains its own copy of it (so all start from the same weights).
        ``None`` builds ``MLP([D, *hidden, C], activation, init=init, init_std=init_std, seed=seed)``.
    lrs
        Learning rates to try; ``None`` uses ``n_lrs`` geometrically spaced values from ``lr_min`` to ``lr_max``.
    steps
        Optimizer steps per learning rate.
    threshold
        Largest acceptable fraction of hidden units dead (never firing on X) at the end of a trial.
    margin
        Recommend this many trial rates below the largest passing one (0: the largest passing one itself). A
        short test undercounts the units a rate near the failure boundary kills over a long run (on the CS231n
        spiral a rate that passes 200 steps with few units dead can lose a large part of them over 2000 epochs:
        see ``reluscope sweep`` at lr 3), so the default steps back one rate (a factor 3.16 in the default range).
    optimizer
        A name (sgd, momentum, nesterov, adam, adamw) or a callable ``lr -> Optimizer``; a fresh optimizer per lr.
    reg, batch_size, seed
        As for :func:`reluscope.train.fit` (``seed`` also seeds the default network and the minibatch order).
    progress
        ``progress(n_done, n_total)`` after each learning rate.

    Returns
    -------
    LRRangeResult
        Per learning rate the loss curve, final dead fraction and divergence, and the recommendation: the
        largest learning rate before the first failing one, stepped back by ``margin`` rates. A learning rate
        above a failure is never recommended even if it happens to pass, since the boundary is noisy there.
    """
    X = check_finite_array(X, "X")
    y_checked = check_labels(y, X.shape[0])
    threshold_f = check_fraction(threshold, "threshold")
    n_steps = check_positive_int(steps, "steps", example=200)
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin must be an int >= 0 (trial rates to step back), got {margin!r}; e.g. margin=1")
    values = _check_lrs(lrs, lr_min, lr_max, n_lrs)
    if net is None:
        n_classes = int(y_checked.max()) + 1
        net = MLP([X.shape[1], *hidden, max(n_classes, 2)], activation, init=init, init_std=init_std, seed=seed)
    elif not isinstance(net, MLP):
        raise TypeError(f"net must be a reluscope.nn.MLP or None, got {type(net).__name__}")
    if not net.hidden_names:
        raise ValueError(f"MLP{net.sizes} has no hidden layer, so no unit can die; add one (e.g. hidden=[100])")
    net.check_input(X)
    if callable(optimizer) and not isinstance(optimizer, str):
        make_opt = optimizer
    else:
        get_optimizer(optimizer, 1.0)  # fail early on an unknown name
        name = optimizer

        def make_opt(lr: float) -> Optimizer:
            return get_optimizer(name, lr)

    trials: list[LRTrial] = []
    for i, lr in enumerate(values):
        trial_net = net.copy()
        recorder = _LossRecorder()
        diverged_at: int | None = None
        try:
            fit(
                trial_net,
                X,
                y_checked,
                optimizer=make_opt(lr),
                reg=reg,
                iterations=n_steps,
                batch_size=batch_size,
                seed=seed,
                callbacks=[recorder],
            )
        except DivergenceError as exc:
            diverged_at = exc.step
        stats = scan(trial_net, X, scan_batch_size)
        dead = overall_dead_fraction(stats)
        diverged = diverged_at is not None
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged trial's last finite weights may overflow
            accuracy = trial_net.accuracy(X, y_checked)
        trials.append(
            LRTrial(
                lr=lr,
                losses=recorder.losses,
                final_loss=recorder.losses[-1] if recorder.losses else math.nan,
                accuracy=accuracy,
                dead_fraction=dead,
                dead_fraction_per_layer={n: stats.dead_fraction(n) for n in stats.names},
                diverged=diverged,
                diverged_at_step=diverged_at,
                ok=not diverged and dead <= threshold_f,
            )
        )
        if progress is not None:
            progress(i + 1, len(values))
    n_ok = next((i for i, t in enumerate(trials) if not t.ok), len(trials))  # trials before the first failure
    largest_ok = trials[n_ok - 1].lr if n_ok else None
    recommended = trials[max(0, n_ok - 1 - margin)].lr if n_ok else None
    ok = [t for t in trials if t.ok]
    lowest = min(ok, key=lambda t: t.final_loss).lr if ok else None
    return LRRangeResult(
        trials=trials,
        threshold=threshold_f,
        steps=n_steps,
        recommended_lr=recommended,
        lowest_loss_lr=lowest,
        largest_ok_lr=largest_ok,
        first_failure_lr=trials[n_ok].lr if n_ok < len(trials) else None,
        margin=margin,
    )


class DeathSpikeDetector(Callback):
    """A :func:`reluscope.train.fit` callback that flags updates after which a layer's dead fraction jumped.

    It scans ``X`` at the start and after every ``every`` optimizer steps; when a hidden layer's dead fraction
    rose by at least ``threshold`` since the previous scan, it appends
    ``{"step", "epoch", "lr", "layer", "before", "after"}`` to ``history.extra["death_spikes"]`` (and to
    ``self.spikes``). ``epoch`` is the epoch the step belongs to (1-based).

    Each check is one forward pass of ``X`` through the hidden layers (with ``every=1`` and full-batch training,
    about as much work again as the forward half of each step). Pass a subsample or a larger ``every`` (e.g.
    the steps per epoch) to make it cheaper.

    Parameters
    ----------
    X
        (N, D) data to scan; ``None`` scans the training set passed to ``fit``.
    threshold
        Smallest rise of a layer's dead fraction between two checks that counts as a spike (0.05 = 5% of the
        layer's units).
    every
        Check after every this many optimizer steps.
    batch_size
        Rows per forward pass of a scan.
    """

    def __init__(
        self, X: NDArray[Any] | None = None, *, threshold: float = 0.05, every: int = 1, batch_size: int = 1024
    ) -> None:
        self.X = X
        self.threshold = check_fraction(threshold, "threshold", allow_zero=False, example=0.05)
        self.every = check_positive_int(every, "every", example=1)
        self.batch_size = check_positive_int(batch_size, "batch_size", example=1024)
        self.spikes: list[dict[str, Any]] = []
        self._last: dict[str, float] = {}
        self._X: NDArray[Any] | None = None  # X validated once

    def _fractions(self, state: TrainState) -> dict[str, float]:
        """Dead fraction per hidden layer over X: only "fired at least once", cheaper than a full scan."""
        net = state.net
        X = net.check_input(state.X if self.X is None else self.X) if self._X is None else self._X
        self._X = X
        p = net.params
        fired = [np.zeros(h, dtype=bool) for h in net.sizes[1:-1]]
        for start in range(0, X.shape[0], self.batch_size):
            h = X[start : start + self.batch_size]
            for layer, f in enumerate(fired, start=1):
                # a diverging run overflows here first; fit() reports the divergence from the loss
                with np.errstate(over="ignore", invalid="ignore"):
                    z = h @ p[f"W{layer}"] + p[f"b{layer}"]
                    f |= net.activation.spec.fires(z).any(axis=0)
                    if layer < len(fired):
                        h = net.activation.forward(z, p.get(f"a{layer}"))[0]
        return {name: 1.0 - float(f.mean()) for name, f in zip(net.hidden_names, fired, strict=True)}

    def on_train_begin(self, state: TrainState) -> None:
        self.spikes = []
        self._X = None
        self._last = self._fractions(state)

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every != 0:
            return
        now = self._fractions(state)
        for name, after in now.items():
            before = self._last.get(name, 0.0)
            if after - before >= self.threshold - 1e-12:
                spike = {
                    "step": state.step,
                    "epoch": state.epoch + 1,
                    "lr": state.optimizer.lr,
                    "layer": name,
                    "before": before,
                    "after": after,
                }
                self.spikes.append(spike)
                state.history.extra.setdefault("death_spikes", []).append(spike)
        self._last = now

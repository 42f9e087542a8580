"""Measure the remedies against each other: the same data, network and step size, with no remedy, ReDo, leaky.

The default configuration is the CS231n case study made to kill units: the spiral (100 points x 3 arms), a
2-layer net with 100 hidden units initialised with ``0.01 * randn``, reg 1e-3, full-batch SGD, 2000 steps, at step
size 3.0 (about half the units end up dead without a remedy), 10 seeds; ReDo (tau=0) every 100 steps for the first
1000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_finite_array, check_labels, check_positive
from reluscope.data import spiral
from reluscope.remedies import check_tau, default_redo_until, overall_dead_fraction
from reluscope.runs import REMEDIES, PreparedData, RunConfig, check_remedy, mean_std, run
from reluscope.train import Callback

__all__ = ["COMPARISON_CONFIG", "RemedyComparison", "RemedyRun", "compare_remedies", "run_remedy"]


@dataclass(frozen=True)
class RemedyRun:
    """One training run with one remedy.

    Attributes
    ----------
    remedy : str
        ``"none"``, ``"redo"`` or ``"leaky"``.
    seed : int
        Seed of the initial weights.
    train_accuracy, final_loss : float
        At the end of training (of the last finite weights if it diverged).
    dead_fraction : float
        Fraction of all hidden units dead at the end: fired on no sample of the training set.
    stuck_fraction : float
        Fraction of hidden units stuck at the end: their activation derivative is 0 on every training sample, so
        no gradient from the data reaches their incoming weights (see the glossary). Equals ``dead_fraction`` for
        ReLU, 0 for leaky.
    recycled : int
        Units recycled by ReDo over the run (0 for the other remedies).
    diverged : bool
        The run stopped on a NaN/inf.
    """

    remedy: str
    seed: int
    train_accuracy: float
    final_loss: float
    dead_fraction: float
    stuck_fraction: float
    recycled: int
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["final_loss"] = self.final_loss if math.isfinite(self.final_loss) else None
        return d


@dataclass(frozen=True)
class RemedyComparison:
    """All runs of :func:`compare_remedies` and their per-remedy averages.

    Attributes
    ----------
    config : dict
        The settings used (JSON-ready).
    runs : list[RemedyRun]
        One per (remedy, seed).
    summary : dict[str, dict[str, float]]
        Per remedy: mean and sample std over seeds of train_accuracy, dead_fraction, stuck_fraction,
        final_loss, plus mean recycled units and the number of diverged runs.
    """

    config: dict[str, Any]
    runs: list[RemedyRun]
    summary: dict[str, dict[str, float]] = field(init=False)

    def __post_init__(self) -> None:
        summary: dict[str, dict[str, float]] = {}
        for remedy in dict.fromkeys(r.remedy for r in self.runs):
            runs = [r for r in self.runs if r.remedy == remedy]
            row: dict[str, float] = {"n_runs": len(runs)}
            for key in ("train_accuracy", "dead_fraction", "stuck_fraction", "final_loss"):
                mean, std = mean_std([getattr(r, key) for r in runs])
                row[f"{key}_mean"] = math.nan if mean is None else mean
                row[f"{key}_std"] = math.nan if std is None else std
            row["recycled_mean"] = float(np.mean([r.recycled for r in runs]))
            row["diverged"] = sum(r.diverged for r in runs)
            summary[remedy] = row
        object.__setattr__(self, "summary", summary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: config, runs, summary."""
        return {"config": self.config, "runs": [r.to_dict() for r in self.runs], "summary": self.summary}


COMPARISON_CONFIG = RunConfig(init="normal", init_std=0.01, lr=3.0)
"""The comparison's default run: the CS231n 2-layer net on the spiral with ``0.01 * randn`` weights, reg 1e-3,
full-batch SGD for 2000 epochs at step size 3.0 (about half the units die without a remedy), ReDo at tau 0 every
100 epochs for the first half. Vary it with ``dataclasses.replace(COMPARISON_CONFIG, lr=1.0, epochs=400)``."""


def run_remedy(
    remedy: str,
    X: NDArray[Any],
    y: NDArray[np.integer[Any]],
    config: RunConfig = COMPARISON_CONFIG,
    *,
    callbacks: Sequence[Callback] = (),
) -> RemedyRun:
    """Train one network with one remedy and measure it (one cell of a comparison).

    ``X`` (N, D) and ``y`` (N,) are the training data (no validation split); ``config`` gives the network,
    optimisation and ReDo schedule (its data fields are not read: the data are ``X, y``). ``remedy`` is
    ``"none"`` (ReLU), ``"redo"`` (ReLU + ReDo every ``config.redo_every`` epochs up to ``config.redo_until``,
    default half of ``config.epochs``, at ``config.redo_tau``) or ``"leaky"`` (leaky ReLU with ``config.slope``).
    Every remedy starts from the same initial weights for a given ``config.seed``.

    Raises ValueError for an unknown remedy, and when the trained network overflows on the data.
    """
    cell = replace(config, activation="relu", remedy=check_remedy(remedy))
    return _remedy_run(cell, PreparedData.from_arrays(X, y), callbacks)


def _remedy_run(config: RunConfig, data: PreparedData, callbacks: Sequence[Callback] = ()) -> RemedyRun:
    """:func:`reluscope.runs.run` of ``config`` on ``data``, measured as a :class:`RemedyRun`."""
    result = run(config, callbacks, data=data)
    if result.stats is None:
        raise ValueError(
            f"the network trained with remedy {config.remedy!r} at lr={config.lr:g} overflows on the training data, "
            "so its units cannot be counted; lower the learning rate"
        )
    n_units = sum(m.size for m in result.no_gradient.values())
    return RemedyRun(
        remedy=config.remedy,
        seed=int(config.seed),
        train_accuracy=float(result.train_accuracy or 0.0),
        final_loss=float(result.history["loss"][-1]) if result.history["loss"] else math.nan,
        dead_fraction=overall_dead_fraction(result.stats),
        stuck_fraction=sum(int(m.sum()) for m in result.no_gradient.values()) / n_units,
        recycled=sum(r["total"] for r in result.redo or []),
        diverged=result.status == "diverged",
    )


def compare_remedies(
    X: NDArray[Any] | None = None,
    y: NDArray[np.integer[Any]] | None = None,
    config: RunConfig = COMPARISON_CONFIG,
    *,
    remedies: Sequence[str] = REMEDIES,
    seeds: Sequence[int] = tuple(range(10)),
) -> RemedyComparison:
    """Train every (remedy, seed) pair on the same data and compare dead fractions and accuracy.

    Parameters
    ----------
    X, y
        Training data (N, D) and labels (N,); ``None`` uses ``spiral(100, 3, seed=0)`` (the CS231n data).
    config
        The network, training and ReDo settings (default :data:`COMPARISON_CONFIG`); each run is
        ``replace(config, seed=seed, remedy=remedy)``. ReDo recycles every ``redo_every`` epochs up to epoch
        ``redo_until`` (default half of ``epochs``: the second half trains without resets, so the final measurement
        sees trained units, not fresh ones), at threshold ``redo_tau``; ``slope`` is leaky ReLU's.
    remedies
        Any of ``"none"``, ``"redo"``, ``"leaky"`` (see :func:`run_remedy`).
    seeds
        Seeds of the initial weights (and minibatch order); every remedy runs with each seed. At step size 3 the
        final accuracy of one run varies by ±0.15 between seeds, so compare means over 10 or more.

    Returns
    -------
    RemedyComparison
        Every run, and mean/std per remedy in ``summary``.
    """
    if (X is None) != (y is None):
        raise ValueError("pass both X and y, or neither (to use the spiral)")
    if X is None or y is None:
        X, y = spiral(100, 3, seed=0)
    X = check_finite_array(X, "X")
    y = check_labels(y, X.shape[0])
    if isinstance(remedies, str) or not remedies:
        raise ValueError(f"remedies must be a non-empty list such as ['none', 'redo', 'leaky'], got {remedies!r}")
    for remedy in remedies:
        check_remedy(remedy)
    if isinstance(seeds, str | int) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of ints, e.g. seeds=[0, 1, 2, 3, 4], got {seeds!r}")
    check_positive(config.lr, "lr")
    check_tau(config.redo_tau)
    record = {
        "remedies": list(remedies),
        "seeds": [int(s) for s in seeds],
        "n_samples": int(X.shape[0]),
        "hidden": list(config.hidden),
        "init": config.init,
        "init_std": config.init_std,
        "lr": config.lr,
        "reg": config.reg,
        "epochs": config.epochs,
        "optimizer": config.optimizer,
        "batch_size": config.batch_size,
        "redo_every": config.redo_every,
        "redo_tau": config.redo_tau,
        "redo_until": config.redo_until if config.redo_until is not None else default_redo_until(config.epochs),
        "slope": config.slope,
    }
    data = PreparedData.from_arrays(X, y)
    base = replace(config, activation="relu")
    runs = [_remedy_run(replace(base, seed=int(seed), remedy=remedy), data) for seed in seeds for remedy in remedies]
    return RemedyComparison(config=record, runs=runs)

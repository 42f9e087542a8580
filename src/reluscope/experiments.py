"""Experiments built from the engine and the diagnosis: a learning-rate sweep and the born-dead study.

Everything here returns plain data (dicts, lists, dataclasses of them) and writes files atomically through
:mod:`reluscope.io`; the figures are drawn by :mod:`reluscope.report` and the command line is ``reluscope sweep`` /
``reluscope born-dead``.

**What "dead" means here.** Following the rest of reluscope, a unit is *dead* when it fired (pre-activation > 0)
on no training sample; that is the same count as ``reluscope diagnose``. Whether a dead unit can come back depends
on the activation: a ReLU passes no gradient where its input is <= 0, so a unit dead on the whole training set
receives no gradient and (with plain SGD) stays dead. A leaky ReLU passes ``slope`` times the gradient there, so
its units *always* receive gradient. The sweep therefore records two fractions per layer:

``dead_fraction``
    units that fired on no training sample ("dead by firing").
``no_gradient_fraction``
    units whose local derivative is 0 on every training sample, measured with the activation's own backward pass
    (see :func:`no_gradient_units`): equal to ``dead_fraction`` for ReLU, 0 by construction for leaky ReLU (slope
    > 0), ELU, sigmoid and tanh. These are the units that are stuck for good.

**Sweeps are resumable.** Every cell (one learning rate x activation x init x seed) is identified by a stable hash
of its full configuration, including a digest of the data, and its result is written atomically to
``OUT/cells/<key>.json`` as soon as it finishes. Rerunning the same sweep skips the cells that have a valid result.

**Parallel backends.** Cells run in parallel with joblib (``jobs`` processes, loky backend by default). To use a
cluster, call :func:`run_sweep` inside ``with joblib.parallel_backend("dask"):`` (with a ``distributed.Client``)
or ``"ray"`` (after ``ray.util.joblib.register_ray()``) and pass ``jobs=-1``.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import math
import numbers
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive
from reluscope.data import Standardizer, load_dataset, train_val_split
from reluscope.diagnose import (
    DeadUnitTracker,
    born_dead_monte_carlo,
    born_dead_probability,
    grid_inputs,
    wilson_interval,
)
from reluscope.io import atomic_write, load_json, save_json
from reluscope.nn import MLP, get_activation
from reluscope.nn.init import check_init
from reluscope.nn.optim import get_optimizer
from reluscope.remedies import ReDoCallback, dead_by_gradient
from reluscope.train import DivergenceError, TrainState, fit

__all__ = [
    "BORN_DEAD_COLUMNS",
    "BORN_DEAD_FILE",
    "DEFAULT_LRS",
    "SUMMARY_VALUES",
    "SWEEP_FILE",
    "TABLE_COLUMNS",
    "BornDeadConfig",
    "CellProgress",
    "SweepConfig",
    "SweepData",
    "SweepResult",
    "born_dead_command",
    "born_dead_csv",
    "born_dead_study",
    "cell_key",
    "dead_over_training",
    "format_number",
    "load_sweep",
    "load_sweep_data",
    "no_gradient_units",
    "parse_float_list",
    "parse_int_list",
    "parse_name_list",
    "run_cell",
    "run_sweep",
    "summarize_sweep",
    "sweep_command",
    "sweep_table",
    "write_born_dead",
]

SWEEP_FILE = "sweep.json"
BORN_DEAD_FILE = "born_dead.json"
CELL_FORMAT = "reluscope.sweep-cell"
CELL_VERSION = 1
DEFAULT_LRS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

CellProgress = Callable[[dict[str, Any], int, int], None]
"""``progress(cell_result, n_done, n_total)``, called in the parent process after every finished cell."""


# Parsing helpers (shared by the CLI) -------------------------------------------------------------------------------
def _split(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"{option} must be a comma-separated list without empty items, got {text!r}")
    return parts


def parse_float_list(text: str, option: str = "--lrs") -> tuple[float, ...]:
    """'0.1,1,10' -> (0.1, 1.0, 10.0); every value finite and > 0."""
    values = []
    for part in _split(text, option):
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"{option} must be comma-separated numbers such as 0.1,1,10, got {part!r}") from None
        values.append(check_positive(v, f"every value of {option}"))
    return tuple(values)


def parse_int_list(text: str, option: str = "--seeds", *, minimum: int = 0) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); every value an integer >= ``minimum``."""
    values = []
    for part in _split(text, option):
        try:
            v = int(part)
        except ValueError:
            raise ValueError(f"{option} must be comma-separated integers such as 0,1,2, got {part!r}") from None
        if v < minimum:
            raise ValueError(f"every value of {option} must be >= {minimum}, got {v}")
        values.append(v)
    return tuple(values)


def parse_name_list(text: str, option: str = "--activations") -> tuple[str, ...]:
    """'relu, leaky' -> ('relu', 'leaky') (names are checked by the caller)."""
    return tuple(p.lower() for p in _split(text, option))


def _dedupe(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# Sweep configuration -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    """A grid of training runs: ``lrs`` x ``activations`` x ``inits`` x ``seeds``, everything else shared.

    The defaults are the CS231n 2-layer case study on the spiral (100 hidden units, reg 1e-3, full-batch SGD,
    2000 epochs) with He init, 20% of the data held out for validation, and learning rates from 0.1 to 100.
    The seed of a cell seeds its initialisation (and minibatch order); the data and the split are the same for
    every cell (``data_seed``).
    """

    data: str = "spiral"
    labels: str | None = None
    label_column: str = "label"
    n_per_class: int = 100
    n_classes: int = 3
    data_seed: int = 0
    standardize: bool = False
    val_fraction: float = 0.2
    hidden: tuple[int, ...] = (100,)
    lrs: tuple[float, ...] = DEFAULT_LRS
    activations: tuple[str, ...] = ("relu", "leaky")
    inits: tuple[str, ...] = ("he",)
    seeds: tuple[int, ...] = (0, 1, 2)
    remedies: tuple[str, ...] = ("none",)
    redo_every: int = 100
    redo_tau: float = 0.0
    init_std: float = 0.01
    bias_init: float = 0.0
    slope: float = 0.01
    optimizer: str = "sgd"
    reg: float = 1e-3
    epochs: int = 2000
    batch_size: int | None = None
    track_every: int = 20
    dtype: str = "float64"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.lrs or not self.activations or not self.inits or not self.seeds or not self.remedies:
            raise ValueError("lrs, activations, inits, seeds and remedies must each list at least one value")
        set_(self, "lrs", _dedupe(check_positive(v, "every learning rate") for v in self.lrs))
        set_(self, "activations", _dedupe(get_activation(a, slope=self.slope).name for a in self.activations))
        set_(self, "inits", _dedupe(check_init(i) for i in self.inits))
        set_(self, "seeds", _dedupe(_check_int(s, "every seed", 0) for s in self.seeds))
        set_(self, "remedies", _dedupe(_check_remedy(r) for r in self.remedies))
        _check_int(self.redo_every, "redo_every", 1)
        check_positive(self.redo_tau, "redo_tau", allow_zero=True)
        set_(self, "hidden", tuple(_check_int(h, "every hidden width", 1) for h in self.hidden))
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden layer width (there is nothing to diagnose)")
        _check_int(self.n_per_class, "n_per_class", 1)
        _check_int(self.n_classes, "n_classes", 2)
        _check_int(self.data_seed, "data_seed", 0)
        _check_int(self.epochs, "epochs", 1)
        _check_int(self.track_every, "track_every", 1)
        if self.batch_size is not None:
            _check_int(self.batch_size, "batch_size", 1)
        if not (isinstance(self.val_fraction, int | float) and 0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}; e.g. 0.2")
        check_positive(self.reg, "reg", allow_zero=True)
        check_positive(self.init_std, "init_std")
        get_optimizer(self.optimizer, 1.0)
        if not math.isfinite(self.bias_init):
            raise ValueError(f"bias_init must be finite, got {self.bias_init}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    @property
    def n_cells(self) -> int:
        """Number of training runs in the grid."""
        return len(self.lrs) * len(self.activations) * len(self.inits) * len(self.seeds) * len(self.remedies)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); :meth:`from_dict` rebuilds the config."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        """Rebuild a config from :meth:`to_dict`; unknown keys are a ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sweep config keys {unknown}; was the file written by another version?")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    def cells(self, data_digest: str) -> list[dict[str, Any]]:
        """One config dict per cell, in grid order (init, activation, remedy, lr, seed), each with its ``key``."""
        shared = {
            "format": CELL_FORMAT,
            "version": CELL_VERSION,
            "data_digest": data_digest,
            "hidden": list(self.hidden),
            "init_std": self.init_std,
            "bias_init": self.bias_init,
            "slope": self.slope,
            "optimizer": self.optimizer,
            "reg": self.reg,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "track_every": self.track_every,
            "dtype": self.dtype,
        }
        out = []
        for init in self.inits:
            for act in self.activations:
                for remedy in self.remedies:
                    for lr in self.lrs:
                        for seed in self.seeds:
                            cell = {**shared, "lr": lr, "activation": act, "init": init, "seed": seed}
                            if remedy == "redo":  # "none" adds no key, so plain cells keep their keys
                                cell["remedy"] = {"name": "redo", "every": self.redo_every, "tau": self.redo_tau}
                            cell["key"] = cell_key(cell)
                            out.append(cell)
        return out


REMEDIES = ("none", "redo")


def _check_remedy(name: Any) -> str:
    if name not in REMEDIES:
        raise ValueError(f"unknown remedy {name!r}; choose from {', '.join(REMEDIES)} (leaky is an activation)")
    return str(name)


def variant(cfg: Mapping[str, Any]) -> str:
    """The name a cell's network goes by in tables and plots: its activation, plus ``+redo`` under ReDo."""
    remedy = cfg.get("remedy")
    return f"{cfg['activation']}+{remedy['name']}" if remedy else str(cfg["activation"])


def cell_key(cell: dict[str, Any]) -> str:
    """A stable 16-hex-digit key for a cell config: SHA-256 of its canonical JSON (sorted keys, no ``key``)."""
    payload = json.dumps({k: v for k, v in cell.items() if k != "key"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Data -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SweepData:
    """The training and validation arrays every cell uses, with a digest that goes into the cell keys.

    X (N, D), y (N,), X_val (M, D), y_val (M,) with M = 0 when there is no validation split.
    """

    X: NDArray[np.floating[Any]]
    y: NDArray[np.int64]
    X_val: NDArray[np.floating[Any]]
    y_val: NDArray[np.int64]
    n_classes: int
    name: str
    digest: str

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


def _digest(*arrays: NDArray[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


def load_sweep_data(config: SweepConfig) -> SweepData:
    """Load the dataset named in ``config``, split off validation data and standardise if asked."""
    ds = load_dataset(
        config.data,
        labels_path=config.labels,
        label_column=config.label_column,
        n_per_class=config.n_per_class,
        n_classes=config.n_classes,
        seed=config.data_seed,
    )
    X, y = ds.X, ds.y
    d = X.shape[1]
    X_val: NDArray[np.floating[Any]] = np.empty((0, d), dtype=X.dtype)
    y_val: NDArray[np.int64] = np.empty(0, dtype=np.int64)
    if config.val_fraction > 0:
        X, y, X_val, y_val = train_val_split(X, y, config.val_fraction, seed=config.data_seed)
    if config.standardize:
        scaler = Standardizer.fit(X)
        X = scaler.transform(X)
        X_val = scaler.transform(X_val)
    X = X.astype(config.dtype, copy=False)
    X_val = X_val.astype(config.dtype, copy=False)
    return SweepData(
        X=X,
        y=y.astype(np.int64, copy=False),
        X_val=X_val,
        y_val=y_val.astype(np.int64, copy=False),
        n_classes=ds.n_classes,
        name=ds.name,
        digest=_digest(X, y, X_val, y_val),
    )


# One cell ---------------------------------------------------------------------------------------------------------
# Units that receive no gradient on any sample ("stuck"): the remedies module's measurement, under the name the
# sweep's tables use.
no_gradient_units = dead_by_gradient


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class _GuardedTracker(DeadUnitTracker):
    """A :class:`DeadUnitTracker` for runs that may blow up. Weights can stay finite while the activations they
    produce overflow to inf/NaN; the scan then refuses them. This tracker treats that as divergence: it stops
    training instead of raising, and keeps a copy of the weights of its last successful scan so the final
    statistics describe one finite state."""

    def __init__(self, X: NDArray[Any], every: int) -> None:
        super().__init__(X, every=every)
        self.overflow_epoch: int | None = None
        self.last_params: dict[str, NDArray[Any]] = {}

    def record(self, state: TrainState) -> Any:
        try:
            stats = super().record(state)
        except (ValueError, DivergenceError):  # DeadUnitTracker reports overflowing activations as divergence
            assert self.X is not None
            with np.errstate(all="ignore"):
                finite = all(np.isfinite(pre).all() for pre in state.net.preactivations(self.X))
            if finite:
                raise  # not an overflow: a real error
            if self.overflow_epoch is None:
                self.overflow_epoch = state.epoch
            state.stop_training = True
            return self.stats
        self.last_params = {k: v.copy() for k, v in state.net.params.items()}
        return stats


def run_cell(cell: dict[str, Any], data: SweepData) -> dict[str, Any]:
    """Train one cell of a sweep and return its result as a JSON-ready dict (no file is written).

    A run that diverges at a high learning rate is a result, not an error: ``status`` is ``"diverged"``,
    ``diverged_at_epoch`` says when (the loss or the weights became NaN/inf, or the activations overflowed),
    ``error`` why, and every statistic describes the last finite state, the weights at epoch ``final_epoch``
    (``fit`` restores the last finite weights; if even those overflow, the weights of the last successful scan).

    Keys: ``key``, ``config``, ``status``, ``error``, ``diverged_at_epoch``, ``final_epoch``, ``epochs_run``,
    ``train_accuracy``, ``val_accuracy`` (None without validation data), ``final_loss``, ``val_loss``,
    ``layers`` (per layer: units, dead_fraction, no_gradient_fraction, nearly_dead, median_fire_rate,
    dormant_fraction, n_born_dead, n_died, n_revived), ``tracking`` (scan epochs, samples per scan, per layer the
    dead fraction and per-unit fire counts (R, U) at every scan), ``curves`` (loss/accuracy at the scanned
    epochs) and ``seconds``.
    """
    t0 = time.perf_counter()
    X, y = data.X, data.y
    has_val = data.X_val.shape[0] > 0
    net = MLP(
        [data.n_features, *cell["hidden"], data.n_classes],
        cell["activation"],
        init=cell["init"],
        init_std=cell["init_std"],
        bias_init=cell["bias_init"],
        slope=cell["slope"],
        seed=cell["seed"],
        dtype=cell["dtype"],
    )
    tracker = _GuardedTracker(X, every=cell["track_every"])
    remedy = cell.get("remedy")
    # ReDo recycles during the first half of training, as reluscope.remedies.compare_remedies does, so the final
    # statistics measure trained units rather than units just re-initialised
    until = max(1, cell["epochs"] // 2)
    redo = [ReDoCallback(X, every=remedy["every"], tau=remedy["tau"], until=until, seed=cell["seed"])] if remedy else []
    status, error, diverged_at = "finished", None, None
    # high learning rates are the point of a sweep: overflow is detected and recorded, not warned about
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            history = fit(
                net,
                X,
                y,
                optimizer=cell["optimizer"],
                lr=cell["lr"],
                reg=cell["reg"],
                epochs=cell["epochs"],
                batch_size=cell["batch_size"],
                seed=cell["seed"],
                X_val=data.X_val if has_val else None,
                y_val=data.y_val if has_val else None,
                callbacks=[*redo, tracker],
            )
        except DivergenceError as exc:
            status, error, diverged_at, history = "diverged", str(exc), exc.epoch, exc.history
            last = exc.epoch - 1  # fit restored the weights of the end of this epoch: scan them too
            if tracker.epochs[-1] != last:
                opt = get_optimizer(cell["optimizer"], cell["lr"])
                tracker.record(TrainState(net=net, optimizer=opt, X=X, y=y, history=history, epoch=last))
        if tracker.overflow_epoch is not None:
            status, diverged_at = "diverged", diverged_at or tracker.overflow_epoch
            error = error or (
                f"the activations overflowed to inf/NaN at epoch {tracker.overflow_epoch} with lr={cell['lr']:g} "
                "(the weights were finite but too large); lower the learning rate"
            )
            net.set_params(tracker.last_params)
        final_epoch = tracker.epochs[-1]
        stats = tracker.stats
        assert stats is not None  # the tracker scans at the start of training
        units_history = tracker.unit_history()
        stuck = no_gradient_units(net, X)
        train_acc = net.accuracy(X, y)
        val_acc = net.accuracy(data.X_val, data.y_val) if has_val else None
    layers: dict[str, Any] = {}
    for row in stats.summary(0.1, 0.01):
        name = row["name"]
        uh = units_history[name]
        layers[name] = {
            "units": row["units"],
            "dead_fraction": row["dead_fraction"],
            "no_gradient_fraction": float(np.mean(stuck[name])),
            "nearly_dead": row["nearly_dead"],
            "median_fire_rate": row["median_fire_rate"],
            "dormant_fraction": row["dormant_fraction"],
            "n_born_dead": uh.n_born_dead,
            "n_died": uh.n_died,
            "n_revived": uh.n_revived,
        }
    idx = [e - 1 for e in tracker.epochs if 1 <= e <= len(history.loss)]
    return {
        "format": CELL_FORMAT,
        "version": CELL_VERSION,
        "key": cell["key"],
        "config": {k: v for k, v in cell.items() if k != "key"},
        "status": status,
        "error": error,
        "diverged_at_epoch": diverged_at,
        "final_epoch": final_epoch,
        "epochs_run": len(history.loss),
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "final_loss": _finite_or_none(history.loss[final_epoch - 1]) if final_epoch >= 1 else None,
        "val_loss": _finite_or_none(history.val_loss[final_epoch - 1]) if final_epoch >= 1 and has_val else None,
        "layers": layers,
        "recycled": sum(r["total"] for r in history.extra.get("redo", [])),
        "tracking": {
            "epochs": list(tracker.epochs),
            "n_samples": tracker.n_samples,
            "layers": {
                name: {"dead_fraction": uh.dead_fraction, "fire_counts": uh.fire_counts.tolist()}
                for name, uh in units_history.items()
            },
        },
        "curves": {
            "epoch": [history.epoch[i] for i in idx],
            "loss": [_finite_or_none(history.loss[i]) for i in idx],
            "accuracy": [history.accuracy[i] for i in idx],
            "val_accuracy": [history.val_accuracy[i] for i in idx] if history.val_accuracy else [],
        },
        "seconds": time.perf_counter() - t0,
    }


def _cell_path(out: Path, key: str) -> Path:
    return out / "cells" / f"{key}.json"


def _write_cell(path: Path, result: dict[str, Any]) -> None:
    """Compact JSON (the per-unit fire counts would be large indented), written atomically."""
    text = json.dumps(result, separators=(",", ":"), allow_nan=True)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def _run_and_write(cell: dict[str, Any], data: SweepData, path: Path) -> dict[str, Any]:
    result = run_cell(cell, data)
    _write_cell(path, result)
    return result


def _load_finished(path: Path, cell: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result of ``cell`` if ``path`` holds a complete one for exactly this config, else None."""
    if not path.is_file():
        return None
    try:
        result = load_json(path)
    except (ValueError, OSError):
        return None  # unreadable: run the cell again
    if not isinstance(result, dict) or result.get("status") not in ("finished", "diverged"):
        return None
    if result.get("config") != {k: v for k, v in cell.items() if k != "key"}:
        return None
    return result


# The sweep ---------------------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What :func:`run_sweep` produced. ``cells`` are the per-cell result dicts in grid order; ``ran`` and
    ``skipped`` list the keys trained now and those found finished on disk; ``rows`` is the tidy table
    (:func:`sweep_table`) and ``summary`` its aggregate over seeds (:func:`summarize_sweep`)."""

    config: SweepConfig
    out: Path
    data_name: str
    n_classes: int
    cells: list[dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


def _resolve_jobs(jobs: Any) -> int:
    import joblib

    if jobs is None:
        return max(1, int(joblib.cpu_count()))
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs == 0 or jobs < -1:
        raise ValueError(f"jobs must be a positive number of processes or -1 (all cores), got {jobs!r}")
    return int(jobs)


def run_sweep(
    config: SweepConfig,
    out: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    progress: CellProgress | None = None,
    command: str | None = None,
) -> SweepResult:
    """Run every cell of ``config`` not already finished in ``out`` and write the tables.

    Parameters
    ----------
    config
        The grid.
    out
        Output directory: ``cells/<key>.json`` (one per cell, atomic), ``sweep.json`` (config, data, command),
        ``results.csv`` and ``results.json`` (tidy rows and the summary over seeds).
    jobs
        Worker processes (joblib); ``None`` = the number of cores, 1 = run in this process, -1 = all the workers
        of the active joblib backend (e.g. inside ``joblib.parallel_backend("dask")``).
    progress
        ``progress(cell_result, n_done, n_total)`` after every cell (cells found on disk count as done up front).
    command
        The command line that produced the sweep, stored in ``sweep.json`` for the report.

    Interrupting (Ctrl-C) loses at most the cells in flight: rerun with the same arguments to finish the others.
    """
    n_jobs = _resolve_jobs(jobs)
    out = Path(out)
    data = load_sweep_data(config)
    cells = config.cells(data.digest)
    results: dict[str, dict[str, Any]] = {}
    todo: list[dict[str, Any]] = []
    for cell in cells:
        found = _load_finished(_cell_path(out, cell["key"]), cell)
        if found is None:
            todo.append(cell)
        else:
            results[cell["key"]] = found
    skipped = list(results)
    save_json(
        out / SWEEP_FILE,
        {
            "kind": "sweep",
            "config": config.to_dict(),
            "data": {
                "name": data.name,
                "digest": data.digest,
                "n_train": int(data.X.shape[0]),
                "n_val": int(data.X_val.shape[0]),
                "n_features": data.n_features,
                "n_classes": data.n_classes,
            },
            "cells": [c["key"] for c in cells],
            "command": command,
        },
    )
    ran: list[str] = []
    total = len(cells)
    for result in _execute(todo, data, out, n_jobs):
        results[result["key"]] = result
        ran.append(result["key"])
        if progress is not None:
            progress(result, len(results), total)
    ordered = [results[c["key"]] for c in cells]
    rows = sweep_table(ordered)
    summary = summarize_sweep(rows)
    _write_tables(out, rows, summary)
    return SweepResult(
        config=config,
        out=out,
        data_name=data.name,
        n_classes=data.n_classes,
        cells=ordered,
        ran=ran,
        skipped=skipped,
        rows=rows,
        summary=summary,
    )


def _execute(todo: list[dict[str, Any]], data: SweepData, out: Path, n_jobs: int) -> Iterator[dict[str, Any]]:
    """Yield cell results as they finish: in this process for one job, else via joblib (unordered)."""
    if not todo:
        return
    if n_jobs == 1:
        for cell in todo:
            yield _run_and_write(cell, data, _cell_path(out, cell["key"]))
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    yield from parallel(delayed(_run_and_write)(cell, data, _cell_path(out, cell["key"])) for cell in todo)


# Tables ------------------------------------------------------------------------------------------------------------
TABLE_COLUMNS = (
    "key",
    "activation",
    "init",
    "lr",
    "seed",
    "status",
    "diverged_at_epoch",
    "final_epoch",
    "epochs_run",
    "layer",
    "units",
    "dead_fraction",
    "no_gradient_fraction",
    "nearly_dead",
    "median_fire_rate",
    "dormant_fraction",
    "n_born_dead",
    "n_died",
    "n_revived",
    "train_accuracy",
    "val_accuracy",
    "final_loss",
    "val_loss",
)

SUMMARY_VALUES = ("dead_fraction", "no_gradient_fraction", "train_accuracy", "val_accuracy", "final_loss")


def sweep_table(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tidy rows, one per (cell, hidden layer), with the columns of ``TABLE_COLUMNS``."""
    rows = []
    for c in cells:
        cfg = c["config"]
        for layer, stats in c["layers"].items():
            row = {
                "key": c["key"],
                "activation": variant(cfg),
                "init": cfg["init"],
                "lr": cfg["lr"],
                "seed": cfg["seed"],
                "status": c["status"],
                "diverged_at_epoch": c["diverged_at_epoch"],
                "final_epoch": c["final_epoch"],
                "epochs_run": c["epochs_run"],
                "layer": layer,
                **{k: stats[k] for k in TABLE_COLUMNS if k in stats},
                "train_accuracy": c["train_accuracy"],
                "val_accuracy": c["val_accuracy"],
                "final_loss": c["final_loss"],
                "val_loss": c["val_loss"],
            }
            rows.append({k: row.get(k) for k in TABLE_COLUMNS})
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # losses near divergence can be ~1e300
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return _finite_or_none(mean), _finite_or_none(std)


def summarize_sweep(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate tidy rows over seeds: one row per (activation, init, layer, lr), in the order the rows list
    (activation, init, layer) and by increasing learning rate.

    Each row has ``n`` (seeds), ``n_diverged``, and for every value in ``SUMMARY_VALUES`` its ``<value>_mean`` and
    ``<value>_std`` (sample standard deviation over seeds, 0 for one seed; None if no seed has the value).
    """
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["activation"], r["init"], r["layer"], r["lr"])].append(r)
    # grid order (as the cells were listed: init, activation), learning rates ascending
    first = {k[:3]: i for i, k in reversed(list(enumerate(groups)))}
    out = []
    for (act, init, layer, lr), members in sorted(groups.items(), key=lambda kv: (first[kv[0][:3]], kv[0][3])):
        row: dict[str, Any] = {
            "activation": act,
            "init": init,
            "layer": layer,
            "lr": lr,
            "n": len(members),
            "n_diverged": sum(m["status"] == "diverged" for m in members),
        }
        for key in SUMMARY_VALUES:
            mean, std = _mean_std([m[key] for m in members if m[key] is not None])
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        out.append(row)
    return out


def dead_over_training(cells: Sequence[dict[str, Any]], layer: str = "hidden1") -> list[dict[str, Any]]:
    """Dead fraction of ``layer`` over training, averaged over seeds: one series per (activation, init, lr).

    Each series: activation, init, lr, ``epochs``, ``mean`` (dead fraction averaged over the seeds that reached
    that epoch: a diverged seed stops early) and ``n`` (seeds per point).
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        if layer not in c["tracking"]["layers"]:
            raise ValueError(f"no layer {layer!r} in the sweep; layers are {sorted(c['tracking']['layers'])}")
        cfg = c["config"]
        groups[(variant(cfg), cfg["init"], cfg["lr"])].append(c)
    first = {k[:2]: i for i, k in reversed(list(enumerate(groups)))}
    series = []
    for (act, init, lr), members in sorted(groups.items(), key=lambda kv: (first[kv[0][:2]], kv[0][2])):
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for c in members:
            for e, f in zip(c["tracking"]["epochs"], c["tracking"]["layers"][layer]["dead_fraction"], strict=True):
                by_epoch[e].append(f)
        epochs = sorted(by_epoch)
        series.append(
            {
                "activation": act,
                "init": init,
                "lr": lr,
                "epochs": epochs,
                "mean": [float(np.mean(by_epoch[e])) for e in epochs],
                "n": [len(by_epoch[e]) for e in epochs],
            }
        )
    return series


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return buf.getvalue()


def _write_tables(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    with atomic_write(out / "results.csv", "w") as f:
        f.write(_csv_text(rows, TABLE_COLUMNS))
    save_json(out / "results.json", {"rows": rows, "summary": summary})


def load_sweep(out: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a sweep directory: (the ``sweep.json`` record, the cell results found, in grid order).

    Cells missing on disk (an interrupted sweep) are left out; ``len(cells) < len(record["cells"])`` says so.
    """
    out = Path(out)
    record = load_json(out / SWEEP_FILE)
    if not isinstance(record, dict) or record.get("kind") != "sweep":
        raise ValueError(f"{out / SWEEP_FILE} is not a sweep record; run `reluscope sweep --out {out}` first")
    cells = []
    for key in record["cells"]:
        path = _cell_path(out, key)
        if path.is_file():
            result = load_json(path)
            if isinstance(result, dict) and result.get("status") in ("finished", "diverged"):
                cells.append(result)
    return record, cells


# Born dead ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BornDeadConfig:
    """The born-dead study: P(born dead) vs depth for each width and init variant.

    ``inits`` are weight inits (he, xavier, xavier_uniform, normal) optionally suffixed ``+bias`` for the same
    init with every bias at ``bias`` (the bias-shifted init). ``inputs`` is ``"point"`` (one random input, the
    setting of the closed form), ``"grid"`` (a ``grid_size`` x ``grid_size`` grid over [-1, 1]^2: dead on all of
    them) or ``"spiral"`` (the 300 spiral points).
    """

    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
    widths: tuple[int, ...] = (2, 3, 4, 8)
    inits: tuple[str, ...] = ("he", "xavier", "he+bias")
    bias: float = 0.1
    n_inits: int = 4000
    inputs: str = "point"
    grid_size: int = 10
    z: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.depths or not self.widths or not self.inits:
            raise ValueError("depths, widths and inits must each list at least one value")
        set_(self, "depths", tuple(sorted(set(_check_int(d, "every depth", 1) for d in self.depths))))
        set_(self, "widths", _dedupe(_check_int(w, "every width", 1) for w in self.widths))
        variants = []
        for name in self.inits:
            base, _, suffix = str(name).lower().partition("+")
            if suffix not in ("", "bias"):
                raise ValueError(f"init variant {name!r}: the only suffix is +bias (e.g. he+bias), got +{suffix}")
            variants.append(check_init(base) + ("+bias" if suffix else ""))
        set_(self, "inits", _dedupe(variants))
        if not math.isfinite(self.bias):
            raise ValueError(f"bias must be finite, got {self.bias}")
        _check_int(self.n_inits, "n_inits", 1)
        _check_int(self.grid_size, "grid_size", 2)
        _check_int(self.seed, "seed", 0)
        check_positive(self.z, "z")
        if self.inputs not in ("point", "grid", "spiral"):
            raise ValueError(f"inputs must be 'point', 'grid' or 'spiral', got {self.inputs!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BornDeadConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are a ValueError."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown born-dead config keys {unknown}; was the file written by another version?")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)


BORN_DEAD_COLUMNS = (
    "init",
    "weight_init",
    "bias",
    "width",
    "depth",
    "closed_form",
    "n",
    "n_dead",
    "p_hat",
    "lo",
    "hi",
    "closed_form_inside",
)


def born_dead_study(config: BornDeadConfig) -> list[dict[str, Any]]:
    """P(born dead) vs depth, closed form vs Monte Carlo, for every (init variant, width) of ``config``.

    One Monte Carlo run of ``n_inits`` networks of the largest depth per (variant, width) gives every depth at
    once: a depth-d net is the first d layers of a deeper one, so it is dead when its first all-zero layer is
    <= d (``first_dead_layer`` of :func:`~reluscope.diagnose.born_dead_monte_carlo`). Each variant and width gets
    its own random stream (seeded from ``seed``, the width and the variant name), so rows do not depend on which
    others are computed.

    Returns tidy rows with the columns of ``BORN_DEAD_COLUMNS``: ``closed_form`` is
    :func:`~reluscope.diagnose.born_dead_probability` (exact for one input and zero biases; for a bias-shifted
    init or several inputs it is the zero-bias one-input reference), ``p_hat`` = n_dead / n, ``lo``/``hi`` the
    Wilson interval at ``z`` sigmas and ``closed_form_inside`` whether the closed form lies in it.
    """
    inputs = _born_dead_inputs(config)
    depth = max(config.depths)
    rows = []
    for variant in config.inits:
        base, _, suffix = variant.partition("+")
        bias = config.bias if suffix else 0.0
        for width in config.widths:
            rng = np.random.default_rng([config.seed, width, zlib.crc32(variant.encode())])
            est = born_dead_monte_carlo(
                depth, width, n_inits=config.n_inits, init=base, bias=bias, inputs=inputs, seed=rng
            )
            cumulative = np.cumsum(est.first_dead_layer)
            for d in config.depths:
                k = int(cumulative[d - 1])
                lo, hi = wilson_interval(k, est.n, config.z)
                closed = born_dead_probability(d, width)
                rows.append(
                    {
                        "init": variant,
                        "weight_init": base,
                        "bias": bias,
                        "width": width,
                        "depth": d,
                        "closed_form": closed,
                        "n": est.n,
                        "n_dead": k,
                        "p_hat": k / est.n,
                        "lo": lo,
                        "hi": hi,
                        "closed_form_inside": bool(lo <= closed <= hi),
                    }
                )
    return rows


def _born_dead_inputs(config: BornDeadConfig) -> NDArray[np.float64] | None:
    if config.inputs == "point":
        return None
    if config.inputs == "grid":
        return grid_inputs(config.grid_size)
    from reluscope.data import spiral

    X, _ = spiral(seed=config.seed)
    return X.astype(np.float64, copy=False)


def born_dead_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`born_dead_study` as CSV text."""
    return _csv_text(rows, BORN_DEAD_COLUMNS)


def write_born_dead(
    out: str | os.PathLike[str], config: BornDeadConfig, rows: list[dict[str, Any]], command: str | None
) -> None:
    """Write ``born_dead.json`` (config, rows, command) and ``born_dead.csv`` into ``out``, atomically."""
    out = Path(out)
    save_json(out / BORN_DEAD_FILE, {"kind": "born-dead", "config": config.to_dict(), "rows": rows, "command": command})
    with atomic_write(out / "born_dead.csv", "w") as f:
        f.write(born_dead_csv(rows))


# Commands that reproduce a result ----------------------------------------------------------------------------------
def format_number(v: Any) -> str:
    """A command-line number that parses back to exactly ``v`` (repr of a float, not a 6-digit ``:g``)."""
    return repr(float(v)) if isinstance(v, float) else str(v)


def _join(values: Iterable[Any]) -> str:
    return ",".join(format_number(v) for v in values)


def sweep_command(config: SweepConfig, out: str | os.PathLike[str]) -> str:
    """The ``reluscope sweep`` command line that reruns (or resumes) ``config`` into ``out``, every option explicit."""
    import shlex

    c = config
    args = ["reluscope", "sweep", "--data", c.data]
    if c.labels is not None:
        args += ["--labels", c.labels]
    if c.data == "spiral":
        args += ["--n-per-class", str(c.n_per_class), "--n-classes", str(c.n_classes)]
    if c.data.lower().endswith((".csv", ".csv.gz")):
        args += ["--label-column", c.label_column]
    args += [
        "--data-seed",
        str(c.data_seed),
        "--val-fraction",
        format_number(c.val_fraction),
        "--hidden",
        _join(c.hidden),
        "--lrs",
        _join(c.lrs),
        "--activations",
        _join(c.activations),
        "--inits",
        _join(c.inits),
        "--seeds",
        _join(c.seeds),
        "--init-std",
        format_number(c.init_std),
        "--bias-init",
        format_number(c.bias_init),
        "--slope",
        format_number(c.slope),
        "--optimizer",
        c.optimizer,
        "--reg",
        format_number(c.reg),
        "--epochs",
        str(c.epochs),
        "--batch-size",
        str(c.batch_size or 0),
        "--track-every",
        str(c.track_every),
        "--dtype",
        c.dtype,
    ]
    if c.remedies != ("none",):
        args += [
            "--remedies",
            _join(c.remedies),
            "--redo-every",
            str(c.redo_every),
            "--redo-tau",
            format_number(c.redo_tau),
        ]
    if c.standardize:
        args.append("--standardize")
    args += ["--out", str(out)]
    return shlex.join(args)


def born_dead_command(config: BornDeadConfig, out: str | os.PathLike[str]) -> str:
    """The ``reluscope born-dead`` command line that recomputes ``config`` into ``out``."""
    import shlex

    c = config
    args = [
        "reluscope",
        "born-dead",
        "--depths",
        _join(c.depths),
        "--widths",
        _join(c.widths),
        "--inits",
        _join(c.inits),
        "--bias",
        format_number(c.bias),
        "--n-inits",
        str(c.n_inits),
        "--inputs",
        c.inputs,
        "--grid-size",
        str(c.grid_size),
        "--z",
        format_number(c.z),
        "--seed",
        str(c.seed),
        "--out",
        str(out),
    ]
    return shlex.join(args)

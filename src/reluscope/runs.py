"""The run layer: one typed configuration, one way to prepare its data, one training run, one record on disk.

``reluscope train``, every cell of ``reluscope sweep`` and every run of a remedy comparison go through
:func:`run`: :func:`prepare_data` loads, splits and standardises the data named in a :class:`RunConfig`, :func:`run`
builds the network, attaches the remedy, the dead-unit tracker and the death-spike detector, trains with
:func:`reluscope.train.fit`, and measures the result once (a scan of the training set, the units that receive no
gradient). Everything a report draws is measured here, during the run, and recorded; :mod:`reluscope.report` only
reads records.

Record schema (``run.json`` of ``reluscope train --out``; :class:`RunResult`)
------------------------------------------------------------------------------
``format``            ``"reluscope.run"``
``version``           2 (files without ``format``/``version`` are version 1, written by reluscope 0.1: they read
                      the same, with ``scan`` and ``fire_rates`` missing)
``status``            ``"finished"`` or ``"diverged"``; ``error`` says why a run diverged
``config``            the training settings (data, hidden, optimizer, lr, reg, epochs, batch_size, val_fraction,
                      standardize, seed, ``net`` = :meth:`reluscope.nn.MLP.config`, redo, death_spike, track_dead,
                      ``n_samples`` = size of the training split)
``command``           the command line that produced it (None when not run from the shell)
``history``           :meth:`reluscope.train.History.to_dict`: per-epoch lists
``train_accuracy``, ``final_loss``, ``val_accuracy``   at the end (finished runs)
``dead_fraction``     ``{layer: fraction of units that fired on no training sample}``
``death_spikes``, ``redo``   what the death-spike detector and ReDo recorded
``unit_history``      with ``--track-dead``: ``{layer: UnitHistory.to_dict()}``, per-scan fire counts included
``scan``              one row per layer of :meth:`reluscope.diagnose.ActivationStats.summary` at the end
``fire_rates``        ``{layer: [fire rate of each unit at the end]}`` (fraction of training samples it fired on)
``non_finite``        ``{path: "nan" | "inf" | "-inf"}``: values that were not finite, written as null

The JSON is strict (``allow_nan=False``): a NaN or infinity becomes ``null`` and its path and value are listed in
``non_finite``, so any JSON reader can load every record. Sweep cells (:class:`CellResult`, ``cells/<key>.json``)
follow the same rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from reluscope.data import Standardizer, load_dataset, train_val_split
from reluscope.diagnose import ActivationStats, DeadUnitTracker, UnitHistory, scan
from reluscope.io import atomic_write, load_json
from reluscope.nn import MLP
from reluscope.nn.optim import get_optimizer
from reluscope.remedies import DeathSpikeDetector, ReDoCallback, dead_by_gradient, default_redo_until
from reluscope.train import Callback, DivergenceError, History, TrainState, fit

__all__ = [
    "CELL_FORMAT",
    "CELL_VERSION",
    "REMEDIES",
    "RUN_FORMAT",
    "RUN_VERSION",
    "CellResult",
    "DataConfig",
    "PreparedData",
    "RunConfig",
    "RunResult",
    "check_remedy",
    "config_from_dict",
    "config_to_dict",
    "dumps_strict",
    "finite_or_none",
    "load_run",
    "mean_std",
    "prepare_data",
    "run",
    "run_cell_config",
    "save_record",
    "save_run",
    "strict",
]

_C = TypeVar("_C")

RUN_FORMAT = "reluscope.run"
RUN_VERSION = 2
CELL_FORMAT = "reluscope.sweep-cell"
CELL_VERSION = 1
"""Version of a cell's *configuration* (it is hashed into the cell key, so it stays 1 while the config does)."""
CELL_RESULT_VERSION = 2

REMEDIES = ("none", "redo", "leaky")
"""The remedies a run can apply: none (plain ReLU), redo (ReDo resets during the first half of training) and leaky
(the same network with leaky ReLU). A sweep varies the activation on its own axis, so it takes none and redo."""


def check_remedy(name: Any, *, allowed: Sequence[str] = REMEDIES) -> str:
    """``name`` if it is one of ``allowed`` (a subset of :data:`REMEDIES`), else a ValueError naming the choices."""
    if name not in allowed:
        hint = " (leaky is an activation: add it to the activations)" if name == "leaky" else ""
        raise ValueError(f"unknown remedy {name!r}; choose from {', '.join(allowed)}{hint}")
    return str(name)


# Strict JSON --------------------------------------------------------------------------------------------------------
def finite_or_none(value: float) -> float | None:
    """``float(value)`` if finite, else None."""
    return float(value) if math.isfinite(value) else None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; 0.0 for one value) of ``values``; ``(None, None)`` for none.

    A mean or std that overflows (losses near divergence can be ~1e300) is None, not inf.
    """
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return finite_or_none(mean), finite_or_none(std)


def strict(obj: Any) -> tuple[Any, dict[str, str]]:
    """``obj`` with every non-finite float replaced by None, and ``{path: "nan" | "inf" | "-inf"}`` of them.

    Paths read like ``history.loss[41]``. numpy scalars become Python numbers; tuples become lists.
    """
    non_finite: dict[str, str] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return x
        if isinstance(x, (float, np.floating)):
            v = float(x)
            if math.isfinite(v):
                return v
            non_finite[path] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return None
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, Mapping):
            return {str(k): walk(v, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, np.ndarray):
            return walk(x.tolist(), path)
        raise TypeError(f"cannot write {type(x).__name__} at {path or 'the top'} to a JSON record")

    return walk(obj, ""), non_finite


def dumps_strict(record: Mapping[str, Any], *, compact: bool = False) -> str:
    """Strict JSON text of ``record`` (``allow_nan=False``): non-finite floats are null and listed under
    ``non_finite`` (merged with any list already there)."""
    clean, non_finite = strict(record)
    if non_finite or "non_finite" in clean:
        clean["non_finite"] = {**(clean.get("non_finite") or {}), **non_finite}
    if compact:
        return json.dumps(clean, separators=(",", ":"), allow_nan=False)
    return json.dumps(clean, indent=2, allow_nan=False)


def save_record(path: str | os.PathLike[str], record: Mapping[str, Any], *, compact: bool = False) -> None:
    """Write ``record`` to ``path`` as strict JSON (:func:`dumps_strict`), atomically and as a whole."""
    with atomic_write(path, "w") as f:
        f.write(dumps_strict(record, compact=compact) + "\n")


# Frozen config dataclasses <-> JSON ---------------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict: its fields, tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type[_C], d: Mapping[str, Any], what: str) -> _C:
    """Rebuild the config dataclass ``cls`` from :func:`config_to_dict`; lists become tuples, and keys that are not
    fields are a ValueError naming them (``what`` names the config in the message)."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; was the file written by another version?")
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kwargs)


# Configuration ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains on: ``data`` (spiral, digits or a file), ``labels`` (IDX labels file),
    ``label_column`` (.csv), ``n_per_class``/``n_classes`` (spiral), ``data_seed`` (spiral generation and the
    validation split), ``standardize`` (training-set mean/std) and ``val_fraction`` in [0, 1) held out
    (stratified). The base of :class:`RunConfig` and :class:`reluscope.experiments.SweepConfig`; read by
    :func:`prepare_data`."""

    data: str = "spiral"
    labels: str | None = None
    label_column: str = "label"
    n_per_class: int = 100
    n_classes: int = 3
    data_seed: int = 0
    standardize: bool = False
    val_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.val_fraction, int | float) and 0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}; e.g. 0.2")


@dataclass(frozen=True)
class RunConfig(DataConfig):
    """Everything one training run depends on: data, network, optimisation, remedy and what to measure.

    Data: the fields of :class:`DataConfig`.
    Network: ``hidden`` widths, ``activation``, ``slope``, ``init``, ``init_std``, ``bias_init``, ``dtype``.
    Training: ``optimizer``, ``lr``, ``reg``, ``epochs``, ``batch_size`` (None = full batch), ``seed`` (init and
    minibatch order).
    Remedy: ``remedy`` in :data:`REMEDIES`, ReDo every ``redo_every`` epochs at threshold ``redo_tau`` until epoch
    ``redo_until`` (None: :func:`reluscope.remedies.default_redo_until`, the first half of training).
    Measurement: ``track_every`` (scan every N epochs and keep per-unit history; 0 = off), ``death_spike``
    (threshold of the death-spike detector; 0 = off), ``overflow``: ``"raise"`` reports overflowing activations
    as divergence from the tracker (``reluscope train``); ``"stop"`` stops training there and measures the weights
    of the last successful scan (sweep cells, where high learning rates are the point).
    """

    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    slope: float = 0.01
    init: str = "he"
    init_std: float = 0.01
    bias_init: float = 0.0
    dtype: str = "float64"
    optimizer: str = "sgd"
    lr: float = 1.0
    reg: float = 1e-3
    epochs: int = 2000
    batch_size: int | None = None
    seed: int = 0
    remedy: str = "none"
    redo_every: int = 100
    redo_tau: float = 0.0
    redo_until: int | None = None
    track_every: int = 0
    death_spike: float = 0.0
    overflow: str = "raise"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        check_remedy(self.remedy)
        if self.overflow not in ("raise", "stop"):
            raise ValueError(f"overflow must be 'raise' or 'stop', got {self.overflow!r}")

    @property
    def net_activation(self) -> str:
        """The activation the network is built with: ``leaky`` under the leaky remedy, else ``activation``."""
        return "leaky" if self.remedy == "leaky" else self.activation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists), with ``version``; :meth:`from_dict` rebuilds the config."""
        return {"version": RUN_VERSION, **config_to_dict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_dict`; unknown keys or a newer version are a ValueError."""
        d = dict(d)
        version = d.pop("version", RUN_VERSION)
        if version != RUN_VERSION:
            raise ValueError(f"run config version {version} is not readable by this reluscope (reads {RUN_VERSION})")
        return config_from_dict(cls, d, "run config")


# Data ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PreparedData:
    """The arrays a run trains and measures on, in the run's dtype.

    X (N, D), y (N,) int64; X_val (M, D), y_val (M,) with M = 0 without a validation split; ``standardizer``
    the fitted one when the config standardises (saved with the model); ``digest`` a SHA-256 prefix of the four
    arrays (sweep cell keys include it).
    """

    X: NDArray[np.floating[Any]]
    y: NDArray[np.int64]
    X_val: NDArray[np.floating[Any]]
    y_val: NDArray[np.int64]
    n_classes: int
    name: str
    digest: str
    standardizer: Standardizer | None = None

    @classmethod
    def from_arrays(cls, X: NDArray[Any], y: NDArray[Any], *, name: str = "arrays") -> PreparedData:
        """Training data given as arrays, X (N, D) and labels y (N,) in [0, C), without a validation split.
        ``n_classes`` is ``max(y) + 1`` (at least 2)."""
        X = np.asarray(X)
        y = np.asarray(y).astype(np.int64, copy=False)
        X_val = np.empty((0, X.shape[1]), dtype=X.dtype)
        y_val = np.empty(0, dtype=np.int64)
        n_classes = max(int(np.max(y)) + 1, 2)
        return cls(X, y, X_val, y_val, n_classes, name, _digest(X, y, X_val, y_val))

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def has_val(self) -> bool:
        return bool(self.X_val.shape[0] > 0)


def _digest(*arrays: NDArray[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


def prepare_data(config: DataConfig) -> PreparedData:
    """Load the dataset named in ``config``, split off ``val_fraction`` (stratified, seeded by ``data_seed``),
    standardise with training-set statistics if asked, and cast to ``config.dtype`` (float64 for a bare
    :class:`DataConfig`).

    Raises whatever :func:`reluscope.data.load_dataset` raises for a bad name or file (ValueError, OSError).
    """
    ds = load_dataset(
        config.data,
        labels_path=config.labels,
        label_column=config.label_column,
        n_per_class=config.n_per_class,
        n_classes=config.n_classes,
        seed=config.data_seed,
    )
    X, y = ds.X, ds.y
    X_val: NDArray[np.floating[Any]] = np.empty((0, X.shape[1]), dtype=X.dtype)
    y_val: NDArray[np.int64] = np.empty(0, dtype=np.int64)
    if config.val_fraction > 0:
        X, y, X_val, y_val = train_val_split(X, y, config.val_fraction, seed=config.data_seed)
    scaler = None
    if config.standardize:
        scaler = Standardizer.fit(X)
        X, X_val = scaler.transform(X), scaler.transform(X_val)
    dtype = getattr(config, "dtype", "float64")
    X, X_val = X.astype(dtype, copy=False), X_val.astype(dtype, copy=False)
    y, y_val = y.astype(np.int64, copy=False), y_val.astype(np.int64, copy=False)
    return PreparedData(X, y, X_val, y_val, ds.n_classes, ds.name, _digest(X, y, X_val, y_val), scaler)


# The run ------------------------------------------------------------------------------------------------------------
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


@dataclass
class RunResult:
    """One training run: its record (written to ``run.json``, see the module docstring) and, in memory only, the
    trained network and its measurements.

    In-memory fields (not written): ``net`` (the trained :class:`~reluscope.nn.MLP`, the last finite weights if
    it diverged), ``stats`` (the final :class:`~reluscope.diagnose.ActivationStats` on the training set, None
    if the network has no hidden layer or its activations overflowed), ``units`` (per-layer
    :class:`~reluscope.diagnose.UnitHistory` when tracked), ``no_gradient`` (per layer, bool (units,): the
    activation's derivative is 0 on every training sample), ``exception`` (the DivergenceError), ``data``.
    """

    status: str
    config: dict[str, Any]
    history: dict[str, Any]
    command: str | None = None
    error: str | None = None
    diverged_at_epoch: int | None = None
    final_epoch: int = 0
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    final_loss: float | None = None
    dead_fraction: dict[str, float] = field(default_factory=dict)
    death_spikes: list[dict[str, Any]] = field(default_factory=list)
    redo: list[dict[str, Any]] | None = None
    unit_history: dict[str, dict[str, Any]] | None = None
    scan: list[dict[str, Any]] | None = None
    fire_rates: dict[str, list[float]] | None = None
    version: int = RUN_VERSION
    net: MLP | None = field(default=None, repr=False, compare=False)
    stats: ActivationStats | None = field(default=None, repr=False, compare=False)
    units: dict[str, UnitHistory] = field(default_factory=dict, repr=False, compare=False)
    no_gradient: dict[str, NDArray[np.bool_]] = field(default_factory=dict, repr=False, compare=False)
    exception: DivergenceError | None = field(default=None, repr=False, compare=False)
    data: PreparedData | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``run.json`` record (version :data:`RUN_VERSION`); a diverged run keeps only what it reached."""
        d: dict[str, Any] = {"format": RUN_FORMAT, "version": RUN_VERSION, "status": self.status}
        if self.status == "diverged":
            d["error"] = self.error
        else:
            d.update(train_accuracy=self.train_accuracy, final_loss=self.final_loss, dead_fraction=self.dead_fraction)
            if self.val_accuracy is not None:
                d["val_accuracy"] = self.val_accuracy
            d["death_spikes"] = self.death_spikes
            if self.redo is not None:
                d["redo"] = self.redo
            if self.unit_history is not None:
                d["unit_history"] = self.unit_history
        if self.scan is not None:
            d["scan"], d["fire_rates"] = self.scan, self.fire_rates
        d.update(config=self.config, command=self.command, history=self.history)
        return d

    def summary(self) -> dict[str, Any]:
        """What ``reluscope train --json`` prints: status, accuracy, loss, dead fraction and what remedies did
        (the unit history without per-scan fire counts)."""
        d = self.to_dict()
        keep = ("status", "train_accuracy", "final_loss", "dead_fraction", "val_accuracy", "death_spikes", "redo")
        out = {k: d[k] for k in keep if k in d}
        if self.unit_history is not None:
            out["unit_history"] = {
                name: {k: v for k, v in h.items() if k != "fire_counts"} for name, h in self.unit_history.items()
            }
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "the record") -> RunResult:
        """Read a ``run.json`` record: version 2, or version 1 (reluscope 0.1: no ``format``; read the same, with
        ``scan`` and ``fire_rates`` None). A newer version or another format is a ValueError naming it;
        ``source`` names the record in the message."""
        if not isinstance(d, Mapping) or "config" not in d:
            raise ValueError(f"{source} is not a reluscope run record (no config); rerun `reluscope train --out DIR`")
        fmt, version = d.get("format", RUN_FORMAT), d.get("version", 1)
        if fmt != RUN_FORMAT or version not in (1, RUN_VERSION):
            raise ValueError(
                f"{source} is a {fmt!r} record of version {version}; this reluscope reads {RUN_FORMAT!r} versions 1 "
                f"and {RUN_VERSION}: upgrade reluscope or rerun the training"
            )
        return cls(
            status=d.get("status", "unknown"),
            config=dict(d["config"]),
            history=dict(d.get("history") or {}),
            command=d.get("command"),
            error=d.get("error"),
            train_accuracy=d.get("train_accuracy"),
            val_accuracy=d.get("val_accuracy"),
            final_loss=d.get("final_loss"),
            dead_fraction=dict(d.get("dead_fraction") or {}),
            death_spikes=list(d.get("death_spikes") or []),
            redo=d.get("redo"),
            unit_history=d.get("unit_history"),
            scan=d.get("scan"),
            fire_rates=d.get("fire_rates"),
            version=int(version),
        )


def save_run(path: str | os.PathLike[str], result: RunResult) -> None:
    """Write ``result.to_dict()`` to ``path`` as strict, indented JSON, atomically."""
    save_record(path, result.to_dict())


def load_run(path: str | os.PathLike[str]) -> RunResult:
    """Read a ``run.json`` (:meth:`RunResult.from_dict`); a ValueError names the file."""
    return RunResult.from_dict(load_json(path), source=str(path))


def _train_config(config: RunConfig, net: MLP, data: PreparedData) -> dict[str, Any]:
    """The ``config`` recorded in ``run.json`` (the layout of reluscope 0.1, which the report and tools read)."""
    return {
        "data": config.data,
        "labels": config.labels,
        "label_column": config.label_column,
        "n_per_class": config.n_per_class,
        "n_classes": config.n_classes,
        "n_samples": len(data.y),
        "hidden": list(config.hidden),
        "optimizer": config.optimizer,
        "lr": config.lr,
        "reg": config.reg,
        "epochs": config.epochs,
        "batch_size": config.batch_size or 0,
        "val_fraction": config.val_fraction,
        "standardize": config.standardize,
        "seed": config.seed,
        "net": net.config(),
        "redo": {"every": config.redo_every if config.remedy == "redo" else 0, "tau": config.redo_tau},
        "death_spike": config.death_spike,
        "track_dead": config.track_every,
    }


def _build(config: RunConfig, data: PreparedData, callbacks: Sequence[Callback]) -> tuple[MLP, list[Callback]]:
    """The network and the callbacks of a run, in order: ReDo, tracker, the caller's, death-spike detector."""
    net = MLP(
        [data.n_features, *config.hidden, data.n_classes],
        config.net_activation,
        init=config.init,
        init_std=config.init_std,
        bias_init=config.bias_init,
        slope=config.slope,
        seed=config.seed,
        dtype=config.dtype,
    )
    if not net.hidden_names and (config.track_every or config.remedy == "redo"):
        raise ValueError("--track-dead and --redo need a hidden layer; pass --hidden, e.g. --hidden 100")
    cbs: list[Callback] = []
    if config.remedy == "redo":
        until = default_redo_until(config.epochs) if config.redo_until is None else config.redo_until
        cbs.append(ReDoCallback(data.X, every=config.redo_every, tau=config.redo_tau, until=until, seed=config.seed))
    if config.track_every:
        tracker_cls = _GuardedTracker if config.overflow == "stop" else DeadUnitTracker
        cbs.append(tracker_cls(data.X, every=config.track_every))
    cbs += callbacks
    if config.death_spike and net.hidden_names:
        steps_per_epoch = 1 if not config.batch_size else math.ceil(len(data.X) / config.batch_size)
        cbs.append(DeathSpikeDetector(data.X, threshold=config.death_spike, every=steps_per_epoch))
    return net, cbs


def run(
    config: RunConfig,
    callbacks: Sequence[Callback] = (),
    *,
    data: PreparedData | None = None,
    command: str | None = None,
) -> RunResult:
    """Train one network as ``config`` says and measure it; a run that diverges is a result, not an error.

    ``callbacks`` (e.g. a progress bar) run after ReDo and the tracker, before the death-spike detector.
    ``data`` defaults to :func:`prepare_data` of ``config`` (a sweep prepares it once for all cells).
    On divergence ``status`` is ``"diverged"``, ``error`` and ``exception`` say why, ``diverged_at_epoch`` when,
    and every measurement describes the last finite weights (``fit`` restores them; with ``overflow="stop"``, the
    weights of the tracker's last successful scan).
    """
    data = prepare_data(config) if data is None else data
    net, cbs = _build(config, data, callbacks)
    tracker = next((c for c in cbs if isinstance(c, DeadUnitTracker)), None)
    guarded = tracker if isinstance(tracker, _GuardedTracker) else None
    status, exception, diverged_at = "finished", None, None
    # high learning rates are the point of a sweep: overflow is detected and recorded there, not warned about
    quiet = np.errstate(over="ignore", invalid="ignore") if guarded else contextlib.nullcontext()
    with quiet:
        try:
            history = fit(
                net,
                data.X,
                data.y,
                optimizer=config.optimizer,
                lr=config.lr,
                reg=config.reg,
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=config.seed,
                X_val=data.X_val if data.has_val else None,
                y_val=data.y_val if data.has_val else None,
                callbacks=cbs,
            )
        except DivergenceError as exc:
            status, exception, diverged_at, history = "diverged", exc, exc.epoch, exc.history
            if guarded is not None and guarded.epochs[-1] != exc.epoch - 1:  # scan the restored weights too
                opt = get_optimizer(config.optimizer, config.lr)
                state = TrainState(net=net, optimizer=opt, X=data.X, y=data.y, history=history, epoch=exc.epoch - 1)
                guarded.record(state)
        error = None if exception is None else str(exception)
        if guarded is not None and guarded.overflow_epoch is not None:
            status, diverged_at = "diverged", diverged_at or guarded.overflow_epoch
            error = error or (
                f"the activations overflowed to inf/NaN at epoch {guarded.overflow_epoch} with lr={config.lr:g} "
                "(the weights were finite but too large); lower the learning rate"
            )
            net.set_params(guarded.last_params)
        # the last finite weights of a diverged run can still overflow on the data: measured quietly
        with np.errstate(over="ignore", invalid="ignore") if status == "diverged" else contextlib.nullcontext():
            result = _measure(config, net, data, history, tracker, status)
    result.error, result.exception, result.diverged_at_epoch, result.command = error, exception, diverged_at, command
    return result


def _measure(
    config: RunConfig,
    net: MLP,
    data: PreparedData,
    history: History,
    tracker: DeadUnitTracker | None,
    status: str,
) -> RunResult:
    """Scan the final network once and collect everything the records hold."""
    stats: ActivationStats | None = None
    if net.hidden_names:
        if tracker is not None and tracker.stats is not None and config.overflow == "stop":
            stats = tracker.stats
        else:
            with contextlib.suppress(ValueError):  # the activations of diverged weights can overflow
                stats = scan(net, data.X, batch_size=1024)
    units = tracker.unit_history() if tracker is not None else {}
    final_epoch = tracker.epochs[-1] if tracker is not None and tracker.epochs else len(history.loss)
    loss = history.loss[final_epoch - 1] if final_epoch >= 1 else math.nan
    result = RunResult(
        status=status,
        config=_train_config(config, net, data),
        history={f.name: getattr(history, f.name) for f in fields(history)},  # History.to_dict without a deep copy
        final_epoch=final_epoch,
        train_accuracy=net.accuracy(data.X, data.y),
        val_accuracy=net.accuracy(data.X_val, data.y_val) if data.has_val else None,
        final_loss=float(loss),
        dead_fraction={} if stats is None else {n: stats.dead_fraction(n) for n in stats.names},
        death_spikes=history.extra.get("death_spikes", []),
        redo=history.extra.get("redo", []) if config.remedy == "redo" else None,
        unit_history={n: h.to_dict() for n, h in units.items()} if tracker is not None else None,
        net=net,
        stats=stats,
        units=units,
        no_gradient=dead_by_gradient(net, data.X) if stats is not None else {},
        data=data,
    )
    if stats is not None:
        result.scan = stats.summary()
        result.fire_rates = {n: stats.frequency(n).tolist() for n in stats.names}
    return result


# Sweep cells --------------------------------------------------------------------------------------------------------
@dataclass
class CellResult:
    """One cell of a sweep (``cells/<key>.json``): its configuration and what :func:`run` measured.

    ``layers`` per layer: units, dead_fraction, no_gradient_fraction, nearly_dead, median_fire_rate,
    dormant_fraction, n_born_dead, n_died, n_revived. ``tracking``: scan epochs, samples per scan and per layer
    the dead fraction and per-unit fire counts (R, U) at every scan. ``curves``: loss/accuracy at the scanned
    epochs. ``train_accuracy``/``val_accuracy``/``final_loss``/``val_loss`` at ``final_epoch`` (the last
    finite state). Version 1 cells (reluscope 0.1) read the same.
    """

    key: str
    config: dict[str, Any]
    status: str
    error: str | None
    diverged_at_epoch: int | None
    final_epoch: int
    epochs_run: int
    train_accuracy: float | None
    val_accuracy: float | None
    final_loss: float | None
    val_loss: float | None
    layers: dict[str, dict[str, Any]]
    recycled: int
    tracking: dict[str, Any]
    curves: dict[str, list[Any]]
    seconds: float
    version: int = CELL_RESULT_VERSION

    @classmethod
    def from_run(cls, cell: Mapping[str, Any], result: RunResult, seconds: float) -> CellResult:
        """The cell record of ``result``, the run of the cell config ``cell`` (with its ``key``)."""
        assert result.stats is not None and result.net is not None  # a cell always tracks and has hidden layers
        history = History.from_dict(result.history)
        layers: dict[str, Any] = {}
        for row in result.scan or result.stats.summary():  # the default tau 0.1, nearly dead below 0.01
            uh = result.units[row["name"]]
            layers[row["name"]] = {
                "units": row["units"],
                "dead_fraction": row["dead_fraction"],
                "no_gradient_fraction": float(np.mean(result.no_gradient[row["name"]])),
                "nearly_dead": row["nearly_dead"],
                "median_fire_rate": row["median_fire_rate"],
                "dormant_fraction": row["dormant_fraction"],
                "n_born_dead": uh.n_born_dead,
                "n_died": uh.n_died,
                "n_revived": uh.n_revived,
            }
        final, has_val = result.final_epoch, bool(history.val_loss)
        first = next(iter(result.units.values()))
        idx = [e - 1 for e in first.epochs if 1 <= e <= len(history.loss)]
        return cls(
            key=str(cell["key"]),
            config={k: v for k, v in cell.items() if k != "key"},
            status=result.status,
            error=result.error,
            diverged_at_epoch=result.diverged_at_epoch,
            final_epoch=final,
            epochs_run=len(history.loss),
            train_accuracy=result.train_accuracy,
            val_accuracy=result.val_accuracy,
            final_loss=finite_or_none(history.loss[final - 1]) if final >= 1 else None,
            val_loss=finite_or_none(history.val_loss[final - 1]) if final >= 1 and has_val else None,
            layers=layers,
            recycled=sum(r["total"] for r in history.extra.get("redo", [])),
            tracking={
                "epochs": list(first.epochs),
                "n_samples": first.n_samples,
                "layers": {
                    n: {"dead_fraction": uh.dead_fraction, "fire_counts": uh.fire_counts.tolist()}
                    for n, uh in result.units.items()
                },
            },
            curves={
                "epoch": [history.epoch[i] for i in idx],
                "loss": [finite_or_none(history.loss[i]) for i in idx],
                "accuracy": [history.accuracy[i] for i in idx],
                "val_accuracy": [history.val_accuracy[i] for i in idx] if history.val_accuracy else [],
            },
            seconds=seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: ``format``, ``version`` and every field."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}  # shallow: no deep copy
        return {"format": CELL_FORMAT, "version": CELL_RESULT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellResult:
        """Read a cell record of version 1 (reluscope 0.1) or 2; another format or version is a ValueError."""
        fmt, version = d.get("format"), d.get("version")
        if fmt != CELL_FORMAT or version not in (1, CELL_RESULT_VERSION):
            raise ValueError(
                f"not a sweep cell this reluscope reads (format {fmt!r}, version {version!r}; reads {CELL_FORMAT!r} "
                f"versions 1 and {CELL_RESULT_VERSION}); rerun the sweep"
            )
        names = {f.name for f in fields(cls)} - {"version"}
        missing = sorted(names - set(d))
        if missing:
            raise ValueError(f"sweep cell record lacks {missing}; rerun the sweep to recompute it")
        return cls(**{k: d[k] for k in names}, version=int(version))

    def write(self, path: str | os.PathLike[str]) -> None:
        """Compact strict JSON (the per-unit fire counts would be large indented), written atomically."""
        save_record(path, self.to_dict(), compact=True)


def run_cell_config(cell: Mapping[str, Any], data_seed: int = 0) -> RunConfig:
    """The :class:`RunConfig` of a sweep cell config (see :meth:`reluscope.experiments.SweepConfig.cells`)."""
    remedy = cell.get("remedy")
    return RunConfig(
        data_seed=data_seed,
        hidden=tuple(cell["hidden"]),
        activation=cell["activation"],
        slope=cell["slope"],
        init=cell["init"],
        init_std=cell["init_std"],
        bias_init=cell["bias_init"],
        dtype=cell["dtype"],
        optimizer=cell["optimizer"],
        lr=cell["lr"],
        reg=cell["reg"],
        epochs=cell["epochs"],
        batch_size=cell["batch_size"],
        seed=cell["seed"],
        remedy=remedy["name"] if remedy else "none",
        redo_every=remedy["every"] if remedy else 100,
        redo_tau=remedy["tau"] if remedy else 0.0,
        track_every=cell["track_every"],
        overflow="stop",
    )

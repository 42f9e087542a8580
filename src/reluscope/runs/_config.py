"""What a run is: its configuration (:class:`DataConfig`, :class:`RunConfig`), its remedies, and its data
(:class:`PreparedData`, :func:`prepare_data`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope.data import Standardizer, load_dataset, train_val_split
from reluscope.remedies import REMEDY_REGISTRY, get_remedy
from reluscope.runs._json import config_from_dict, config_to_dict

__all__ = [
    "REMEDIES",
    "RUN_VERSION",
    "DataConfig",
    "PreparedData",
    "RunConfig",
    "check_remedy",
    "prepare_data",
    "run_cell_config",
]

RUN_VERSION = 2

REMEDIES: tuple[str, ...] = tuple(REMEDY_REGISTRY)
"""The remedies a run can apply, the names of :data:`reluscope.remedies.REMEDY_REGISTRY`: none (as configured),
redo (ReDo resets during the first half of training) and leaky (the same network with leaky ReLU). A sweep varies
the activation on its own axis, so it takes the remedies that do not swap the activation (none and redo)."""


def check_remedy(name: Any, *, allowed: Sequence[str] = REMEDIES) -> str:
    """``name`` if it is one of ``allowed`` (a subset of :data:`REMEDIES`), else a ValueError naming the choices."""
    if name not in allowed:
        swaps = isinstance(name, str) and name in REMEDY_REGISTRY and get_remedy(name).swaps_activation
        hint = f" ({name} is an activation: add it to the activations)" if swaps else ""
        raise ValueError(f"unknown remedy {name!r}; choose from {', '.join(allowed)}{hint}")
    return get_remedy(name).name


# Configuration ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains on: ``data`` (spiral, digits or a file), ``labels`` (IDX labels file),
    ``label_column`` (.csv), ``n_per_class``/``n_classes`` (spiral), ``data_seed`` (spiral generation and the
    validation split), ``standardize`` (training-set mean/std), ``val_fraction`` in [0, 1) held out
    (stratified) and ``file_n_classes``, a file's class count when given explicitly (None: ``max(y) + 1``; a label
    far beyond the sample count is refused then, see :class:`reluscope.data.Dataset`). The base of
    :class:`RunConfig` and :class:`reluscope.experiments.SweepConfig`; read by :func:`prepare_data`."""

    data: str = "spiral"
    labels: str | None = None
    label_column: str = "label"
    n_per_class: int = 100
    n_classes: int = 3
    data_seed: int = 0
    standardize: bool = False
    val_fraction: float = 0.0
    file_n_classes: int | None = None

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
        return "leaky" if get_remedy(self.remedy).swaps_activation else self.activation

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
        file_n_classes=config.file_n_classes,
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

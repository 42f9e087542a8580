"""A sweep's grid: its configuration, the cell configs it expands to (each with a stable key) and its data."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reluscope._validate import check_positive
from reluscope.experiments._checks import check_int as _check_int
from reluscope.experiments._checks import dedupe as _dedupe
from reluscope.nn import get_activation
from reluscope.nn.init import check_init
from reluscope.nn.optim import get_optimizer
from reluscope.remedies import get_remedy
from reluscope.runs import (
    CELL_FORMAT,
    CELL_VERSION,
    REMEDIES,
    DataConfig,
    PreparedData,
    check_remedy,
    config_from_dict,
    config_to_dict,
    prepare_data,
)

__all__ = [
    "DEFAULT_LRS",
    "SWEEP_FILE",
    "SWEEP_REMEDIES",
    "SweepConfig",
    "SweepData",
    "cell_key",
    "load_sweep_data",
    "variant",
]

SWEEP_FILE = "sweep.json"
DEFAULT_LRS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
SWEEP_REMEDIES = tuple(r for r in REMEDIES if not get_remedy(r).swaps_activation)
"""The remedies of :data:`reluscope.runs.REMEDIES` a sweep takes: leaky ReLU is on the activation axis."""


@dataclass(frozen=True)
class SweepConfig(DataConfig):
    """A grid of training runs: ``lrs`` x ``activations`` x ``inits`` x ``seeds``, everything else shared.

    The defaults are the CS231n 2-layer case study on the spiral (100 hidden units, reg 1e-3, full-batch SGD,
    2000 epochs) with He init, 20% of the data held out for validation, and learning rates from 0.1 to 100.
    The seed of a cell seeds its initialisation (and minibatch order); the data and the split are the same for
    every cell (``data_seed``).
    """

    val_fraction: float = 0.2  # the data fields come from DataConfig; a sweep holds out 20% by default
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
        super().__post_init__()
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
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        """Rebuild a config from :meth:`to_dict`; unknown keys are a ValueError."""
        return config_from_dict(cls, d, "sweep config")

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


def _check_remedy(name: Any) -> str:
    return check_remedy(name, allowed=SWEEP_REMEDIES)


def variant(cfg: Mapping[str, Any]) -> str:
    """The name a cell's network goes by in tables and plots: its activation, plus ``+redo`` under ReDo."""
    remedy = cfg.get("remedy")
    return f"{cfg['activation']}+{remedy['name']}" if remedy else str(cfg["activation"])


def cell_key(cell: dict[str, Any]) -> str:
    """A stable 16-hex-digit key for a cell config: SHA-256 of its canonical JSON (sorted keys, no ``key``)."""
    payload = json.dumps({k: v for k, v in cell.items() if k != "key"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Data -------------------------------------------------------------------------------------------------------------
SweepData = PreparedData
"""The training and validation arrays every cell uses (:class:`reluscope.runs.PreparedData`)."""


def load_sweep_data(config: SweepConfig) -> PreparedData:
    """Load the dataset named in ``config``, split off validation data and standardise if asked
    (:func:`reluscope.runs.prepare_data`); the data and split are the same for every cell."""
    return prepare_data(config)

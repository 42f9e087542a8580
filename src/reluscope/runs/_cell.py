"""A sweep cell's record (:class:`CellResult`, ``cells/<key>.json``), made from a :class:`RunResult`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from reluscope.io import atomic_write, strict_json
from reluscope.runs._json import finite_or_none
from reluscope.runs._run import RunResult
from reluscope.train import History

__all__ = ["CELL_FORMAT", "CELL_RESULT_VERSION", "CELL_VERSION", "CellResult"]

CELL_FORMAT = "reluscope.sweep-cell"
CELL_VERSION = 1
"""Version of a cell's *configuration* (it is hashed into the cell key, so it stays 1 while the config does)."""
CELL_RESULT_VERSION = 2


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
        """Compact strict JSON (the per-unit fire counts would be large indented), written atomically; non-finite
        values are null and listed under ``non_finite`` as :func:`reluscope.io.save_json` does."""
        clean, replaced = strict_json(self.to_dict())
        if replaced:
            clean["non_finite"] = {"paths": replaced, "reason": "not a finite number: written as null"}
        with atomic_write(path, "w") as f:
            f.write(json.dumps(clean, separators=(",", ":"), allow_nan=False) + "\n")

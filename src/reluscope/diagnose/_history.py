"""Per-unit dead/alive history during training: born dead?, died when?, ever revived?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive_int
from reluscope.diagnose._scan import scan
from reluscope.diagnose._stats import ActivationStats
from reluscope.train import Callback, TrainState

__all__ = ["DeadUnitTracker", "UnitHistory"]


@dataclass(frozen=True, eq=False)
class UnitHistory:
    """The record of one layer over the scanned epochs (R records, U units).

    Attributes
    ----------
    epochs : list[int]
        Completed epochs at each record (0 = initialisation).
    n_samples : int
        Samples per scan.
    fire_counts : ndarray of int64, shape (R, U)
        Samples each unit fired on, per record.
    born_dead : ndarray of bool, shape (U,)
        Dead at the first record (initialisation).
    died_at : ndarray of int64, shape (U,)
        First recorded epoch at which the unit was dead (0 if born dead), -1 if never dead.
    revived_at : ndarray of int64, shape (U,)
        First recorded epoch after ``died_at`` at which it fired again, -1 if it never did.
    dead_fraction : list[float]
        Fraction of the layer dead at each record.
    """

    epochs: list[int]
    n_samples: int
    fire_counts: NDArray[np.int64]
    born_dead: NDArray[np.bool_]
    died_at: NDArray[np.int64]
    revived_at: NDArray[np.int64]
    dead_fraction: list[float]

    @classmethod
    def from_counts(cls, epochs: list[int], n_samples: int, fire_counts: NDArray[np.int64]) -> UnitHistory:
        dead = fire_counts == 0  # (R, U)
        ep = np.asarray(epochs, dtype=np.int64)
        ever_dead = dead.any(axis=0)
        first_dead = np.argmax(dead, axis=0)
        died_at = np.where(ever_dead, ep[first_dead], -1)
        # alive again at a record after the first death
        after = np.arange(len(epochs))[:, None] > first_dead[None, :]
        back = ~dead & after & ever_dead[None, :]
        revived = back.any(axis=0)
        revived_at = np.where(revived, ep[np.argmax(back, axis=0)], -1)
        return cls(
            epochs=list(epochs),
            n_samples=n_samples,
            fire_counts=fire_counts,
            born_dead=dead[0].copy(),
            died_at=died_at.astype(np.int64),
            revived_at=revived_at.astype(np.int64),
            dead_fraction=[float(f) for f in dead.mean(axis=1)],
        )

    @property
    def n_born_dead(self) -> int:
        """Units dead at initialisation."""
        return int(np.count_nonzero(self.born_dead))

    @property
    def n_died(self) -> int:
        """Units alive at initialisation that died during training."""
        return int(np.count_nonzero(self.died_at > 0))

    @property
    def n_revived(self) -> int:
        """Units that were dead at some record and fired again at a later one."""
        return int(np.count_nonzero(self.revived_at >= 0))

    @property
    def n_dead_at_end(self) -> int:
        """Units dead at the last record."""
        return int(np.count_nonzero(self.fire_counts[-1] == 0))

    def to_dict(self, *, fire_counts: bool = True) -> dict[str, Any]:
        """JSON-ready dict (lists), including the counts above; ``fire_counts=False`` leaves out the (R, U)
        count matrix, the only part that grows with the number of records."""
        return {
            "epochs": self.epochs,
            "n_samples": self.n_samples,
            **({"fire_counts": self.fire_counts.tolist()} if fire_counts else {}),
            "born_dead": self.born_dead.tolist(),
            "died_at": self.died_at.tolist(),
            "revived_at": self.revived_at.tolist(),
            "dead_fraction": self.dead_fraction,
            "n_born_dead": self.n_born_dead,
            "n_died": self.n_died,
            "n_revived": self.n_revived,
            "n_dead_at_end": self.n_dead_at_end,
        }


class DeadUnitTracker(Callback):
    """A :func:`reluscope.train.fit` callback scanning the whole training set for dead units.

    It scans at the start of training (epoch 0), after every ``every`` epochs and after the last epoch, keeping
    per-unit fire counts (O(records x units) memory). Each scan also appends ``{layer: dead fraction}`` to
    ``history.extra["dead_fraction"]`` and its epoch to ``history.extra["dead_fraction_epoch"]``.

    Parameters
    ----------
    X
        (N, D) data to scan; ``None`` scans the training set passed to ``fit``.
    every
        Scan every this many epochs.
    batch_size
        Rows per forward pass of a scan.

    Examples
    --------
    >>> tracker = DeadUnitTracker(X, every=10)
    >>> fit(net, X, y, lr=1.0, epochs=200, callbacks=[tracker])
    >>> h = tracker.unit_history()["hidden1"]; h.n_died, h.n_revived
    """

    def __init__(self, X: NDArray[Any] | None = None, every: int = 1, batch_size: int = 1024) -> None:
        self.X: NDArray[Any] | None = X
        self.every: int = check_positive_int(every, "every", example=1)  # epochs between scans
        self.batch_size: int = check_positive_int(batch_size, "batch_size", example=256)
        self.epochs: list[int] = []
        self.n_samples: int = 0
        self.stats: ActivationStats | None = None  # the latest scan
        self._counts: dict[str, list[NDArray[np.int64]]] = {}

    def record(self, state: TrainState) -> ActivationStats:
        """Scan now and store the result under ``state.epoch`` (called by the hooks; callable by hand)."""
        X = state.X if self.X is None else self.X
        # activations that overflow raise NonFiniteError, which fit() reports as a divergence
        stats = scan(state.net, X, self.batch_size)
        self.stats = stats
        self.epochs.append(state.epoch)
        self.n_samples = stats.n_samples(stats.names[0])
        for name in stats.names:
            self._counts.setdefault(name, []).append(stats.fire_count(name))
        extra = state.history.extra
        extra.setdefault("dead_fraction", []).append({name: stats.dead_fraction(name) for name in stats.names})
        extra.setdefault("dead_fraction_epoch", []).append(state.epoch)
        return stats

    def on_train_begin(self, state: TrainState) -> None:
        self.epochs = []
        self._counts = {}
        self.record(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every == 0:
            self.record(state)

    def on_train_end(self, state: TrainState) -> None:
        if not self.epochs or self.epochs[-1] != state.epoch:
            self.record(state)

    def unit_history(self) -> dict[str, UnitHistory]:
        """Per layer, the :class:`UnitHistory` of every unit over the recorded epochs."""
        if not self.epochs:
            raise RuntimeError("no scans recorded yet: pass the tracker to fit(..., callbacks=[tracker]) first")
        return {
            name: UnitHistory.from_counts(self.epochs, self.n_samples, np.stack(counts))
            for name, counts in self._counts.items()
        }

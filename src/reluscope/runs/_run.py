"""One training run (:func:`run`) and its record (:class:`RunResult`, ``run.json``)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope.diagnose import ActivationStats, DeadUnitTracker, UnitHistory, scan
from reluscope.io import json_writer, load_json, model_writer, save_json, write_together
from reluscope.nn import MLP
from reluscope.nn.optim import get_optimizer
from reluscope.remedies import DeathSpikeDetector, ReDoCallback, default_redo_until, get_remedy, stuck_units
from reluscope.runs._config import RUN_VERSION, PreparedData, RunConfig, prepare_data
from reluscope.train import Callback, DivergenceError, History, TrainState, fit

__all__ = ["RUN_FORMAT", "RunResult", "load_run", "run", "save_run"]

RUN_FORMAT = "reluscope.run"


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
    save_json(path, result.to_dict())


def save_run_dir(out: str | os.PathLike[str], result: RunResult) -> None:
    """Write a run directory as a whole: ``model.npz`` (the network and its standardizer) and ``run.json``
    (:func:`reluscope.io.write_together`: both files are replaced, or neither; an OSError names the file)."""
    if result.net is None or result.data is None:
        raise ValueError("this RunResult holds no network (it was read from run.json); only a fresh run is saved")
    write_together(
        out,
        {
            "model.npz": model_writer(result.net, standardizer=result.data.standardizer),
            "run.json": json_writer(result.to_dict()),
        },
    )


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
        "redo": {"every": config.redo_every if get_remedy(config.remedy).recycles else 0, "tau": config.redo_tau},
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
    if not net.hidden_names and (config.track_every or get_remedy(config.remedy).recycles):
        raise ValueError("--track-dead and --redo need a hidden layer; pass --hidden, e.g. --hidden 100")
    cbs: list[Callback] = []
    if get_remedy(config.remedy).recycles:
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
        redo=history.extra.get("redo", []) if get_remedy(config.remedy).recycles else None,
        unit_history={n: h.to_dict() for n, h in units.items()} if tracker is not None else None,
        net=net,
        stats=stats,
        units=units,
        no_gradient=stuck_units(net, data.X) if stats is not None else {},
        data=data,
    )
    if stats is not None:
        result.scan = stats.summary()
        result.fire_rates = {n: stats.fire_rate(n).tolist() for n in stats.names}
    return result

"""Dead units in a Lightning fit: ``Trainer(callbacks=[DeadUnitCallback()])``.

Needs ``pip install 'reluscope[lightning]'``.

>>> from lightning.pytorch import Trainer
>>> from reluscope.integrations.lightning import DeadUnitCallback
>>> Trainer(callbacks=[DeadUnitCallback(full_every=10, tau=0.1)]).fit(module, loader)

The callback attaches :func:`reluscope.torch.monitor` to the LightningModule when the fit starts (so
``training_step`` must run the model through ``self(x)``, or name the submodule it calls with ``module="net"``),
opens a new window at each training epoch, and logs ``dead_fraction/<site>``, ``dormant_fraction/<site>``, the
``overall`` figures and fire-rate histograms (see :mod:`reluscope.integrations.loggers`) to every logger of the
trainer, at the trainer's ``log_every_n_steps`` cadence (the window so far) and at the end of each epoch (the whole
window). Validation and sanity-check passes (eval mode) are not counted. Under DDP the windows of all ranks are
merged with :func:`reluscope.torch.all_reduce` before logging and only global rank 0 logs.
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
except ImportError as _exc:  # pragma: no cover - exercised by a test that hides lightning
    raise ImportError("reluscope.integrations.lightning needs Lightning: pip install 'reluscope[lightning]'") from _exc

import torch

from reluscope._validate import check_tau
from reluscope.diagnose import ActivationStats
from reluscope.integrations._common import (
    Window,
    check_optional_positive,
    check_positive,
    merge_ranks,
    resolve_module,
)
from reluscope.integrations.loggers import _tb_histogram, dead_unit_metrics, fire_rate_histograms
from reluscope.torch import Monitor, monitor, redo

__all__ = ["DeadUnitCallback"]


class DeadUnitCallback(Callback):
    """Log dead and τ-dormant units per site during ``Trainer.fit``; optionally recycle them (ReDo).

    Parameters
    ----------
    every_n_steps
        Record one training forward pass in ``every_n_steps`` (1: all; the window's dead masks are then exact over
        the epoch's training data: a unit is dead when it fired on none of its samples).
    full_every
        Count fires exactly on one recorded pass in ``full_every`` (None: never). Dormant fractions and fire-rate
        histograms come from these passes only; with ``full_every=1`` they are exact over the window.
    tau
        Dormant threshold τ >= 0 (Sokar et al. 2023): ``dormant_fraction/<site>`` counts units whose dormant
        score is <= τ.
    log_every_n_steps
        Log the window so far every this many optimizer steps (default: the trainer's ``log_every_n_steps``).
        The closed window is always logged at the end of each training epoch.
    module
        Dotted attribute path of the submodule whose forward pass ``training_step`` calls (default: the
        LightningModule itself, for ``self(x)``).
    histograms, bins
        Also log ``fire_rate/<site>`` histograms (TensorBoard and W&B loggers) with ``bins`` equal bins.
    redo
        Recycle dead (``redo_tau=0``) or τ-dormant units every ``redo`` epochs with :func:`reluscope.torch.redo`,
        at the end of the epoch, from the merged window (None: never). The trainer must have one optimizer.
    redo_tau
        ReDo's threshold (0.0: dead units only; > 0 needs ``full_every``).
    seed
        Seeds ReDo's re-initialisation (``seed + k`` for the k-th call, so every rank and a resumed fit draw alike).

    Attributes
    ----------
    history : list[tuple[int, dict[str, float]]]
        ``(global_step, metrics)`` of every log, on every rank (after merging), for scripts and tests.
    last_window : ActivationStats | None
        The merged statistics of the last closed epoch window.
    """

    def __init__(
        self,
        *,
        every_n_steps: int = 1,
        full_every: int | None = 10,
        tau: float = 0.1,
        log_every_n_steps: int | None = None,
        module: str | None = None,
        histograms: bool = True,
        bins: int = 20,
        redo: int | None = None,
        redo_tau: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_steps = check_positive(every_n_steps, "every_n_steps")
        self.full_every = check_optional_positive(full_every, "full_every")
        self.tau = check_tau(tau)
        self.log_every_n_steps = check_optional_positive(log_every_n_steps, "log_every_n_steps")
        if module is not None and not isinstance(module, str):
            raise TypeError(f"module must be a dotted attribute path such as 'net' or None, got {module!r}")
        self.module = module
        if not isinstance(histograms, bool):
            raise TypeError(f"histograms must be True or False, got {histograms!r}")
        self.histograms = histograms
        self.bins = check_positive(bins, "bins")
        self.redo = check_optional_positive(redo, "redo")
        self.redo_tau = check_tau(redo_tau)
        if self.redo is not None and self.redo_tau > 0 and self.full_every is None:
            raise ValueError("redo_tau > 0 needs dormant scores, so full_every must be set (e.g. full_every=1)")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self._window = Window()
        self._monitor: Monitor | None = None
        self._example: Any = None
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last_window: ActivationStats | None = None

    # checkpointing (plain data: ints, floats, strings, None)
    def _config(self) -> dict[str, Any]:
        return {
            "every_n_steps": self.every_n_steps,
            "full_every": self.full_every,
            "tau": self.tau,
            "redo": self.redo,
            "redo_tau": self.redo_tau,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the configuration, epochs closed, last step logged, ReDo calls, last metrics. A fit
        resumed mid-epoch starts a new window (the monitor's device counters are not saved)."""
        return self._window.state_dict(self._config())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._window.load_state_dict(state_dict, "DeadUnitCallback")

    # lifetime
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._detach()
        target = resolve_module(pl_module, self.module, "LightningModule")
        self._monitor = monitor(target, every=self.every_n_steps, full_every=self.full_every)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._detach()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._detach()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._monitor is not None:
            self._monitor.remove()
            self._monitor = None

    # windows and logging
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._monitor is not None:
            self._monitor.reset_window()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        m = self._monitor
        if m is None:
            return
        if m.steps == 0:
            where = "the LightningModule" if self.module is None else f"module={self.module!r}"
            raise RuntimeError(
                f"DeadUnitCallback saw no training forward pass of {where}: training_step does not call it (e.g. "
                "it calls self.net(x) rather than self(x)); pass DeadUnitCallback(module='net') naming the "
                "submodule training_step runs"
            )
        if self.redo is not None and self._example is None:
            self._example = _first_input(batch)
        cadence = self.log_every_n_steps or int(getattr(trainer, "log_every_n_steps", 50) or 50)
        step = int(trainer.global_step)
        if step % cadence == 0 and step != self._window.last_logged_step:
            self._log(trainer, m.stats, self._full(m), step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        m = self._monitor
        if m is None:
            return
        step = int(trainer.global_step)
        stats, full = merge_ranks(m.stats), self._full(m, merge=True)
        self.last_window = stats
        self._window.epochs_closed += 1
        if step != self._window.last_logged_step:
            self._log(trainer, stats, full, step, merged=True)
        if self.redo is not None and self._window.epochs_closed % self.redo == 0:
            self._recycle(trainer, pl_module, stats if self.redo_tau == 0 else full)

    def _full(self, m: Monitor, merge: bool = False) -> ActivationStats | None:
        if self.full_every is None:
            return None
        return merge_ranks(m.full_stats) if merge else m.full_stats

    def _log(
        self,
        trainer: Any,
        stats: ActivationStats,
        full: ActivationStats | None,
        step: int,
        merged: bool = False,
    ) -> None:
        if not merged:  # a collective: every rank reaches this line at the same global step
            stats = merge_ranks(stats)
            full = None if full is None else merge_ranks(full)
        metrics = dead_unit_metrics(stats, tau=self.tau, full_stats=full, dormant=full is not None)
        self._window.last_logged_step = step
        self._window.last_metrics = metrics
        self.history.append((step, metrics))
        if not trainer.is_global_zero:
            return
        hists = fire_rate_histograms(full, bins=self.bins) if self.histograms and full is not None else {}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and hists:
                import wandb

                payload: dict[str, Any] = dict(metrics)
                for key, (counts, edges) in hists.items():
                    payload[key] = wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))
                logger.log_metrics(payload, step=step)
                continue
            logger.log_metrics(metrics, step=step)
            if isinstance(logger, TensorBoardLogger):
                for key, (counts, edges) in hists.items():
                    _tb_histogram(logger.experiment, key, counts, edges, step)

    def _recycle(self, trainer: Any, pl_module: Any, stats: ActivationStats | None) -> None:
        if stats is None:  # pragma: no cover - excluded by the constructor
            return
        optimizers = list(trainer.optimizers)
        if len(optimizers) > 1:
            raise ValueError(
                f"DeadUnitCallback(redo=...) needs one optimizer, the trainer has {len(optimizers)}; call "
                "reluscope.torch.redo yourself with the optimizer that owns the recycled layers"
            )
        target = resolve_module(pl_module, self.module, "LightningModule")
        generator = torch.Generator().manual_seed(self.seed + self._window.redo_calls)
        report = redo(
            target,
            optimizers[0] if optimizers else None,
            stats,
            tau=self.redo_tau,
            example=self._example,
            seed=generator,
        )
        self._window.redo_calls += 1
        self._window.recycled += int(report.total)


def _first_input(batch: Any) -> Any:
    if isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    return batch.detach() if isinstance(batch, torch.Tensor) else batch

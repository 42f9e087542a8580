"""Dead units in a Hugging Face ``Trainer`` run: ``Trainer(..., callbacks=[DeadUnitTrainerCallback()])``.

Needs ``pip install 'reluscope[hf]'`` (transformers, accelerate).

>>> from reluscope.integrations.hf import DeadUnitTrainerCallback
>>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[DeadUnitTrainerCallback(tau=0.1)]).train()

Trainer callbacks cannot change the forward pass, so :func:`reluscope.torch.monitor` hooks go on the model in
``on_train_begin`` (and come off in ``on_train_end``). Each training epoch is a window. Whenever the Trainer logs
(``logging_steps`` / ``logging_strategy``), the callback computes ``dead_fraction/<site>``,
``dormant_fraction/<site>`` and the ``overall`` figures over the window so far (see
:mod:`reluscope.integrations.loggers`), merged over ranks with :func:`reluscope.torch.all_reduce` under
``torch.distributed``, and on the main process (``state.is_world_process_zero``) appends them to
``state.log_history`` and to the ``logs`` dict (so reporting callbacks registered after this one receive them), and
writes them to ``writer_or_run`` (a TensorBoard ``SummaryWriter`` or a wandb run) when one is given.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as _exc:  # pragma: no cover - exercised by a test that hides transformers
    raise ImportError("reluscope.integrations.hf needs transformers: pip install 'reluscope[hf]'") from _exc

from reluscope._validate import check_tau
from reluscope.diagnose import ActivationStats
from reluscope.integrations._common import Window, check_optional_positive, check_positive, merge_ranks, resolve_module
from reluscope.integrations.loggers import dead_unit_metrics, log_dead_units
from reluscope.torch import Monitor, monitor

__all__ = ["DeadUnitTrainerCallback"]


class DeadUnitTrainerCallback(TrainerCallback):
    """Log dead and τ-dormant units per site while a ``transformers.Trainer`` trains.

    Parameters
    ----------
    every_n_steps
        Record one training forward pass in ``every_n_steps`` (1: all, exact dead masks over the window).
    full_every
        Count fires exactly on one recorded pass in ``full_every`` (None: never, no dormant fractions).
    tau
        Dormant threshold τ >= 0 (Sokar et al. 2023 use 0.025 to 0.1), checked by ``reluscope._validate.check_tau``.
    module
        Dotted attribute path of the submodule to watch (default: the model the Trainer trains).
    writer_or_run
        Optional TensorBoard ``SummaryWriter`` or wandb run that also receives the scalars and fire-rate
        histograms (:func:`reluscope.integrations.loggers.log_dead_units`), on the main process only.
    histograms, bins
        Fire-rate histograms for ``writer_or_run``.

    Attributes
    ----------
    history : list[tuple[int, dict[str, float]]]
        ``(global_step, metrics)`` of every log (every rank, after merging).
    last_window : ActivationStats | None
        Merged statistics of the last closed epoch window.
    """

    def __init__(
        self,
        *,
        every_n_steps: int = 1,
        full_every: int | None = 10,
        tau: float = 0.1,
        module: str | None = None,
        writer_or_run: Any = None,
        histograms: bool = True,
        bins: int = 20,
    ) -> None:
        self.every_n_steps = check_positive(every_n_steps, "every_n_steps")
        self.full_every = check_optional_positive(full_every, "full_every")
        self.tau = check_tau(tau)
        if module is not None and not isinstance(module, str):
            raise TypeError(f"module must be a dotted attribute path such as 'encoder' or None, got {module!r}")
        self.module = module
        self.writer_or_run = writer_or_run
        if not isinstance(histograms, bool):
            raise TypeError(f"histograms must be True or False, got {histograms!r}")
        self.histograms = histograms
        self.bins = check_positive(bins, "bins")
        self._window = Window()
        self._monitor: Monitor | None = None
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last_window: ActivationStats | None = None

    # checkpointing (plain data)
    def state_dict(self) -> dict[str, Any]:
        """Plain data: configuration, epochs closed, last step logged, last metrics."""
        return self._window.state_dict(
            {"every_n_steps": self.every_n_steps, "full_every": self.full_every, "tau": self.tau}
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._window.load_state_dict(state_dict, "DeadUnitTrainerCallback")

    # lifetime
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise RuntimeError("DeadUnitTrainerCallback needs the model; the Trainer passed none to on_train_begin")
        self._detach()
        self._monitor = monitor(
            resolve_module(model, self.module, "model"), every=self.every_n_steps, full_every=self.full_every
        )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._monitor is not None:
            self._monitor.remove()
            self._monitor = None

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._monitor is not None:
            self.last_window = None
            self._monitor.reset_window()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._monitor is not None:
            self.last_window = merge_ranks(self._monitor.stats)
            self._window.epochs_closed += 1

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        m = self._monitor
        step = int(state.global_step)
        if m is None or step == self._window.last_logged_step:
            return  # the Trainer's closing summary log repeats the last step
        if m.steps == 0:
            return  # nothing trained yet (an evaluation before the first step)
        stats = merge_ranks(m.stats)  # a collective: every rank logs at the same steps
        full = None if self.full_every is None else merge_ranks(m.full_stats)
        metrics = dead_unit_metrics(stats, tau=self.tau, full_stats=full, dormant=full is not None)
        self._window.last_logged_step = step
        self._window.last_metrics = metrics
        self.history.append((step, metrics))
        if not state.is_world_process_zero:
            return
        if isinstance(logs, dict):
            logs.update(metrics)
        state.log_history.append({**metrics, "step": step})
        if self.writer_or_run is not None:
            log_dead_units(
                self.writer_or_run,
                stats,
                step,
                tau=self.tau,
                full_stats=full,
                dormant=full is not None,
                histograms=self.histograms and full is not None,
                bins=self.bins,
            )

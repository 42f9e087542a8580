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
``non_finite``        ``{"paths": [...], "reason": ...}``: where a value was not finite (written as null)

The JSON is strict (``allow_nan=False``, :func:`reluscope.io.save_json`): a NaN or infinity becomes ``null`` and
its path is listed in ``non_finite``, so any JSON reader can load every record. Sweep cells
(:class:`CellResult`, ``cells/<key>.json``) follow the same rule.
"""

from reluscope.runs._cell import CELL_FORMAT, CELL_RESULT_VERSION, CELL_VERSION, CellResult
from reluscope.runs._config import (
    REMEDIES,
    RUN_VERSION,
    DataConfig,
    PreparedData,
    RunConfig,
    check_remedy,
    prepare_data,
    run_cell_config,
)
from reluscope.runs._json import config_from_dict, config_to_dict, finite_or_none, mean_std
from reluscope.runs._run import RUN_FORMAT, RunResult, load_run, run, save_run, save_run_dir

__all__ = [
    "CELL_FORMAT",
    "CELL_RESULT_VERSION",
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
    "finite_or_none",
    "load_run",
    "mean_std",
    "prepare_data",
    "run",
    "run_cell_config",
    "save_run",
    "save_run_dir",
]

"""Running a sweep: every cell is one :func:`reluscope.runs.run`, written to ``OUT/cells/<key>.json`` as soon as
it finishes (atomically), so an interrupted sweep resumes where it stopped."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reluscope._cluster import check_backend, map_on_dask
from reluscope.experiments._cells import cell_path, resolve_jobs, run_cells
from reluscope.experiments._grid import SWEEP_FILE, SweepConfig, load_sweep_data
from reluscope.experiments._tables import summarize_sweep, sweep_table, write_tables
from reluscope.io import directory_lock, load_json, save_json
from reluscope.remedies import stuck_units
from reluscope.runs import CellResult, PreparedData, run, run_cell_config

__all__ = ["CellProgress", "SweepResult", "load_sweep", "no_gradient_units", "run_cell", "run_sweep"]

CellProgress = Callable[[dict[str, Any], int, int], None]
"""``progress(cell_result, n_done, n_total)``, called in the parent process after every finished cell."""

# Units that receive no gradient on any sample ("stuck"): the remedies module's measurement, under the name the
# sweep's tables use.
no_gradient_units = stuck_units


def _run_cell(cell: dict[str, Any], data: PreparedData) -> CellResult:
    t0 = time.perf_counter()
    result = run(run_cell_config(cell), data=data)
    return CellResult.from_run(cell, result, time.perf_counter() - t0)


def run_cell(cell: dict[str, Any], data: PreparedData) -> dict[str, Any]:
    """Train one cell of a sweep (:func:`reluscope.runs.run`) and return its record
    (:meth:`reluscope.runs.CellResult.to_dict`); no file is written.

    A run that diverges at a high learning rate is a result, not an error: ``status`` is ``"diverged"``,
    ``diverged_at_epoch`` says when (the loss or the weights became NaN/inf, or the activations overflowed),
    ``error`` why, and every statistic describes the last finite state, the weights at epoch ``final_epoch``.
    """
    return _run_cell(cell, data).to_dict()


def _run_and_write(cell: dict[str, Any], *, data: PreparedData, out: Path) -> dict[str, Any]:
    result = _run_cell(cell, data)
    result.write(cell_path(out, cell["key"]))
    return result.to_dict()


def _run_on_dask(todo: list[dict[str, Any]], data: PreparedData, out: Path, scheduler: str) -> Iterator[dict[str, Any]]:
    """Cells on the workers of the Dask scheduler at ``scheduler``; each record is written here as it arrives."""
    for result in map_on_dask(_run_cell, todo, scheduler=scheduler, shared={"data": data}):
        result.write(cell_path(out, result.key))
        yield result.to_dict()


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
    try:
        CellResult.from_dict(result)
    except ValueError:
        return None  # another format or version: run the cell again
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


def run_sweep(
    config: SweepConfig,
    out: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    progress: CellProgress | None = None,
    command: str | None = None,
    backend: str = "local",
    scheduler: str | None = None,
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
        of the active joblib backend (for a Dask cluster use ``backend="dask"`` instead).
    progress
        ``progress(cell_result, n_done, n_total)`` after every cell (cells found on disk count as done up front).
    command
        The command line that produced the sweep, stored in ``sweep.json`` for the report.
    backend, scheduler
        ``"local"`` (default: joblib processes here, ``jobs``) or ``"dask"`` with the address of a
        ``dask.distributed`` scheduler (``"tcp://10.0.0.5:8786"``): cells run on its workers (which need reluscope
        installed; ``pip install 'reluscope[dask]'``), the data goes to each worker once, and the results are
        written here as they arrive, so no shared filesystem is needed; ``jobs`` is then ignored. Ray is not
        supported.

    Interrupting (Ctrl-C) loses at most the cells in flight: rerun with the same arguments to finish the others.
    ``out`` is locked while the sweep runs (:func:`reluscope.io.directory_lock`): a second sweep into the same
    directory gets a ValueError at once instead of mixing its files into this one's.
    """
    n_jobs = resolve_jobs(jobs)
    backend, scheduler = check_backend(backend, scheduler)
    out = Path(out)
    # writability is checked and the directory locked before any work: a second sweep into it is refused
    with directory_lock(out, what="sweep"):
        return _run_sweep_locked(config, out, n_jobs, progress, command, scheduler)


def _run_sweep_locked(
    config: SweepConfig,
    out: Path,
    n_jobs: int,
    progress: CellProgress | None,
    command: str | None,
    scheduler: str | None,
) -> SweepResult:
    data = load_sweep_data(config)
    cells = config.cells(data.digest)
    results: dict[str, dict[str, Any]] = {}
    todo: list[dict[str, Any]] = []
    for cell in cells:
        found = _load_finished(cell_path(out, cell["key"]), cell)
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
    if scheduler is not None:
        finished = _run_on_dask(todo, data, out, scheduler)
    else:
        finished = run_cells(todo, functools.partial(_run_and_write, data=data, out=out), n_jobs)
    for result in finished:
        results[result["key"]] = result
        ran.append(result["key"])
        if progress is not None:
            progress(result, len(results), total)
    ordered = [results[c["key"]] for c in cells]
    rows = sweep_table(ordered)
    summary = summarize_sweep(rows)
    write_tables(out, rows, summary)
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


def load_sweep(out: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a sweep directory: (the ``sweep.json`` record, the cell results found, in grid order).

    Cells missing on disk (an interrupted sweep) are left out; ``len(cells) < len(record["cells"])`` says so.
    """
    out = Path(out)
    record = load_json(out / SWEEP_FILE)
    if not isinstance(record, dict) or record.get("kind") != "sweep":
        raise ValueError(f"{out / SWEEP_FILE} is not a sweep record; run `reluscope sweep --out {out}` first")
    cell_keys, config = record.get("cells"), record.get("config")
    bad = []
    if not (isinstance(cell_keys, list) and all(isinstance(k, str) for k in cell_keys)):
        bad.append("'cells' (a list of cell keys)")
    if not isinstance(config, dict):
        bad.append("'config' (the sweep's options)")
    if bad:
        raise ValueError(
            f"{out / SWEEP_FILE} is an incomplete sweep record: expected {' and '.join(bad)}, found keys "
            f"{sorted(record)}; it was edited or written by another tool. Run the sweep again into a new --out"
        )
    cells = []
    for key in record["cells"]:
        path = cell_path(out, key)
        if path.is_file():
            result = load_json(path)
            if isinstance(result, dict) and result.get("status") in ("finished", "diverged"):
                try:
                    CellResult.from_dict(result)
                except ValueError as exc:  # a cell of another format or version
                    raise ValueError(f"{path}: {exc}") from None
                cells.append(result)
    return record, cells

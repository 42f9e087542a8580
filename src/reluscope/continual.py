"""A continual-learning benchmark for loss of plasticity: Permuted digits (or Permuted MNIST), one pass per task.

Setting (after Dohare et al., Nature 2024, "Loss of plasticity in deep continual learning", Online Permuted MNIST):
task ``t`` of seed ``s`` is the data set with its pixels reordered by a fixed random permutation drawn from
``numpy.random.default_rng([seed, t])``. One network per (method, seed) sees the tasks in order, each task's
training split once, in shuffled minibatches, never re-initialised between tasks. Every method of one seed starts
from the same weights and sees the same permutations and batch orders.

Recorded per task (a :class:`TaskRecord`):

* ``online_accuracy``: the fraction of the task's training samples classified correctly *before* the update on
  their batch (the paper's online accuracy on the new task), and ``test_accuracy`` on the task's held-out split
  after the pass;
* ``dead_fraction`` (hidden units that fired on no training sample of the task) and ``dormant_fraction``
  (τ-dormant at τ = 0.1, Sokar et al. 2023, dead units included), over all hidden layers;
* ``effective_rank`` of the last hidden layer's representation of the test split: Roy & Vetterli (2007),
  ``exp(-Σ p_k log p_k)`` with ``p_k = σ_k / Σ σ`` the normalised singular values (the definition Dohare et al.
  2024 use), and ``srank`` (Kumar et al. 2021): the smallest ``k`` with ``Σ_{i<=k} σ_i >= 0.99 Σ σ``;
* ``weight_magnitude``: mean |w| over all weight matrices (biases excluded);
* ``replaced``: units replaced/recycled during the task (CBP, ReDo), and ``loss``: mean training loss.

Methods: ``none`` (plain SGD), ``l2`` (L2 penalty), ``redo`` (ReDo every ``redo_every`` steps on 256 samples of
the current task), ``cbp`` (Continual Backprop every step), ``shrink`` (Shrink & Perturb every ``shrink_every``
steps), ``leaky`` (leaky ReLU instead of ReLU).

Cells (one per method × seed) are written to ``<out>/cells/<key>.json`` atomically as each finishes; a rerun
with the same configuration loads them instead of training again.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import numbers
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope.data import digits, load_idx
from reluscope.diagnose import scan
from reluscope.experiments import cell_path, resolve_jobs, run_cells
from reluscope.io import atomic_write, directory_lock, json_writer, load_json, save_json
from reluscope.nn import MLP
from reluscope.nn.optim import get_optimizer
from reluscope.remedies import ContinualBackprop, ShrinkPerturb, check_cbp_options, check_shrink_options, redo

__all__ = [
    "CONTINUAL_FILE",
    "METHODS",
    "RECORD_VERSION",
    "ContinualCell",
    "ContinualConfig",
    "ContinualResult",
    "TaskRecord",
    "count_finished",
    "effective_rank",
    "load_continual",
    "per_task_series",
    "run_continual",
    "run_continual_cell",
    "srank",
    "summarize_continual",
]

METHODS = ("none", "l2", "redo", "cbp", "shrink", "leaky")
RECORD_VERSION = 1
CONTINUAL_FILE = "continual.json"
CellProgress = Callable[["ContinualCell", int, int], None]


# Representation rank -------------------------------------------------------------------------------------------
def effective_rank(h: NDArray[Any]) -> float:
    """Roy & Vetterli (2007) effective rank of ``h`` (N, H): ``exp(-Σ p_k log p_k)``, ``p = σ / Σ σ``.

    In [1, min(N, H)] for a non-zero matrix; 0.0 for an all-zero one (a layer of dead units has no rank).
    """
    s = np.linalg.svd(np.asarray(h, dtype=np.float64), compute_uv=False)
    total = float(s.sum())
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def srank(h: NDArray[Any], delta: float = 0.01) -> int:
    """Kumar et al. (2021) ``srank_δ`` of ``h`` (N, H): smallest k with ``Σ_{i<=k} σ_i >= (1 - δ) Σ σ``; 0 if h=0."""
    s = np.linalg.svd(np.asarray(h, dtype=np.float64), compute_uv=False)
    total = float(s.sum())
    if total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(s), (1.0 - delta) * total) + 1)


# Configuration -------------------------------------------------------------------------------------------------
def _pos_int(value: Any, name: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}={example}")
    return int(value)


def _pos_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if not ok or float(value) < 0 or (float(value) == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ContinualConfig:
    """The benchmark's grid and every hyper-parameter (see the module docstring).

    ``data`` is ``"digits"`` (scikit-learn's 8×8 digits, 1797 samples, 64 pixels) or ``"idx"`` with
    ``idx_images`` / ``idx_labels`` paths (MNIST IDX, read by :func:`reluscope.data.load_idx`); ``max_samples``
    keeps the first that many samples (``None``: all). ``test_fraction`` of them (a fixed split per seed) is held
    out per task.
    """

    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_tasks: int = 100
    hidden: tuple[int, ...] = (100, 100)
    lr: float = 0.3
    batch_size: int = 8
    optimizer: str = "sgd"
    data: str = "digits"
    idx_images: str | None = None
    idx_labels: str | None = None
    max_samples: int | None = None
    test_fraction: float = 0.2
    l2: float = 1e-3
    redo_every: int = 100
    redo_tau: float = 0.1
    cbp_rate: float = 1e-3
    cbp_maturity: int = 100
    cbp_decay: float = 0.99
    shrink: float = 0.99
    shrink_noise: float = 0.01
    shrink_every: int = 10
    leaky_slope: float = 0.01

    def __post_init__(self) -> None:
        methods = tuple(dict.fromkeys(self.methods))
        if not methods or any(m not in METHODS for m in methods):
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}, got {list(self.methods)}")
        object.__setattr__(self, "methods", methods)
        seeds: tuple[Any, ...] = tuple(dict.fromkeys(self.seeds))
        if not seeds or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {list(self.seeds)}; e.g. seeds=(0, 1, 2)")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        object.__setattr__(self, "n_tasks", _pos_int(self.n_tasks, "n_tasks", 60))
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden width, e.g. hidden=(100, 100)")
        object.__setattr__(self, "hidden", tuple(_pos_int(h, "hidden width", 100) for h in self.hidden))
        object.__setattr__(self, "lr", _pos_float(self.lr, "lr"))
        object.__setattr__(self, "batch_size", _pos_int(self.batch_size, "batch_size", 8))
        get_optimizer(self.optimizer, 0.1)  # raises on an unknown name
        if self.data not in ("digits", "idx"):
            raise ValueError(f"data must be 'digits' or 'idx' (with idx_images and idx_labels), got {self.data!r}")
        if self.data == "idx" and (not self.idx_images or not self.idx_labels):
            raise ValueError("data='idx' needs both idx_images and idx_labels (MNIST IDX files, raw or .gz)")
        if self.max_samples is not None:
            object.__setattr__(self, "max_samples", _pos_int(self.max_samples, "max_samples", 10000))
        tf: Any = self.test_fraction
        if isinstance(tf, bool) or not isinstance(tf, numbers.Real) or not 0.0 < float(tf) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {tf!r}; e.g. 0.2")
        object.__setattr__(self, "l2", _pos_float(self.l2, "l2", allow_zero=True))
        object.__setattr__(self, "redo_every", _pos_int(self.redo_every, "redo_every", 100))
        object.__setattr__(self, "redo_tau", _pos_float(self.redo_tau, "redo_tau", allow_zero=True))
        check_cbp_options(self.cbp_rate, self.cbp_maturity, self.cbp_decay)
        check_shrink_options(self.shrink, self.shrink_noise)
        object.__setattr__(self, "shrink_every", _pos_int(self.shrink_every, "shrink_every", 10))
        object.__setattr__(self, "leaky_slope", _pos_float(self.leaky_slope, "leaky_slope"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``"version"``; tuples become lists."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"version": RECORD_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContinualConfig:
        """Inverse of :meth:`to_dict`; refuses other versions and unknown keys."""
        _check_version(d, "continual config")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"version"})
        if unknown:
            raise ValueError(f"continual config has unknown keys {unknown}; was it written by a newer reluscope?")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "version"}
        return cls(**kw)

    def cell_config(self, method: str, seed: int) -> dict[str, Any]:
        """What determines one cell's result: every option except the grid lists, plus ``method`` and ``seed``."""
        d = self.to_dict()
        del d["methods"], d["seeds"]
        return {**d, "method": method, "seed": seed}

    def cells(self) -> list[dict[str, Any]]:
        """Cell configs in grid order (methods outer, seeds inner), each with its ``key``."""
        out = []
        for m in self.methods:
            for s in self.seeds:
                c = self.cell_config(m, s)
                digest = hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:10]
                out.append({**c, "key": f"{m}-s{s}-{digest}"})
        return out


def _check_version(d: Any, what: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(d).__name__}")
    if d.get("version") != RECORD_VERSION:
        raise ValueError(
            f"{what} has version {d.get('version')!r}; this reluscope reads version {RECORD_VERSION}: "
            "rerun the benchmark into a new directory"
        )


# Records -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskRecord:
    """Measurements after one task (see the module docstring); fractions in [0, 1]."""

    task: int
    online_accuracy: float
    test_accuracy: float
    dead_fraction: float
    dormant_fraction: float
    effective_rank: float
    srank: int
    weight_magnitude: float
    replaced: int
    loss: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskRecord:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"task record lacks {missing}")
        return cls(**{n: d[n] for n in names})


@dataclass(frozen=True)
class ContinualCell:
    """One (method, seed) run. ``status`` is ``"finished"`` or ``"diverged"`` (the loss became non-finite at
    ``diverged_at_task``; ``tasks`` holds the tasks before it)."""

    key: str
    method: str
    seed: int
    config: dict[str, Any]
    tasks: list[TaskRecord]
    status: str = "finished"
    diverged_at_task: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Versioned, strict-JSON-ready dict (no NaN/inf: a non-finite loss is stored as ``null``)."""
        return {
            "version": RECORD_VERSION,
            "key": self.key,
            "method": self.method,
            "seed": self.seed,
            "config": dict(self.config),
            "status": self.status,
            "diverged_at_task": self.diverged_at_task,
            "seconds": self.seconds,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContinualCell:
        _check_version(d, "continual cell")
        return cls(
            key=str(d["key"]),
            method=str(d["method"]),
            seed=int(d["seed"]),
            config=dict(d["config"]),
            tasks=[TaskRecord.from_dict(t) for t in d["tasks"]],
            status=str(d["status"]),
            diverged_at_task=d.get("diverged_at_task"),
            seconds=float(d.get("seconds", 0.0)),
        )


# Data ----------------------------------------------------------------------------------------------------------
def _load_data(cfg: dict[str, Any]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    if cfg["data"] == "digits":
        X, y = digits()
    else:
        X, y = load_idx(cfg["idx_images"], cfg["idx_labels"])
    if cfg.get("max_samples") is not None:
        X, y = X[: cfg["max_samples"]], y[: cfg["max_samples"]]
    return X, y


# One cell ------------------------------------------------------------------------------------------------------
def run_continual_cell(
    cell: dict[str, Any], data: tuple[NDArray[np.float64], NDArray[np.int64]] | None = None
) -> ContinualCell:
    """Train one (method, seed) network through the task sequence and measure it after every task.

    ``cell`` is one entry of :meth:`ContinualConfig.cells`; ``data`` (X (N, D), y (N,)) is loaded from the
    cell's config when not given. BLAS runs single-threaded here (``threadpoolctl``): the matrices are small, and
    cells run side by side with ``jobs > 1``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run_cell(cell, data)


def _run_cell(cell: dict[str, Any], data: tuple[NDArray[np.float64], NDArray[np.int64]] | None) -> ContinualCell:
    t0 = time.perf_counter()
    cfg = {k: v for k, v in cell.items() if k != "key"}
    X, y = _load_data(cfg) if data is None else data
    method, seed = cfg["method"], int(cfg["seed"])
    n_classes = int(y.max()) + 1
    split_rng = np.random.default_rng([seed, 1_000_003])
    order = split_rng.permutation(len(y))
    n_test = max(1, round(cfg["test_fraction"] * len(y)))
    test_idx, train_idx = order[:n_test], order[n_test:]
    X_tr, y_tr, X_te, y_te = X[train_idx], y[train_idx], X[test_idx], y[test_idx]

    activation = "leaky" if method == "leaky" else "relu"
    net = MLP(
        [X.shape[1], *cfg["hidden"], n_classes],
        activation,
        slope=cfg["leaky_slope"],
        seed=np.random.default_rng([seed, 7]),
    )
    opt = get_optimizer(cfg["optimizer"], cfg["lr"])
    reg = cfg["l2"] if method == "l2" else 0.0
    cbp = (
        ContinualBackprop(
            net,
            replacement_rate=cfg["cbp_rate"],
            maturity=cfg["cbp_maturity"],
            decay=cfg["cbp_decay"],
            seed=np.random.default_rng([seed, 11]),
        )
        if method == "cbp"
        else None
    )
    sp = (
        ShrinkPerturb(
            net,
            every=cfg["shrink_every"],
            shrink=cfg["shrink"],
            noise=cfg["shrink_noise"],
            seed=np.random.default_rng([seed, 13]),
        )
        if method == "shrink"
        else None
    )
    redo_rng = np.random.default_rng([seed, 17])
    bs = cfg["batch_size"]
    step = 0
    tasks: list[TaskRecord] = []
    status, diverged_at = "finished", None
    for t in range(cfg["n_tasks"]):
        perm = np.random.default_rng([seed, t]).permutation(X.shape[1])
        Xt, Xv = X_tr[:, perm], X_te[:, perm]
        batch_order = np.random.default_rng([seed, t, 1]).permutation(len(y_tr))
        correct, loss_sum, replaced, n_batches = 0, 0.0, 0, 0
        finite = True
        for start in range(0, len(batch_order), bs):
            b = batch_order[start : start + bs]
            xb, yb = Xt[b], y_tr[b]
            loss, grads, scores = net.loss_and_scores(xb, yb, reg, validate=False)
            if not math.isfinite(loss):
                finite = False
                break
            correct += int(np.sum(np.argmax(scores, axis=1) == yb))
            loss_sum += loss
            n_batches += 1
            opt.step(net.params, grads)
            step += 1
            if cbp is not None:
                cbp.observe([h for _, h in net.hidden_outputs(xb)])
                replaced += cbp.step(opt).total
            elif sp is not None:
                sp.step()
            elif method == "redo" and step % cfg["redo_every"] == 0:
                stats = scan(net, Xt[batch_order[:256]])
                replaced += redo(net, opt, stats, tau=cfg["redo_tau"], seed=redo_rng).total
        if not finite or not all(np.isfinite(p).all() for p in net.params.values()):
            status, diverged_at = "diverged", t
            break
        stats = scan(net, Xt)
        names = net.hidden_names
        units = sum(stats.n_units(n) for n in names)
        dead = sum(int(stats.dead_mask(n).sum()) for n in names) / units
        dormant = sum(int((stats.dead_mask(n) | stats.dormant_mask(n, 0.1)).sum()) for n in names) / units
        h_last = net.hidden_outputs(Xv)[-1][1]
        weights = [net.params[f"W{k}"] for k in range(1, net.n_layers + 1)]
        tasks.append(
            TaskRecord(
                task=t,
                online_accuracy=correct / len(y_tr),
                test_accuracy=net.accuracy(Xv, y_te),
                dead_fraction=dead,
                dormant_fraction=dormant,
                effective_rank=effective_rank(h_last),
                srank=srank(h_last),
                weight_magnitude=float(sum(np.abs(w).sum() for w in weights) / sum(w.size for w in weights)),
                replaced=replaced,
                loss=loss_sum / max(n_batches, 1),
            )
        )
    return ContinualCell(
        key=cell["key"],
        method=method,
        seed=seed,
        config=cfg,
        tasks=tasks,
        status=status,
        diverged_at_task=diverged_at,
        seconds=time.perf_counter() - t0,
    )


# Cache ---------------------------------------------------------------------------------------------------------
def _write_cell(path: Path, cell: ContinualCell) -> None:
    with atomic_write(path) as f:  # strict JSON: a non-finite number is null, listed under "non_finite"
        json_writer(cell.to_dict())(f)


def _run_and_write(
    cell: dict[str, Any], *, data: tuple[NDArray[np.float64], NDArray[np.int64]], out: Path
) -> ContinualCell:
    result = run_continual_cell(cell, data)
    _write_cell(cell_path(out, cell["key"]), result)
    return result


def _load_finished(path: Path, cell: dict[str, Any]) -> ContinualCell | None:
    """The stored result of ``cell`` if ``path`` holds a complete one for exactly this config, else None."""
    if not path.is_file():
        return None
    try:
        found = ContinualCell.from_dict(load_json(path))
    except (ValueError, OSError, KeyError, TypeError):
        return None  # unreadable or from another version: run the cell again
    if found.config != {k: v for k, v in cell.items() if k != "key"}:
        return None
    return found


@dataclass
class ContinualResult:
    """What :func:`run_continual` produced: the cells in grid order, which were trained now (``ran``) and which
    were found finished on disk (``skipped``), and the summary rows (:func:`summarize_continual`)."""

    config: ContinualConfig
    out: Path
    cells: list[ContinualCell]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    command: str | None = None


def run_continual(
    config: ContinualConfig,
    out: str | os.PathLike[str],
    *,
    jobs: int | None = 1,
    progress: CellProgress | None = None,
    command: str | None = None,
    blocks: int = 5,
) -> ContinualResult:
    """Run every cell of ``config`` not already finished in ``out``; write ``continual.json`` (config, command,
    summary) atomically. Interrupting loses at most the cells in flight: rerun to finish the others. ``out`` is
    locked while the benchmark runs (a second run into it raises ValueError at once).

    Parameters
    ----------
    jobs
        Worker processes (joblib); 1 = this process; ``None`` = all cores.
    progress
        ``progress(cell, n_done, n_total)`` after every cell trained now.
    blocks
        Number of consecutive task blocks the summary averages over (see :func:`summarize_continual`).
    """
    if not isinstance(config, ContinualConfig):
        raise TypeError(f"config must be a ContinualConfig, got {type(config).__name__}")
    n_jobs = resolve_jobs(jobs)
    out = Path(out)
    with directory_lock(out, what="continual benchmark"):
        data = _load_data(config.cell_config(config.methods[0], config.seeds[0]))
        cells = config.cells()
        results: dict[str, ContinualCell] = {}
        todo = []
        for c in cells:
            found = _load_finished(cell_path(out, c["key"]), c)
            if found is None:
                todo.append(c)
            else:
                results[c["key"]] = found
        skipped = list(results)
        ran: list[str] = []
        for res in run_cells(todo, functools.partial(_run_and_write, data=data, out=out), n_jobs):
            results[res.key] = res
            ran.append(res.key)
            if progress is not None:
                progress(res, len(results), len(cells))
        ordered = [results[c["key"]] for c in cells]
        summary = summarize_continual(ordered, blocks=blocks)
        record = {
            "version": RECORD_VERSION,
            "kind": "continual",
            "config": config.to_dict(),
            "command": command,
            "cells": [c["key"] for c in cells],
            "summary": summary,
        }
        save_json(out / CONTINUAL_FILE, record)
        return ContinualResult(config, out, ordered, ran, skipped, summary, command)


def count_finished(config: ContinualConfig, out: str | os.PathLike[str]) -> int:
    """How many cells of ``config`` have a complete result in ``out`` (cells of other configs there not counted)."""
    return sum(_load_finished(cell_path(Path(out), c["key"]), c) is not None for c in config.cells())


def load_continual(out: str | os.PathLike[str]) -> ContinualResult:
    """Read a finished benchmark directory written by :func:`run_continual` (no training)."""
    out = Path(out)
    path = out / CONTINUAL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `reluscope continual --out {out}` first")
    record = load_json(path)
    _check_version(record, str(path))
    config = ContinualConfig.from_dict(record["config"])
    cells = []
    for c in config.cells():
        found = _load_finished(cell_path(out, c["key"]), c)
        if found is None:
            raise ValueError(f"cell {c['key']} is missing or incomplete in {out}; rerun the same command to finish it")
        cells.append(found)
    return ContinualResult(config, out, cells, [], [c.key for c in cells], record["summary"], record.get("command"))


# Summary -------------------------------------------------------------------------------------------------------
SUMMARY_METRICS = ("online_accuracy", "test_accuracy", "dead_fraction", "dormant_fraction", "effective_rank")


def _interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and a two-sided 95% Student-t interval over seeds (the mean itself twice for one seed)."""
    from scipy import stats as st

    a = np.asarray(values, dtype=np.float64)
    m = float(a.mean())
    if a.size < 2:
        return m, m, m
    half = float(st.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return m, m - half, m + half


def summarize_continual(cells: Sequence[ContinualCell], *, blocks: int = 5) -> list[dict[str, Any]]:
    """One row per (method, task block): per seed the mean of each metric over the block's tasks, then the mean
    over seeds and its 95% Student-t interval (``<metric>``, ``<metric>_lo``, ``<metric>_hi``) and ``n_seeds``.

    Blocks split ``range(n_tasks)`` into ``blocks`` consecutive near-equal parts (fewer if there are fewer tasks).
    A diverged cell contributes only the blocks it completed.
    """
    blocks = _pos_int(blocks, "blocks", 5)
    if not cells:
        return []
    n_tasks = int(cells[0].config["n_tasks"])
    edges = np.linspace(0, n_tasks, min(blocks, n_tasks) + 1).round().astype(int)
    rows = []
    for method in dict.fromkeys(c.method for c in cells):
        mine = [c for c in cells if c.method == method]
        for lo, hi in itertools.pairwise(edges):
            row: dict[str, Any] = {"method": method, "tasks": f"{lo + 1}-{hi}", "first_task": int(lo)}
            per_seed: dict[str, list[float]] = {m: [] for m in SUMMARY_METRICS}
            for c in mine:
                recs = [r for r in c.tasks if lo <= r.task < hi]
                if len(recs) != hi - lo:
                    continue
                for m in SUMMARY_METRICS:
                    per_seed[m].append(float(np.mean([getattr(r, m) for r in recs])))
            row["n_seeds"] = len(per_seed[SUMMARY_METRICS[0]])
            for m in SUMMARY_METRICS:
                if per_seed[m]:
                    mean, lo_ci, hi_ci = _interval(per_seed[m])
                else:
                    mean = lo_ci = hi_ci = None  # type: ignore[assignment]
                row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo_ci, hi_ci
            rows.append(row)
    return rows


def per_task_series(cells: Sequence[ContinualCell], metric: str) -> dict[str, dict[str, list[float]]]:
    """Per method, the mean over seeds of ``metric`` after every task and its 95% Student-t interval:
    ``{method: {"task": [1, 2, ...], "mean": [...], "lo": [...], "hi": [...], "n_seeds": [...]}}`` (tasks numbered
    from 1; a task only diverged cells lack is averaged over the seeds that have it)."""
    if metric not in {f.name for f in fields(TaskRecord)} - {"task"}:
        raise ValueError(f"unknown metric {metric!r}; choose one of {[f.name for f in fields(TaskRecord)][1:]}")
    out: dict[str, dict[str, list[float]]] = {}
    for method in dict.fromkeys(c.method for c in cells):
        by_task: dict[int, list[float]] = {}
        for c in cells:
            if c.method == method:
                for r in c.tasks:
                    by_task.setdefault(r.task, []).append(float(getattr(r, metric)))
        s: dict[str, list[float]] = {"task": [], "mean": [], "lo": [], "hi": [], "n_seeds": []}
        for t in sorted(by_task):
            m, lo, hi = _interval(by_task[t])
            for k, v in zip(("task", "mean", "lo", "hi", "n_seeds"), (t + 1, m, lo, hi, len(by_task[t])), strict=True):
                s[k].append(float(v))
        out[method] = s
    return out

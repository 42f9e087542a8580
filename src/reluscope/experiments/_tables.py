"""A sweep's tables: tidy rows per (cell, layer), their summary over seeds, dead fraction over training, CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from reluscope.experiments._grid import variant
from reluscope.io import json_writer, write_together
from reluscope.runs import mean_std

__all__ = [
    "SUMMARY_VALUES",
    "TABLE_COLUMNS",
    "csv_text",
    "dead_over_training",
    "summarize_sweep",
    "sweep_table",
    "write_tables",
]

TABLE_COLUMNS = (
    "key",
    "activation",
    "init",
    "lr",
    "seed",
    "status",
    "diverged_at_epoch",
    "final_epoch",
    "epochs_run",
    "layer",
    "units",
    "dead_fraction",
    "no_gradient_fraction",
    "nearly_dead",
    "median_fire_rate",
    "dormant_fraction",
    "n_born_dead",
    "n_died",
    "n_revived",
    "train_accuracy",
    "val_accuracy",
    "final_loss",
    "val_loss",
)

SUMMARY_VALUES = ("dead_fraction", "no_gradient_fraction", "train_accuracy", "val_accuracy", "final_loss")


def sweep_table(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tidy rows, one per (cell, hidden layer), with the columns of ``TABLE_COLUMNS``."""
    rows = []
    for c in cells:
        cfg = c["config"]
        for layer, stats in c["layers"].items():
            row = {
                "key": c["key"],
                "activation": variant(cfg),
                "init": cfg["init"],
                "lr": cfg["lr"],
                "seed": cfg["seed"],
                "status": c["status"],
                "diverged_at_epoch": c["diverged_at_epoch"],
                "final_epoch": c["final_epoch"],
                "epochs_run": c["epochs_run"],
                "layer": layer,
                **{k: stats[k] for k in TABLE_COLUMNS if k in stats},
                "train_accuracy": c["train_accuracy"],
                "val_accuracy": c["val_accuracy"],
                "final_loss": c["final_loss"],
                "val_loss": c["val_loss"],
            }
            rows.append({k: row.get(k) for k in TABLE_COLUMNS})
    return rows


def summarize_sweep(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate tidy rows over seeds: one row per (activation, init, layer, lr), in the order the rows list
    (activation, init, layer) and by increasing learning rate.

    Each row has ``n`` (seeds), ``n_diverged``, and for every value in ``SUMMARY_VALUES`` its ``<value>_mean`` and
    ``<value>_std`` (sample standard deviation over seeds, 0 for one seed; None if no seed has the value).
    """
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["activation"], r["init"], r["layer"], r["lr"])].append(r)
    # grid order (as the cells were listed: init, activation), learning rates ascending
    first = {k[:3]: i for i, k in reversed(list(enumerate(groups)))}
    out = []
    for (act, init, layer, lr), members in sorted(groups.items(), key=lambda kv: (first[kv[0][:3]], kv[0][3])):
        row: dict[str, Any] = {
            "activation": act,
            "init": init,
            "layer": layer,
            "lr": lr,
            "n": len(members),
            "n_diverged": sum(m["status"] == "diverged" for m in members),
        }
        for key in SUMMARY_VALUES:
            mean, std = mean_std([m[key] for m in members if m[key] is not None])
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        out.append(row)
    return out


def dead_over_training(cells: Sequence[dict[str, Any]], layer: str = "hidden1") -> list[dict[str, Any]]:
    """Dead fraction of ``layer`` over training, averaged over seeds: one series per (activation, init, lr).

    Each series: activation, init, lr, ``epochs``, ``mean`` (dead fraction averaged over the seeds that reached
    that epoch: a diverged seed stops early) and ``n`` (seeds per point).
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        if layer not in c["tracking"]["layers"]:
            raise ValueError(f"no layer {layer!r} in the sweep; layers are {sorted(c['tracking']['layers'])}")
        cfg = c["config"]
        groups[(variant(cfg), cfg["init"], cfg["lr"])].append(c)
    first = {k[:2]: i for i, k in reversed(list(enumerate(groups)))}
    series = []
    for (act, init, lr), members in sorted(groups.items(), key=lambda kv: (first[kv[0][:2]], kv[0][2])):
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for c in members:
            for e, f in zip(c["tracking"]["epochs"], c["tracking"]["layers"][layer]["dead_fraction"], strict=True):
                by_epoch[e].append(f)
        epochs = sorted(by_epoch)
        series.append(
            {
                "activation": act,
                "init": init,
                "lr": lr,
                "epochs": epochs,
                "mean": [float(np.mean(by_epoch[e])) for e in epochs],
                "n": [len(by_epoch[e]) for e in epochs],
            }
        )
    return series


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header of ``columns``; None is an empty field."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return buf.getvalue()


def write_tables(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    """``results.csv`` (the tidy rows) and ``results.json`` (rows and summary, strict JSON) in ``out``, replaced
    together or not at all (:func:`reluscope.io.write_together`)."""
    csv_bytes = csv_text(rows, TABLE_COLUMNS).encode()

    def write_csv(f: IO[Any]) -> None:
        f.write(csv_bytes)

    write_together(out, {"results.csv": write_csv, "results.json": json_writer({"rows": rows, "summary": summary})})

"""The command lines that reproduce a result: ``reluscope train``, ``sweep`` and ``born-dead``, every float written
so that it parses back exactly."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from reluscope.experiments._born_dead import BornDeadConfig
from reluscope.experiments._grid import SweepConfig

__all__ = ["born_dead_command", "sweep_command", "train_command"]


def format_number(v: Any) -> str:
    """A command-line number that parses back to exactly ``v`` (repr of a float, not a 6-digit ``:g``)."""
    return repr(float(v)) if isinstance(v, float) else str(v)


def _join(values: Iterable[Any]) -> str:
    return ",".join(format_number(v) for v in values)


def sweep_command(config: SweepConfig, out: str | os.PathLike[str]) -> str:
    """The ``reluscope sweep`` command line that reruns (or resumes) ``config`` into ``out``, every option explicit."""
    c = config
    args = ["reluscope", "sweep", "--data", c.data]
    if c.labels is not None:
        args += ["--labels", c.labels]
    if c.data == "spiral":
        args += ["--n-per-class", str(c.n_per_class), "--n-classes", str(c.n_classes)]
    if c.data.lower().endswith((".csv", ".csv.gz")):
        args += ["--label-column", c.label_column]
    args += [
        "--data-seed",
        str(c.data_seed),
        "--val-fraction",
        format_number(c.val_fraction),
        "--hidden",
        _join(c.hidden),
        "--lrs",
        _join(c.lrs),
        "--activations",
        _join(c.activations),
        "--inits",
        _join(c.inits),
        "--seeds",
        _join(c.seeds),
        "--init-std",
        format_number(c.init_std),
        "--bias-init",
        format_number(c.bias_init),
        "--slope",
        format_number(c.slope),
        "--optimizer",
        c.optimizer,
        "--reg",
        format_number(c.reg),
        "--epochs",
        str(c.epochs),
        "--batch-size",
        str(c.batch_size or 0),
        "--track-every",
        str(c.track_every),
        "--dtype",
        c.dtype,
    ]
    if c.remedies != ("none",):
        args += [
            "--remedies",
            _join(c.remedies),
            "--redo-every",
            str(c.redo_every),
            "--redo-tau",
            format_number(c.redo_tau),
        ]
    if c.standardize:
        args.append("--standardize")
    args += ["--out", str(out)]
    return shlex.join(args)


def born_dead_command(config: BornDeadConfig, out: str | os.PathLike[str]) -> str:
    """The ``reluscope born-dead`` command line that recomputes ``config`` into ``out``."""
    c = config
    args = [
        "reluscope",
        "born-dead",
        "--depths",
        _join(c.depths),
        "--widths",
        _join(c.widths),
        "--inits",
        _join(c.inits),
        "--bias",
        format_number(c.bias),
        "--n-inits",
        str(c.n_inits),
        "--inputs",
        c.inputs,
        "--grid-size",
        str(c.grid_size),
        "--z",
        format_number(c.z),
        "--seed",
        str(c.seed),
        "--out",
        str(out),
    ]
    return shlex.join(args)


def train_command(config: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> str:
    """The ``reluscope train`` command that reruns a run from its recorded config (``run.json["config"]``)."""
    net = config.get("net", {})
    args = ["reluscope", "train", "--data", str(config.get("data", "spiral"))]
    hidden = config.get("hidden", net.get("sizes", [0, 0])[1:-1])
    args += ["--hidden", ",".join(map(str, hidden))]
    for flag, key, src in (
        ("--activation", "activation", net),
        ("--slope", "slope", net),
        ("--init", "init", net),
        ("--init-std", "init_std", net),
        ("--bias-init", "bias_init", net),
        ("--labels", "labels", config),
        ("--label-column", "label_column", config),
        ("--n-per-class", "n_per_class", config),
        ("--n-classes", "n_classes", config),
        ("--optimizer", "optimizer", config),
        ("--lr", "lr", config),
        ("--reg", "reg", config),
        ("--epochs", "epochs", config),
        ("--batch-size", "batch_size", config),
        ("--val-fraction", "val_fraction", config),
        ("--seed", "seed", config),
        ("--dtype", "dtype", net),
        ("--track-dead", "track_dead", config),
        ("--death-spike", "death_spike", config),
    ):
        if key in src and src[key] is not None:
            args += [flag, format_number(src[key])]
    redo = config.get("redo") or {}
    if redo.get("every"):
        args += ["--redo", format_number(redo["every"]), "--redo-tau", format_number(redo.get("tau", 0.0))]
    if config.get("standardize"):
        args.append("--standardize")
    args += ["--out", str(run_dir)]
    return shlex.join(args)

"""Turn a run directory into one self-contained ``report.html``.

Three kinds of directory are understood, recognised by the record they hold:

``sweep.json``       from ``reluscope sweep``: dead fraction and accuracy vs learning rate, dead fraction over
                     training, the heat map and fire-rate histogram of a run that loses units, the tables.
``born_dead.json``   from ``reluscope born-dead``: P(born dead) vs depth, closed form vs Monte Carlo, the table.
``run.json``         from ``reluscope train --out`` (:class:`reluscope.runs.RunResult`): training curves, the
                     per-layer dead table and fire-rate histogram of the final scan the run recorded, and, when
                     the run was tracked (``train --track-dead``), the unit x time fire-rate heat map of the
                     recorded fire counts and the born/died/revived counts.

The report only reads records and draws: it never trains, scans or re-splits data. Every report ends with the
configuration and the commands that reproduce it.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reluscope.report.html import Block, Code, Image, Section, Table, Text, render_html, write_html
from reluscope.report.plots import (
    Plot,
    plot_accuracy_vs_lr,
    plot_born_dead,
    plot_dead_fraction_history,
    plot_dead_over_training,
    plot_dead_vs_lr,
    plot_fire_rate_heatmap,
    plot_fire_rate_histogram,
    plot_training_curves,
    to_png,
)
from reluscope.runs import RUN_VERSION, RunResult

if TYPE_CHECKING:
    from reluscope.experiments import SweepConfig

__all__ = [
    "REPORT_FILE",
    "born_dead_plots",
    "build_report",
    "pick_dying_cell",
    "run_kind",
    "sweep_plots",
]

REPORT_FILE = "report.html"

_DEAD_EXPLAINED = (
    "A unit is dead when its pre-activation is <= 0 on every training sample (it never fires; this is what "
    "`reluscope diagnose` counts). A dead ReLU unit also passes no gradient, so the loss never moves its incoming "
    "weights again: only L2 decay or a change upstream can revive it. A leaky ReLU unit that never fires still "
    "passes slope x the gradient, so it is never stuck: its 'receive no gradient' fraction is 0 by construction, "
    "even when its 'never fired' fraction is high."
)


def run_kind(run_dir: str | os.PathLike[str]) -> str:
    """``"sweep"``, ``"born-dead"`` or ``"train"``, from the record in ``run_dir``; ValueError if none is there."""
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(2, "run directory not found", str(d))
    if (d / "sweep.json").is_file():
        return "sweep"
    if (d / "born_dead.json").is_file():
        return "born-dead"
    if (d / "run.json").is_file():
        return "train"
    if (d / "continual.json").is_file():
        return "continual"
    raise ValueError(
        f"{d} holds no run.json, sweep.json or born_dead.json; pass a directory written by "
        "`reluscope train --out DIR`, `reluscope sweep --out DIR` or `reluscope born-dead --out DIR`"
    )


# Sweep -------------------------------------------------------------------------------------------------------------
def pick_dying_cell(cells: Sequence[dict[str, Any]], layer: str = "hidden1") -> dict[str, Any] | None:
    """A finished cell that loses units during training, to show in a heat map: among ReLU cells (else any) whose
    layer died partly, the one whose final dead fraction is closest to one half (a lower seed on ties); failing
    that the cell with the most units that died. None if no unit died anywhere."""
    candidates = [c for c in cells if c["status"] == "finished" and layer in c["layers"]]
    relu = [c for c in candidates if c["config"]["activation"] == "relu"]
    pool = relu or candidates
    dying = [c for c in pool if c["layers"][layer]["n_died"] > 0]
    if not dying:
        return None
    partial = [c for c in dying if 0 < c["layers"][layer]["dead_fraction"] < 1]
    if partial:
        return min(partial, key=lambda c: (abs(c["layers"][layer]["dead_fraction"] - 0.5), c["config"]["seed"]))
    return max(dying, key=lambda c: (c["layers"][layer]["n_died"], -c["config"]["lr"]))


def _cell_title(cell: dict[str, Any]) -> str:
    cfg = cell["config"]
    return f"{cfg['activation']}, {cfg['init']} init, lr {cfg['lr']:g}, seed {cfg['seed']}"


def _cell_unit_plots(cell: dict[str, Any]) -> tuple[Plot, Plot]:
    tr = cell["tracking"]
    counts = {name: layer["fire_counts"] for name, layer in tr["layers"].items()}
    heat = plot_fire_rate_heatmap(tr["epochs"], counts, tr["n_samples"], title=_cell_title(cell))
    final = {name: np.asarray(c[-1], dtype=np.float64) / tr["n_samples"] for name, c in counts.items()}
    hist = plot_fire_rate_histogram(final, title=f"{_cell_title(cell)}, after training")
    return heat, hist


def sweep_plots(
    cells: Sequence[dict[str, Any]], *, n_classes: int | None = None, layer: str | None = None
) -> dict[str, Plot]:
    """The sweep's figures by file stem: ``dead_vs_lr``, ``accuracy_vs_lr``, ``dead_over_training`` and, when some
    cell lost units, ``fire_rate_heatmap`` and ``fire_rate_histogram`` of :func:`pick_dying_cell`."""
    from reluscope.experiments import dead_over_training, summarize_sweep, sweep_table

    summary = summarize_sweep(sweep_table(cells))
    if not summary:
        raise ValueError("the sweep has no finished cells yet; run (or resume) it with `reluscope sweep`")
    layer = summary[0]["layer"] if layer is None else layer
    plots = {
        "dead_vs_lr": plot_dead_vs_lr(summary, layer),
        "accuracy_vs_lr": plot_accuracy_vs_lr(summary, layer, n_classes=n_classes),
        "dead_over_training": plot_dead_over_training(dead_over_training(cells, layer), layer=layer),
    }
    dying = pick_dying_cell(cells, layer)
    if dying is not None:
        plots["fire_rate_heatmap"], plots["fire_rate_histogram"] = _cell_unit_plots(dying)
    return plots


_SUMMARY_COLUMNS = (
    "activation",
    "init",
    "layer",
    "lr",
    "n",
    "n_diverged",
    "dead_fraction_mean",
    "dead_fraction_std",
    "no_gradient_fraction_mean",
    "train_accuracy_mean",
    "val_accuracy_mean",
    "final_loss_mean",
)


def _sweep_overview(config: SweepConfig, data: Mapping[str, Any]) -> list[Block]:
    """The data, network and grid of a sweep in words."""
    return [
        Text(
            f"Data: {data.get('name', config.data)} ({data.get('n_train', '?')} training, "
            f"{data.get('n_val', '?')} validation samples). Net: {data.get('n_features', '?')} inputs, hidden "
            f"{', '.join(map(str, config.hidden))}, {config.optimizer} for {config.epochs} epochs, reg {config.reg:g}, "
            f"batch {'full' if config.batch_size is None else config.batch_size}. Grid: learning rates "
            f"{', '.join(f'{v:g}' for v in config.lrs)} x activations {', '.join(config.activations)} x inits "
            f"{', '.join(config.inits)} x seeds {', '.join(map(str, config.seeds))}"
            + (
                f" x remedies {', '.join(config.remedies)} (ReDo every {config.redo_every} epochs in the first half, "
                f"τ = {config.redo_tau:g})."
                if config.remedies != ("none",)
                else "."
            )
        ),
        Text(_DEAD_EXPLAINED),
    ]


def _sweep_figures(plots: Mapping[str, Plot], config: SweepConfig) -> list[Block]:
    """The sweep's figures with their captions."""
    figures: list[Block] = [
        Image(
            to_png(plots["dead_vs_lr"].figure),
            "dead fraction vs learning rate",
            "Left: units that never fired "
            "on the training set after training. Right: units that receive no gradient on any sample. Error bars: "
            "±1 standard deviation over seeds; circled points: some seed diverged (its last finite weights).",
        ),
        Image(
            to_png(plots["accuracy_vs_lr"].figure),
            "accuracy vs learning rate",
            "Final training (solid) and validation (dashed) accuracy.",
        ),
        Image(
            to_png(plots["dead_over_training"].figure),
            "dead fraction over training",
            f"Fraction of units that fired on no training sample, scanned every {config.track_every} epochs.",
        ),
    ]
    if "fire_rate_heatmap" in plots:
        figures += [
            Image(
                to_png(plots["fire_rate_heatmap"].figure),
                "fire-rate heat map",
                "Each row is a unit, each column a scan of the training set; colour is the fraction of samples "
                "the unit fired on, black means it fired on none (dead).",
            ),
            Image(
                to_png(plots["fire_rate_histogram"].figure),
                "fire-rate histogram",
                "Fire rates of the same run's units after training; the red bar counts dead units.",
            ),
        ]
    return figures


# the page's table of all cells: the columns of results.csv less these (and the key moved last)
_CELL_COLUMNS_LEFT_OUT = (
    "key",
    "diverged_at_epoch",
    "final_epoch",
    "epochs_run",
    "units",
    "nearly_dead",
    "median_fire_rate",
    "dormant_fraction",
    "val_loss",
)


def _sweep_sections(run_dir: Path) -> tuple[str, str, list[Section]]:
    from reluscope.experiments import TABLE_COLUMNS, SweepConfig, load_sweep, summarize_sweep, sweep_table
    from reluscope.experiments.commands import sweep_command

    record, cells = load_sweep(run_dir)
    config = SweepConfig.from_dict(record["config"])
    n_total = len(record["cells"])
    if not cells:
        raise ValueError(
            f"{run_dir} has a sweep record but no finished cells; run `{sweep_command(config, run_dir)}` to run it"
        )
    rows = sweep_table(cells)
    summary = summarize_sweep(rows)
    data = record.get("data", {})
    plots = sweep_plots(cells, n_classes=data.get("n_classes"))
    n_div = sum(c["status"] == "diverged" for c in cells)
    status = f"{len(cells)} of {n_total} cells finished" + (f" ({n_div} diverged)" if n_div else "")
    if len(cells) < n_total:
        status += "; the sweep was interrupted: rerun the command below to finish the missing cells"
    overview = _sweep_overview(config, data)
    figures = _sweep_figures(plots, config)
    command = record.get("command") or sweep_command(config, run_dir)
    sections = [
        Section("Overview", overview),
        Section("Figures", figures),
        Section("Summary over seeds", [Table(summary, _SUMMARY_COLUMNS, "mean (and std) over seeds per cell")]),
        Section(
            "All cells",
            [
                Table(
                    rows,
                    (*(c for c in TABLE_COLUMNS if c not in _CELL_COLUMNS_LEFT_OUT), "key"),
                )
            ],
        ),
        Section("Configuration", [Code(json.dumps(record["config"], indent=2))]),
        Section(
            "Reproduce",
            [
                Text("Rerunning the sweep skips the cells already in cells/ (delete them to recompute)."),
                Code(f"{command}\nreluscope report {shlex.quote(str(run_dir))}"),
            ],
        ),
    ]
    return "reluscope sweep", status, sections


# Born dead ---------------------------------------------------------------------------------------------------------
def born_dead_plots(rows: Sequence[dict[str, Any]]) -> dict[str, Plot]:
    """``{"born_dead": plot_born_dead(rows)}``."""
    return {"born_dead": plot_born_dead(rows)}


def _born_dead_sections(run_dir: Path) -> tuple[str, str, list[Section]]:
    from reluscope.experiments import BORN_DEAD_COLUMNS, BornDeadConfig
    from reluscope.experiments.commands import born_dead_command
    from reluscope.io import load_json

    record = load_json(run_dir / "born_dead.json")
    if not isinstance(record, dict) or "rows" not in record or "config" not in record:
        raise ValueError(f"{run_dir / 'born_dead.json'} is not a born-dead record; rerun `reluscope born-dead`")
    config = BornDeadConfig.from_dict(record["config"])
    rows = record["rows"]
    plot = plot_born_dead(rows)
    inside = [r for r in rows if r["bias"] == 0]
    n_in = sum(r["closed_form_inside"] for r in inside)
    where = {
        "point": "one random input",
        "grid": f"a {config.grid_size}x{config.grid_size} grid",
        "spiral": "the spiral",
    }
    sub = (
        f"{config.n_inits} random initialisations per point, inputs: {where[config.inputs]}; "
        f"closed form inside the {config.z:g}-sigma Wilson interval for {n_in}/{len(inside)} zero-bias points"
    )
    command = record.get("command") or born_dead_command(config, run_dir)
    sections = [
        Section(
            "Born dead at initialisation",
            [
                Text(
                    "A ReLU network is born dead when, at initialisation, some hidden layer outputs zero for every "
                    "input: the output is constant and no gradient reaches the layers before it. For one input, "
                    "zero biases and symmetric weights the probability is 1 - (1 - 2^-width)^depth whatever the "
                    "weight scale, so He and Xavier agree; a positive bias shift lowers it."
                ),
                Image(
                    to_png(plot.figure),
                    "born dead probability vs depth",
                    "Dashed: closed form (zero biases, one input). Points: Monte Carlo with "
                    f"{config.z:g}-sigma Wilson intervals.",
                ),
                Table(rows, BORN_DEAD_COLUMNS),
            ],
        ),
        Section("Configuration", [Code(json.dumps(record["config"], indent=2))]),
        Section("Reproduce", [Code(f"{command}\nreluscope report {shlex.quote(str(run_dir))}")]),
    ]
    return "reluscope born-dead", sub, sections


# Train -------------------------------------------------------------------------------------------------------------
_SCAN_COLUMNS = ("name", "units", "dead", "dead_fraction", "nearly_dead", "median_fire_rate", "dormant", "all_dead")


def _unit_blocks(record: RunResult) -> list[Block]:
    """The hidden-unit blocks of a train report, all drawn from what the run recorded."""
    blocks: list[Block] = []
    if record.dead_fraction:
        rows = [{"layer": k, "dead_fraction": v} for k, v in record.dead_fraction.items()]
        blocks.append(Table(rows, caption="dead fraction recorded at the end of training"))
    blocks.append(Text(_DEAD_EXPLAINED))
    if record.scan is not None and record.fire_rates is not None:
        blocks.append(Table(record.scan, _SCAN_COLUMNS, "the final scan of the training set, recorded by the run"))
        hist = plot_fire_rate_histogram(
            {n: np.asarray(r, dtype=np.float64) for n, r in record.fire_rates.items()}, title="after training"
        )
        caption = "Fire rates of the hidden units after training."
        blocks.append(Image(to_png(hist.figure), "fire-rate histogram", caption))
    elif record.version < RUN_VERSION:
        blocks.append(
            Text(
                f"This run.json is record version {record.version} (reluscope 0.1): it holds no final scan, so there "
                "is no per-layer table or fire-rate histogram; rerun the command below to record them."
            )
        )
    history = record.unit_history or {}
    has_counts = bool(history) and all("fire_counts" in h for h in history.values())
    if has_counts:
        first = next(iter(history.values()))
        counts = {n: h["fire_counts"] for n, h in history.items()}
        heat = plot_fire_rate_heatmap(first["epochs"], counts, first["n_samples"])
        blocks.append(
            Image(
                to_png(heat.figure),
                "fire-rate heat map",
                "Each row is a unit, each column a scan of the training set; black: fired on no sample.",
            )
        )
    elif history:
        first = next(iter(history.values()))
        over = plot_dead_fraction_history(first["epochs"], {n: h["dead_fraction"] for n, h in history.items()})
        blocks.append(
            Image(to_png(over.figure), "dead fraction over training", "Recorded by `reluscope train --track-dead`.")
        )
    if history:
        keys = ("n_born_dead", "n_died", "n_revived", "n_dead_at_end")
        blocks.append(
            Table(
                [{"layer": n, **{k: h[k] for k in keys}} for n, h in history.items()],
                caption="units born dead, that died during training, that came back, and dead at the end",
            )
        )
    if not has_counts:
        blocks.append(
            Text(
                "run.json holds no per-unit fire counts over time, so there is no unit x time heat map: rerun the "
                "training with `--track-dead EVERY` (same config and seed, so the same run) to record a scan every "
                "EVERY epochs."
            )
        )
    return blocks


def _train_sections(run_dir: Path) -> tuple[str, str, list[Section]]:
    from reluscope.experiments.commands import train_command
    from reluscope.runs import load_run

    record = load_run(run_dir / "run.json")
    sub = f"status: {record.status}"
    if record.train_accuracy is not None:
        sub += f"; training accuracy {record.train_accuracy:.2%}"
    if record.val_accuracy is not None:
        sub += f"; validation accuracy {record.val_accuracy:.2%}"
    blocks: list[Block] = []
    if record.error:
        blocks.append(Text(f"Training stopped: {record.error}"))
    if record.history.get("epoch"):
        curves = plot_training_curves(record.history)
        blocks.append(Image(to_png(curves.figure), "training curves", "Loss (log scale) and accuracy per epoch."))
    command = record.command or train_command(record.config, run_dir)
    sections = [
        Section("Training", blocks),
        Section("Hidden units", _unit_blocks(record)),
        Section("Configuration", [Code(json.dumps(record.config, indent=2))]),
        Section("Reproduce", [Code(f"{command}\nreluscope report {shlex.quote(str(run_dir))}")]),
    ]
    return "reluscope train", sub, sections


def build_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``run_dir/report.html`` for a sweep, born-dead or train directory; returns its path.

    The page is drawn from the records alone (nothing is trained, scanned or re-split here): a train run's
    fire-rate histogram is its recorded final scan, its heat map the fire counts recorded by ``--track-dead``.
    Records of reluscope 0.1 (version 1) are read; what they lack is said on the page.
    """
    d = Path(run_dir)
    kind = run_kind(d)
    record_file = {"sweep": "sweep.json", "born-dead": "born_dead.json", "continual": "continual.json"}.get(
        kind, "run.json"
    )
    try:
        if kind == "sweep":
            title, sub, sections = _sweep_sections(d)
        elif kind == "born-dead":
            title, sub, sections = _born_dead_sections(d)
        elif kind == "continual":
            from reluscope.report.continual import continual_sections

            title, sub, sections = continual_sections(d)
        else:
            title, sub, sections = _train_sections(d)
    except KeyError as exc:  # the records are ours: a missing entry means the files were edited or are foreign
        raise ValueError(
            f"{d / record_file} (or a file beside it) lacks the entry {exc}, which reluscope writes; it was edited "
            f"or written by another version: run the command that wrote {d} again"
        ) from None
    path = d / REPORT_FILE
    write_html(path, render_html(f"{title}: {d.name}", sections, subtitle=sub))
    return path

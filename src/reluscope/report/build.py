"""Turn a run directory into one self-contained ``report.html``.

Three kinds of directory are understood, recognised by the record they hold:

``sweep.json``       from ``reluscope sweep``: dead fraction and accuracy vs learning rate, dead fraction over
                     training, the heat map and fire-rate histogram of a run that loses units, the tables.
``born_dead.json``   from ``reluscope born-dead``: P(born dead) vs depth, closed form vs Monte Carlo, the table.
``run.json``         from ``reluscope train --out``: training curves, the per-layer dead table and fire-rate
                     histogram (the saved model re-scanned on its training data, rebuilt from the config), the
                     dead fraction over training and the born/died/revived counts when the run was tracked
                     (``train --track-dead``: ``run.json["unit_history"]``, ``{layer: UnitHistory.to_dict()}``),
                     and the unit x time fire-rate heat map when that history holds the per-scan fire counts
                     or when asked to replay the training (``replay_every``).

Every report ends with the configuration and the commands that reproduce it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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

__all__ = [
    "REPORT_FILE",
    "born_dead_plots",
    "build_report",
    "pick_dying_cell",
    "run_kind",
    "save_plots",
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


def save_plots(plots: Mapping[str, Plot], out: str | os.PathLike[str], *, dpi: int = 100) -> list[Path]:
    """Write each plot as ``out/<name>.png`` (atomically); returns the paths."""
    from reluscope.io import atomic_write

    paths = []
    for name, plot in plots.items():
        path = Path(out) / f"{name}.png"
        png = to_png(plot.figure, dpi=dpi)
        with atomic_write(path) as f:
            f.write(png)
        paths.append(path)
    return paths


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


def _sweep_sections(run_dir: Path) -> tuple[str, str, list[Section]]:
    from reluscope.experiments import SweepConfig, load_sweep, summarize_sweep, sweep_command, sweep_table

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
    overview: list[Block] = [
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
                    (
                        "activation",
                        "init",
                        "lr",
                        "seed",
                        "status",
                        "layer",
                        "dead_fraction",
                        "no_gradient_fraction",
                        "n_born_dead",
                        "n_died",
                        "n_revived",
                        "train_accuracy",
                        "val_accuracy",
                        "final_loss",
                        "key",
                    ),
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
    from reluscope.experiments import BORN_DEAD_COLUMNS, BornDeadConfig, born_dead_command
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
def _train_command(config: Mapping[str, Any], run_dir: Path) -> str:
    """The `reluscope train` command that reruns a run from its recorded config (floats written exactly)."""
    from reluscope.experiments import format_number

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


def _spiral_points_per_class(config: Mapping[str, Any], n_classes: int) -> int:
    """Points per arm of a spiral run whose config does not record it: the N whose stratified split leaves
    ``n_samples`` training points (``train`` stores n_samples, the size of its training set). 100 if unknown."""
    if "n_per_class" in config:
        return int(config["n_per_class"])
    n_train = config.get("n_samples")
    v = float(config.get("val_fraction", 0.0))

    def train_size(n: int) -> int:
        return n_classes * (n - min(int(np.floor(v * n + 0.5)), n - 1))

    if not isinstance(n_train, int) or train_size(100) == n_train:
        return 100
    return next((n for n in range(1, 10 * n_train + 2) if train_size(n) == n_train), 100)


def _rebuild_data(config: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(X, y, X_val, y_val) of a ``train`` run rebuilt from its config: the same loader, split and
    standardisation as ``reluscope train`` (X_val, y_val are None without a validation split)."""
    from reluscope.data import Standardizer, load_dataset, train_val_split

    n_classes = int(config.get("n_classes", config["net"]["sizes"][-1]))
    seed = config.get("seed", 0)
    ds = load_dataset(
        config["data"],
        labels_path=config.get("labels"),
        label_column=config.get("label_column", "label"),
        n_per_class=_spiral_points_per_class(config, n_classes),
        n_classes=n_classes,
        seed=seed,
    )
    X, y, X_val, y_val = ds.X, ds.y, None, None
    if config.get("val_fraction", 0) > 0:
        X, y, X_val, y_val = train_val_split(X, y, config["val_fraction"], seed=seed)
    if config.get("standardize"):
        scaler = Standardizer.fit(X)
        X = scaler.transform(X)
        X_val = None if X_val is None else scaler.transform(X_val)
    if "n_samples" in config and len(y) != config["n_samples"]:
        raise ValueError(
            f"the rebuilt training set has {len(y)} samples but the run trained on {config['n_samples']}; "
            "was it generated with other --n-per-class / --n-classes options?"
        )
    return X, y, X_val, y_val


def _replay(
    config: Mapping[str, Any], data: tuple[Any, Any, Any, Any], every: int, saved: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """Rerun the training from its config with a DeadUnitTracker; returns (unit history dicts, a note)."""
    from reluscope.diagnose import DeadUnitTracker
    from reluscope.nn import MLP
    from reluscope.train import DivergenceError, fit

    X, y, X_val, y_val = data
    net_cfg = config["net"]
    seed = config.get("seed", 0)
    net = MLP(
        net_cfg["sizes"],
        net_cfg["activation"],
        init=net_cfg["init"],
        init_std=net_cfg["init_std"],
        bias_init=net_cfg["bias_init"],
        slope=net_cfg["slope"],
        alpha=net_cfg.get("alpha", 1.0),
        seed=seed,
        dtype=net_cfg["dtype"],
    )
    tracker = DeadUnitTracker(X, every=every)
    # on divergence fit restores the last finite weights, as the saved run did; the tracker keeps its scans
    with contextlib.suppress(DivergenceError):
        fit(
            net,
            X,
            y,
            optimizer=config.get("optimizer", "sgd"),
            lr=config["lr"],
            reg=config.get("reg", 0.0),
            epochs=config["epochs"],
            batch_size=config.get("batch_size") or None,
            seed=seed,
            X_val=X_val,
            y_val=y_val,
            callbacks=[tracker],
        )
    same = set(saved) == set(net.params) and all(np.array_equal(net.params[k], saved[k]) for k in net.params)
    note = f"Per-unit history recomputed by replaying the training from its config, scanning every {every} epochs; " + (
        "the replayed weights equal the saved model exactly."
        if same
        else "WARNING: the replayed weights differ from the saved model, so this history may not be the run's."
    )
    return {name: h.to_dict() for name, h in tracker.unit_history().items()}, note


def _train_sections(run_dir: Path, replay_every: int | None) -> tuple[str, str, list[Section]]:
    from reluscope.diagnose import scan
    from reluscope.io import load_json, load_model

    record = load_json(run_dir / "run.json")
    if not isinstance(record, dict) or "config" not in record:
        raise ValueError(
            f"{run_dir / 'run.json'} is not a reluscope run record (no config); rerun `reluscope train --out`"
        )
    config = record["config"]
    history = record.get("history", {})
    status = record.get("status", "unknown")
    sub = f"status: {status}"
    if "train_accuracy" in record:
        sub += f"; training accuracy {record['train_accuracy']:.2%}"
    if record.get("val_accuracy") is not None:
        sub += f"; validation accuracy {record['val_accuracy']:.2%}"
    blocks: list[Block] = []
    if record.get("error"):
        blocks.append(Text(f"Training stopped: {record['error']}"))
    if history.get("epoch"):
        curves = plot_training_curves(history)
        blocks.append(Image(to_png(curves.figure), "training curves", "Loss (log scale) and accuracy per epoch."))
    units: list[Block] = [Text(_DEAD_EXPLAINED)]
    model_path = run_dir / "model.npz"
    data = None
    params: dict[str, Any] = {}
    try:
        net = load_model(model_path)
        params = net.params
        data = _rebuild_data(config)
        stats = scan(net, data[0], batch_size=1024)
        units.append(
            Table(
                stats.summary(),
                ("name", "units", "dead", "dead_fraction", "nearly_dead", "median_fire_rate", "dormant", "all_dead"),
                "the saved model re-scanned on its training set",
            )
        )
        hist = plot_fire_rate_histogram({n: stats.frequency(n) for n in stats.names}, title="after training")
        units.append(
            Image(to_png(hist.figure), "fire-rate histogram", "Fire rates of the hidden units after training.")
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        units.append(Text(f"Could not re-scan the saved model on its training data: {exc}"))
    unit_history = record.get("unit_history") or {}
    has_counts = bool(unit_history) and all("fire_counts" in h for h in unit_history.values())
    note = ""
    if not has_counts and replay_every is not None and data is not None:
        unit_history, note = _replay(config, data, replay_every, params)
        has_counts = True
    if has_counts:
        first = next(iter(unit_history.values()))
        heat = plot_fire_rate_heatmap(
            first["epochs"], {n: h["fire_counts"] for n, h in unit_history.items()}, first["n_samples"]
        )
        units.append(
            Image(
                to_png(heat.figure),
                "fire-rate heat map",
                "Each row is a unit, each column a scan of the training set; black: fired on no sample.",
            )
        )
    elif unit_history:
        first = next(iter(unit_history.values()))
        over = plot_dead_fraction_history(first["epochs"], {n: h["dead_fraction"] for n, h in unit_history.items()})
        units.append(
            Image(to_png(over.figure), "dead fraction over training", "Recorded by `reluscope train --track-dead`.")
        )
    if unit_history:
        units.append(
            Table(
                [
                    {"layer": n, **{k: h[k] for k in ("n_born_dead", "n_died", "n_revived", "n_dead_at_end")}}
                    for n, h in unit_history.items()
                ],
                caption="units born dead, that died during training, that came back, and dead at the end",
            )
        )
        if note:
            units.append(Text(note))
    if not has_counts:
        units.append(
            Text(
                "run.json holds no per-unit fire counts over time, so there is no unit x time heat map: run "
                f"`reluscope report {run_dir} --replay EVERY` to replay the training (same config and seed, so the "
                "same run) with a scan every EVERY epochs."
            )
        )
    command = record.get("command") or _train_command(config, run_dir)
    summary_rows = [{"layer": k, "dead_fraction": v} for k, v in record.get("dead_fraction", {}).items()]
    sections = [Section("Training", blocks), Section("Hidden units", units)]
    if summary_rows:
        sections[1].blocks.insert(0, Table(summary_rows, caption="dead fraction recorded at the end of training"))
    sections += [
        Section("Configuration", [Code(json.dumps(config, indent=2))]),
        Section("Reproduce", [Code(f"{command}\nreluscope report {shlex.quote(str(run_dir))}")]),
    ]
    return "reluscope train", sub, sections


def build_report(run_dir: str | os.PathLike[str], *, replay_every: int | None = None) -> Path:
    """Write ``run_dir/report.html`` for a sweep, born-dead or train directory; returns its path.

    ``replay_every`` (train runs without per-unit history): replay the training from its config, scanning the
    training set every that many epochs, to draw the unit x time heat map.
    """
    d = Path(run_dir)
    kind = run_kind(d)
    if replay_every is not None and (isinstance(replay_every, bool) or replay_every < 1):
        raise ValueError(f"replay_every must be a positive number of epochs, got {replay_every!r}")
    if kind == "sweep":
        title, sub, sections = _sweep_sections(d)
    elif kind == "born-dead":
        title, sub, sections = _born_dead_sections(d)
    elif kind == "continual":
        from reluscope.report.continual import continual_sections

        title, sub, sections = continual_sections(d)
    else:
        title, sub, sections = _train_sections(d, replay_every)
    path = d / REPORT_FILE
    write_html(path, render_html(f"{title}: {d.name}", sections, subtitle=sub))
    return path

"""``reluscope train``: train an MLP on spiral, digits or a file, with a live progress bar."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reluscope.cli._common import (
    ActivationOpt,
    BatchSizeOpt,
    BiasInitOpt,
    ClassesOpt,
    DataOpt,
    DType,
    DTypeOpt,
    HiddenOpt,
    InitOpt,
    InitStdOpt,
    LabelColumnOpt,
    LabelsOpt,
    OptimizerOpt,
    PerClassOpt,
    RegOpt,
    SeedOpt,
    SlopeOpt,
    StandardizeOpt,
    console,
    friendly_errors,
    load_data,
    parse_hidden,
)

if TYPE_CHECKING:
    from rich.console import Console


def _print_death_spikes(err: Console, spikes: list[dict[str, Any]], limit: int = 5) -> None:
    """One warning line per death spike (at most ``limit``, then a count)."""
    for spike in spikes[:limit]:
        err.print(
            f"[yellow]death spike at step {spike['step']} (epoch {spike['epoch']}, lr {spike['lr']:g}): "
            f"{spike['layer']} went from {spike['before']:.0%} to {spike['after']:.0%} dead; try a smaller --lr "
            f"(e.g. {spike['lr'] / 3:.3g}) or run `reluscope lr-check`[/yellow]"
        )
    if len(spikes) > limit:
        err.print(f"[yellow]… and {len(spikes) - limit} more death spikes[/yellow]")


@friendly_errors
def train(
    data: DataOpt = "spiral",
    labels: LabelsOpt = None,
    label_column: LabelColumnOpt = "label",
    n_per_class: PerClassOpt = 100,
    n_classes: ClassesOpt = 3,
    hidden: HiddenOpt = "100",
    activation: ActivationOpt = "relu",
    slope: SlopeOpt = 0.01,
    init: InitOpt = "he",
    init_std: InitStdOpt = 0.01,
    bias_init: BiasInitOpt = 0.0,
    optimizer: OptimizerOpt = "sgd",
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (step size).")] = 1.0,
    reg: RegOpt = 1e-3,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 2000,
    batch_size: BatchSizeOpt = 0,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Fraction held out for validation (stratified).")
    ] = 0.0,
    standardize: StandardizeOpt = False,
    seed: SeedOpt = 0,
    dtype: DTypeOpt = DType.float64,
    track_dead: Annotated[
        int,
        typer.Option(
            min=0,
            help="Scan the training set every N epochs (and at init) and record per-unit history: born dead, "
            "died at epoch, revived at epoch. 0 = off.",
        ),
    ] = 0,
    redo: Annotated[
        int,
        typer.Option(
            metavar="EVERY",
            min=0,
            help="ReDo: every EVERY epochs during the first half of training, re-initialise the units that are dead "
            "(or τ-dormant, see --redo-tau) on the training set, zeroing their outgoing weights and optimizer "
            "state. 0 = off.",
        ),
    ] = 0,
    redo_tau: Annotated[
        float, typer.Option(min=0.0, help="ReDo threshold τ: 0 recycles dead units only; 0.1 also τ-dormant ones.")
    ] = 0.0,
    death_spike: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Warn when a layer's dead fraction jumps by more than this between two checks (once per epoch); "
            "0 = off.",
        ),
    ] = 0.05,
    out: Annotated[
        Path | None, typer.Option(help="Directory to write run.json (config + history) and model.npz into.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")] = False,
) -> None:
    """Train an MLP and report accuracy and the hidden units that never fired.

    The defaults are the CS231n case study's 2-layer ReLU net on the generated spiral (no download):
    100 hidden units, step size 1.0, reg 1e-3, full batch, 2000 epochs.
    """
    from reluscope.cli.diagnose import dead_layer_message, render_dead_table
    from reluscope.data import Standardizer, train_val_split
    from reluscope.diagnose import DeadUnitTracker, scan
    from reluscope.io import save_json, save_model
    from reluscope.nn import MLP
    from reluscope.remedies import DeathSpikeDetector, ReDoCallback
    from reluscope.train import DivergenceError, fit

    ds = load_data(
        data, labels=labels, label_column=label_column, n_per_class=n_per_class, n_classes=n_classes, seed=seed
    )
    X, y = ds.X, ds.y
    X_val = y_val = None
    if val_fraction > 0:
        X, y, X_val, y_val = train_val_split(X, y, val_fraction, seed=seed)
    scaler = None
    if standardize:
        scaler = Standardizer.fit(X)
        X = scaler.transform(X)
        X_val = scaler.transform(X_val) if X_val is not None else None
    net = MLP(
        [ds.n_features, *parse_hidden(hidden), ds.n_classes],
        activation,
        init=init,
        init_std=init_std,
        bias_init=bias_init,
        slope=slope,
        seed=seed,
        dtype=dtype.value,
    )
    config: dict[str, Any] = {
        "data": data,
        "labels": None if labels is None else str(labels),
        "label_column": label_column,
        "n_per_class": n_per_class,
        "n_classes": n_classes,
        "n_samples": len(y),
        "hidden": parse_hidden(hidden),
        "optimizer": optimizer,
        "lr": lr,
        "reg": reg,
        "epochs": epochs,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "standardize": standardize,
        "seed": seed,
        "net": net.config(),
        "redo": {"every": redo, "tau": redo_tau},
        "death_spike": death_spike,
        "track_dead": track_dead,
    }
    command = "reluscope " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("reluscope") else None

    if out is not None:  # fail now, not after training
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out must be a directory (run.json and model.npz go in it), got the file {out}")
        out.mkdir(parents=True, exist_ok=True)
    has_hidden = bool(net.hidden_names)
    if not has_hidden and (track_dead or redo):
        raise ValueError("--track-dead and --redo need a hidden layer; pass --hidden, e.g. --hidden 100")
    out_console = console(quiet=quiet or as_json)
    from reluscope.cli._progress import EpochProgress

    progress = EpochProgress(epochs, console=out_console, description=f"training on {ds.name}")
    tracker = DeadUnitTracker(every=track_dead) if track_dead else None
    callbacks: list[Any] = [progress] if tracker is None else [tracker, progress]
    if redo:
        # recycle during the first half only, so the final table measures trained units, not fresh ones
        callbacks.insert(0, ReDoCallback(X, every=redo, tau=redo_tau, until=max(1, epochs // 2), seed=seed))
    steps_per_epoch = 1 if not batch_size else math.ceil(len(X) / batch_size)
    if death_spike and has_hidden:
        callbacks.append(DeathSpikeDetector(X, threshold=death_spike, every=steps_per_epoch))
    err_console = console(stderr=True, quiet=quiet)
    status = "finished"
    history = None
    try:
        with progress:
            history = fit(
                net,
                X,
                y,
                optimizer=optimizer,
                lr=lr,
                reg=reg,
                epochs=epochs,
                batch_size=batch_size or None,
                seed=seed,
                X_val=X_val,
                y_val=y_val,
                callbacks=callbacks,
            )
    except DivergenceError as exc:
        status = "diverged"
        history = exc.history
        _print_death_spikes(err_console, history.extra.get("death_spikes", []))
        if out is not None:
            save_model(out / "model.npz", net, standardizer=scaler)
            save_json(
                out / "run.json",
                {
                    "status": status,
                    "error": str(exc),
                    "config": config,
                    "command": command,
                    "history": history.to_dict(),
                },
            )
        if as_json:  # tools reading stdout get a result too
            typer.echo(json.dumps({"status": status, "error": str(exc), "epoch": exc.epoch, "lr": exc.lr}))
        raise

    stats = scan(net, X, batch_size=1024) if has_hidden else None  # a linear classifier has no units to scan
    summary: dict[str, Any] = {
        "status": status,
        "train_accuracy": net.accuracy(X, y),
        "final_loss": history.loss[-1],
        "dead_fraction": {} if stats is None else {name: stats.dead_fraction(name) for name in stats.names},
    }
    if X_val is not None and y_val is not None:
        summary["val_accuracy"] = net.accuracy(X_val, y_val)
    summary["death_spikes"] = history.extra.get("death_spikes", [])
    if redo:
        summary["redo"] = history.extra.get("redo", [])
    if tracker is not None:
        units = tracker.unit_history()
        summary["unit_history"] = {name: h.to_dict(fire_counts=False) for name, h in units.items()}
    if out is not None:
        save_model(out / "model.npz", net, standardizer=scaler)
        save_json(out / "run.json", {**summary, "config": config, "command": command, "history": history.to_dict()})
    if as_json:
        typer.echo(json.dumps(summary))
        return
    out_console.print(
        f"training accuracy [bold]{summary['train_accuracy']:.2%}[/bold]   final loss {summary['final_loss']:.4f}"
        + (f"   validation accuracy [bold]{summary['val_accuracy']:.2%}[/bold]" if "val_accuracy" in summary else "")
    )
    if stats is not None:
        out_console.print(render_dead_table(stats, title="hidden units over the training set"))
    if tracker is not None:
        for name, h in units.items():
            out_console.print(
                f"{name}: {h.n_born_dead} born dead, {h.n_died} died during training, {h.n_revived} revived, "
                f"{h.n_dead_at_end} dead at the end"
            )
    if redo:
        resets = summary["redo"]
        n_units = sum(r["total"] for r in resets)
        out_console.print(f"ReDo recycled {n_units} units in {len(resets)} resets")
    _print_death_spikes(err_console, summary["death_spikes"])
    message = None if stats is None else dead_layer_message(stats, net.activation.name)
    if message:
        out_console.print(f"[bold red]{message}[/bold red]")
    if out is not None:
        out_console.print(f"wrote {out / 'run.json'} and {out / 'model.npz'}")

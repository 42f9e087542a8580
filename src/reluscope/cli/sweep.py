"""``reluscope sweep``: a resumable, parallel grid of training runs, learning rate x activation x init x seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from reluscope.cli._common import (
    BatchSizeOpt,
    BiasInitOpt,
    ClassesOpt,
    DataOpt,
    DType,
    DTypeOpt,
    HiddenOpt,
    LabelColumnOpt,
    LabelsOpt,
    OptimizerOpt,
    PerClassOpt,
    RegOpt,
    SlopeOpt,
    StandardizeOpt,
    console,
    friendly_errors,
    parse_hidden,
)

__all__ = ["sweep"]


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.0%}" if std is None or std == 0 else f"{mean:.0%} ± {std:.0%}"


@friendly_errors
def sweep(
    data: DataOpt = "spiral",
    labels: LabelsOpt = None,
    label_column: LabelColumnOpt = "label",
    n_per_class: PerClassOpt = 100,
    n_classes: ClassesOpt = 3,
    data_seed: Annotated[
        int, typer.Option(min=0, help="Seed of the generated spiral and of the validation split.")
    ] = 0,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Fraction held out for validation accuracy (stratified).")
    ] = 0.2,
    standardize: StandardizeOpt = False,
    lrs: Annotated[str, typer.Option("--lrs", help="Learning rates, comma separated.")] = "0.1,0.3,1,3,10,30,100",
    activations: Annotated[
        str, typer.Option("--activations", help="Activations, comma separated: relu, leaky, prelu, elu, sigmoid, tanh.")
    ] = "relu,leaky",
    inits: Annotated[
        str, typer.Option("--inits", help="Weight inits, comma separated: he, xavier, xavier_uniform, normal.")
    ] = "he",
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds of the initialisation, comma separated.")] = "0,1,2",
    remedies: Annotated[
        str,
        typer.Option(
            "--remedies",
            help="Remedies, comma separated: none, redo (ReDo every --redo-every epochs during the first half of "
            "training). Leaky ReLU is an activation: add it to --activations.",
        ),
    ] = "none",
    redo_every: Annotated[int, typer.Option(min=1, help="Epochs between ReDo resets (with --remedies redo).")] = 100,
    redo_tau: Annotated[
        float, typer.Option(min=0.0, help="ReDo threshold τ: 0 recycles dead units only; 0.1 also dormant ones.")
    ] = 0.0,
    hidden: HiddenOpt = "100",
    init_std: Annotated[float, typer.Option(help="Standard deviation for --inits normal (CS231n: 0.01).")] = 0.01,
    bias_init: BiasInitOpt = 0.0,
    slope: SlopeOpt = 0.01,
    optimizer: OptimizerOpt = "sgd",
    reg: RegOpt = 1e-3,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data per cell.")] = 2000,
    batch_size: BatchSizeOpt = 0,
    track_every: Annotated[
        int, typer.Option(min=1, help="Scan the training set for dead units every this many epochs.")
    ] = 20,
    dtype: DTypeOpt = DType.float64,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Worker processes (joblib); default: the number of cores."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output directory (rerun with the same one to resume an interrupted sweep).")
    ] = Path("runs/sweep"),
    plots: Annotated[bool, typer.Option(help="Write the PNG figures into --out.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary over seeds as JSON on stdout.")] = False,
) -> None:
    """Train a grid of networks (learning rate x activation x init x seed) and measure their dead units.

    The defaults are the CS231n 2-layer case study on the spiral (100 hidden units, reg 1e-3, full batch,
    2000 epochs, He init) at learning rates 0.1 to 100, for ReLU and leaky ReLU, 3 seeds: 42 runs, under a
    minute on 2 cores. Each cell writes OUT/cells/<key>.json atomically as soon as it finishes, keyed by a hash of
    its full config, so rerunning the same command skips finished cells (resume after Ctrl-C). Also written:
    results.csv and results.json (one row per cell and layer, plus the mean ± std over seeds), sweep.json and the
    figures dead_vs_lr.png, accuracy_vs_lr.png, dead_over_training.png, fire_rate_heatmap.png,
    fire_rate_histogram.png. Turn them into one page with `reluscope report OUT`.

    "Dead" = fired on no training sample. A dead ReLU also gets no gradient ("stuck": SGD cannot revive it); a
    leaky ReLU unit always gets slope x the gradient, so it is never stuck, by construction: both are reported.

    Cells run in parallel with joblib. To run them on a cluster, call reluscope.experiments.run_sweep(config,
    out, jobs=-1) inside `with joblib.parallel_backend("dask"):` (or "ray").
    """
    from reluscope.cli._progress import make_progress
    from reluscope.experiments import (
        SweepConfig,
        parse_float_list,
        parse_int_list,
        parse_name_list,
        run_sweep,
        sweep_command,
    )

    config = SweepConfig(
        data=data,
        labels=None if labels is None else str(labels),
        label_column=label_column,
        n_per_class=n_per_class,
        n_classes=n_classes,
        data_seed=data_seed,
        standardize=standardize,
        val_fraction=val_fraction,
        hidden=tuple(parse_hidden(hidden)),
        lrs=parse_float_list(lrs, "--lrs"),
        activations=parse_name_list(activations, "--activations"),
        inits=parse_name_list(inits, "--inits"),
        seeds=parse_int_list(seeds, "--seeds"),
        remedies=parse_name_list(remedies, "--remedies"),
        redo_every=redo_every,
        redo_tau=redo_tau,
        init_std=init_std,
        bias_init=bias_init,
        slope=slope,
        optimizer=optimizer,
        reg=reg,
        epochs=epochs,
        batch_size=batch_size or None,
        track_every=track_every,
        dtype=dtype.value,
    )
    out_console = console(quiet=quiet or as_json)
    with make_progress(out_console) as bar:
        task = bar.add_task(f"sweep ({config.n_cells} cells)", total=config.n_cells, info="")

        def advance(cell: dict[str, Any], done: int, total: int) -> None:
            cfg = cell["config"]
            last = f"last: {cfg['activation']} lr {cfg['lr']:g} seed {cfg['seed']} {cell['status']}"
            bar.update(task, completed=done, info=last)

        try:
            result = run_sweep(config, out, jobs=jobs, progress=advance, command=sweep_command(config, out))
        except KeyboardInterrupt:
            bar.stop()
            done = len(list((out / "cells").glob("*.json")))
            console(stderr=True).print(
                f"interrupted: the {done} finished cells are kept in {out / 'cells'}; "
                "rerun the same command to run only the missing ones",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None

    written: list[Path] = []
    if plots:
        from reluscope.report import save_plots, sweep_plots

        written = save_plots(sweep_plots(result.cells, n_classes=result.n_classes), out)
    if as_json:
        payload = {
            "out": str(out),
            "ran": len(result.ran),
            "skipped": len(result.skipped),
            "summary": result.summary,
            "figures": [str(p) for p in written],
        }
        typer.echo(json.dumps(payload))
        return
    _print_summary(out_console, result)
    out_console.print(
        f"ran {len(result.ran)} cells, skipped {len(result.skipped)} finished earlier; wrote {out}/results.csv, "
        f"results.json" + (f" and {len(written)} figures" if written else "")
    )
    out_console.print(f"make one page of it: reluscope report {out}")


def _print_summary(out_console: Any, result: Any) -> None:
    from rich.table import Table

    several_layers = len({r["layer"] for r in result.summary}) > 1
    several_inits = len({r["init"] for r in result.summary}) > 1
    has_val = any(r["val_accuracy_mean"] is not None for r in result.summary)
    table = Table(
        title=f"{result.data_name}: dead units after training (mean ± std over seeds)",
        title_justify="left",
        caption="dead: fired on no training sample; stuck: its gradient is 0 on every sample (SGD cannot revive it)",
        caption_justify="left",
    )
    columns = ["activation", *(["init"] if several_inits else []), *(["layer"] if several_layers else [])]
    for col in columns:
        table.add_column(col)
    for col in ("lr", "dead", "stuck", "train acc", *(["val acc"] if has_val else []), "diverged"):
        table.add_column(col, justify="right")
    for r in result.summary:
        dead = r["dead_fraction_mean"] or 0.0
        colour = "red" if dead > 0.5 else ("yellow" if dead > 0 else "green")
        table.add_row(
            r["activation"],
            *([r["init"]] if several_inits else []),
            *([r["layer"]] if several_layers else []),
            f"{r['lr']:g}",
            f"[{colour}]{_pct(r['dead_fraction_mean'], r['dead_fraction_std'])}[/{colour}]",
            _pct(r["no_gradient_fraction_mean"], r["no_gradient_fraction_std"]),
            _pct(r["train_accuracy_mean"]),
            *([_pct(r["val_accuracy_mean"])] if has_val else []),
            f"{r['n_diverged']}/{r['n']}" if r["n_diverged"] else "",
        )
    out_console.print(table)

"""``reluscope sweep``: a resumable, parallel grid of training runs, learning rate x activation x init x seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    Terminated,
    config_options,
    console,
    echo_json,
    friendly_errors,
    interrupt_exit_code,
    sigterm_as_interrupt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from reluscope.experiments import SweepConfig, SweepResult

__all__ = ["sweep"]


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.0%}" if std is None or std == 0 else f"{mean:.0%} ± {std:.0%}"


DataSeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the generated spiral and of the validation split.")]
ValFractionOpt = Annotated[
    float, typer.Option(min=0.0, max=0.9, help="Fraction held out for validation accuracy (stratified).")
]
LrsOpt = Annotated[str, typer.Option("--lrs", help="Learning rates, comma separated.")]
ActivationsOpt = Annotated[
    str,
    typer.Option(
        "--activations",
        help="Activations, comma separated, by their names in the activation registry (reluscope.nn.ACTIVATIONS): "
        "relu, leaky, prelu, elu, sigmoid, tanh, softplus, ...; an unknown name is refused with the full list.",
    ),
]
InitsOpt = Annotated[
    str, typer.Option("--inits", help="Weight inits, comma separated: he, xavier, xavier_uniform, normal.")
]
SeedsOpt = Annotated[str, typer.Option("--seeds", help="Seeds of the initialisation, comma separated.")]
RemediesOpt = Annotated[
    str,
    typer.Option(
        "--remedies",
        help="Remedies, comma separated: none, redo (ReDo every --redo-every epochs during the first half of "
        "training). Leaky ReLU is an activation: add it to --activations.",
    ),
]
RedoEveryOpt = Annotated[int, typer.Option(min=1, help="Epochs between ReDo resets (with --remedies redo).")]
RedoTauOpt = Annotated[
    float, typer.Option(min=0.0, help="ReDo threshold τ: 0 recycles dead units only; 0.1 also dormant ones.")
]
SweepInitStdOpt = Annotated[float, typer.Option(help="Standard deviation for --inits normal (CS231n: 0.01).")]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Passes over the training data per cell.")]
TrackEveryOpt = Annotated[int, typer.Option(min=1, help="Scan the training set for dead units every this many epochs.")]
JobsOpt = Annotated[
    int | None, typer.Option("--jobs", "-j", min=1, help="Worker processes (joblib); default: the number of cores.")
]
OutOpt = Annotated[
    Path, typer.Option(help="Output directory (rerun with the same one to resume an interrupted sweep).")
]
PlotsOpt = Annotated[bool, typer.Option(help="Write the PNG figures into --out.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, cell lines or table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary over seeds as JSON on stdout.")]


@friendly_errors
def sweep(
    data: DataOpt = "spiral",
    labels: LabelsOpt = None,
    label_column: LabelColumnOpt = "label",
    n_per_class: PerClassOpt = 100,
    n_classes: ClassesOpt = 3,
    data_seed: DataSeedOpt = 0,
    val_fraction: ValFractionOpt = 0.2,
    standardize: StandardizeOpt = False,
    lrs: LrsOpt = "0.1,0.3,1,3,10,30,100",
    activations: ActivationsOpt = "relu,leaky",
    inits: InitsOpt = "he",
    seeds: SeedsOpt = "0,1,2",
    remedies: RemediesOpt = "none",
    redo_every: RedoEveryOpt = 100,
    redo_tau: RedoTauOpt = 0.0,
    hidden: HiddenOpt = "100",
    init_std: SweepInitStdOpt = 0.01,
    bias_init: BiasInitOpt = 0.0,
    slope: SlopeOpt = 0.01,
    optimizer: OptimizerOpt = "sgd",
    reg: RegOpt = 1e-3,
    epochs: EpochsOpt = 2000,
    batch_size: BatchSizeOpt = 0,
    track_every: TrackEveryOpt = 20,
    dtype: DTypeOpt = DType.float64,
    jobs: JobsOpt = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Where cells run: 'local' (joblib processes, --jobs) or 'dask' (the workers of the dask.distributed "
            "scheduler at --scheduler; pip install 'reluscope[dask]'). Ray is not supported.",
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address for --backend dask, e.g. tcp://10.0.0.5:8786 (`dask scheduler` prints it). "
            "Workers need reluscope installed; results are written here, no shared filesystem needed.",
        ),
    ] = None,
    out: OutOpt = Path("runs/sweep"),
    plots: PlotsOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
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

    On a terminal a progress bar shows the cells done; otherwise (a log, CI, a pipe) one line per finished cell.
    Cells run in parallel with joblib, or on a Dask cluster with --backend dask --scheduler ADDRESS (resume works
    the same way: finished cells are skipped).
    """
    config = _sweep_config(dict(locals()))
    out_console = console(quiet=quiet or as_json)
    result = _run(config, out, jobs, out_console, backend, scheduler)
    written: list[Path] = []
    if plots:
        from reluscope.report import save_plots, sweep_plots

        written = save_plots(sweep_plots(result.cells, n_classes=result.n_classes), out)
    if as_json:
        figures = [str(p) for p in written]
        payload = {"out": str(out), "ran": len(result.ran), "skipped": len(result.skipped)}
        echo_json({**payload, "summary": result.summary, "figures": figures})
        return
    _print_summary(out_console, result)
    out_console.print(
        f"ran {len(result.ran)} cells, skipped {len(result.skipped)} finished earlier; wrote {out}/results.csv, "
        f"results.json" + (f" and {len(written)} figures" if written else "")
    )
    out_console.print(f"make one page of it: reluscope report {out}")


def _run(
    config: SweepConfig,
    out: Path,
    jobs: int | None,
    out_console: Console,
    backend: str = "local",
    scheduler: str | None = None,
) -> SweepResult:
    """:func:`reluscope.experiments.run_sweep` with progress; Ctrl-C keeps the finished cells and exits 130."""
    from reluscope.cli._progress import CellProgress
    from reluscope.experiments import run_sweep
    from reluscope.experiments.commands import sweep_command

    with CellProgress(out_console, config.n_cells, f"sweep ({config.n_cells} cells)") as progress:
        try:
            with sigterm_as_interrupt():
                return run_sweep(
                    config,
                    out,
                    jobs=jobs,
                    progress=progress.advance,
                    command=sweep_command(config, out),
                    backend=backend,
                    scheduler=scheduler,
                )
        except KeyboardInterrupt as exc:
            progress.stop()
            done = _finished_cells(out)
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            console(stderr=True).print(
                f"{what}: the {done} finished cells of this sweep are kept in {out / 'cells'}; "
                "rerun the same command to run only the missing ones",
                soft_wrap=True,
            )
            raise typer.Exit(interrupt_exit_code(exc)) from None


def _finished_cells(out: Path) -> int:
    """Finished cells of the sweep recorded in ``out/sweep.json`` (not every cell file there: the directory may
    hold cells of earlier sweeps with other options); 0 when the sweep had not started."""
    from reluscope.experiments import load_sweep

    try:
        return len(load_sweep(out)[1])
    except (OSError, ValueError):
        return 0


def _sweep_config(opts: dict[str, Any]) -> SweepConfig:
    """The :class:`~reluscope.experiments.SweepConfig` of the command's options."""
    from reluscope.cli._lists import parse_float_list, parse_int_list, parse_name_list
    from reluscope.experiments import SweepConfig

    return SweepConfig(
        **config_options(opts),
        data_seed=opts["data_seed"],
        lrs=parse_float_list(opts["lrs"], "--lrs"),
        activations=parse_name_list(opts["activations"], "--activations"),
        inits=parse_name_list(opts["inits"], "--inits"),
        seeds=parse_int_list(opts["seeds"], "--seeds"),
        remedies=parse_name_list(opts["remedies"], "--remedies"),
        redo_every=opts["redo_every"],
        redo_tau=opts["redo_tau"],
        track_every=opts["track_every"],
    )


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

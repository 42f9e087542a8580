"""``reluscope train``: train an MLP on spiral, digits or a file, with a live progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

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
    Terminated,
    config_options,
    console,
    echo_json,
    friendly_errors,
    interrupt_exit_code,
    invoked_command,
    sigterm_as_interrupt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from reluscope.runs import RunConfig, RunResult

LrOpt = Annotated[float, typer.Option("--lr", help="Learning rate (step size).")]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Passes over the training data.")]
ValFractionOpt = Annotated[float, typer.Option(min=0.0, max=0.9, help="Fraction held out for validation (stratified).")]
TrackDeadOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Scan the training set every N epochs (and at init) and record per-unit history: born dead, "
        "died at epoch, revived at epoch, and the fire counts `reluscope report` draws as a heat map. 0 = off.",
    ),
]
RedoOpt = Annotated[
    int,
    typer.Option(
        metavar="EVERY",
        min=0,
        help="ReDo: every EVERY epochs during the first half of training, re-initialise the units that are dead "
        "(or τ-dormant, see --redo-tau) on the training set, zeroing their outgoing weights and optimizer "
        "state. 0 = off.",
    ),
]
RedoTauOpt = Annotated[
    float, typer.Option(min=0.0, help="ReDo threshold τ: 0 recycles dead units only; 0.1 also τ-dormant ones.")
]
DeathSpikeOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Warn when a layer's dead fraction jumps by more than this between two checks (once per epoch); 0 = off.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option(help="Directory to write run.json (config + history) and model.npz into.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")]


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
    lr: LrOpt = 1.0,
    reg: RegOpt = 1e-3,
    epochs: EpochsOpt = 2000,
    batch_size: BatchSizeOpt = 0,
    val_fraction: ValFractionOpt = 0.0,
    standardize: StandardizeOpt = False,
    seed: SeedOpt = 0,
    dtype: DTypeOpt = DType.float64,
    track_dead: TrackDeadOpt = 0,
    redo: RedoOpt = 0,
    redo_tau: RedoTauOpt = 0.0,
    death_spike: DeathSpikeOpt = 0.05,
    out: OutOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train an MLP and report accuracy and the hidden units that never fired.

    The defaults are the CS231n case study's 2-layer ReLU net on the generated spiral (no download):
    100 hidden units, step size 1.0, reg 1e-3, full batch, 2000 epochs.
    """
    from reluscope.cli._progress import EpochProgress
    from reluscope.io import check_writable
    from reluscope.runs import prepare_data, run

    config = _run_config(dict(locals()))
    created = out is not None and not out.exists()
    out_console = console(quiet=quiet or as_json)
    try:
        with sigterm_as_interrupt():  # from before --out exists: a stop always takes the clean path below
            if out is not None:  # fail now, naming the directory, not after training
                check_writable(out)
            prepared = prepare_data(config)
            progress = EpochProgress(epochs, console=out_console, description=f"training on {prepared.name}")
            with progress:
                result = run(config, [progress], data=prepared, command=invoked_command())
    except KeyboardInterrupt as stop:
        _interrupted(stop, out, created)
    if out is not None:
        _save(out, result)
    err_console = console(stderr=True, quiet=quiet)
    if result.exception is not None:
        _print_death_spikes(err_console, result.death_spikes)
        if as_json:  # tools reading stdout get a result too
            exc = result.exception
            echo_json({"status": result.status, "error": str(exc), "epoch": exc.epoch, "lr": exc.lr})
        raise result.exception
    if as_json:
        echo_json(result.summary())
        return
    _print_result(out_console, err_console, result)
    if out is not None:
        out_console.print(f"wrote {out / 'run.json'} and {out / 'model.npz'}")


def _run_config(opts: dict[str, Any]) -> RunConfig:
    """The :class:`~reluscope.runs.RunConfig` of the command's options (the seed also seeds data and split)."""
    from reluscope.runs import RunConfig

    return RunConfig(
        **config_options(opts),
        data_seed=opts["seed"],
        activation=opts["activation"],
        init=opts["init"],
        lr=opts["lr"],
        seed=opts["seed"],
        remedy="redo" if opts["redo"] else "none",
        redo_every=opts["redo"] or 100,
        redo_tau=opts["redo_tau"],
        track_every=opts["track_dead"],
        death_spike=opts["death_spike"],
    )


def _interrupted(exc: KeyboardInterrupt, out: Path | None, created: bool) -> NoReturn:
    """Ctrl-C or SIGTERM during training: say so, write nothing (a run directory is written whole or not at all),
    and remove the --out directory if this command created it and it is still empty."""
    import contextlib

    if created and out is not None:
        with contextlib.suppress(OSError):
            out.rmdir()  # only removes an empty directory
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    where = f"; nothing was written to {out}" if out is not None else ""
    console(stderr=True).print(f"{what}: training stopped before its last epoch{where}", soft_wrap=True)
    raise typer.Exit(interrupt_exit_code(exc)) from None


def _save(out: Path, result: RunResult) -> None:
    """model.npz and run.json replaced together, or neither (a full disk leaves the old pair as it was)."""
    from reluscope.runs import save_run_dir

    save_run_dir(out, result)


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


def _print_result(out_console: Console, err_console: Console, result: RunResult) -> None:
    """The accuracy line, the dead-unit table, unit history, ReDo resets, death spikes and a dead-layer warning."""
    from reluscope.cli.diagnose import dead_layer_message, render_dead_table

    out_console.print(
        f"training accuracy [bold]{result.train_accuracy:.2%}[/bold]   final loss {result.final_loss:.4f}"
        + (f"   validation accuracy [bold]{result.val_accuracy:.2%}[/bold]" if result.val_accuracy is not None else "")
    )
    stats = result.stats
    if stats is not None:
        out_console.print(render_dead_table(stats, title="hidden units over the training set"))
    for name, h in result.units.items():
        out_console.print(
            f"{name}: {h.n_born_dead} born dead, {h.n_died} died during training, {h.n_revived} revived, "
            f"{h.n_dead_at_end} dead at the end"
        )
    if result.redo is not None:
        n_units = sum(r["total"] for r in result.redo)
        out_console.print(f"ReDo recycled {n_units} units in {len(result.redo)} resets")
    _print_death_spikes(err_console, result.death_spikes)
    message = None if stats is None else dead_layer_message(stats, result.config["net"]["activation"])
    if message:
        out_console.print(f"[bold red]{message}[/bold red]")

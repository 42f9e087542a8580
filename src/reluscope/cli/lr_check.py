"""``reluscope lr-check``: a short learning-rate range test for dead units, with a recommendation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import typer

from reluscope.cli._common import (
    ActivationOpt,
    BatchSizeOpt,
    BiasInitOpt,
    ClassesOpt,
    DataOpt,
    HiddenOpt,
    InitOpt,
    InitStdOpt,
    LabelColumnOpt,
    LabelsOpt,
    OptimizerOpt,
    PerClassOpt,
    RegOpt,
    SeedOpt,
    StandardizeOpt,
    console,
    echo_json,
    friendly_errors,
    load_data,
    parse_hidden,
)

if TYPE_CHECKING:
    from rich.table import Table

    from reluscope.remedies import LRRangeResult

__all__ = ["lr_check", "measured_lines", "parse_lrs", "render_lr_table", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 16, *, log: bool = False) -> str:
    """A one-line unicode sketch of a curve (e.g. a loss curve), at most ``width`` characters.

    ``log`` plots log(values) when they are all > 0, so a loss that explodes does not flatten the rest.
    """
    if not values:
        return ""
    n = len(values)
    picks = [values[min(n - 1, (i * n) // width)] for i in range(min(width, n))]
    if log and min(picks) > 0:
        picks = [math.log(v) for v in picks]
    lo, hi = min(picks), max(picks)
    span = hi - lo
    if span <= 0:
        return _BARS[0] * len(picks)
    return "".join(_BARS[min(len(_BARS) - 1, int((v - lo) / span * len(_BARS)))] for v in picks)


def measured_lines(result: LRRangeResult, *, n_samples: int) -> list[str]:
    """What the range test measured, in words: the setting, the largest passing rate and the first failure."""
    by_lr = {t.lr: t for t in result.trials}
    lines = [
        f"measured: {len(result.trials)} learning rates, {result.steps} steps each from the same initial weights; "
        f"dead = hidden units that fired on none of the {n_samples} training samples after the last step"
    ]
    if result.largest_ok_lr is not None:
        ok = by_lr[result.largest_ok_lr]
        text = f"largest rate passing before the first failure: {ok.lr:.4g} ({ok.dead_fraction:.1%} dead)"
        if result.first_failure_lr is not None:
            bad = by_lr[result.first_failure_lr]
            why = f"diverged at step {bad.diverged_at_step}" if bad.diverged else f"{bad.dead_fraction:.1%} dead"
            text += f"; first failure: {bad.lr:.4g} ({why})"
        else:
            text += "; no rate failed (try a larger --lr-max to find the boundary)"
        lines.append(text)
    return lines


def _why_recommended(result: LRRangeResult) -> str:
    if result.recommended_lr == result.largest_ok_lr:
        if result.margin == 0:
            return f" (the largest with at most {result.threshold:.0%} dead units after {result.steps} steps)"
        return f" (no smaller rate was tried, so no margin below {result.largest_ok_lr:.4g}: try a smaller --lr-min)"
    assert result.largest_ok_lr is not None
    steps = "one rate" if result.margin == 1 else f"{result.margin} rates"
    return (
        f" ({steps} below {result.largest_ok_lr:.4g} for a margin: {result.steps} steps undercount the units a rate "
        "near the failure boundary kills over a long run; --margin 0 recommends the largest passing rate)"
    )


def parse_lrs(text: str) -> list[float] | None:
    """'0.1,1,10' -> [0.1, 1.0, 10.0]; '' -> None (use --lr-min/--lr-max/--n-lrs)."""
    if not text.strip():
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--lrs must be comma-separated numbers such as 0.1,1,10, got {text!r}") from None


def render_lr_table(result: LRRangeResult) -> Table:
    """A rich table, one row per learning rate: final loss, loss curve, accuracy, dead %, verdict."""
    from rich.table import Table

    table = Table(
        title=f"learning-rate range test ({result.steps} steps each)",
        title_justify="left",
        caption=f"dead: hidden units that never fired on the training set; ok: not diverged and dead <= "
        f"{result.threshold:.0%}",
        caption_justify="left",
    )
    table.add_column("lr", justify="right")
    table.add_column("loss", justify="right")
    table.add_column("loss curve", no_wrap=True, min_width=16)
    table.add_column("accuracy", justify="right")
    table.add_column("dead %", justify="right")
    table.add_column("verdict", no_wrap=True)
    for t in result.trials:
        if t.diverged:
            verdict = f"[red]diverged (step {t.diverged_at_step})[/red]"
        elif not t.ok:
            verdict = "[red]too many dead[/red]"
        else:
            verdict = "[green]ok[/green]"
        mark = " ←" if t.lr == result.recommended_lr else ""
        colour = "red" if t.dead_fraction > result.threshold else "green"
        table.add_row(
            f"{t.lr:.4g}{mark}",
            f"{t.final_loss:.4g}",
            sparkline(t.losses, log=True),
            f"{t.accuracy:.1%}",
            f"[{colour}]{t.dead_fraction:.1%}[/{colour}]",
            verdict,
        )
    return table


@friendly_errors
def lr_check(
    data: DataOpt = "spiral",
    labels: LabelsOpt = None,
    label_column: LabelColumnOpt = "label",
    n_per_class: PerClassOpt = 100,
    n_classes: ClassesOpt = 3,
    hidden: HiddenOpt = "100",
    activation: ActivationOpt = "relu",
    init: InitOpt = "he",
    init_std: InitStdOpt = 0.01,
    bias_init: BiasInitOpt = 0.0,
    optimizer: OptimizerOpt = "sgd",
    reg: RegOpt = 1e-3,
    lrs: Annotated[
        str, typer.Option("--lrs", help="Learning rates to try, comma separated; overrides --lr-min/--lr-max.")
    ] = "",
    lr_min: Annotated[float, typer.Option(help="Smallest learning rate of the geometric range.")] = 1e-2,
    lr_max: Annotated[float, typer.Option(help="Largest learning rate of the geometric range.")] = 10.0,
    n_lrs: Annotated[int, typer.Option(min=1, help="Number of learning rates in the range.")] = 7,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps per learning rate.")] = 200,
    batch_size: BatchSizeOpt = 0,
    threshold: Annotated[
        float, typer.Option(help="Largest acceptable fraction of hidden units dead at the end of a trial.")
    ] = 0.1,
    margin: Annotated[
        int,
        typer.Option(
            min=0,
            help="Recommend this many rates below the largest passing one: a short test undercounts the units a "
            "rate near the failure boundary kills over a long run. 0 recommends the largest passing rate.",
        ),
    ] = 1,
    standardize: StandardizeOpt = False,
    seed: SeedOpt = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only the recommendation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON on stdout.")] = False,
) -> None:
    """Train briefly at increasing learning rates and recommend the largest that keeps units alive.

    Every learning rate trains a copy of the same initial network for --steps steps; a rate fails when training
    diverges or leaves more than --threshold of the hidden units dead. The recommendation is --margin rates (default
    1) below the largest rate that passed before the first failure: 200 steps undercount the units a rate near
    that boundary kills over a long run. Exit code 1 when even the smallest rate fails.
    """
    from reluscope.cli._progress import make_progress
    from reluscope.data import Standardizer
    from reluscope.nn import MLP
    from reluscope.remedies import lr_range_test

    ds = load_data(
        data, labels=labels, label_column=label_column, n_per_class=n_per_class, n_classes=n_classes, seed=seed
    )
    X = Standardizer.fit(ds.X).transform(ds.X) if standardize else ds.X
    sizes = parse_hidden(hidden)
    if not sizes:
        raise ValueError("--hidden must name at least one hidden layer (a linear model has no units to die)")
    net = MLP(
        [ds.n_features, *sizes, ds.n_classes], activation, init=init, init_std=init_std, bias_init=bias_init, seed=seed
    )
    out = console(quiet=quiet or as_json)
    progress = make_progress(out)
    lr_list = parse_lrs(lrs)
    total = len(lr_list) if lr_list is not None else n_lrs
    task = progress.add_task("learning-rate range test", total=total, info="")
    with progress:
        result = lr_range_test(
            X,
            ds.y,
            net,
            lrs=lr_list,
            lr_min=lr_min,
            lr_max=lr_max,
            n_lrs=n_lrs,
            steps=steps,
            threshold=threshold,
            margin=margin,
            optimizer=optimizer,
            reg=reg,
            batch_size=batch_size or None,
            seed=seed,
            progress=lambda done, n: progress.update(task, completed=done),
        )
    if as_json:
        echo_json(result.to_dict())
    else:
        if not quiet:
            out.print(render_lr_table(result))
        summary = console()
        if result.recommended_lr is None:
            smallest = result.trials[0]
            why = "diverged" if smallest.diverged else f"left {smallest.dead_fraction:.1%} of the units dead"
            summary.print(
                f"[red]no safe learning rate[/red]: even lr={smallest.lr:.4g} {why}; "
                f"try a smaller range (--lr-min {smallest.lr / 100:.4g}) or a larger --threshold"
            )
        else:
            for line in measured_lines(result, n_samples=int(X.shape[0])):
                summary.print(line, soft_wrap=True)
            summary.print(
                f"recommended learning rate: [bold]{result.recommended_lr:.4g}[/bold]"
                + _why_recommended(result)
                + (
                    f"; lowest loss at {result.lowest_loss_lr:.4g}"
                    if result.lowest_loss_lr is not None and result.lowest_loss_lr != result.recommended_lr
                    else ""
                ),
                soft_wrap=True,
            )
    if result.recommended_lr is None:
        raise typer.Exit(1)

"""``reluscope born-dead``: how likely a ReLU network is to be dead at initialisation, by depth and width."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from reluscope.cli._common import console, echo_json, friendly_errors

__all__ = ["born_dead"]


class Inputs(str, Enum):
    point = "point"
    grid = "grid"
    spiral = "spiral"


DepthsOpt = Annotated[str, typer.Option("--depths", help="Numbers of hidden layers, comma separated.")]
WidthsOpt = Annotated[str, typer.Option("--widths", help="Hidden layer widths, comma separated.")]
InitsOpt = Annotated[
    str,
    typer.Option(
        "--inits",
        help="Init variants, comma separated: he, xavier, xavier_uniform, normal; add +bias for the same init "
        "with every bias at --bias (e.g. he+bias).",
    ),
]
BiasOpt = Annotated[float, typer.Option(help="The bias of the +bias variants (the bias-shifted init).")]
NInitsOpt = Annotated[int, typer.Option("--n-inits", min=1, help="Random initialisations per (init, width).")]
InputsOpt = Annotated[
    Inputs,
    typer.Option(
        help="point: one random input (the setting of the closed form); grid: a --grid-size^2 grid over "
        "[-1, 1]^2; spiral: the 300 spiral points. With several inputs a net is born dead when a layer is zero "
        "for all of them."
    ),
]
GridSizeOpt = Annotated[int, typer.Option(min=2, help="Points per axis of --inputs grid.")]
ZOpt = Annotated[float, typer.Option(min=0.5, help="Width of the Wilson confidence intervals, in sigmas.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the random initialisations.")]
OutOpt = Annotated[Path, typer.Option(help="Directory for born_dead.json, born_dead.csv and born_dead.png.")]
PlotsOpt = Annotated[bool, typer.Option(help="Write born_dead.png into --out.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the rows as JSON on stdout.")]


@friendly_errors
def born_dead(
    depths: DepthsOpt = "1,2,3,4,5,6,8,10,12,15,20",
    widths: WidthsOpt = "2,3,4,8",
    inits: InitsOpt = "he,xavier,he+bias",
    bias: BiasOpt = 0.1,
    n_inits: NInitsOpt = 4000,
    inputs: InputsOpt = Inputs.point,
    grid_size: GridSizeOpt = 10,
    z: ZOpt = 3.0,
    seed: SeedOpt = 0,
    out: OutOpt = Path("runs/born-dead"),
    plots: PlotsOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Probability that a ReLU net is born dead (some layer zero for every input) vs depth, per width and init.

    Compares the closed form 1 - (1 - 2^-width)^depth (one input, zero biases, any symmetric weights: He and
    Xavier agree) with a Monte Carlo estimate over random initialisations, with Wilson confidence intervals, and
    shows how a positive bias shift lowers it. Writes born_dead.json, born_dead.csv and born_dead.png into --out;
    `reluscope report OUT` makes a page of it.
    """
    from reluscope.cli._lists import parse_int_list, parse_name_list
    from reluscope.experiments import BornDeadConfig, born_dead_study, write_born_dead
    from reluscope.experiments.commands import born_dead_command

    config = BornDeadConfig(
        depths=parse_int_list(depths, "--depths", minimum=1),
        widths=parse_int_list(widths, "--widths", minimum=1),
        inits=parse_name_list(inits, "--inits"),
        bias=bias,
        n_inits=n_inits,
        inputs=inputs.value,
        grid_size=grid_size,
        z=z,
        seed=seed,
    )
    from reluscope.io import directory_lock

    out_console = console(quiet=quiet or as_json)
    written = []
    with directory_lock(out, what="born-dead study"):  # writable and ours, checked before the simulation
        with out_console.status("simulating random initialisations"):
            rows = born_dead_study(config)
        write_born_dead(out, config, rows, born_dead_command(config, out))
        if plots:
            from reluscope.report import born_dead_plots, save_plots

            written = save_plots(born_dead_plots(rows), out)
    if as_json:
        echo_json({"out": str(out), "rows": rows})
        return
    _print_tables(out_console, config, rows)
    out_console.print(f"wrote {out}/born_dead.json, born_dead.csv" + (" and born_dead.png" if written else ""))


def _print_tables(out_console: Any, config: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    for init in config.inits:
        mine = [r for r in rows if r["init"] == init]
        bias = mine[0]["bias"]
        table = Table(
            title=f"P(born dead), {init} init, biases {bias:g}: Monte Carlo / closed form",
            caption=f"{config.n_inits} random inits per width"
            + ("" if bias else f"; * closed form outside the {config.z:g}-sigma interval (born_dead.csv)"),
            title_justify="left",
            caption_justify="left",
        )
        table.add_column("depth", justify="right")
        for w in config.widths:
            table.add_column(f"width {w}", justify="right")
        for d in config.depths:
            cells = []
            for w in config.widths:
                r = next(r for r in mine if r["width"] == w and r["depth"] == d)
                mark = "" if bias or r["closed_form_inside"] else "[red]*[/red]"
                cells.append(f"{r['p_hat']:.3f} / {r['closed_form']:.3f}{mark}")
            table.add_row(str(d), *cells)
        out_console.print(table)

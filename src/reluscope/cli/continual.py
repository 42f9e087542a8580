"""``reluscope continual``: loss of plasticity over a sequence of permuted tasks, with and without remedies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reluscope.cli._common import (
    HiddenOpt,
    OptimizerOpt,
    Terminated,
    console,
    echo_json,
    friendly_errors,
    interrupt_exit_code,
    parse_hidden,
    sigterm_as_interrupt,
)

__all__ = ["continual"]


def _ci(row: dict[str, Any], metric: str) -> str:
    m, lo, hi = row.get(metric), row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if m is None or lo is None or hi is None:
        return "-"
    return f"{m:.1%} ±{(hi - lo) / 2:.1%}"


@friendly_errors
def continual(
    methods: Annotated[
        str, typer.Option("--methods", help="Comma separated: none, l2, redo, cbp, shrink, leaky.")
    ] = "none,l2,redo,cbp,shrink,leaky",
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, comma separated (>= 2 for intervals).")] = "0,1,2,3,4",
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Number of permuted tasks, one pass each.")] = 100,
    hidden: HiddenOpt = "100,100",
    lr: Annotated[float, typer.Option(help="Step size (large values show the effect).")] = 0.3,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per step.")] = 8,
    optimizer: OptimizerOpt = "sgd",
    images: Annotated[
        Path | None,
        typer.Option("--images", help="MNIST IDX images file (raw or .gz); default: scikit-learn's 8x8 digits."),
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="IDX labels file that goes with --images.")] = None,
    max_samples: Annotated[
        int | None, typer.Option(min=1, help="Use only the first this many samples (e.g. 10000 of MNIST).")
    ] = None,
    l2: Annotated[float, typer.Option(min=0.0, help="L2 strength of the 'l2' method.")] = 1e-3,
    redo_every: Annotated[int, typer.Option(min=1, help="Steps between ReDo resets ('redo').")] = 100,
    redo_tau: Annotated[float, typer.Option(min=0.0, help="ReDo threshold τ (0 = dead units only).")] = 0.1,
    cbp_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="CBP replacement rate: fraction of mature units per step.")
    ] = 1e-3,
    cbp_maturity: Annotated[int, typer.Option(min=0, help="CBP maturity threshold (steps).")] = 100,
    cbp_decay: Annotated[float, typer.Option(min=0.0, max=1.0, help="CBP utility decay.")] = 0.99,
    shrink: Annotated[float, typer.Option(help="Shrink & Perturb factor λ ('shrink').")] = 0.99,
    shrink_noise: Annotated[float, typer.Option(min=0.0, help="Shrink & Perturb noise scale σ.")] = 0.01,
    shrink_every: Annotated[int, typer.Option(min=1, help="Steps between Shrink & Perturb applications.")] = 10,
    blocks: Annotated[int, typer.Option(min=1, help="Task blocks in the summary table.")] = 5,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes (cells run in parallel).")] = 1,
    out: Annotated[
        Path, typer.Option(help="Output directory (rerun with the same one to resume after an interruption).")
    ] = Path("runs/continual"),
    plots: Annotated[bool, typer.Option(help="Write the PNG figures into --out.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Continual learning on Permuted digits: does a network keep learning new tasks, and do its units die?

    Each task is the data set with its pixels shuffled by a fixed permutation; one network per (method, seed) is
    trained on the tasks in sequence, one pass each, never reset. After every task it records the online accuracy
    on the new task, the dead and τ-dormant (τ=0.1) fractions of hidden units, the effective rank of the last
    hidden layer and the mean weight magnitude (Dohare et al., Nature 2024).

    Methods: none (plain SGD), l2, redo (ReDo), cbp (Continual Backprop), shrink (Shrink & Perturb), leaky.
    Each cell writes OUT/cells/<key>.json atomically as it finishes; rerunning the same command skips finished
    cells. Also written: OUT/continual.json (config, command, summary) and the figures; `reluscope report OUT`
    makes one page of it. Intervals are two-sided 95% Student-t intervals over seeds.
    """
    from reluscope.cli._lists import parse_int_list, parse_name_list
    from reluscope.continual import ContinualConfig, run_continual

    if (images is None) != (labels is None):
        raise ValueError("--images and --labels go together (an MNIST IDX images file and its labels file)")
    config = ContinualConfig(
        methods=parse_name_list(methods, "--methods"),
        seeds=parse_int_list(seeds, "--seeds"),
        n_tasks=tasks,
        hidden=tuple(parse_hidden(hidden)),
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        data="digits" if images is None else "idx",
        idx_images=None if images is None else str(images),
        idx_labels=None if labels is None else str(labels),
        max_samples=max_samples,
        l2=l2,
        redo_every=redo_every,
        redo_tau=redo_tau,
        cbp_rate=cbp_rate,
        cbp_maturity=cbp_maturity,
        cbp_decay=cbp_decay,
        shrink=shrink,
        shrink_noise=shrink_noise,
        shrink_every=shrink_every,
    )
    out_console = console(quiet=quiet or as_json)
    n_cells = len(config.methods) * len(config.seeds)
    out_console.print(f"continual: {n_cells} cells ({len(config.methods)} methods x {len(config.seeds)} seeds)")

    def line(cell: Any, done: int, total: int) -> None:
        last = cell.tasks[-1] if cell.tasks else None
        what = (
            f"last task: online acc {last.online_accuracy:.1%}, dead {last.dead_fraction:.1%}"
            if last is not None
            else "no task finished"
        )
        out_console.print(
            f"[{done}/{total}] {cell.method} seed {cell.seed}: {cell.status}, {what} ({cell.seconds:.1f} s)",
            soft_wrap=True,
        )

    command = _command(config, out, blocks, jobs)
    try:
        with sigterm_as_interrupt():
            result = run_continual(config, out, jobs=jobs, progress=line, command=command, blocks=blocks)
    except KeyboardInterrupt as exc:
        from reluscope.continual import count_finished

        done = count_finished(config, out)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        console(stderr=True).print(
            f"{what}: {done} finished cells of this benchmark are kept in {out / 'cells'}; rerun the same command "
            "to finish",
            soft_wrap=True,
        )
        raise typer.Exit(interrupt_exit_code(exc)) from None
    written: list[Path] = []
    if plots:
        from reluscope.report import save_plots
        from reluscope.report.continual import continual_plots

        written = save_plots(continual_plots(result), out)
    if as_json:
        echo_json(
            {
                "out": str(out),
                "ran": len(result.ran),
                "skipped": len(result.skipped),
                "summary": result.summary,
                "figures": [str(p) for p in written],
            }
        )
        return
    from rich.table import Table

    table = Table(
        title="online accuracy on the new task, dead and dormant fractions: mean ± half-width of the 95% interval "
        "over seeds, per task block",
        title_justify="left",
    )
    for col in ("method", "tasks", "seeds", "accuracy", "dead", "τ-dormant", "eff. rank"):
        table.add_column(col, justify="left" if col in ("method", "tasks") else "right")
    for r in result.summary:
        rank = "-" if r["effective_rank"] is None else f"{r['effective_rank']:.1f}"
        table.add_row(
            r["method"],
            r["tasks"],
            str(r["n_seeds"]),
            _ci(r, "online_accuracy"),
            _ci(r, "dead_fraction"),
            _ci(r, "dormant_fraction"),
            rank,
        )
    out_console.print(table)
    out_console.print(
        f"ran {len(result.ran)} cells, skipped {len(result.skipped)} finished earlier; wrote {out}/continual.json"
        + (f" and {len(written)} figures" if written else "")
    )


def _command(config: Any, out: Path, blocks: int, jobs: int) -> str:
    """The command line that reproduces ``config`` (stored in continual.json for the report)."""
    c = config
    parts = [
        "reluscope continual",
        f"--methods {','.join(c.methods)}",
        f"--seeds {','.join(map(str, c.seeds))}",
        f"--tasks {c.n_tasks}",
        f"--hidden {','.join(map(str, c.hidden))}",
        f"--lr {c.lr:g}",
        f"--batch-size {c.batch_size}",
        f"--optimizer {c.optimizer}",
    ]
    if c.data == "idx":
        parts += [f"--images {c.idx_images}", f"--labels {c.idx_labels}"]
    if c.max_samples is not None:
        parts.append(f"--max-samples {c.max_samples}")
    parts += [
        f"--l2 {c.l2:g}",
        f"--redo-every {c.redo_every}",
        f"--redo-tau {c.redo_tau:g}",
        f"--cbp-rate {c.cbp_rate:g}",
        f"--cbp-maturity {c.cbp_maturity}",
        f"--cbp-decay {c.cbp_decay:g}",
        f"--shrink {c.shrink:g}",
        f"--shrink-noise {c.shrink_noise:g}",
        f"--shrink-every {c.shrink_every}",
        f"--blocks {blocks}",
        f"--jobs {jobs}",
        f"--out {out}",
    ]
    return " ".join(parts)

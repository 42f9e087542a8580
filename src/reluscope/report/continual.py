"""Figures and report section of a ``reluscope continual`` directory (see :mod:`reluscope.continual`)."""

from __future__ import annotations

import os
from pathlib import Path

from reluscope.continual import ContinualResult, load_continual, per_task_series
from reluscope.report.html import Code, Image, Section, Table, Text
from reluscope.report.plots import Plot, plot_continual, save_plots, to_png

__all__ = ["CONTINUAL_PLOTS", "continual_plots", "continual_sections", "write_continual_images"]

# file stem -> (metric, y label, title, fraction axis)
CONTINUAL_PLOTS = {
    "continual_accuracy": ("online_accuracy", "online accuracy on the new task", "accuracy on each new task", True),
    "continual_dead": (
        "dead_fraction",
        "fraction of hidden units",
        "dead units (fired on no sample of the task)",
        True,
    ),
    "continual_dormant": ("dormant_fraction", "fraction of hidden units", "τ-dormant units (τ = 0.1)", True),
    "continual_rank": (
        "effective_rank",
        "effective rank (Roy & Vetterli 2007)",
        "effective rank of the last hidden layer",
        False,
    ),
    "continual_weights": ("weight_magnitude", "mean |w|", "weight magnitude", False),
}


def continual_plots(result: ContinualResult) -> dict[str, Plot]:
    """The figures of a benchmark: per-task accuracy, dead and dormant fractions, effective rank, weight magnitude,
    each with a 95% interval over seeds. Keys are file stems (``continual_accuracy`` ...)."""
    return {
        name: plot_continual(per_task_series(result.cells, metric), ylabel=ylabel, title=title, fraction=frac)
        for name, (metric, ylabel, title, frac) in CONTINUAL_PLOTS.items()
    }


def write_continual_images(run_dir: str | os.PathLike[str], images_dir: str | os.PathLike[str]) -> list[Path]:
    """Render the figures of a finished ``reluscope continual`` directory into ``images_dir`` (for docs/generate.py:
    ``docs/images/continual_*.png``); returns the paths. Trains nothing."""
    return save_plots(continual_plots(load_continual(run_dir)), images_dir)


def continual_sections(run_dir: str | os.PathLike[str]) -> tuple[str, str, list[Section]]:
    """Title, subtitle and sections of the HTML report of a continual directory."""
    result = load_continual(run_dir)
    plots = continual_plots(result)
    table_rows = []
    for r in result.summary:

        def ci(m: str, r: dict[str, object] = r) -> str:
            v, lo, hi = r.get(m), r.get(f"{m}_lo"), r.get(f"{m}_hi")
            return "-" if v is None else f"{v:.1%} [{lo:.1%}, {hi:.1%}]"

        table_rows.append(
            {
                "method": r["method"],
                "tasks": r["tasks"],
                "seeds": r["n_seeds"],
                "online accuracy [95%]": ci("online_accuracy"),
                "dead fraction [95%]": ci("dead_fraction"),
            }
        )
    sections = [
        Section(
            "Loss of plasticity over the task sequence",
            [
                Text(
                    "Each task is the data set with a fixed random pixel permutation; every network sees the tasks in "
                    "order, one pass each. Lines are means over seeds, bands two-sided 95% Student-t intervals."
                ),
                *(Image(to_png(p.figure), alt=name, caption=p.data["title"]) for name, p in plots.items()),
            ],
        ),
        Section(
            "Per task block",
            [Table(table_rows, caption="mean over seeds of each seed's block mean [95% Student-t interval]")],
        ),
    ]
    if result.command:
        sections.append(Section("Command", [Code(result.command)]))
    return "reluscope continual", f"{len(result.cells)} cells", sections

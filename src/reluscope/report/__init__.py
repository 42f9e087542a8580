"""Reports: matplotlib figures that return the data they show (:mod:`~reluscope.report.plots`), self-contained
HTML pages (:mod:`~reluscope.report.html`) and the ``report.html`` of a run directory (:func:`build_report`).

This package is the only part of reluscope that imports matplotlib (Agg canvas, no pyplot).
"""

from reluscope.report.build import (
    REPORT_FILE,
    born_dead_plots,
    build_report,
    pick_dying_cell,
    run_kind,
    sweep_plots,
)
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
    save_plots,
    to_png,
)

__all__ = [
    "REPORT_FILE",
    "Plot",
    "born_dead_plots",
    "build_report",
    "pick_dying_cell",
    "plot_accuracy_vs_lr",
    "plot_born_dead",
    "plot_dead_fraction_history",
    "plot_dead_over_training",
    "plot_dead_vs_lr",
    "plot_fire_rate_heatmap",
    "plot_fire_rate_histogram",
    "plot_training_curves",
    "run_kind",
    "save_plots",
    "sweep_plots",
    "to_png",
]

"""Experiments built from the run layer and the diagnosis: a learning-rate sweep, remedy comparisons and the
born-dead study.

Every training run here is one :func:`reluscope.runs.run`. The package is split by concern: ``_grid`` (the sweep's
configuration, cells and data), ``_cells`` (where a cell's record lives, running cells in workers), ``_sweep`` (the
sweep's cells, resuming), ``_tables`` (tidy rows, summaries, CSV),
``_remedies`` (no remedy vs ReDo vs leaky over seeds), ``_born_dead`` (the born-dead study) and ``_checks``
(checks for the configs). The public module :mod:`reluscope.experiments.commands` writes the command lines that
reproduce a result (``sweep_command``, ``born_dead_command``, ``train_command``), for reports and the CLI.

Everything here returns plain data (dicts, lists, dataclasses of them) and writes files atomically through
:mod:`reluscope.io`; the figures are drawn by :mod:`reluscope.report` and the command line is ``reluscope sweep`` /
``reluscope born-dead``.

**What "dead" means here.** Following the rest of reluscope, a unit is *dead* when it fired (pre-activation > 0)
on no training sample; that is the same count as ``reluscope diagnose``. Whether a dead unit can come back depends
on the activation: a ReLU passes no gradient where its input is <= 0, so a unit dead on the whole training set
receives no gradient and (with plain SGD) stays dead. A leaky ReLU passes ``slope`` times the gradient there, so
its units *always* receive gradient. The sweep therefore records two fractions per layer:

``dead_fraction``
    units that fired on no training sample ("dead by firing").
``no_gradient_fraction``
    units whose local derivative is 0 on every training sample, measured with the activation's own backward pass
    (see :func:`no_gradient_units`): equal to ``dead_fraction`` for ReLU, 0 by construction for leaky ReLU (slope
    > 0), ELU, sigmoid and tanh. These are the units that are stuck for good.

**Sweeps are resumable.** Every cell (one learning rate x activation x init x seed) is identified by a stable hash
of its full configuration, including a digest of the data, and its result is written atomically to
``OUT/cells/<key>.json`` as soon as it finishes. Rerunning the same sweep skips the cells that have a valid result.

**Parallel backends.** Cells run in parallel with joblib (``jobs`` processes on this machine) or, with
``backend="dask", scheduler="tcp://HOST:8786"`` (``reluscope sweep --backend dask --scheduler ADDRESS``), on the
workers of a ``dask.distributed`` cluster (``pip install 'reluscope[dask]'``): the data goes to every worker once,
results come back and are written here, so the workers need no shared filesystem. Ray is not supported.
"""

from reluscope.experiments._born_dead import (
    BORN_DEAD_COLUMNS,
    BORN_DEAD_FILE,
    BornDeadConfig,
    born_dead_csv,
    born_dead_study,
    write_born_dead,
)
from reluscope.experiments._cells import cell_path, resolve_jobs, run_cells
from reluscope.experiments._grid import (
    DEFAULT_LRS,
    SWEEP_FILE,
    SWEEP_REMEDIES,
    SweepConfig,
    SweepData,
    cell_key,
    load_sweep_data,
    variant,
)
from reluscope.experiments._remedies import (
    COMPARISON_CONFIG,
    RemedyComparison,
    RemedyRun,
    compare_remedies,
    run_remedy,
)
from reluscope.experiments._sweep import (
    CellProgress,
    SweepResult,
    load_sweep,
    no_gradient_units,
    run_cell,
    run_sweep,
)
from reluscope.experiments._tables import (
    SUMMARY_VALUES,
    TABLE_COLUMNS,
    dead_over_training,
    summarize_sweep,
    sweep_table,
)

__all__ = [
    "BORN_DEAD_COLUMNS",
    "BORN_DEAD_FILE",
    "COMPARISON_CONFIG",
    "DEFAULT_LRS",
    "SUMMARY_VALUES",
    "SWEEP_FILE",
    "SWEEP_REMEDIES",
    "TABLE_COLUMNS",
    "BornDeadConfig",
    "CellProgress",
    "RemedyComparison",
    "RemedyRun",
    "SweepConfig",
    "SweepData",
    "SweepResult",
    "born_dead_csv",
    "born_dead_study",
    "cell_key",
    "cell_path",
    "compare_remedies",
    "dead_over_training",
    "load_sweep",
    "load_sweep_data",
    "no_gradient_units",
    "resolve_jobs",
    "run_cell",
    "run_cells",
    "run_remedy",
    "run_sweep",
    "summarize_sweep",
    "sweep_table",
    "variant",
    "write_born_dead",
]

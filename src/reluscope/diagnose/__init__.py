"""Dead-unit diagnosis, backend-agnostic: streaming per-unit statistics, whole-dataset scans of the numpy MLP,
per-unit history during training, and the theory of networks born dead.

>>> from reluscope.diagnose import ActivationStats, dead_units, scan
>>> stats = scan(net, X, batch_size=256)           # O(units) memory whatever len(X)
>>> stats.summary()                                 # one plain dict per hidden layer
"""

from reluscope.diagnose._born_dead import (
    BornDeadEstimate,
    born_dead_monte_carlo,
    born_dead_probability,
    grid_inputs,
    wilson_interval,
)
from reluscope.diagnose._history import DeadUnitTracker, UnitHistory
from reluscope.diagnose._scan import Progress, dead_units, scan
from reluscope.diagnose._stats import ActivationStats, renormalise, two_sum_into

__all__ = [
    "ActivationStats",
    "BornDeadEstimate",
    "DeadUnitTracker",
    "Progress",
    "UnitHistory",
    "born_dead_monte_carlo",
    "born_dead_probability",
    "dead_units",
    "grid_inputs",
    "renormalise",
    "scan",
    "two_sum_into",
    "wilson_interval",
]

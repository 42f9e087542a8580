"""Remedies for dead ReLUs in the numpy MLP, each measured on the same statistics that diagnose the problem.

* :func:`redo` / :class:`ReDoCallback` — recycle dead or τ-dormant units (ReDo, Sokar et al. 2023): new incoming
  weights, zero outgoing weights (the output does not change at the reset), their optimizer state zeroed.
* :func:`leaky_swap` — the same network with leaky ReLU; :func:`stuck_units` shows why no leaky unit is stuck
  (``dead_by_gradient`` is its earlier name).
* :func:`prune_dead` — a smaller network without its dead units, their mean output folded into the next bias
  (the output kept), and a :class:`PruneReport` of the units, parameters and multiply-adds saved.
* :func:`lr_range_test` — the largest learning rate that keeps the dead fraction under a threshold;
  :class:`DeathSpikeDetector` — flags the updates after which a layer's dead fraction jumped.
* :class:`ContinualBackprop` — Continual Backprop (Dohare et al. 2024): replace a small fraction of the mature
  units with the lowest contribution utility every step, the removed unit's mean contribution folded into the bias.
* :func:`shrink_perturb` / :class:`ShrinkPerturb` — θ ← λθ + σ·ε (Ash & Adams 2020), on a schedule.

>>> from reluscope.remedies import ReDoCallback
>>> fit(net, X, y, lr=3.0, epochs=2000, callbacks=[ReDoCallback(X, every=100, tau=0.0)])
"""

# check_tau lives in reluscope._validate; still importable from here (not part of the API) for existing callers
from reluscope._validate import check_tau as check_tau
from reluscope.remedies._cbp import CBPReport, ContinualBackprop, check_cbp_options
from reluscope.remedies._leaky import dead_by_gradient, leaky_swap, stuck_units
from reluscope.remedies._lr import DeathSpikeDetector, LRRangeResult, LRTrial, lr_range_test, overall_dead_fraction
from reluscope.remedies._prune import PrunedLayer, PrunedSite, PruneReport, check_fold, prune_dead, unit_means
from reluscope.remedies._redo import ReDoCallback, ReDoReport, default_redo_until, recycle_mask, redo, zero_state
from reluscope.remedies._registry import REMEDY_REGISTRY, Remedy, get_remedy
from reluscope.remedies._shrink import ShrinkPerturb, StepSchedule, check_shrink_options, shrink_perturb

__all__ = [
    "REMEDY_REGISTRY",
    "CBPReport",
    "ContinualBackprop",
    "DeathSpikeDetector",
    "LRRangeResult",
    "LRTrial",
    "PruneReport",
    "PrunedLayer",
    "PrunedSite",
    "ReDoCallback",
    "ReDoReport",
    "Remedy",
    "ShrinkPerturb",
    "StepSchedule",
    "check_cbp_options",
    "check_fold",
    "check_shrink_options",
    "dead_by_gradient",
    "default_redo_until",
    "get_remedy",
    "leaky_swap",
    "lr_range_test",
    "overall_dead_fraction",
    "prune_dead",
    "recycle_mask",
    "redo",
    "shrink_perturb",
    "stuck_units",
    "unit_means",
    "zero_state",
]

_MOVED = {
    "REMEDIES": "reluscope.runs",
    **dict.fromkeys(("RemedyComparison", "RemedyRun", "compare_remedies", "run_remedy"), "reluscope.experiments"),
}


def __getattr__(name: str) -> object:
    """Names that moved up a layer (remedy comparisons train through :func:`reluscope.runs.run`) say where."""
    if name in _MOVED:
        raise AttributeError(f"reluscope.remedies.{name} moved: import it from {_MOVED[name]}")
    raise AttributeError(f"module 'reluscope.remedies' has no attribute {name!r}")

"""Dead-unit metrics to TensorBoard and Weights & Biases: one small protocol for callbacks and plain loops.

>>> from torch.utils.tensorboard import SummaryWriter
>>> from reluscope.integrations.loggers import log_dead_units
>>> log_dead_units(SummaryWriter("runs/x"), reluscope.torch.scan(model, loader), step=100)
>>> log_dead_units(wandb.init(project="p"), stats, step=100)           # a wandb run works the same way

Keys (TensorBoard and W&B group them by the part before ``/``):

- ``dead_fraction/<site>``: fraction of the site's units that fired on no sample (``ActivationStats.dead_fraction``);
- ``dormant_fraction/<site>``: fraction whose τ-dormant score (Sokar et al. 2023, eq. 1: mean |activation| of the
  unit over the mean of its site) is <= τ;
- ``dead_fraction/overall``, ``dormant_fraction/overall``: the same over every unit of every site (unit-weighted);
- ``fire_rate/<site>``: a histogram of the units' fire rates (fraction of samples with pre-activation > 0), bins
  of equal width on [0, 1].
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_tau
from reluscope.diagnose import ActivationStats

__all__ = ["OVERALL", "dead_unit_metrics", "fire_rate_histograms", "log_dead_units"]

OVERALL = "overall"
"""The pseudo-site of the unit-weighted figures over all sites: ``dead_fraction/overall``."""


def _check_stats(stats: Any, name: str) -> ActivationStats:
    if not isinstance(stats, ActivationStats):
        raise TypeError(
            f"{name} must be a reluscope ActivationStats (from reluscope.torch.scan or a monitor's .stats), "
            f"got {type(stats).__name__}"
        )
    return stats


def _check_int(value: Any, name: str, low: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{name} must be {kind} ({hint}), got {value!r}")
    return int(value)


def dead_unit_metrics(
    stats: ActivationStats, *, tau: float = 0.1, full_stats: ActivationStats | None = None, dormant: bool = True
) -> dict[str, float]:
    """The scalars :func:`log_dead_units` writes: ``{"dead_fraction/<site>": f, "dormant_fraction/<site>": f, ...}``.

    Parameters
    ----------
    stats
        Statistics whose dead masks are exact (a ``scan``, or a monitor's ``stats``: "fired at least once").
        Sites with no sample yet are left out.
    tau
        Dormant threshold τ >= 0 (0.1 is the usual dormant threshold).
    full_stats
        Where the dormant scores come from (they need |activation| sums of fully counted passes: a monitor's
        ``full_stats``); default ``stats``. Sites with no sample in it get no ``dormant_fraction`` key.
    dormant
        False: no ``dormant_fraction`` keys (e.g. a monitor without fully counted passes).

    Returns
    -------
    dict[str, float]
        Fractions in [0, 1], per site in ``stats.names`` order, then the ``overall`` figures.
    """
    stats = _check_stats(stats, "stats")
    tau = check_tau(tau)
    full = stats if full_stats is None else _check_stats(full_stats, "full_stats")
    out: dict[str, float] = {}
    dead = units = n_dormant = dormant_units = 0
    for name in stats.names:
        if stats.n_samples(name) == 0:
            continue
        mask = stats.dead_mask(name)
        out[f"dead_fraction/{name}"] = float(mask.mean())
        dead += int(mask.sum())
        units += mask.size
        if dormant and name in full.names and full.n_samples(name) > 0:
            dmask = full.dormant_mask(name, tau)
            out[f"dormant_fraction/{name}"] = float(dmask.mean())
            n_dormant += int(dmask.sum())
            dormant_units += dmask.size
    if units:
        out[f"dead_fraction/{OVERALL}"] = dead / units
    if dormant_units:
        out[f"dormant_fraction/{OVERALL}"] = n_dormant / dormant_units
    return out


def fire_rate_histograms(
    stats: ActivationStats, *, bins: int = 20
) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]:
    """``{"fire_rate/<site>": (counts (bins,), edges (bins + 1,))}``: how many units fire on each fraction of the
    samples, ``bins`` equal bins on [0, 1] (``numpy.histogram``; the last bin includes 1). Sites with no sample are
    left out. Needs exact fire counts: a ``scan`` or a monitor's ``full_stats``."""
    stats = _check_stats(stats, "stats")
    bins = _check_int(bins, "bins", 1, "e.g. bins=20")
    out = {}
    for name in stats.names:
        if stats.n_samples(name) == 0:
            continue
        counts, edges = np.histogram(stats.fire_rate(name), bins=int(bins), range=(0.0, 1.0))
        out[f"fire_rate/{name}"] = (counts.astype(np.int64), edges.astype(np.float64))
    return out


def log_dead_units(
    writer_or_run: Any,
    stats: ActivationStats,
    step: int,
    *,
    tau: float = 0.1,
    full_stats: ActivationStats | None = None,
    dormant: bool = True,
    histograms: bool = True,
    bins: int = 20,
) -> dict[str, float]:
    """Log dead/dormant fractions per site, the overall figures and fire-rate histograms at ``step``.

    Parameters
    ----------
    writer_or_run
        A TensorBoard ``SummaryWriter`` (``torch.utils.tensorboard`` or ``tensorboardX``: anything with
        ``add_scalar`` and ``add_histogram_raw``) or a W&B run (``wandb.init(...)``: anything with ``log``).
    stats, tau, full_stats, dormant
        As :func:`dead_unit_metrics`; the histograms use ``full_stats`` (default ``stats``).
    step
        The global step (int >= 0); W&B needs it to be non-decreasing across calls.
    histograms
        Also log ``fire_rate/<site>`` histograms (:func:`fire_rate_histograms` with ``bins``).

    Returns
    -------
    dict[str, float]
        The scalars logged.

    Raises
    ------
    TypeError
        ``writer_or_run`` is neither; ``stats`` is not an ActivationStats.
    ImportError
        A W&B histogram is asked for and ``wandb`` is missing (``pip install 'reluscope[wandb]'``).
    """
    step = _check_int(step, "step", 0, "the global step")
    metrics = dead_unit_metrics(stats, tau=tau, full_stats=full_stats, dormant=dormant)
    hists = fire_rate_histograms(stats if full_stats is None else full_stats, bins=bins) if histograms else {}
    if hasattr(writer_or_run, "add_scalar") and hasattr(writer_or_run, "add_histogram_raw"):
        for key, value in metrics.items():
            writer_or_run.add_scalar(key, value, int(step))
        for key, (counts, edges) in hists.items():
            _tb_histogram(writer_or_run, key, counts, edges, int(step))
        return metrics
    if callable(getattr(writer_or_run, "log", None)):
        payload: dict[str, Any] = dict(metrics)
        if hists:
            wandb = _import_wandb()
            for key, (counts, edges) in hists.items():
                payload[key] = wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))
        writer_or_run.log(payload, step=int(step))
        return metrics
    raise TypeError(
        "writer_or_run must be a TensorBoard SummaryWriter (add_scalar/add_histogram_raw) or a wandb run (log), got "
        f"{type(writer_or_run).__name__}; for other loggers, log the dict from dead_unit_metrics(stats) yourself"
    )


def _tb_histogram(writer: Any, tag: str, counts: NDArray[np.int64], edges: NDArray[np.float64], step: int) -> None:
    """A pre-binned histogram: ``add_histogram_raw`` keeps our [0, 1] bins (``add_histogram`` would re-bin)."""
    n = int(counts.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    writer.add_histogram_raw(
        tag,
        min=float(edges[0]),
        max=float(edges[-1]),
        num=n,
        sum=float((counts * centres).sum()),
        sum_squares=float((counts * centres**2).sum()),
        bucket_limits=edges[1:].tolist(),
        bucket_counts=counts.tolist(),
        global_step=step,
    )


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("logging histograms to a W&B run needs wandb: pip install 'reluscope[wandb]'") from exc
    return wandb

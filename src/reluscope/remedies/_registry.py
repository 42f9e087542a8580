"""The remedy registry: one entry per remedy, asked by the run layer, sweeps, comparisons and the CLI.

A remedy is what a run does about dead units besides its configuration: nothing, ReDo recycling during training,
or training with the leaky counterpart of the activation (:attr:`reluscope.nn.ActivationSpec.leaky`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REMEDY_REGISTRY", "Remedy", "get_remedy"]


@dataclass(frozen=True)
class Remedy:
    """One registry entry.

    Attributes
    ----------
    name : str
        The key used by configs, records and the CLI (``"none"``, ``"redo"``, ``"leaky"``).
    summary : str
        One line for help texts and reports.
    recycles : bool
        True when training runs :class:`~reluscope.remedies.ReDoCallback` on the schedule of
        :func:`~reluscope.remedies.default_redo_until`.
    swaps_activation : bool
        True when the network trains with its activation's leaky counterpart instead (a sweep expresses this as its
        activation axis, so it is not a sweep remedy).
    """

    name: str
    summary: str
    recycles: bool = False
    swaps_activation: bool = False


REMEDY_REGISTRY: dict[str, Remedy] = {
    r.name: r
    for r in (
        Remedy("none", "train as configured (the baseline)"),
        Remedy(
            "redo",
            "recycle dead or tau-dormant units during the first half of training (Sokar et al. 2023)",
            recycles=True,
        ),
        Remedy(
            "leaky", "train with the leaky counterpart of the activation (leaky ReLU for ReLU)", swaps_activation=True
        ),
    )
}
"""Every remedy, by name, in the order tables show them."""


def get_remedy(name: str) -> Remedy:
    """The registry entry of ``name``; an unknown name raises ValueError listing the known ones."""
    remedy = REMEDY_REGISTRY.get(name) if isinstance(name, str) else None
    if remedy is None:
        raise ValueError(f"unknown remedy {name!r}; choose one of {', '.join(REMEDY_REGISTRY)}")
    return remedy

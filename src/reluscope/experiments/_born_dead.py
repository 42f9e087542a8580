"""The born-dead study: P(born dead) vs depth for each width and init variant, closed form vs Monte Carlo."""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_positive
from reluscope.diagnose import born_dead_monte_carlo, born_dead_probability, grid_inputs, wilson_interval
from reluscope.experiments._checks import check_int as _check_int
from reluscope.experiments._checks import dedupe as _dedupe
from reluscope.experiments._tables import csv_text
from reluscope.io import json_writer, write_together
from reluscope.nn.init import check_init
from reluscope.runs import config_from_dict, config_to_dict

__all__ = [
    "BORN_DEAD_COLUMNS",
    "BORN_DEAD_FILE",
    "BornDeadConfig",
    "born_dead_csv",
    "born_dead_study",
    "write_born_dead",
]

BORN_DEAD_FILE = "born_dead.json"


@dataclass(frozen=True)
class BornDeadConfig:
    """The born-dead study: P(born dead) vs depth for each width and init variant.

    ``inits`` are weight inits (he, xavier, xavier_uniform, normal) optionally suffixed ``+bias`` for the same
    init with every bias at ``bias`` (the bias-shifted init). ``inputs`` is ``"point"`` (one random input, the
    setting of the closed form), ``"grid"`` (a ``grid_size`` x ``grid_size`` grid over [-1, 1]^2: dead on all of
    them) or ``"spiral"`` (the 300 spiral points).
    """

    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
    widths: tuple[int, ...] = (2, 3, 4, 8)
    inits: tuple[str, ...] = ("he", "xavier", "he+bias")
    bias: float = 0.1
    n_inits: int = 4000
    inputs: str = "point"
    grid_size: int = 10
    z: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.depths or not self.widths or not self.inits:
            raise ValueError("depths, widths and inits must each list at least one value")
        set_(self, "depths", tuple(sorted(set(_check_int(d, "every depth", 1) for d in self.depths))))
        set_(self, "widths", _dedupe(_check_int(w, "every width", 1) for w in self.widths))
        variants = []
        for name in self.inits:
            base, _, suffix = str(name).lower().partition("+")
            if suffix not in ("", "bias"):
                raise ValueError(f"init variant {name!r}: the only suffix is +bias (e.g. he+bias), got +{suffix}")
            variants.append(check_init(base) + ("+bias" if suffix else ""))
        set_(self, "inits", _dedupe(variants))
        if not math.isfinite(self.bias):
            raise ValueError(f"bias must be finite, got {self.bias}")
        _check_int(self.n_inits, "n_inits", 1)
        _check_int(self.grid_size, "grid_size", 2)
        _check_int(self.seed, "seed", 0)
        check_positive(self.z, "z")
        if self.inputs not in ("point", "grid", "spiral"):
            raise ValueError(f"inputs must be 'point', 'grid' or 'spiral', got {self.inputs!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BornDeadConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are a ValueError."""
        return config_from_dict(cls, d, "born-dead config")


BORN_DEAD_COLUMNS = (
    "init",
    "weight_init",
    "bias",
    "width",
    "depth",
    "closed_form",
    "n",
    "n_dead",
    "p_hat",
    "lo",
    "hi",
    "closed_form_inside",
)


def born_dead_study(config: BornDeadConfig) -> list[dict[str, Any]]:
    """P(born dead) vs depth, closed form vs Monte Carlo, for every (init variant, width) of ``config``.

    One Monte Carlo run of ``n_inits`` networks of the largest depth per (variant, width) gives every depth at
    once: a depth-d net is the first d layers of a deeper one, so it is dead when its first all-zero layer is
    <= d (``first_dead_layer`` of :func:`~reluscope.diagnose.born_dead_monte_carlo`). Each variant and width gets
    its own random stream (seeded from ``seed``, the width and the variant name), so rows do not depend on which
    others are computed.

    Returns tidy rows with the columns of ``BORN_DEAD_COLUMNS``: ``closed_form`` is
    :func:`~reluscope.diagnose.born_dead_probability` (exact for one input and zero biases; for a bias-shifted
    init or several inputs it is the zero-bias one-input reference), ``p_hat`` = n_dead / n, ``lo``/``hi`` the
    Wilson interval at ``z`` sigmas and ``closed_form_inside`` whether the closed form lies in it.
    """
    inputs = _born_dead_inputs(config)
    depth = max(config.depths)
    rows = []
    for variant in config.inits:
        base, _, suffix = variant.partition("+")
        bias = config.bias if suffix else 0.0
        for width in config.widths:
            rng = np.random.default_rng([config.seed, width, zlib.crc32(variant.encode())])
            est = born_dead_monte_carlo(
                depth, width, n_inits=config.n_inits, init=base, bias=bias, inputs=inputs, seed=rng
            )
            cumulative = np.cumsum(est.first_dead_layer)
            for d in config.depths:
                k = int(cumulative[d - 1])
                lo, hi = wilson_interval(k, est.n, config.z)
                closed = born_dead_probability(d, width)
                rows.append(
                    {
                        "init": variant,
                        "weight_init": base,
                        "bias": bias,
                        "width": width,
                        "depth": d,
                        "closed_form": closed,
                        "n": est.n,
                        "n_dead": k,
                        "p_hat": k / est.n,
                        "lo": lo,
                        "hi": hi,
                        "closed_form_inside": bool(lo <= closed <= hi),
                    }
                )
    return rows


def _born_dead_inputs(config: BornDeadConfig) -> NDArray[np.float64] | None:
    if config.inputs == "point":
        return None
    if config.inputs == "grid":
        return grid_inputs(config.grid_size)
    from reluscope.data import spiral

    X, _ = spiral(seed=config.seed)
    return X.astype(np.float64, copy=False)


def born_dead_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`born_dead_study` as CSV text."""
    return csv_text(rows, BORN_DEAD_COLUMNS)


def write_born_dead(
    out: str | os.PathLike[str], config: BornDeadConfig, rows: list[dict[str, Any]], command: str | None
) -> None:
    """Write ``born_dead.json`` (config, rows, command) and ``born_dead.csv`` into ``out``, together
    (:func:`reluscope.io.write_together`: both are replaced, or neither)."""
    record = {"kind": "born-dead", "config": config.to_dict(), "rows": rows, "command": command}
    csv_bytes = born_dead_csv(rows).encode()

    def write_csv(f: IO[Any]) -> None:
        f.write(csv_bytes)

    write_together(out, {BORN_DEAD_FILE: json_writer(record), "born_dead.csv": write_csv})

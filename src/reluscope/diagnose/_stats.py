"""Streaming, mergeable per-unit activation statistics (backend-agnostic: numpy arrays in, plain data out).

Per layer (or *site*: any named place a nonlinearity is applied) and per unit, :class:`ActivationStats` keeps

==================  ================================================================================
``n_samples``       samples seen (one count per site: every unit of a site sees the same samples)
``fire_count``      samples on which the unit fired (pre-activation > 0), int64
``abs_sum``         sum of |activation|, float64, kept as a double-double (hi, lo) pair so merging is
                    independent of the order (see below)
``max_pre``         largest pre-activation seen, float64: how far a dead unit is from firing
==================  ================================================================================

Memory is O(units) whatever the dataset size. Convolutional inputs ``(N, C, H, W)`` are reduced per channel: a
channel fires on a sample when any of its positions is > 0, its |activation| sum runs over all positions, and a
per-position fire count ``(C, H, W)`` is kept as well.

Merging is a sum of counts and a maximum of maxima, hence exact. The float sums are added with an error-free
transformation (TwoSum) into a (hi, lo) pair, so ``a.merge(b)`` and ``b.merge(a)`` — or any grouping of many
partitions — agree to ~1e-32 relative, which rounds to the same float64 in practice. Sums *within* one batch are
BLAS column sums in the batch's dtype (chunks of <= 4096 rows), so stats from differently sized batches agree to
~1e-13 relative for float64 input and ~1e-6 for float32.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import NonFiniteError, check_tau

__all__ = ["ActivationStats", "renormalise", "two_sum_into"]

_FORMAT = "reluscope.ActivationStats"
_AXIS_SOURCES = ("linear", "conv", "rule", "unbatched", "user")
_VERSION = 1
# Row chunks keep temporaries (a bool mask, a float buffer) at most this many elements, and at most 4096 rows
# (a uint16 count holds 65535; float32 column sums stay accurate to ~1e-6).
_CHUNK_ELEMENTS = 1 << 20
_MAX_CHUNK_ROWS = 4096

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass
class _Site:
    """The counters of one site. ``shape`` is the per-sample shape: ``(U,)`` dense or ``(C, H, W)`` conv."""

    shape: tuple[int, ...]
    n_samples: int
    fire_count: I64
    abs_sum: F64
    abs_sum_lo: F64
    max_pre: F64
    position_fire_count: I64 | None
    # where the units came from (torch adapter; None for numpy layers): see ActivationStats.unit_axis
    unit_axis: int | None = None
    axis_source: str | None = None
    sample_shape: tuple[int, ...] | None = None

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _Site:
        units = shape[0]
        return cls(
            shape=shape,
            n_samples=0,
            fire_count=np.zeros(units, np.int64),
            abs_sum=np.zeros(units, np.float64),
            abs_sum_lo=np.zeros(units, np.float64),
            max_pre=np.full(units, -np.inf),
            position_fire_count=np.zeros(shape, np.int64) if len(shape) == 3 else None,
        )

    @property
    def kind(self) -> str:
        return "conv" if len(self.shape) == 3 else "dense"

    @property
    def units(self) -> int:
        return self.shape[0]

    @property
    def positions(self) -> int:
        return 1 if len(self.shape) == 1 else self.shape[1] * self.shape[2]

    def meta(self) -> dict[str, Any]:
        if self.unit_axis is None:
            return {}
        return {
            "unit_axis": self.unit_axis,
            "axis_source": self.axis_source,
            "sample_shape": None if self.sample_shape is None else list(self.sample_shape),
        }


def two_sum_into(hi: F64, lo: F64, x: F64) -> None:
    """(hi, lo) += x exactly up to the rounding of ``lo`` (Knuth's TwoSum, elementwise, in place).

    hi, lo, x: float64 arrays of one shape (units,). The compensated sum behind :class:`ActivationStats`' exact,
    order-independent |activation| totals; shared with :func:`reluscope.torch.all_reduce`. Knuth, TAOCP vol. 2,
    4.2.2, Theorem B.
    """
    s = hi + x
    bb = s - hi
    err = (hi - (s - bb)) + (x - bb)
    hi[...] = s
    lo += err


def renormalise(hi: F64, lo: F64) -> None:
    """Make ``hi`` the rounded value of hi + lo and ``lo`` the exact remainder (FastTwoSum, |hi| >= |lo|).

    After this the pair is canonical: equal totals give equal (hi, lo), whatever order the parts came in.
    hi, lo: float64 arrays of one shape, modified in place. Dekker 1971 (FastTwoSum).
    """
    s = hi + lo
    err = lo - (s - hi)
    hi[...] = s
    lo[...] = err


def _counters(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The statistics of a to_dict() result without the descriptive unit-axis metadata (what == compares)."""
    meta = {"unit_axis", "axis_source", "sample_shape"}
    return [{k: v for k, v in site.items() if k not in meta} for site in d["sites"]]


def _describe(x: Any) -> str:
    return f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


class ActivationStats:
    """Per-unit firing statistics streamed over batches; O(units) memory, exactly mergeable, JSON round trip.

    Examples
    --------
    >>> stats = ActivationStats()
    >>> for xb in batches:
    ...     for name, (pre, act) in zip(net.hidden_names, net.hidden_outputs(xb)):
    ...         stats.update(name, pre, act)
    >>> stats.dead_fraction("hidden1"), stats.summary()
    """

    __hash__ = None  # type: ignore[assignment]  # mutable, compares by value

    def __init__(self) -> None:
        self._sites: dict[str, _Site] = {}
        # work buffers, allocated once per (site, dtype) and reused: not part of the statistics
        self._buffers: dict[tuple[str, str], tuple[NDArray[np.bool_], NDArray[Any], NDArray[Any]]] = {}

    # Streaming ------------------------------------------------------------------------------------------------
    def update(
        self,
        name: str,
        pre: NDArray[Any],
        act: NDArray[Any] | None = None,
        *,
        assume_nonnegative: bool = False,
    ) -> None:
        """Add one batch of site ``name``.

        Parameters
        ----------
        name
            Layer/site name, e.g. ``"hidden1"``.
        pre
            Pre-activations, ``(N, U)`` for a dense layer or ``(N, C, H, W)`` for a conv layer (float32 or
            float64; kept in its dtype, only the per-unit results are float64). A unit fires where ``pre > 0``.
        act
            Activations, same shape as ``pre``. ``None`` derives ReLU's ``max(pre, 0)`` (e.g. when an in-place
            ReLU overwrote them).
        assume_nonnegative
            Promise that ``act >= 0`` (ReLU, sigmoid): skips the ``|act|`` pass. Wrong promises give wrong sums.

        Raises
        ------
        ValueError
            Wrong number of dimensions, a per-sample shape different from earlier batches of ``name``, ``act``
            not shaped like ``pre``, or NaN/inf values (nothing is recorded then).
        TypeError
            Non-string name, non-numeric arrays.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string such as 'hidden1', got {name!r}")
        pre = self._as_float(pre, "pre", name)
        if act is not None:
            act = self._as_float(act, "act", name)
            if act.shape != pre.shape:
                raise ValueError(
                    f"{name}: act must have the same shape as pre, got act {act.shape} and pre {pre.shape}; "
                    "pass the activation of the same batch (or act=None to derive ReLU's max(pre, 0))"
                )
        shape = tuple(int(s) for s in pre.shape[1:])
        site = self._sites.get(name)
        if site is not None and site.shape != shape:
            raise ValueError(
                f"{name}: per-sample shape changed from {site.shape} to {shape} (batch shape {pre.shape}); "
                "a site must keep its width between batches — did you pass another layer's output under this name?"
            )
        if 0 in shape:
            raise ValueError(f"{name}: pre has no units (shape {pre.shape}); pass at least one unit")
        n = pre.shape[0]
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is reported just below
            counts, abs_sum, max_pre, pos_counts = self._reduce(name, shape, pre, act, assume_nonnegative)
        if n and not (np.isfinite(max_pre).all() and np.isfinite(abs_sum).all()):
            what = "pre" if not np.isfinite(max_pre).all() or act is None else "act"
            raise NonFiniteError(
                f"{name}: {what} contains NaN or inf values; nothing was recorded for this batch. The network has "
                "probably diverged (lower the learning rate) or its input holds NaN",
                site=name,
            )
        if site is None:
            site = self._sites[name] = _Site.empty(shape)
        site.n_samples += n
        site.fire_count += counts
        two_sum_into(site.abs_sum, site.abs_sum_lo, abs_sum)
        renormalise(site.abs_sum, site.abs_sum_lo)
        np.maximum(site.max_pre, max_pre, out=site.max_pre)
        if site.position_fire_count is not None and pos_counts is not None:
            site.position_fire_count += pos_counts

    @staticmethod
    def _as_float(x: Any, what: str, name: str) -> NDArray[Any]:
        if not isinstance(x, np.ndarray):
            if isinstance(x, list | tuple):
                x = np.asarray(x)
            else:
                raise TypeError(
                    f"{name}: {what} must be a numpy array, got {type(x).__name__}; convert it with np.asarray "
                    "(torch: tensor.detach().cpu().numpy())"
                )
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name}: {what} must hold numbers, got dtype {x.dtype}")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        if x.ndim not in (2, 4):
            hint = f"; use {what}.reshape(1, -1) for one sample" if x.ndim == 1 else ""
            if x.ndim == 3:
                hint = f"; for sequences (N, L, C) pass {what}.reshape(-1, C) (one row per position)"
            raise ValueError(
                f"{name}: {what} must be 2-D (N, units) or 4-D (N, C, H, W), got {x.ndim}-D {_describe(x)}{hint}"
            )
        arr: NDArray[Any] = x
        return arr

    def _work(
        self, name: str, rows: int, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[NDArray[np.bool_], NDArray[Any], NDArray[Any]]:
        """(mask, float buffer, ones) work arrays for ``rows`` rows, allocated once per site and dtype."""
        key = (name, dtype.str)
        buf = self._buffers.get(key)
        if buf is None or buf[0].shape[0] < rows or buf[0].shape[1:] != shape:
            buf = (np.empty((rows, *shape), np.bool_), np.empty((rows, *shape), dtype), np.ones(rows, dtype))
            self._buffers[key] = buf
        return buf[0][:rows], buf[1][:rows], buf[2][:rows]

    def _reduce(
        self,
        name: str,
        shape: tuple[int, ...],
        pre: NDArray[Any],
        act: NDArray[Any] | None,
        nonnegative: bool,
    ) -> tuple[I64, F64, F64, I64 | None]:
        """Batch reductions, in row chunks that keep temporaries small: fire counts, |act| sums, maxima."""
        n = pre.shape[0]
        units = shape[0]
        conv = len(shape) == 3
        chunk = max(1, min(_MAX_CHUNK_ROWS, _CHUNK_ELEMENTS // math.prod(shape)))
        if n == 0:
            empty_pos = np.zeros(shape, np.int64) if conv else None
            return np.zeros(units, np.int64), np.zeros(units), np.full(units, -np.inf), empty_pos
        mask_buf, float_buf, ones_buf = self._work(name, min(chunk, n), shape, pre.dtype)
        total: list[Any] | None = None
        for start in range(0, n, chunk):
            p = pre[start : start + chunk]
            rows = p.shape[0]
            mask = mask_buf[:rows]
            np.greater(p, 0, out=mask)
            if act is None:
                a = np.multiply(p, mask, out=float_buf[:rows])  # ReLU: max(pre, 0)
            elif nonnegative:
                a = act[start : start + chunk]
            else:
                a = np.abs(act[start : start + chunk], out=float_buf[:rows] if act.dtype == pre.dtype else None)
            if conv:
                counts = np.count_nonzero(mask.reshape(rows, units, -1).any(axis=2), axis=0)
                pos = np.add.reduce(mask.view(np.uint8), axis=0, dtype=np.uint16)
                sums = a.reshape(rows, units, -1).sum(axis=(0, 2), dtype=np.float64)
                maxima = p.reshape(rows, units, -1).max(axis=(0, 2))
            else:
                # uint16 sums of the mask bytes are ~4x faster than count_nonzero(axis=0) and exact (rows < 65536);
                # the |act| column sums are a BLAS gemv (ones @ a) in the input dtype, ~5x faster than
                # a.sum(axis=0, dtype=float64); chunks of <= 4096 rows keep its relative error ~1e-6 in float32
                counts = np.add.reduce(mask.view(np.uint8), axis=0, dtype=np.uint16)
                pos = None
                sums = np.dot(ones_buf[:rows], a) if a.dtype == ones_buf.dtype else a.sum(axis=0)
                maxima = p.max(axis=0)
            if total is None:  # first chunk (usually the only one): no extra copies
                total = [
                    counts.astype(np.int64),
                    sums.astype(np.float64),
                    maxima.astype(np.float64),
                    None if pos is None else pos.astype(np.int64),
                ]
            else:
                total[0] += counts
                total[1] += sums
                np.maximum(total[2], maxima, out=total[2])
                if pos is not None:
                    total[3] += pos
        assert total is not None
        return total[0], total[1], total[2], total[3]

    def merge(self, other: ActivationStats) -> ActivationStats:
        """Add ``other``'s counters into these (in place; returns ``self`` for chaining).

        Counts and sample numbers add, maxima take the maximum, |activation| sums add as double-doubles: the
        result does not depend on the order in which partial stats are merged. Sites only in ``other`` are
        appended in its order. Raises ValueError (and changes nothing) if a shared site has another shape.
        """
        if not isinstance(other, ActivationStats):
            raise TypeError(f"can only merge another ActivationStats, got {type(other).__name__}")
        if other is self:
            other = other.copy()
        for name, theirs in other._sites.items():
            mine = self._sites.get(name)
            if mine is not None and mine.shape != theirs.shape:
                raise ValueError(
                    f"cannot merge site {name!r}: shape {mine.shape} here but {theirs.shape} in the other stats; "
                    "were they collected from different models?"
                )
        for name, theirs in other._sites.items():
            mine = self._sites.get(name)
            if mine is None:
                self._sites[name] = copy.deepcopy(theirs)
                continue
            if mine.unit_axis is None:
                mine.unit_axis, mine.axis_source = theirs.unit_axis, theirs.axis_source
                mine.sample_shape = theirs.sample_shape
            elif theirs.unit_axis is not None and theirs.sample_shape != mine.sample_shape:
                mine.sample_shape = None  # e.g. sequences of another length: positions per sample vary
            mine.n_samples += theirs.n_samples
            mine.fire_count += theirs.fire_count
            two_sum_into(mine.abs_sum, mine.abs_sum_lo, theirs.abs_sum)
            mine.abs_sum_lo += theirs.abs_sum_lo
            renormalise(mine.abs_sum, mine.abs_sum_lo)
            np.maximum(mine.max_pre, theirs.max_pre, out=mine.max_pre)
            if mine.position_fire_count is not None and theirs.position_fire_count is not None:
                mine.position_fire_count += theirs.position_fire_count
        return self

    def copy(self) -> ActivationStats:
        """An independent deep copy."""
        new = ActivationStats()
        new._sites = copy.deepcopy(self._sites)
        return new

    # Views ----------------------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Site names in order of first update."""
        return list(self._sites)

    def __contains__(self, name: object) -> bool:
        return name in self._sites

    def __len__(self) -> int:
        return len(self._sites)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActivationStats):
            return NotImplemented
        return _counters(self.to_dict()) == _counters(other.to_dict())

    def __repr__(self) -> str:
        parts = [f"{n}: {s.units} {s.kind} units, {self.describe_samples(n)}" for n, s in self._sites.items()]
        return f"ActivationStats({'; '.join(parts)})"

    def _site(self, name: str) -> _Site:
        try:
            return self._sites[name]
        except KeyError:
            known = ", ".join(map(repr, self._sites)) or "none yet"
            raise KeyError(f"no statistics for site {name!r}; known sites: {known}") from None

    def n_samples(self, name: str) -> int:
        """Samples seen at ``name``."""
        return self._site(name).n_samples

    def n_units(self, name: str) -> int:
        """Units (channels for conv sites) at ``name``."""
        return self._site(name).units

    def unit_axis(self, name: str) -> int | None:
        """The dimension of the site's activation tensor (batch = 0) holding its units, as chosen by the torch
        adapter (``reluscope.torch``); None for statistics fed through :meth:`update`, where ``pre`` is already
        ``(N, U)`` or ``(N, C, H, W)``."""
        return self._site(name).unit_axis

    def axis_source(self, name: str) -> str | None:
        """Why that axis: ``"linear"`` (a Linear/matmul produced the values: last dim), ``"conv"`` (a Conv: dim
        1), ``"rule"`` (no producer found: the fallback rule), ``"user"`` (an override); None without metadata."""
        return self._site(name).axis_source

    def sample_shape(self, name: str) -> tuple[int, ...] | None:
        """Dimensions besides the batch that count as samples at this site: ``(9,)`` when each input gives 9 token
        positions, ``()`` when a sample is one input; None when unknown or varying (sequences of any length)."""
        return self._site(name).sample_shape

    def describe_samples(self, name: str) -> str:
        """What ``n_samples(name)`` counts, in words: ``"64 samples"`` or ``"64×9 positions"`` (inputs × token
        positions each)."""
        site = self._site(name)
        n = site.n_samples
        shape = site.sample_shape
        if site.unit_axis is None or shape == ():
            return f"{n} samples"
        if shape is None:
            return f"{n} positions (every index besides the units is a sample)"
        per = math.prod(shape)
        if per and n % per == 0:
            return f"{n // per}×{'×'.join(map(str, shape))} positions"
        return f"{n} positions"

    def kind(self, name: str) -> str:
        """``"dense"`` or ``"conv"``."""
        return self._site(name).kind

    def fire_count(self, name: str) -> I64:
        """(units,) int64: samples on which each unit fired (a copy)."""
        return self._site(name).fire_count.copy()

    def max_preactivation(self, name: str) -> F64:
        """(units,) float64: largest pre-activation seen (-inf before any sample); < 0 means never near firing."""
        return self._site(name).max_pre.copy()

    def dead_mask(self, name: str) -> NDArray[np.bool_]:
        """(units,) bool: True for units that fired on no sample."""
        mask: NDArray[np.bool_] = self._site(name).fire_count == 0
        return mask

    def dead_fraction(self, name: str) -> float:
        """Fraction of the site's units that are dead."""
        return float(np.mean(self.dead_mask(name)))

    def fire_rate(self, name: str) -> F64:
        """(units,) float64 fire rate: the fraction of samples on which the unit fired (0 if no samples)."""
        site = self._site(name)
        if site.n_samples == 0:
            return np.zeros(site.units)
        return site.fire_count / float(site.n_samples)

    def frequency(self, name: str) -> F64:
        """(units,) float64: the :meth:`fire_rate` (an alias kept for scripts written against its first name)."""
        return self.fire_rate(name)

    def position_fire_rate(self, name: str) -> F64:
        """(C, H, W) float64: per-position fire rate of a conv site."""
        site = self._site(name)
        if site.position_fire_count is None:
            raise ValueError(f"{name} is a dense site; per-position fire rates exist only for (N, C, H, W) inputs")
        return site.position_fire_count / float(max(site.n_samples, 1))

    def position_frequency(self, name: str) -> F64:
        """(C, H, W) float64: :meth:`position_fire_rate` under its earlier name."""
        return self.position_fire_rate(name)

    def mean_abs_activation(self, name: str) -> F64:
        """(units,) float64: mean |activation| per sample (and per position for conv sites)."""
        site = self._site(name)
        total = site.abs_sum + site.abs_sum_lo
        if site.n_samples == 0:
            return np.zeros(site.units)
        return total / float(site.n_samples * site.positions)

    def dormant_scores(self, name: str) -> F64:
        """(units,) Sokar et al. (2023) scores: a unit's mean |activation| over the layer's mean of those.

        Scores average 1 over a layer; a layer that is zero everywhere scores 0 everywhere (not NaN).
        """
        mean_abs = self.mean_abs_activation(name)
        layer_mean = float(mean_abs.mean())
        if layer_mean == 0.0:
            return np.zeros_like(mean_abs)
        return mean_abs / layer_mean

    def dormant_mask(self, name: str, tau: Any = 0.1) -> NDArray[np.bool_]:
        """(units,) bool: τ-dormant units, score <= tau (tau=0 is "never active": dead for ReLU)."""
        return self.dormant_scores(name) <= check_tau(tau)

    def nearly_dead(self, name: str, threshold: float = 0.01) -> NDArray[np.bool_]:
        """(units,) bool: units that fired, but on fewer than ``threshold`` of the samples."""
        if not (isinstance(threshold, int | float) and 0 <= threshold <= 1):
            raise ValueError(f"threshold must be a fire rate in [0, 1], got {threshold!r}; e.g. 0.01 for 1%")
        site = self._site(name)
        return (site.fire_count > 0) & (self.fire_rate(name) < threshold)

    def all_dead(self, name: str) -> bool:
        """True when the site was zero on every sample (every unit dead): everything downstream is constant."""
        site = self._site(name)
        return site.n_samples > 0 and not bool(site.fire_count.any())

    def summary(self, tau: float = 0.1, nearly_dead_threshold: float = 0.01) -> list[dict[str, Any]]:
        """One plain dict per site, in order: name, kind, units, n_samples, dead, dead_fraction, nearly_dead,
        median_fire_rate, dormant (count at ``tau``), dormant_fraction, tau, all_dead. The unit axis of torch
        sites is in :meth:`unit_axis`, :meth:`axis_source` and :meth:`describe_samples`."""
        rows = []
        for name, site in self._sites.items():
            dead = int(np.count_nonzero(site.fire_count == 0))
            dormant = int(np.count_nonzero(self.dormant_mask(name, tau)))
            rows.append(
                {
                    "name": name,
                    "kind": site.kind,
                    "units": site.units,
                    "n_samples": site.n_samples,
                    "dead": dead,
                    "dead_fraction": dead / site.units,
                    "nearly_dead": int(np.count_nonzero(self.nearly_dead(name, nearly_dead_threshold))),
                    "median_fire_rate": float(np.median(self.fire_rate(name))),
                    "dormant": dormant,
                    "dormant_fraction": dormant / site.units,
                    "tau": float(tau),
                    "all_dead": self.all_dead(name),
                }
            )
        return rows

    def worst_units(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` least active units over all sites: lowest fire rate first, then lowest max pre-activation
        (the dead unit furthest from firing first). Each a dict: layer, unit, fire_rate, max_pre, dormant_score."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an integer >= 0, got {k!r}")
        rows: list[tuple[float, float, int, int]] = []
        names = list(self._sites)
        for li, name in enumerate(names):
            freq = self.fire_rate(name)
            max_pre = self._sites[name].max_pre
            take = min(k, freq.size)
            order = np.lexsort((max_pre, freq))[:take]
            rows.extend((float(freq[u]), float(max_pre[u]), li, int(u)) for u in order)
        rows.sort()
        out = []
        scores: dict[str, NDArray[np.float64]] = {}  # one dormant-score pass per layer, not per row
        for freq_u, max_u, li, u in rows[:k]:
            name = names[li]
            if name not in scores:
                scores[name] = self.dormant_scores(name)
            out.append(
                {
                    "layer": name,
                    "unit": u,
                    "fire_rate": freq_u,
                    "max_pre": max_u if math.isfinite(max_u) else None,
                    "dormant_score": float(scores[name][u]),
                }
            )
        return out

    # Serialisation --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``json.dumps`` works, no NaN/inf); :meth:`from_dict` rebuilds the stats exactly."""
        sites = []
        for name, s in self._sites.items():
            sites.append(
                {
                    "name": name,
                    "shape": list(s.shape),
                    "n_samples": s.n_samples,
                    "fire_count": s.fire_count.tolist(),
                    "abs_sum": s.abs_sum.tolist(),
                    "abs_sum_lo": s.abs_sum_lo.tolist(),
                    "max_pre": [v if math.isfinite(v) else None for v in s.max_pre.tolist()],
                    "position_fire_count": (
                        None if s.position_fire_count is None else s.position_fire_count.ravel().tolist()
                    ),
                    **s.meta(),
                }
            )
        return {"format": _FORMAT, "version": _VERSION, "sites": sites}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActivationStats:
        """Rebuild stats written by :meth:`to_dict`; ValueError on anything malformed."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(
                f"not an ActivationStats dict (expected format {_FORMAT!r}); build it with ActivationStats.to_dict()"
            )
        if d.get("version") != _VERSION:
            raise ValueError(
                f"unsupported ActivationStats version {d.get('version')!r}; this reluscope reads {_VERSION}"
            )
        stats = cls()
        for i, raw in enumerate(d.get("sites", [])):
            try:
                name = str(raw["name"])
                shape = tuple(_whole(v, "shape") for v in raw["shape"])
                if len(shape) not in (1, 3) or min(shape) <= 0:
                    raise ValueError(f"shape must be (units,) or (C, H, W), got {shape}")
                units = shape[0]
                site = _Site(
                    shape=shape,
                    n_samples=_whole(raw["n_samples"], "n_samples"),
                    fire_count=_int_array(raw["fire_count"], "fire_count"),
                    abs_sum=np.asarray(raw["abs_sum"], dtype=np.float64),
                    abs_sum_lo=np.asarray(raw["abs_sum_lo"], dtype=np.float64),
                    max_pre=np.array([-np.inf if v is None else v for v in raw["max_pre"]], dtype=np.float64),
                    position_fire_count=(
                        None
                        if raw["position_fire_count"] is None
                        else _int_array(raw["position_fire_count"], "position_fire_count").reshape(shape)
                    ),
                )
                if raw.get("unit_axis") is not None:  # optional (added later): old dicts load without it
                    site.unit_axis = int(raw["unit_axis"])
                    site.axis_source = str(raw.get("axis_source"))
                    if site.axis_source not in _AXIS_SOURCES:
                        raise ValueError(f"axis_source must be one of {_AXIS_SOURCES}, got {site.axis_source!r}")
                    ss = raw.get("sample_shape")
                    site.sample_shape = None if ss is None else tuple(int(v) for v in ss)
                for field_name in ("fire_count", "abs_sum", "abs_sum_lo", "max_pre"):
                    if getattr(site, field_name).shape != (units,):
                        raise ValueError(f"{field_name} must have {units} entries")
                if (len(shape) == 3) != (site.position_fire_count is not None):
                    raise ValueError("position_fire_count must be given exactly for (C, H, W) sites")
                if not (np.isfinite(site.abs_sum).all() and np.isfinite(site.abs_sum_lo).all()):
                    raise ValueError("abs_sum must be finite")
                if site.n_samples < 0 or (site.fire_count < 0).any() or (site.fire_count > site.n_samples).any():
                    raise ValueError("fire counts must lie in [0, n_samples]")
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
                raise ValueError(
                    f"ActivationStats dict: site {i} is malformed ({what}); write it with ActivationStats.to_dict()"
                ) from None
            stats._sites[name] = site
        return stats


def _whole(value: Any, what: str) -> int:
    """An exact integer from a stats dict: a float (2.5, 1e400 read as inf) is an error, never truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    exact = int(value)
    if not -(2**63) <= exact < 2**63:
        raise ValueError(f"{what} must fit in 64 bits, got {exact}")
    return exact


def _int_array(values: Any, what: str) -> NDArray[np.int64]:
    """An int64 array from a list of exact integers; floats and integers beyond 64 bits are errors."""
    a = np.asarray(values)
    if a.dtype.kind not in "iu" or (a.dtype.kind == "u" and a.size and int(a.max()) >= 2**63):
        raise TypeError(f"{what} must hold 64-bit integers, got dtype {a.dtype}")
    return a.astype(np.int64)

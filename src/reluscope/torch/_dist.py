"""Merge ActivationStats across ``torch.distributed`` ranks: sums of counts, maxima of maxima, exactly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from reluscope.diagnose import ActivationStats, renormalise, two_sum_into

__all__ = ["all_reduce"]


def _device(group: Any) -> torch.device:
    backend = dist.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_bytes(payload: bytes, group: Any, device: torch.device, world: int) -> list[bytes]:
    """all_gather of variable-length byte strings (JSON, never pickle)."""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    longest = int(max(int(s.item()) for s in sizes))
    buf = torch.zeros(max(longest, 1), dtype=torch.uint8, device=device)
    buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else buf[:0]
    bufs = [torch.zeros_like(buf) for _ in range(world)]
    dist.all_gather(bufs, buf, group=group)
    return [bytes(b[: int(s.item())].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes, strict=True)]


def all_reduce(stats: ActivationStats, group: Any = None) -> ActivationStats:
    """Merge the statistics of every rank of ``group``; every rank gets the same, new, ActivationStats.

    Counts (samples, fires, per-position fires) are summed and maxima maximised with ``all_reduce``; the
    |activation| sums are gathered and added as double-doubles in rank order, exactly as
    :meth:`ActivationStats.merge` does. So the result equals one process scanning all ranks' data (each rank
    scanning its shard of the batches). Sites seen on only some ranks (a branch one rank never took) are kept,
    in the order rank 0, rank 1, ... first saw them. Call it on every rank (it is a collective).

    Parameters
    ----------
    stats
        This rank's statistics, e.g. from :func:`reluscope.torch.scan` on its shard (not modified).
    group
        A process group (default: the world).

    Raises
    ------
    RuntimeError
        ``torch.distributed`` is not initialised.
    ValueError
        A site has different shapes on different ranks (raised on every rank, so no rank hangs).
    """
    if not isinstance(stats, ActivationStats):
        raise TypeError(f"stats must be an ActivationStats, got {type(stats).__name__}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "torch.distributed is not initialised; call torch.distributed.init_process_group(...) on every rank "
            "first (or merge stats in one process with ActivationStats.merge)"
        )
    device = _device(group)
    world = dist.get_world_size(group)
    mine = {site["name"]: site for site in stats.to_dict()["sites"]}

    # 1. agree on the sites: the union over ranks, in rank order
    layout = json.dumps([[name, site["shape"]] for name, site in mine.items()]).encode()
    shapes: dict[str, list[int]] = {}
    conflicts: list[str] = []
    for blob in _gather_bytes(layout, group, device, world):
        for name, shape in json.loads(blob):
            if name not in shapes:
                shapes[name] = shape
            elif shapes[name] != shape and name not in conflicts:
                conflicts.append(name)
    if conflicts:
        raise ValueError(
            f"sites {conflicts} have different shapes on different ranks; every rank must run the same model "
            "(and per_position=False when the spatial size differs)"
        )

    # 2. one flat buffer per kind of counter, in the agreed site order
    ints: list[np.ndarray] = []
    maxima: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    for name, shape in shapes.items():
        units = shape[0]
        site = mine.get(name)
        positions = int(np.prod(shape)) if len(shape) == 3 else 0
        if site is None:
            ints.append(np.zeros(1 + units + positions, np.int64))
            maxima.append(np.full(units, -np.inf))
            sums.append(np.zeros(2 * units))
            continue
        pos = site["position_fire_count"] or []
        ints.append(np.asarray([site["n_samples"], *site["fire_count"], *pos], dtype=np.int64))
        maxima.append(np.array([-np.inf if v is None else v for v in site["max_pre"]], dtype=np.float64))
        sums.append(np.asarray([*site["abs_sum"], *site["abs_sum_lo"]], dtype=np.float64))
    int_buf = torch.from_numpy(np.concatenate(ints)).to(device)
    max_buf = torch.from_numpy(np.concatenate(maxima)).to(device)
    sum_buf = torch.from_numpy(np.concatenate(sums)).to(device)
    dist.all_reduce(int_buf, op=dist.ReduceOp.SUM, group=group)
    dist.all_reduce(max_buf, op=dist.ReduceOp.MAX, group=group)
    gathered = [torch.empty_like(sum_buf) for _ in range(world)]
    dist.all_gather(gathered, sum_buf, group=group)
    all_int = int_buf.cpu().numpy()
    all_max = max_buf.cpu().numpy()
    all_sums = [g.cpu().numpy() for g in gathered]

    # 3. unpack; double-double sums added rank by rank with ActivationStats' own arithmetic
    sites = []
    io = mo = so = 0
    for name, shape in shapes.items():
        units = shape[0]
        positions = int(np.prod(shape)) if len(shape) == 3 else 0
        counts = all_int[io : io + 1 + units + positions]
        io += 1 + units + positions
        max_pre = all_max[mo : mo + units]
        mo += units
        hi = np.zeros(units)
        lo = np.zeros(units)
        for rank_sums in all_sums:
            two_sum_into(hi, lo, rank_sums[so : so + units].copy())
            lo += rank_sums[so + units : so + 2 * units]
            renormalise(hi, lo)
        so += 2 * units
        sites.append(
            {
                "name": name,
                "shape": shape,
                "n_samples": int(counts[0]),
                "fire_count": counts[1 : 1 + units].tolist(),
                "abs_sum": hi.tolist(),
                "abs_sum_lo": lo.tolist(),
                "max_pre": [float(v) if np.isfinite(v) else None for v in max_pre],
                "position_fire_count": counts[1 + units :].tolist() if positions else None,
            }
        )
    d = stats.to_dict()
    d["sites"] = sites
    return ActivationStats.from_dict(d)

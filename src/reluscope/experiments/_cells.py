"""Running a grid of cells: where a cell's record lives, how many workers, cells run in this process or by joblib.

Shared by the sweep (:func:`reluscope.experiments.run_sweep`) and the continual benchmark
(:func:`reluscope.continual.run_continual`): each writes every cell's record as soon as it finishes, so an
interrupted grid resumes with the missing cells.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["cell_path", "resolve_jobs", "run_cells"]

T = TypeVar("T")


def cell_path(out: Path, key: str) -> Path:
    """``out/cells/<key>.json``: where the record of the cell with ``key`` is written."""
    return out / "cells" / f"{key}.json"


def resolve_jobs(jobs: Any) -> int:
    """Worker processes for ``jobs``: None = the cores joblib sees (affinity and cgroup limits included), -1 = all
    the workers of the active joblib backend, else a positive int; anything else is a ValueError."""
    if jobs is None:
        import joblib

        return max(1, int(joblib.cpu_count()))
    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs == 0 or jobs < -1:
        raise ValueError(f"jobs must be a positive number of processes or -1 (all cores), got {jobs!r}")
    return int(jobs)


def run_cells(todo: Sequence[dict[str, Any]], run_one: Callable[[dict[str, Any]], T], n_jobs: int) -> Iterator[T]:
    """Yield ``run_one(cell)`` for every cell of ``todo`` as it finishes: in this process for one job, else in
    joblib workers, unordered (``run_one`` must then pickle: a module-level function or a ``functools.partial``)."""
    if not todo:
        return
    if n_jobs == 1:
        for cell in todo:
            yield run_one(cell)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    yield from parallel(delayed(run_one)(cell) for cell in todo)

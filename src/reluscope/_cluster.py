"""Run independent tasks on a ``dask.distributed`` cluster: connect, share the inputs once, yield results as done.

Used by sweeps (``reluscope sweep --backend dask --scheduler ADDRESS``). Needs ``pip install 'reluscope[dask]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["BACKENDS", "check_backend", "map_on_dask"]

BACKENDS = ("local", "dask")
"""``local``: this machine (joblib processes, ``jobs``); ``dask``: the workers of a ``dask.distributed`` scheduler."""

CONNECT_TIMEOUT_S = 20


def check_backend(backend: Any, scheduler: Any) -> tuple[str, str | None]:
    """Validate a ``(backend, scheduler)`` pair; returns them normalised.

    Raises
    ------
    ValueError
        Unknown backend, ``dask`` without a scheduler address, or a scheduler given for the local backend.
    """
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}; "
            "'dask' runs the cells on a dask.distributed cluster (Ray is not supported)"
        )
    backend = backend.lower()
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"scheduler must be an address such as 'tcp://10.0.0.5:8786', got {scheduler!r}")
    if backend == "dask" and scheduler is None:
        raise ValueError(
            "the dask backend needs the scheduler's address, e.g. scheduler='tcp://10.0.0.5:8786' "
            "(--scheduler); start one with `dask scheduler` and workers with `dask worker ADDRESS`"
        )
    if backend == "local" and scheduler is not None:
        raise ValueError(f"a scheduler ({scheduler}) only makes sense with the dask backend; add backend='dask'")
    return backend, None if scheduler is None else scheduler.strip()


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("running on a Dask cluster needs dask.distributed: pip install 'reluscope[dask]'") from exc
    return distributed


def map_on_dask(
    fn: Callable[..., Any], items: Iterable[Any], *, scheduler: str, shared: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Yield ``fn(item, **shared)`` for every item, computed on the cluster's workers, in completion order.

    ``shared`` (e.g. the training data) is sent to every worker once (``Client.scatter(broadcast=True)``), not
    with every task. Results come back to this process, so nothing requires a filesystem shared with the workers;
    the workers need reluscope installed (the same version). Closing the generator early cancels the remaining
    tasks; the first task that raises re-raises here.

    Raises
    ------
    ValueError
        The scheduler cannot be reached within 20 s.
    ImportError
        ``distributed`` is missing.
    """
    distributed = _import_distributed()
    try:
        client = distributed.Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"could not reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S} s ({first}); check the "
            "address (tcp://HOST:8786) and that `dask scheduler` is running"
        ) from None
    futures: list[Any] = []
    try:
        with client.as_current():  # futures find their client through it (we do not become the global default)
            kwargs = {k: client.scatter(v, broadcast=True) for k, v in (shared or {}).items()}
            futures = client.map(fn, list(items), pure=False, **kwargs)
            for future in distributed.as_completed(futures):
                yield future.result()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        client.close()

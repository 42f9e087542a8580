"""What the Lightning and Hugging Face callbacks share: argument checks, the window, DDP merging, ReDo, state."""

from __future__ import annotations

import numbers
from typing import Any

from reluscope.diagnose import ActivationStats

__all__ = ["STATE_VERSION", "Window", "check_optional_positive", "check_positive", "merge_ranks", "resolve_module"]

STATE_VERSION = 1


def check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_optional_positive(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def resolve_module(root: Any, path: str | None, owner: str) -> Any:
    """``root`` itself, or the submodule at the dotted attribute ``path`` (``"net"``, ``"backbone.encoder"``)."""
    if path is None:
        return root
    if not isinstance(path, str) or not path:
        raise TypeError(f"module must be a dotted attribute path such as 'net' or None, got {path!r}")
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module={path!r}: the {owner} {type(root).__name__} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def merge_ranks(stats: ActivationStats) -> ActivationStats:
    """``reluscope.torch.all_reduce`` when ``torch.distributed`` runs with more than one rank, else ``stats``.
    A collective: every rank must call it at the same step."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from reluscope.torch import all_reduce

        return all_reduce(stats)
    return stats


class Window:
    """Plain-data bookkeeping both callbacks checkpoint: windows closed, last step logged, ReDo calls."""

    def __init__(self) -> None:
        self.epochs_closed = 0
        self.last_logged_step: int | None = None
        self.redo_calls = 0
        self.recycled = 0
        self.last_metrics: dict[str, float] = {}

    def state_dict(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": dict(config),
            "epochs_closed": self.epochs_closed,
            "last_logged_step": self.last_logged_step,
            "redo_calls": self.redo_calls,
            "recycled": self.recycled,
            "last_metrics": dict(self.last_metrics),
        }

    def load_state_dict(self, state: Any, owner: str) -> None:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            got = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"{owner} state must be a dict from {owner}.state_dict() with version {STATE_VERSION}, got {got!r}"
            )
        self.epochs_closed = int(state["epochs_closed"])
        last = state["last_logged_step"]
        self.last_logged_step = None if last is None else int(last)
        self.redo_calls = int(state["redo_calls"])
        self.recycled = int(state["recycled"])
        self.last_metrics = {str(k): float(v) for k, v in state["last_metrics"].items()}

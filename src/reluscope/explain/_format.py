"""The one number format of explain's notes and of every renderer (a module of its own, below both, so that the
renderers need nothing at run time from the module that builds an :class:`~reluscope.explain.Explanation`)."""

from __future__ import annotations

__all__ = ["fmt"]


def fmt(v: float) -> str:
    """A number for display: exactly 0 prints as ``0`` (so a closed gate is unmistakable), else 4 significant
    digits. The one number format of the notes and of every renderer."""
    v = float(v)
    return "0" if v == 0 else f"{v:.4g}"

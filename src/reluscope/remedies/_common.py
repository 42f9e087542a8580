"""The remedies' argument checks live in :mod:`reluscope._validate`, the one validator module; kept importable
here for modules that still import them from the old place."""

from __future__ import annotations

from reluscope._validate import check_fraction, check_positive_int

__all__ = ["check_fraction", "check_positive_int"]

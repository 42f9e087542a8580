"""torchvision for the benchmarks and the tests (``tests/conftest.py`` re-exports :func:`import_torchvision`); kept
here so that the benchmarks need neither pytest nor the tests folder."""

from __future__ import annotations

import sys
import types
from typing import Any


def import_torchvision() -> Any:
    """torchvision's models are pure Python; its C ops (nms, roi_align) are not needed here. PyPI's wheel links
    CUDA libraries, so beside a CPU torch its op registrations fail at import: skip just that module."""
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for k in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[k]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision

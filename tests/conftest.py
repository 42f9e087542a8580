"""Shared fixtures: tiny data built in memory, seeded."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw their examples deterministically: a CI run is reproducible and never flaky by luck.
settings.register_profile("reluscope", derandomize=True, deadline=None)
settings.load_profile("reluscope")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def away_from_zero(rng: np.random.Generator):
    """(N, D) float64 values with |x| >= 0.1, so ±1e-5 never crosses a kink."""

    def make(*shape: int) -> np.ndarray:
        x = rng.uniform(0.1, 2.0, size=shape)
        return x * rng.choice([-1.0, 1.0], size=shape)

    return make


def import_torchvision():
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

"""Shared fixtures: tiny data built in memory, seeded."""

from __future__ import annotations

import sys
from pathlib import Path

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


# torchvision through the one workaround the benchmarks use too (benchmarks/_tv.py: pure Python, no pytest)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _tv import import_torchvision  # noqa: E402

__all__ = ["import_torchvision"]

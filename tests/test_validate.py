"""The shared argument checks of reluscope._validate: every package's numbers go through these."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reluscope._validate import check_fraction, check_int, check_positive_int, check_tau


@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.booleans())
def test_check_fraction_accepts_exactly_its_interval(v, allow_zero, allow_one):
    inside = (0 < v < 1) or (allow_zero and v == 0) or (allow_one and v == 1)
    if inside:
        assert check_fraction(v, "f", allow_zero=allow_zero, allow_one=allow_one) == v
    else:
        interval = ("[" if allow_zero else "(") + "0, 1" + ("]" if allow_one else ")")
        with pytest.raises(ValueError, match=rf"f must be a fraction in \{interval[0]}0, 1\{interval[-1]}"):
            check_fraction(v, "f", allow_zero=allow_zero, allow_one=allow_one)


@pytest.mark.parametrize("bad", ["0.5", None, True, [0.5]])
def test_check_fraction_refuses_non_numbers(bad):
    with pytest.raises(TypeError, match="rate must be a fraction in"):
        check_fraction(bad, "rate")


def test_check_fraction_hint_and_numpy_numbers():
    assert check_fraction(np.float32(0.25), "f") == 0.25
    with pytest.raises(ValueError, match=r"got 1\.0; e\.g\. 0\.2 keeps 20%"):
        check_fraction(1.0, "val_fraction", allow_one=False, hint="e.g. 0.2 keeps 20% aside")


def test_integer_checks():
    assert check_int(np.int64(3), "n", 0) == 3 and check_positive_int(np.int32(2), "n") == 2
    with pytest.raises(TypeError, match="n must be an int, got float"):
        check_int(2.0, "n", 0)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int(0, "n", 1)
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got .*; e.g. batch_size=256"):
            check_positive_int(bad, "batch_size", example=256)


def test_check_tau():
    assert check_tau(0) == 0.0 and check_tau(np.float64(0.1)) == 0.1
    for bad in (-0.1, math.inf, math.nan, True, "0.1", None):
        with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
            check_tau(bad)

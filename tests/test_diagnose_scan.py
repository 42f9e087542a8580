"""Whole-dataset scans of the numpy MLP, the dead-unit history callback, and born-dead theory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _rounding import assert_dead_masks_within_rounding, assert_fire_counts_within_rounding, rounding_bounds
from reluscope.data import spiral
from reluscope.diagnose import (
    DeadUnitTracker,
    UnitHistory,
    born_dead_monte_carlo,
    born_dead_probability,
    dead_units,
    grid_inputs,
    scan,
)
from reluscope.nn import MLP
from reluscope.train import Callback, TrainState, fit


@pytest.fixture(scope="module")
def spiral_data() -> tuple[np.ndarray, np.ndarray]:
    return spiral(100, 3, seed=0)


# Scan ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "leaky", "tanh"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scan_matches_one_big_forward(activation: str, dtype: str, rng: np.random.Generator) -> None:
    net = MLP([5, 17, 9, 3], activation, bias_init=-0.3, seed=1, dtype=dtype)
    X = rng.standard_normal((301, 5))
    seen: list[tuple[int, int]] = []
    stats = scan(net, X, batch_size=64, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(64, 301), (128, 301), (192, 301), (256, 301), (301, 301)]
    assert stats.names == ["hidden1", "hidden2"]
    # batches of 64 and one forward of 301 are different BLAS calls: equal up to the rounding bound (conftest)
    outputs, bounds = net.hidden_outputs(X), rounding_bounds(net, X)
    for name, (pre, act), bound in zip(net.hidden_names, outputs, bounds, strict=True):
        assert stats.n_samples(name) == 301
        assert_fire_counts_within_rounding(stats.fire_count(name), pre, bound)
        np.testing.assert_array_less(np.abs(stats.max_preactivation(name) - pre.max(axis=0)), bound.max(axis=0))
        np.testing.assert_array_less(
            np.abs(stats.mean_abs_activation(name) - np.abs(act.astype(np.float64)).mean(axis=0)),
            bound.mean(axis=0) + 1e-12 * np.abs(act.astype(np.float64)).mean(axis=0),  # + the float64 sum's rounding
        )


def test_dead_units_finds_units_forced_dead(spiral_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = spiral_data
    net = MLP([2, 20, 10, 3], seed=0)
    net.params["b1"][[2, 7]] = -100.0  # can never fire on |x| <= 1
    masks = dead_units(net, X, batch_size=50)
    assert list(masks) == ["hidden1", "hidden2"]
    assert masks["hidden1"].dtype == bool and masks["hidden1"].shape == (20,)
    assert np.flatnonzero(masks["hidden1"]).tolist() == [2, 7]
    for mask, pre, bound in zip(masks.values(), net.preactivations(X), rounding_bounds(net, X), strict=True):
        assert_dead_masks_within_rounding(mask, pre, bound)  # batches of 50 vs one forward: other BLAS calls


def test_scan_continues_existing_stats(rng: np.random.Generator) -> None:
    net = MLP([3, 4, 2], seed=0)
    X = rng.standard_normal((10, 3))
    stats = scan(net, X[:4])
    scan(net, X[4:], stats=stats)
    # batches of 4 + 6 vs one of 10: other BLAS calls, so equal up to rounding (conftest)
    assert_fire_counts_within_rounding(
        stats.fire_count("hidden1"), net.preactivations(X)[0], rounding_bounds(net, X)[0]
    )
    assert stats.n_samples("hidden1") == 10


def test_scan_errors(rng: np.random.Generator) -> None:
    net = MLP([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="X has 3 features but the network expects 2"):
        scan(net, rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        scan(net, rng.standard_normal((5, 2)), batch_size=0)
    with pytest.raises(ValueError, match="has no hidden layer"):
        scan(MLP([2, 3], seed=0), rng.standard_normal((5, 2)))
    bad = rng.standard_normal((5, 2))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dead_units(net, bad)


# History ---------------------------------------------------------------------------------------------------------
def test_unit_history_from_counts() -> None:
    counts = np.array(
        [  # units: born dead & stays; dies at 2; dies at 1, revives at 3; always alive
            [0, 5, 5, 5],
            [0, 5, 0, 5],
            [0, 0, 0, 5],
            [0, 0, 4, 5],
        ]
    )
    h = UnitHistory.from_counts([0, 1, 2, 3], 5, counts)
    assert h.born_dead.tolist() == [True, False, False, False]
    assert h.died_at.tolist() == [0, 2, 1, -1]
    assert h.revived_at.tolist() == [-1, -1, 3, -1]
    assert h.dead_fraction == [0.25, 0.5, 0.75, 0.5]
    assert (h.n_born_dead, h.n_died, h.n_revived, h.n_dead_at_end) == (1, 2, 1, 2)
    json.dumps(h.to_dict())
    assert "fire_counts" not in h.to_dict(fire_counts=False)


class _WeightLog(Callback):
    """Keeps W1/b1 after every epoch (test helper)."""

    def __init__(self) -> None:
        self.W1: list[np.ndarray] = []
        self.b1: list[np.ndarray] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.on_epoch_end(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self.W1.append(state.net.params["W1"].copy())
        self.b1.append(state.net.params["b1"].copy())


def test_plain_sgd_full_batch_never_revives_first_layer(spiral_data: tuple[np.ndarray, np.ndarray]) -> None:
    """A hidden1 unit dead on the whole training set gets exactly zero gradient under full-batch SGD without L2:
    its weights freeze, its input (the data) is fixed, so it stays dead for good."""
    X, y = spiral_data
    net = MLP([2, 100, 3], init="normal", init_std=0.01, seed=0)
    tracker = DeadUnitTracker(every=1)
    log = _WeightLog()
    history = fit(net, X, y, optimizer="sgd", lr=3.0, reg=0.0, iterations=300, callbacks=[tracker, log])
    h = tracker.unit_history()["hidden1"]
    assert h.epochs == list(range(301))
    assert h.n_died > 10  # the step size is large enough to kill units ...
    assert h.n_revived == 0  # ... and none ever comes back
    assert (h.revived_at == -1).all()
    for unit in np.flatnonzero(h.died_at >= 0):
        e = int(h.died_at[unit])
        np.testing.assert_array_equal(log.W1[-1][:, unit], log.W1[e][:, unit])  # frozen, bit for bit
        assert log.b1[-1][unit] == log.b1[e][unit]
    extra = history.extra
    assert extra["dead_fraction_epoch"] == list(range(301))
    assert extra["dead_fraction"][0] == {"hidden1": 0.0}
    assert extra["dead_fraction"][-1]["hidden1"] == h.dead_fraction[-1] == h.n_dead_at_end / 100
    json.dumps(extra)


def test_tracker_every_k_and_end(spiral_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = spiral_data
    net = MLP([2, 8, 8, 3], seed=0)
    tracker = DeadUnitTracker(X[:100], every=4, batch_size=33)
    fit(net, X, y, lr=0.5, epochs=10, callbacks=[tracker])
    assert tracker.epochs == [0, 4, 8, 10]
    hist = tracker.unit_history()
    assert list(hist) == ["hidden1", "hidden2"]
    assert hist["hidden2"].fire_counts.shape == (4, 8)
    assert hist["hidden1"].n_samples == 100
    assert tracker.stats is not None and tracker.stats.n_samples("hidden1") == 100


def test_tracker_errors() -> None:
    with pytest.raises(ValueError, match="every must be a positive integer"):
        DeadUnitTracker(every=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DeadUnitTracker(batch_size=-1)
    with pytest.raises(RuntimeError, match="no scans recorded yet"):
        DeadUnitTracker().unit_history()


# Born dead -------------------------------------------------------------------------------------------------------
def test_closed_form_values() -> None:
    assert born_dead_probability(1, 1) == 0.5
    assert born_dead_probability(2, 1) == 0.75
    assert born_dead_probability(10, 3) == pytest.approx(1 - (7 / 8) ** 10)
    assert born_dead_probability(3, [1, 2, 3]) == pytest.approx(1 - 0.5 * 0.75 * 0.875)
    assert 0 < born_dead_probability(5, 200) < 1e-59  # no underflow to 0 for wide layers
    with pytest.raises(ValueError, match="width lists 2 layer widths but depth is 3"):
        born_dead_probability(3, [2, 2])
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        born_dead_probability(0, 3)


@pytest.mark.parametrize(("depth", "width"), [(1, 1), (3, 2), (5, 3), (10, 3), (20, 4), (4, [2, 3, 4, 5])])
def test_monte_carlo_agrees_with_closed_form(depth: int, width: int | list[int]) -> None:
    est = born_dead_monte_carlo(depth, width, n_inits=20_000, seed=depth)
    assert est.n == 20_000
    assert est.contains(born_dead_probability(depth, width)), est
    assert est.closed_form == born_dead_probability(depth, width)
    assert sum(est.first_dead_layer) == est.n_dead
    json.dumps(est.to_dict())


@pytest.mark.parametrize("init", ["he", "xavier", "xavier_uniform", "normal"])
def test_zero_bias_born_dead_does_not_depend_on_scale(init: str) -> None:
    est = born_dead_monte_carlo(6, 2, n_inits=20_000, init=init, std=0.01, seed=1)
    assert est.contains(born_dead_probability(6, 2))


def test_positive_bias_and_data_lower_the_rate(spiral_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = spiral_data
    single = born_dead_monte_carlo(10, 3, n_inits=4000, seed=0)
    on_data = born_dead_monte_carlo(10, 3, n_inits=4000, inputs=X, seed=0)
    shifted = born_dead_monte_carlo(10, 3, n_inits=4000, inputs=X, bias=0.1, seed=0)
    assert single.p_hat > on_data.p_hat > shifted.p_hat
    assert on_data.n_inputs == 300
    grid = born_dead_monte_carlo(4, 3, n_inits=500, inputs=grid_inputs(15), seed=0)
    assert grid.n_inputs == 225


def test_grid_inputs() -> None:
    g = grid_inputs(3, dim=2)
    assert g.shape == (9, 2)
    assert g.min() == -1.0 and g.max() == 1.0
    with pytest.raises(ValueError, match="need finite low < high"):
        grid_inputs(3, low=1.0, high=0.0)


def test_monte_carlo_is_reproducible_and_validates() -> None:
    a = born_dead_monte_carlo(3, 2, n_inits=100, seed=5)
    assert a == born_dead_monte_carlo(3, 2, n_inits=100, seed=5)
    with pytest.raises(ValueError, match="n_inits must be a positive integer"):
        born_dead_monte_carlo(3, 2, n_inits=0)
    with pytest.raises(ValueError, match="unknown init 'lecun'"):
        born_dead_monte_carlo(3, 2, n_inits=10, init="lecun")
    with pytest.raises(ValueError, match="bias must be a finite number"):
        born_dead_monte_carlo(3, 2, n_inits=10, bias=float("nan"))
    with pytest.raises(ValueError, match="inputs must be 2-D"):
        born_dead_monte_carlo(3, 2, n_inits=10, inputs=np.ones(3))


def test_deep_narrow_he_net_is_born_dead_on_most_seeds(spiral_data: tuple[np.ndarray, np.ndarray]) -> None:
    """10 hidden layers of width 3, He init, zero bias: a layer is zero on the whole spiral for most seeds."""
    X, _ = spiral_data
    n_dead = 0
    for seed in range(60):
        stats = scan(MLP([2, *[3] * 10, 3], init="he", seed=seed), X, batch_size=300)
        n_dead += any(stats.all_dead(name) for name in stats.names)
    assert n_dead > 30, n_dead

"""Numpy remedies: ReDo (exact output, element-wise optimizer state), leaky swap, LR range test, death spikes,
and the comparison of remedies on the CS231n spiral."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from _rounding import assert_dead_masks_within_rounding, rounding_bounds
from reluscope.data import spiral
from reluscope.diagnose import ActivationStats, scan
from reluscope.experiments import COMPARISON_CONFIG, compare_remedies, run_remedy
from reluscope.nn import MLP, SGD, Adam
from reluscope.remedies import (
    DeathSpikeDetector,
    ReDoCallback,
    dead_by_gradient,
    leaky_swap,
    lr_range_test,
    recycle_mask,
    redo,
    stuck_units,
)
from reluscope.train import fit


@pytest.fixture(scope="module")
def data():
    return spiral(40, 3, seed=0)


def _trained(activation="relu", optimizer="adam", sizes=(2, 24, 16, 3), seed=0, kill=(3, 7, 11)):
    """A net trained a few steps (so the optimizer has state everywhere), with some units killed by hand."""
    X, y = spiral(40, 3, seed=0)
    net = MLP(list(sizes), activation, seed=seed)
    opt = Adam(1e-2) if optimizer == "adam" else SGD(0.1, momentum=0.9)
    fit(net, X, y, optimizer=opt, reg=1e-3, epochs=5)
    for u in kill:  # very negative bias: never fires on the data
        net.params["b1"][u] = -100.0
    net.params["b2"][2] = -100.0
    if activation == "prelu":  # a PReLU unit is exactly 0 on every sample only with slope 0
        for layer, name in enumerate(net.hidden_names, start=1):
            net.params[f"a{layer}"][scan(net, X).dead_mask(name)] = 0.0
    return net, opt, X, y


def _state_copy(opt):
    return {k: {n: a.copy() for n, a in slot.items()} for k, slot in opt.state.items()}


# ReDo -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_redo_output_bit_identical_and_state_reset_elementwise(optimizer, activation):
    """PReLU units are exactly 0 when not firing only with slope 0: the helper kills units that way, and makes
    sure no unit with a non-zero slope is dead, so the output must be bit-identical for both."""
    net, opt, X, _ = _trained(activation, optimizer)
    stats = scan(net, X)
    dead = {n: stats.dead_mask(n) for n in stats.names}
    assert dead["hidden1"][[3, 7, 11]].all() and dead["hidden2"][2]
    before_scores = net.scores(X)
    before_params = {k: p.copy() for k, p in net.params.items()}
    before_state = _state_copy(opt)
    t_before = opt.t
    assert before_state  # the optimizer has state for every parameter
    report = redo(net, opt, stats, tau=0.0, seed=1)

    assert np.array_equal(net.scores(X), before_scores)  # bit-identical
    assert opt.t == t_before
    assert report.units == {n: np.flatnonzero(m).tolist() for n, m in dead.items()}
    p, q = net.params, before_params
    # masks of the entries that ReDo may change, per parameter
    touched: dict[str, np.ndarray] = {k: np.zeros(v.shape, bool) for k, v in p.items()}
    for layer, name in enumerate(net.hidden_names, start=1):
        u = np.flatnonzero(dead[name])
        touched[f"W{layer}"][:, u] = True
        touched[f"b{layer}"][u] = True
        touched[f"W{layer + 1}"][u, :] = True
        if f"a{layer}" in p:
            touched[f"a{layer}"][u] = True
            assert np.all(p[f"a{layer}"][u] == net.activation.slope)
        assert np.all(p[f"b{layer}"][u] == 0)
        assert np.all(p[f"W{layer + 1}"][u, :] == 0)
        assert np.all(p[f"W{layer}"][:, u] != q[f"W{layer}"][:, u])  # freshly drawn
    for key in p:
        assert np.array_equal(p[key][~touched[key]], q[key][~touched[key]]), key
        for buf, arr in opt.state[key].items():
            assert np.all(arr[touched[key]] == 0), (key, buf)
            assert np.array_equal(arr[~touched[key]], before_state[key][buf][~touched[key]]), (key, buf)
    # output layer: its biases and the columns of its weights for live units are untouched
    assert np.array_equal(p["b3"], q["b3"])


def test_redo_new_weights_follow_the_layer_initialiser():
    X = np.random.default_rng(0).standard_normal((50, 400))
    net = MLP([400, 300, 3], init="he", seed=0)
    net.params["b1"][:] = -1e3  # every unit dead
    report = redo(net, None, scan(net, X), tau=0.0, seed=0)
    assert report.counts == {"hidden1": 300}
    w = net.params["W1"]
    assert abs(w.std() / np.sqrt(2 / 400) - 1) < 0.02
    assert np.all(net.params["b1"] == 0)
    assert np.all(net.params["W2"] == 0)


def test_redo_keeps_bias_init_and_dtype():
    X = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    net = MLP([4, 8, 2], init="normal", init_std=0.5, bias_init=0.1, seed=0, dtype="float32")
    net.params["b1"][[1, 2]] = -1e3
    redo(net, None, scan(net, X), tau=0.0, seed=0)
    assert net.params["W1"].dtype == np.float32
    assert np.allclose(net.params["b1"][[1, 2]], 0.1)


def test_redo_tau_recycles_dormant_units_too():
    X, _ = spiral(30, 3, seed=0)
    net = MLP([2, 10, 3], seed=0)
    net.params["W1"][:, 4] *= 1e-3  # fires, but very weakly: dormant, not dead
    net.params["b1"][5] = -50.0  # dead
    stats = scan(net, X)
    assert not stats.dead_mask("hidden1")[4]
    assert recycle_mask(stats, "hidden1", 0.0).tolist() == stats.dead_mask("hidden1").tolist()
    mask = recycle_mask(stats, "hidden1", 0.1)
    assert mask[4] and mask[5]
    before = net.scores(X)
    report = redo(net, None, stats, tau=0.1, seed=0)
    assert {4, 5} <= set(report.units["hidden1"])
    # a dormant unit that fired loses its small contribution: close, not identical
    assert np.allclose(net.scores(X), before, atol=1e-3)


def test_redo_leaky_unit_that_never_fires_is_recycled_but_leaks():
    X, _ = spiral(30, 3, seed=0)
    net = MLP([2, 10, 3], "leaky", seed=0)
    net.params["b1"][5] = -1.5  # below zero on all of X; activation 0.01 * z != 0
    stats = scan(net, X)
    before = net.scores(X)
    assert redo(net, None, stats, tau=0.0).units["hidden1"] == [5]
    after = net.scores(X)
    assert not np.array_equal(after, before)  # its leak is gone ...
    assert np.allclose(after, before, atol=0.05)  # ... and it was small


def test_recycle_mask_refuses_missing_abs_sums():
    stats = ActivationStats.from_dict(
        {
            "format": "reluscope.ActivationStats",
            "version": 1,
            "sites": [
                {
                    "name": "h",
                    "shape": [3],
                    "n_samples": 5,
                    "fire_count": [1, 0, 2],
                    "abs_sum": [0.0, 0.0, 0.0],  # like a torch monitor window without full counts
                    "abs_sum_lo": [0.0, 0.0, 0.0],
                    "max_pre": [1.0, -1.0, 2.0],
                    "position_fire_count": None,
                }
            ],
        }
    )
    assert recycle_mask(stats, "h", 0.0).tolist() == [False, True, False]
    with pytest.raises(ValueError, match=re.escape("no recorded |activation|")):
        recycle_mask(stats, "h", 0.1)


def test_redo_is_seeded_and_a_generator_draws_fresh_weights():
    net, _, X, _ = _trained()
    stats = scan(net, X)
    a, b = net.copy(), net.copy()
    redo(a, None, stats, tau=0.0, seed=3)
    redo(b, None, stats, tau=0.0, seed=3)
    assert np.array_equal(a.params["W1"], b.params["W1"])
    rng = np.random.default_rng(3)
    c = net.copy()
    redo(c, None, stats, tau=0.0, seed=rng)
    first = c.params["W1"][:, 3].copy()
    redo(c, None, stats, tau=0.0, seed=rng)
    assert not np.array_equal(c.params["W1"][:, 3], first)


def test_redo_report_is_json_ready():
    net, opt, X, _ = _trained()
    stats = scan(net, X)
    n_dead = {n: int(stats.dead_mask(n).sum()) for n in stats.names}
    report = redo(net, opt, stats, tau=0.0)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["counts"] == n_dead and n_dead["hidden1"] >= 3
    assert d["total"] == sum(n_dead.values()) and d["sizes"] == {"hidden1": 24, "hidden2": 16}
    assert d["samples"] == {"hidden1": f"{len(X)} samples", "hidden2": f"{len(X)} samples"}
    assert f"hidden1: {n_dead['hidden1']} of 24 units recycled (dead over {len(X)} samples)" in str(report)


def test_redo_nothing_to_do_changes_nothing():
    X, _ = spiral(30, 3, seed=0)
    net = MLP([2, 10, 3], seed=0, bias_init=5.0)  # every unit fires somewhere
    before = {k: v.copy() for k, v in net.params.items()}
    report = redo(net, None, scan(net, X), tau=0.0)
    assert report.total == 0
    assert all(np.array_equal(before[k], net.params[k]) for k in before)


def test_redo_errors_teach():
    X, _ = spiral(30, 3, seed=0)
    net = MLP([2, 10, 3], seed=0)
    other = MLP([2, 12, 3], seed=0)
    with pytest.raises(ValueError, match="has 12 dense units but layer 1"):
        redo(net, None, scan(other, X))
    with pytest.raises(ValueError, match="no site 'hidden1'"):
        stats = ActivationStats()
        stats.update("conv1", np.ones((2, 10)))
        redo(net, None, stats)
    with pytest.raises(TypeError, match="must be an ActivationStats"):
        redo(net, None, {"hidden1": np.zeros(10, bool)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        redo(net, None, scan(net, X), tau=-0.1)
    with pytest.raises(ValueError, match="no hidden layer"):
        redo(MLP([2, 3]), None, ActivationStats())
    with pytest.raises(TypeError, match=r"reluscope\.torch\.redo"):
        redo(net, object(), scan(net, X))  # type: ignore[arg-type]


def test_redo_callback_schedule_and_history(data):
    X, y = data
    net = MLP([2, 50, 3], init="normal", init_std=0.01, seed=0)
    cb = ReDoCallback(X, every=10, tau=0.0, until=30, seed=0)
    history = fit(net, X, y, lr=5.0, reg=1e-3, epochs=45, callbacks=[cb])
    rec = history.extra["redo"]
    assert [r["epoch"] for r in rec] == [10, 20, 30]
    assert all(set(r["counts"]) == {"hidden1"} and r["total"] == sum(r["counts"].values()) for r in rec)
    assert sum(r["total"] for r in rec) > 0  # lr=5 kills units
    json.dumps(history.to_dict())
    with pytest.raises(ValueError, match="every must be a positive integer"):
        ReDoCallback(every=0)


# Leaky swap ------------------------------------------------------------------------------------------------------
def test_leaky_swap_same_weights_and_leaky_forward(data):
    X, _ = data
    net = MLP([2, 20, 3], seed=0)
    leaky = leaky_swap(net, slope=0.05)
    assert leaky.activation.name == "leaky" and leaky.activation.slope == 0.05
    assert net.activation.name == "relu"  # the original is unchanged
    for k in net.params:
        assert np.array_equal(net.params[k], leaky.params[k])
        assert net.params[k] is not leaky.params[k]
    z = X @ net.params["W1"] + net.params["b1"]
    expected = np.where(z > 0, z, 0.05 * z) @ net.params["W2"] + net.params["b2"]
    assert np.allclose(leaky.scores(X), expected, rtol=1e-12, atol=1e-12)


def test_leaky_swap_refuses_non_relu():
    with pytest.raises(ValueError, match="converts ReLU networks, got activation 'tanh'"):
        leaky_swap(MLP([2, 4, 3], "tanh"))
    with pytest.raises(ValueError, match="slope must be finite and > 0"):
        leaky_swap(MLP([2, 4, 3]), slope=0.0)


def test_stuck_units_relu_equals_dead_and_leaky_has_none(data):
    X, _ = data
    net = MLP([2, 20, 10, 3], seed=0)
    net.params["b1"][[1, 2]] = -50.0
    net.params["b2"][4] = -50.0
    stats = scan(net, X)
    by_grad = stuck_units(net, X, batch_size=7)
    # batches of 7, the scan's batches and one big forward are different BLAS calls: each equals brute force up to
    # rounding (tests/_rounding.py), and the forced-dead units exactly
    assert list(by_grad) == stats.names
    for name, pre, bound in zip(stats.names, net.preactivations(X), rounding_bounds(net, X), strict=True):
        assert_dead_masks_within_rounding(by_grad[name], pre, bound)
        assert_dead_masks_within_rounding(stats.dead_mask(name), pre, bound)
    assert by_grad["hidden1"][[1, 2]].all() and by_grad["hidden2"][4]
    leaky = leaky_swap(net)
    leaky_stats = scan(leaky, X)
    assert leaky_stats.dead_mask("hidden1")[[1, 2]].all()  # never fires ...
    assert not any(m.any() for m in stuck_units(leaky, X).values())  # ... but still gets gradient
    assert dead_by_gradient is stuck_units  # the earlier name still works


# LR guidance ----------------------------------------------------------------------------------------------------
def test_lr_range_test_recommends_largest_before_first_failure(data):
    X, y = data
    result = lr_range_test(X, y, init="normal", lrs=[20.0, 0.1, 1.0, 1e4], steps=60, threshold=0.2)
    lrs = [t.lr for t in result.trials]
    assert lrs == [0.1, 1.0, 20.0, 1e4]  # sorted
    assert [t.ok for t in result.trials][:2] == [True, True]
    big = result.trials[2]
    assert big.dead_fraction > 0.2 and not big.ok
    assert result.largest_ok_lr == 1.0 and result.first_failure_lr == 20.0
    assert result.recommended_lr == 0.1  # margin=1 (default): one rate below the largest passing one
    huge = result.trials[3]
    assert not huge.ok
    for t in result.trials:
        assert len(t.losses) == (t.diverged_at_step - 1 if t.diverged else 60)
        assert t.dead_fraction_per_layer.keys() == {"hidden1"}
    json.dumps(result.to_dict(), allow_nan=False)


def test_lr_range_test_uses_the_same_initial_net_and_does_not_modify_it(data):
    X, y = data
    net = MLP([2, 10, 3], seed=5)
    before = net.params["W1"].copy()
    a = lr_range_test(X, y, net, lrs=[0.5], steps=5)
    b = lr_range_test(X, y, net, lrs=[0.5, 1.0], steps=5)
    assert np.array_equal(net.params["W1"], before)
    assert a.trials[0].losses == b.trials[0].losses
    assert a.trials[0].losses[0] == b.trials[1].losses[0]  # same start


def test_lr_range_test_none_safe_and_geometric_default(data):
    X, y = data
    result = lr_range_test(X, y, init="normal", lr_min=50.0, lr_max=500.0, n_lrs=3, steps=40)
    assert [round(t.lr) for t in result.trials] == [50, 158, 500]
    assert result.recommended_lr is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold must be a fraction in"),
        ({"lrs": []}, "lrs must be a non-empty list"),
        ({"lrs": [0.1, -1.0]}, "must be finite and > 0"),
        ({"lrs": [0.1, 0.1]}, "duplicates"),
        ({"lr_min": 1.0, "lr_max": 0.5}, "lr_max must be larger than lr_min"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"hidden": ()}, "no hidden layer"),
    ],
)
def test_lr_range_test_errors(data, kwargs, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        lr_range_test(X, y, **kwargs)


def test_death_spike_detector_flags_the_killing_update(data):
    X, y = spiral(100, 3, seed=0)
    det = DeathSpikeDetector(threshold=0.1)
    net = MLP([2, 100, 3], init="normal", init_std=0.01, seed=0)
    history = fit(net, X, y, lr=5.0, reg=1e-3, epochs=30, callbacks=[det])
    spikes = history.extra["death_spikes"]
    assert spikes and spikes == det.spikes
    first = spikes[0]
    assert set(first) == {"step", "epoch", "lr", "layer", "before", "after"}
    assert first["lr"] == 5.0 and first["layer"] == "hidden1" and first["epoch"] == first["step"]
    assert first["after"] - first["before"] >= 0.1
    # calm training: no spike
    quiet = DeathSpikeDetector(threshold=0.1, every=2)
    fit(MLP([2, 100, 3], seed=0), X, y, lr=0.1, epochs=20, callbacks=[quiet])
    assert quiet.spikes == []
    with pytest.raises(ValueError, match="threshold must be a fraction in"):
        DeathSpikeDetector(threshold=0)


# The comparison --------------------------------------------------------------------------------------------------
def test_compare_remedies_redo_lowers_dead_fraction():
    """CS231n net, 0.01·randn init, reg 1e-3, full batch, step 3.0, 6 seeds, ReDo every 50 steps up to step 200.

    Margins come from a 20-seed measurement of this very configuration (seeds 0-19, OpenBLAS SkylakeX, AMD EPYC):
    no remedy leaves 0.25 ± 0.12 (mean ± sd per seed) of the units dead; ReDo lowers that on every seed, by 0.23 ±
    0.13 (paired), so the 6-seed mean difference has sd ≈ 0.05 and "lower by more than 0.05" sits 3.6 sd from it.
    Accuracy is NOT claimed here: ReDo's paired accuracy change was -0.04 ± 0.12, not distinguishable from zero,
    and a 6-seed mean would test the CPU's rounding, not reluscope (the ≥ 20-seed interval is in docs/remedies.md)."""
    config = replace(COMPARISON_CONFIG, epochs=400, redo_every=50, redo_until=200)
    result = compare_remedies(config=config, seeds=range(6))
    s = result.summary
    assert s["none"]["n_runs"] == 6 and s["none"]["dead_fraction_mean"] > 0.08  # 0.25 - 3.4 sd of a 6-seed mean
    assert s["redo"]["dead_fraction_mean"] < s["none"]["dead_fraction_mean"] - 0.05
    assert s["redo"]["recycled_mean"] > 0
    assert s["leaky"]["stuck_fraction_mean"] == 0.0
    assert s["none"]["stuck_fraction_mean"] == s["none"]["dead_fraction_mean"]
    assert not any(r.diverged for r in result.runs)
    json.dumps(result.to_dict(), allow_nan=False)


def test_run_remedy_and_compare_errors(data):
    X, y = data
    run = run_remedy("leaky", X, y, replace(COMPARISON_CONFIG, epochs=3, lr=0.5))
    assert run.remedy == "leaky" and run.recycled == 0
    with pytest.raises(ValueError, match="unknown remedy 'dropout'"):
        run_remedy("dropout", X, y)
    with pytest.raises(ValueError, match="unknown remedy"):
        compare_remedies(X, y, remedies=["none", "dropout"])
    with pytest.raises(ValueError, match="pass both X and y"):
        compare_remedies(X)


# The remedy registry and the ReDo schedule rule -----------------------------------------------------------------
def test_remedy_registry_is_the_one_list_of_remedies():
    from reluscope.remedies import REMEDY_REGISTRY, get_remedy

    assert tuple(REMEDY_REGISTRY) == ("none", "redo", "leaky")
    assert [r.name for r in REMEDY_REGISTRY.values() if r.recycles] == ["redo"]
    assert [r.name for r in REMEDY_REGISTRY.values() if r.swaps_activation] == ["leaky"]
    assert all(r.summary for r in REMEDY_REGISTRY.values())
    assert get_remedy("redo") is REMEDY_REGISTRY["redo"]
    with pytest.raises(ValueError, match="unknown remedy 'dropout'; choose one of none, redo, leaky"):
        get_remedy("dropout")


@pytest.mark.parametrize(("epochs", "expected"), [(2000, 1000), (3, 1), (1, 1)])
def test_redo_recycles_during_the_first_half(epochs, expected):
    from reluscope.remedies import default_redo_until

    assert default_redo_until(epochs) == expected
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        default_redo_until(0)

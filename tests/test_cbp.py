"""Numpy Continual Backprop, Shrink & Perturb and ReDo's bias correction: exactly which entries change, the output
right after a replacement, the optimizer state of the other units."""

from __future__ import annotations

import numpy as np
import pytest

from reluscope.data import spiral
from reluscope.diagnose import scan
from reluscope.nn import MLP, Adam
from reluscope.nn.init import init_weight
from reluscope.remedies import ContinualBackprop, ShrinkPerturb, redo, shrink_perturb
from reluscope.train import fit


def _adam_net(sizes=(2, 8, 6, 3), activation="relu", seed=0):
    """A net trained a few Adam steps, so the optimizer has non-zero state in every entry."""
    X, y = spiral(30, 3, seed=0)
    net = MLP(list(sizes), activation, seed=seed)
    opt = Adam(1e-2)
    fit(net, X, y, optimizer=opt, epochs=3)
    return net, opt, X


def _copy(d):
    return {k: v.copy() for k, v in d.items()}


def _state_copy(opt):
    return {k: {n: b.copy() for n, b in s.items()} for k, s in opt.state.items()}


def _mature(cbp, layer, utility):
    """Make every unit of hidden ``layer`` (0-based) mature with the given utilities; others stay immature."""
    for k in range(len(cbp.age)):
        cbp.age[k][:] = cbp.maturity + 5 if k == layer else 0
    cbp.utility[layer][:] = utility


# CBP ------------------------------------------------------------------------------------------------------------
def test_cbp_replaces_exactly_the_lowest_utility_mature_units_elementwise():
    net, opt, _ = _adam_net()
    cbp = ContinualBackprop(net, replacement_rate=0.25, maturity=10, seed=np.random.default_rng(5))
    # 8 mature units x 0.25 = 2 replaced: the two lowest utilities, units 5 and 2
    _mature(cbp, 0, [0.9, 0.8, 0.01, 0.7, 0.6, 0.001, 0.5, 0.4])
    cbp.mean[0][:] = np.linspace(0.1, 0.8, 8)
    before, state = _copy(net.params), _state_copy(opt)
    report = cbp.step(opt)
    assert report.units == {"hidden1": [2, 5], "hidden2": []}
    idx = np.array([2, 5])
    other = np.setdiff1d(np.arange(8), idx)
    p = net.params
    fresh = init_weight(net.init, 2, 8, rng=np.random.default_rng(5), dtype=net.dtype)
    np.testing.assert_array_equal(p["W1"][:, idx], fresh[:, idx])  # same draw, same code path: exact
    np.testing.assert_array_equal(p["W1"][:, other], before["W1"][:, other])
    np.testing.assert_array_equal(p["b1"][idx], 0.0)
    np.testing.assert_array_equal(p["b1"][other], before["b1"][other])
    np.testing.assert_array_equal(p["W2"][idx], 0.0)
    np.testing.assert_array_equal(p["W2"][other], before["W2"][other])
    # the replaced units' mean contribution folded into the next bias
    np.testing.assert_allclose(p["b2"], before["b2"] + cbp_mean_contrib(np.linspace(0.1, 0.8, 8), before["W2"], idx))
    for key in ("W3", "b3"):
        np.testing.assert_array_equal(p[key], before[key])
    # optimizer state: replaced entries zero, every other entry bit-identical
    for name in ("m", "v"):
        assert np.all(opt.state["W1"][name][:, idx] == 0) and np.all(opt.state["b1"][name][idx] == 0)
        assert np.all(opt.state["W2"][name][idx] == 0)
        np.testing.assert_array_equal(opt.state["W1"][name][:, other], state["W1"][name][:, other])
        np.testing.assert_array_equal(opt.state["b1"][name][other], state["b1"][name][other])
        np.testing.assert_array_equal(opt.state["W2"][name][other], state["W2"][name][other])
        for key in ("b2", "W3", "b3"):
            np.testing.assert_array_equal(opt.state[key][name], state[key][name])
    assert cbp.age[0][idx].tolist() == [0, 0] and np.all(cbp.age[0][other] == cbp.maturity + 6)
    assert np.all(cbp.utility[0][idx] == 0) and np.all(cbp.mean[0][idx] == 0)


def cbp_mean_contrib(mean, W_out, idx):
    return mean[idx] @ W_out[idx]


def test_cbp_output_moves_by_the_bias_corrected_residual_only():
    """Right after a replacement in the last hidden layer, scores change by -(h_u(x) - mean_u) W_out[u]: up to the
    rounding of the three products involved (a K-term dot product is within K·u·Σ|x_i·w_i| of exact, Higham eq.
    3.5; the bound below doubles that), whatever the BLAS kernel. With the mean taken over X, the change averages
    zero over X and its RMS is below the uncorrected change's (E[r^2] = Var + mean^2)."""
    rms = {}
    for correct in (True, False):
        net, opt, X = _adam_net(sizes=(2, 12, 3))
        h = net.hidden_outputs(X)[0][1]
        cbp = ContinualBackprop(net, replacement_rate=0.25, maturity=0, bias_correction=correct, seed=1)
        cbp.age[0][:] = 1
        cbp.utility[0][:] = np.arange(12.0)[::-1]  # lowest: units 9, 10, 11
        cbp.mean[0][:] = h.mean(axis=0)
        idx = np.array([9, 10, 11])
        W_out = net.params["W2"].copy()
        s0 = net.scores(X)
        cbp.replace(opt, [idx])
        delta = net.scores(X) - s0
        expected = -(h[:, idx] - (h[:, idx].mean(axis=0) if correct else 0.0)) @ W_out[idx]
        scale = np.abs(h[:, idx]).max() * np.abs(W_out[idx]).sum(axis=0).max()
        assert scale > 0.1, "the replaced units must carry a real contribution for this test to mean anything"
        b_old, b_new = np.abs(s0 - h @ W_out), np.abs(net.params["b2"])
        centred = np.abs(h[:, idx]) + np.abs(h[:, idx].mean(axis=0))
        terms = np.abs(h) @ np.abs(W_out) + b_old + b_new + centred @ np.abs(W_out[idx])
        bound = 4 * (12 + 2) * np.finfo(np.float64).eps * terms
        assert np.all(np.abs(delta - expected) <= bound)
        if correct:
            assert np.all(np.abs(delta.mean(axis=0)) <= bound.mean(axis=0))
        rms[correct] = float(np.sqrt((delta**2).mean()))
    assert rms[True] < rms[False]


def test_cbp_utility_and_mean_follow_the_paper_formula():
    net = MLP([3, 4, 2], seed=0)
    cbp = ContinualBackprop(net, decay=0.9, maturity=1000)
    h = np.abs(np.random.default_rng(0).standard_normal((5, 4)))
    cbp.observe([h])
    out_w = np.abs(net.params["W2"]).sum(axis=1)
    np.testing.assert_allclose(cbp.utility[0], 0.1 * np.abs(h).mean(axis=0) * out_w, rtol=1e-14)
    np.testing.assert_allclose(cbp.mean[0], 0.1 * h.mean(axis=0), rtol=1e-14)
    cbp.observe([h])
    np.testing.assert_allclose(cbp.mean[0], (0.9 * 0.1 + 0.1) * h.mean(axis=0), rtol=1e-14)


def test_cbp_replacement_rate_accumulates_across_steps():
    net = MLP([3, 10, 2], seed=0)
    cbp = ContinualBackprop(net, replacement_rate=0.01, maturity=0)
    counts = [cbp.step(None).total for _ in range(30)]
    # 10 mature units x 0.01 = 0.1 unit per step; a replaced unit is immature for one step, so 0.09-0.1 per step
    assert sum(counts) == 2 and max(counts) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"replacement_rate": 2.0}, "replacement_rate"),
        ({"maturity": -1}, "maturity"),
        ({"decay": 1.0}, "decay"),
        ({"decay": float("nan")}, "decay"),
    ],
)
def test_cbp_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContinualBackprop(MLP([2, 4, 2], seed=0), **kwargs)


def test_cbp_rejects_wrong_activation_shapes_and_linear_nets():
    cbp = ContinualBackprop(MLP([2, 4, 2], seed=0))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        cbp.observe([np.zeros((3, 5))])
    with pytest.raises(ValueError, match="one activation array per hidden layer"):
        cbp.observe([])
    with pytest.raises(ValueError, match="no hidden layer"):
        ContinualBackprop(MLP([2, 3], seed=0))
    with pytest.raises(TypeError, match=r"reluscope\.nn\.Optimizer"):
        cbp.replace(object(), [np.array([0])])  # type: ignore[arg-type]


# Shrink & Perturb ----------------------------------------------------------------------------------------------
def test_shrink_perturb_changes_every_weight_as_lambda_w_plus_sigma_init():
    net, opt, _ = _adam_net(activation="prelu")
    before, state = _copy(net.params), _state_copy(opt)
    shrink_perturb(net, shrink=0.7, noise=0.05, seed=3)
    rng = np.random.default_rng(3)
    for layer, (fi, fo) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True), start=1):
        eps = init_weight(net.init, fi, fo, rng=rng, dtype=net.dtype)
        # the same float64 operations in the same order: exact
        np.testing.assert_array_equal(net.params[f"W{layer}"], before[f"W{layer}"] * 0.7 + eps * 0.05)
        np.testing.assert_array_equal(net.params[f"b{layer}"], before[f"b{layer}"] * 0.7)
    for layer in (1, 2):
        np.testing.assert_array_equal(net.params[f"a{layer}"], before[f"a{layer}"])  # PReLU slopes untouched
    for key, s in state.items():
        for name, buf in s.items():
            np.testing.assert_array_equal(opt.state[key][name], buf)  # any optimizer: its state is not touched


def test_shrink_perturb_schedule_and_errors():
    net = MLP([2, 4, 2], seed=0)
    sp = ShrinkPerturb(net, every=3, shrink=0.5, noise=0.0)
    w0 = net.params["W1"].copy()
    applied = [sp.step() for _ in range(7)]
    assert applied == [False, False, True, False, False, True, False] and sp.applied == 2
    np.testing.assert_array_equal(net.params["W1"], w0 * 0.5 * 0.5)
    with pytest.raises(ValueError, match="shrink must be in"):
        shrink_perturb(net, shrink=0.0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        shrink_perturb(net, noise=-1.0)
    with pytest.raises(ValueError, match="every"):
        ShrinkPerturb(net, every=0)


# ReDo bias correction ------------------------------------------------------------------------------------------
def test_redo_bias_correction_folds_the_mean_activation_into_the_next_bias():
    X, y = spiral(30, 3, seed=0)
    base = MLP([2, 16, 3], seed=0)
    fit(base, X, y, lr=0.5, epochs=20)
    stats = scan(base, X)
    mean_h = base.hidden_outputs(X)[0][1].mean(axis=0)
    results = {}
    for correct in (False, True):
        net = base.copy()
        s0 = net.scores(X)
        report = redo(net, None, stats, tau=0.6, seed=0, bias_correction=correct)
        idx = np.array(report.units["hidden1"])
        assert mean_h[idx].max() > 0, "some recycled unit must be active for the correction to matter"
        delta = net.scores(X) - s0
        expected_b2 = base.params["b2"] + (mean_h[idx] @ base.params["W2"][idx] if correct else 0.0)
        # the mean over X from the stats' compensated sums vs numpy's mean: a few ulps apart
        np.testing.assert_allclose(net.params["b2"], expected_b2, rtol=1e-12, atol=1e-14)
        if not correct:  # the default is unchanged: b2 is bit-identical
            np.testing.assert_array_equal(net.params["b2"], base.params["b2"])
        results[correct] = delta
    assert np.abs(results[True].mean(axis=0)).max() < 1e-10
    assert np.abs(results[False].mean(axis=0)).max() > 1e-3


def test_redo_bias_correction_needs_relu():
    X, _ = spiral(10, 3, seed=0)
    net = MLP([2, 8, 3], "leaky", seed=0)
    with pytest.raises(ValueError, match="bias_correction"):
        redo(net, None, scan(net, X), tau=0.1, bias_correction=True)

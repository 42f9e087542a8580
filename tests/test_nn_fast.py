"""The MLP training fast path: equal to the reference pairs and to a torch twin, buffer reuse, no hidden allocation.

The reference here is the readable path spelled out with :mod:`reluscope.nn.functional` (a forward that keeps
every cache, a backward through every pair, ``softmax_cross_entropy`` and ``l2_penalty``); the fast path is
``MLP.loss_and_scores`` / ``forward`` / ``backward``. float64 must agree to 1e-12 relative, float32 to float32
rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from reluscope.nn import MLP, SGD, Adam, get_optimizer
from reluscope.nn import functional as F
from reluscope.train import Callback, TrainState, fit

ACTS = ["relu", "leaky", "prelu", "elu", "sigmoid", "tanh"]
DTYPES = ["float64", "float32"]
RTOL = {"float64": 1e-12, "float32": 4 * float(np.finfo(np.float32).eps)}


def reference_loss(net: MLP, X, y, reg=0.0):
    """Loss, scores and grads of ``net`` computed only with the pure pairs of reluscope.nn.functional."""
    p, act = net.params, net.activation
    h, caches = X.astype(net.dtype), []
    for layer in range(1, net.n_layers + 1):
        h, dense_cache = F.dense_forward(h, p[f"W{layer}"], p[f"b{layer}"])
        act_cache = None
        if layer < net.n_layers:
            h, act_cache = act.forward(h, p.get(f"a{layer}"))
        caches.append((dense_cache, act_cache))
    scores = h
    loss, dh = F.softmax_cross_entropy(scores, y)
    grads = {}
    for layer in range(net.n_layers, 0, -1):
        dense_cache, act_cache = caches[layer - 1]
        if act_cache is not None:
            dh, dslope = act.backward(dh, act_cache)
            if dslope is not None:
                grads[f"a{layer}"] = dslope
        dh, grads[f"W{layer}"], grads[f"b{layer}"] = F.dense_backward(dh, dense_cache)
    for layer in range(1, net.n_layers + 1):
        reg_loss, dW = F.l2_penalty(p[f"W{layer}"], reg)
        loss += reg_loss
        grads[f"W{layer}"] = grads[f"W{layer}"] + dW
    return loss, scores, grads


def assert_close(actual, expected, rtol, what=""):
    """Equal to ``rtol`` relative to the array's scale (max |expected|), entry by entry."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, what
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    err = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:.1g} * {scale:.3g}"


def make_data(rng, n, d, c, dtype):
    X = rng.standard_normal((n, d)).astype(dtype)
    X[0] = 0.0  # with zero biases every first-layer unit sits exactly at the kink on this sample
    return X, rng.integers(0, c, size=n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_fast_path_equals_reference_pairs(act, dtype, rng):
    net = MLP([5, 9, 7, 4], act, seed=3, dtype=dtype)
    net.params["a2" if act == "prelu" else "b2"][:3] = [0.3, -0.2, 1.5]  # slopes and biases of both signs
    rtol = RTOL[dtype]
    for n, reg in [(16, 0.0), (16, 1e-2), (6, 1e-3), (23, 0.0), (16, 0.0)]:  # smaller, larger, repeated batches
        X, y = make_data(rng, n, 5, 4, dtype)
        ref_loss, ref_scores, ref_grads = reference_loss(net, X, y, reg)
        loss, grads, scores = net.loss_and_scores(X, y, reg)
        assert loss == pytest.approx(ref_loss, rel=rtol)
        assert_close(scores, ref_scores, rtol, "scores")
        assert grads.keys() == net.params.keys() == ref_grads.keys()
        for key in grads:
            assert_close(grads[key], ref_grads[key], rtol, f"{act} {dtype} n={n} {key}")


def assert_same_arithmetic(grads, ref_grads):
    """Bit for bit, except sums over the batch (bias and PReLU slope gradients), which the fast path takes as
    one BLAS product ``ones @ dz`` instead of ``dz.sum(axis=0)``: equal to rounding."""
    for key in grads:
        if key[0] == "W":
            np.testing.assert_array_equal(grads[key], ref_grads[key], err_msg=key)
        else:
            assert_close(grads[key], ref_grads[key], 1e-14, key)


@pytest.mark.parametrize("act", ["relu", "leaky", "prelu", "elu", "tanh"])
def test_piecewise_activations_are_bit_identical_to_reference(act, rng):
    # Same products, same elementwise operations: nothing but the order of work changed.
    net = MLP([4, 12, 8, 3], act, seed=1)
    X, y = make_data(rng, 20, 4, 3, "float64")
    _, ref_scores, ref_grads = reference_loss(net, X, y)
    _, grads, scores = net.loss_and_scores(X, y)
    np.testing.assert_array_equal(scores, ref_scores)
    assert_same_arithmetic(grads, ref_grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_layers_and_many_classes_take_the_other_branches(dtype, rng):
    # 80 x 128 entries are summed by numpy's reduction (not BLAS), 20 classes take the row max by reduction
    net = MLP([5, 128, 20], "prelu", seed=4, dtype=dtype)
    X, y = make_data(rng, 80, 5, 20, dtype)
    ref_loss, ref_scores, ref_grads = reference_loss(net, X, y, 1e-3)
    loss, grads, scores = net.loss_and_scores(X, y, 1e-3)
    assert loss == pytest.approx(ref_loss, rel=RTOL[dtype])
    assert_close(scores, ref_scores, RTOL[dtype], "scores")
    for key in grads:
        assert_close(grads[key], ref_grads[key], RTOL[dtype], key)


def test_forward_backward_equal_reference_and_skip_nothing(rng):
    net = MLP([3, 6, 2], "leaky", seed=0, dtype="float32")
    X, y = make_data(rng, 10, 3, 2, "float32")
    scores = net.forward(X)
    _, dscores = F.softmax_cross_entropy(scores, y)
    grads = net.backward(dscores)
    _, ref_scores, ref_grads = reference_loss(net, X, y)
    np.testing.assert_array_equal(scores, ref_scores)
    for key in grads:
        assert_close(grads[key], ref_grads[key], RTOL["float32"], key)
    assert net.grads is grads


def test_linear_classifier_has_no_hidden_layer(rng):
    net = MLP([4, 3], seed=0)
    X, y = make_data(rng, 8, 4, 3, "float64")
    ref_loss, _, ref_grads = reference_loss(net, X, y, 1e-3)
    loss, grads = net.loss(X, y, 1e-3)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for key in grads:
        assert_close(grads[key], ref_grads[key], 1e-12, key)


@pytest.mark.parametrize("slope", [0.0, 1.0, 2.5])
def test_leaky_slopes_outside_the_usual_range(slope, rng):
    net = MLP([3, 6, 2], "leaky", slope=slope, seed=0)
    X, y = make_data(rng, 9, 3, 2, "float64")
    _, ref_scores, ref_grads = reference_loss(net, X, y)
    _, grads, scores = net.loss_and_scores(X, y)
    np.testing.assert_array_equal(scores, ref_scores)
    assert_same_arithmetic(grads, ref_grads)


def test_sigmoid_and_elu_stay_finite_and_quiet_at_extremes():
    # exp of a large positive number would overflow (a RuntimeWarning, an error under this suite's filters)
    for act in ("sigmoid", "elu"):
        net = MLP([1, 3, 2], act, seed=0)
        X = np.array([[-800.0], [800.0], [0.0]])
        _, grads, scores = net.loss_and_scores(X, np.array([0, 1, 0]))
        _, ref_scores, _ = reference_loss(net, X, np.array([0, 1, 0]))
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-12)
        assert all(np.isfinite(g).all() for g in grads.values())


# Buffer semantics -------------------------------------------------------------------------------------------------
def test_grads_are_reused_buffers_and_scores_are_fresh(rng):
    net = MLP([3, 5, 2], seed=0)
    X1, y1 = make_data(rng, 8, 3, 2, "float64")
    X2, y2 = make_data(rng, 8, 3, 2, "float64")
    _, g1, s1 = net.loss_and_scores(X1, y1)
    kept = {k: g.copy() for k, g in g1.items()}
    s1_kept = s1.copy()
    _, g2, s2 = net.loss_and_scores(X2, y2)
    assert all(g1[k] is g2[k] for k in g1)  # the same arrays, overwritten in place (documented)
    assert not np.array_equal(kept["W1"], g2["W1"])  # ... so a copy is what keeps the old values
    np.testing.assert_array_equal(s1, s1_kept)  # scores are new arrays every time
    assert s1 is not s2
    f = net.forward(X1)
    assert f is not net.forward(X1)


def test_backward_needs_a_matching_forward(rng):
    net = MLP([3, 5, 2], seed=0)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((4, 2)))
    net.forward(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"shape of the last forward's scores \(4, 2\), got \(3, 2\)"):
        net.backward(np.zeros((3, 2)))
    grads = net.backward(np.ones((4, 2)))  # float64 ones into a float64 net: fine
    assert grads["W1"].shape == (3, 5)


def test_failed_forward_leaves_no_stale_caches(rng):
    net = MLP([3, 5, 2], seed=0)
    net.forward(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.full((4, 3), np.nan))
    net.backward(np.ones((4, 2)))  # the last *successful* forward is still there


def test_validate_false_still_guards_dtype_and_width(rng):
    net = MLP([3, 5, 2], seed=0, dtype="float32")
    X64, y = make_data(rng, 6, 3, 2, "float64")
    a = net.loss_and_scores(X64, y, validate=False)[0]  # float64 X: converted (validated) anyway
    b = net.loss_and_scores(X64.astype(np.float32), y)[0]
    assert a == b
    with pytest.raises(ValueError, match="has 4 features but the network expects 3"):
        net.loss_and_scores(np.zeros((6, 4), np.float32), y, validate=False)
    with pytest.raises(TypeError, match="integer class labels"):
        net.loss_and_scores(X64.astype(np.float32), y.astype(float), validate=False)


def test_set_params_between_steps_is_seen(rng):
    net = MLP([3, 5, 2], seed=0)
    X, y = make_data(rng, 6, 3, 2, "float64")
    net.loss(X, y)
    other = MLP([3, 5, 2], seed=9)
    net.set_params(other.params)
    np.testing.assert_array_equal(net.loss(X, y)[1]["W1"], other.loss(X, y)[1]["W1"])


def test_release_buffers(rng):
    net = MLP([3, 5, 2], seed=0)
    X, y = make_data(rng, 6, 3, 2, "float64")
    loss = net.loss(X, y)[0]
    net.release_buffers()
    assert net.grads == {}
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.zeros((6, 2)))
    assert net.loss(X, y)[0] == loss


# Optimizers: in place, same arithmetic --------------------------------------------------------------------------
def textbook_step(name, kw, params, grads, state, t, lr):
    """The update rules written plainly (allocating), as torch.optim documents them."""
    out = {}
    for k, p in params.items():
        g = grads[k]
        f = p.dtype.type
        st = state.setdefault(k, {})
        if name == "sgd":
            wd, mom, nes = kw.get("weight_decay", 0.0), kw.get("momentum", 0.0), kw.get("nesterov", False)
            if wd:
                g = g + f(wd) * p
            if mom:
                v = st["v"] = st.get("v", np.zeros_like(p)) * f(mom) + g
                g = g + f(mom) * v if nes else v
            out[k] = p - f(lr) * g
        else:
            wd, dec = kw.get("weight_decay", 0.0), kw.get("decoupled", False)
            if wd and dec:
                p = p * f(1 - lr * wd)
            elif wd:
                g = g + f(wd) * p
            m = st["m"] = st.get("m", np.zeros_like(p)) * f(0.9) + f(1 - 0.9) * g
            v = st["v"] = st.get("v", np.zeros_like(p)) * f(0.999) + f(1 - 0.999) * (g * g)
            denom = np.sqrt(v) / f(np.sqrt(1 - 0.999**t)) + f(1e-8)
            out[k] = p - f(lr / (1 - 0.9**t)) * m / denom
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("sgd", {}),
        ("sgd", {"weight_decay": 0.1}),
        ("sgd", {"momentum": 0.9}),
        ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
        ("adam", {}),
        ("adam", {"weight_decay": 0.1}),
        ("adam", {"weight_decay": 0.1, "decoupled": True}),
    ],
)
def test_optimizers_update_in_place_with_the_textbook_arithmetic(name, kw, dtype, rng):
    net = MLP([3, 6, 2], seed=0, dtype=dtype)
    opt = SGD(0.05, **kw) if name == "sgd" else Adam(0.05, **kw)
    ids = {k: id(p) for k, p in net.params.items()}
    expected = {k: p.copy() for k, p in net.params.items()}
    state: dict = {}
    for t in range(1, 5):
        X, y = make_data(rng, 7, 3, 2, dtype)
        _, grads = net.loss(X, y)
        before = {k: g.copy() for k, g in grads.items()}
        expected = textbook_step(name, kw, expected, {k: g.copy() for k, g in grads.items()}, state, t, 0.05)
        opt.step(net.params, grads)
        for k in grads:
            np.testing.assert_array_equal(grads[k], before[k])  # the step never touches grads
            np.testing.assert_array_equal(net.params[k], expected[k], err_msg=f"{name} {kw} step {t} {k}")
    assert {k: id(p) for k, p in net.params.items()} == ids  # updated in place
    assert all(p.dtype == np.dtype(dtype) for p in net.params.values())
    assert all(s.dtype == np.dtype(dtype) for slot in opt.state.values() for s in slot.values())
    assert {name for slot in opt.state.values() for name in slot} <= {"velocity", "m", "v"}  # no scratch in state


# No hidden allocation -------------------------------------------------------------------------------------------
def peak_bytes(fn) -> int:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    return tracemalloc.get_traced_memory()[1] - base


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize(("optimizer", "reg"), [("sgd", 0.0), ("momentum", 1e-3), ("adam", 1e-3)])
def test_a_training_step_allocates_nothing_as_large_as_batch_times_hidden(act, optimizer, reg):
    n, h, dtype = 128, 256, np.dtype(np.float32)
    net = MLP([8, h, h, 10], act, seed=0, dtype=dtype)
    opt = get_optimizer(optimizer, 0.01)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, 8)).astype(dtype), rng.integers(0, 10, size=n)

    def step() -> None:
        _, grads, _ = net.loss_and_scores(X, y, reg, validate=False)
        opt.step(net.params, grads)

    step()  # the first step allocates the work buffers
    tracemalloc.start()
    try:
        peaks = [peak_bytes(step) for _ in range(3)]
        first = peak_bytes(lambda: MLP([8, h, h, 10], act, seed=0, dtype=dtype).loss(X, y))  # control
    finally:
        tracemalloc.stop()
    limit = n * h * dtype.itemsize
    assert max(peaks) < limit, peaks
    assert first > limit  # the measurement does see the buffers a first step allocates


def test_fit_steps_allocate_nothing_as_large_as_batch_times_hidden():
    n, h, dtype = 96, 512, np.dtype(np.float32)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4 * n, 6)).astype(dtype), rng.integers(0, 3, size=4 * n)
    net = MLP([6, h, 3], seed=0, dtype=dtype)
    peaks: list[int] = []

    class Peak(Callback):
        def on_step_end(self, state: TrainState) -> None:
            peaks.append(tracemalloc.get_traced_memory()[1] - tracemalloc.get_traced_memory()[0])
            tracemalloc.reset_peak()

    tracemalloc.start()
    try:
        fit(net, X, y, optimizer="momentum", lr=0.01, reg=1e-3, epochs=2, batch_size=n, callbacks=[Peak()])
    finally:
        tracemalloc.stop()
    assert len(peaks) == 8
    assert max(peaks[1:]) < n * h * dtype.itemsize, peaks


# The torch twin -------------------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_training_matches_a_torch_twin(act, dtype, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    net = MLP([4, 8, 6, 3], act, seed=2, dtype=dtype, bias_init=0.01)
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in net.params.items()}
    acts = {
        "relu": torch.relu,
        "leaky": lambda t: tf.leaky_relu(t, net.activation.slope),
        "elu": lambda t: tf.elu(t, net.activation.alpha),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }
    opt, topt = SGD(0.1, momentum=0.9), torch.optim.SGD(list(tp.values()), lr=0.1, momentum=0.9)
    tol = {"float64": 1e-9, "float32": 1e-4}[dtype]
    for n in (16, 16, 5, 16):  # the last minibatch of an epoch is smaller
        X, y = make_data(rng, n, 4, 3, dtype)
        loss, grads, _ = net.loss_and_scores(X, y, 1e-3, validate=False)
        h = torch.tensor(X)
        for layer in range(1, net.n_layers + 1):
            h = h @ tp[f"W{layer}"] + tp[f"b{layer}"]
            if layer < net.n_layers:
                h = tf.prelu(h, tp[f"a{layer}"]) if act == "prelu" else acts[act](h)
        t_loss = tf.cross_entropy(h, torch.tensor(y)) + sum(
            0.5 * 1e-3 * (tp[f"W{i}"] ** 2).sum() for i in range(1, net.n_layers + 1)
        )
        topt.zero_grad()
        t_loss.backward()
        assert loss == pytest.approx(t_loss.item(), rel=tol)
        for k in net.params:
            assert_close(grads[k], tp[k].grad.numpy(), tol, f"grad {k}")
        opt.step(net.params, grads)
        topt.step()
        for k in net.params:
            assert_close(net.params[k], tp[k].detach().numpy(), tol, f"param {k}")


# The benchmark runs -----------------------------------------------------------------------------------------------
def test_bench_engine_quick_smoke(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(script), "--quick", "--no-torch", "--reps", "2", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "floor ratio" in res.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {(r["shape"], r["dtype"]) for r in rows} >= {("tiny", "float32"), ("tiny", "float64")}
    assert all(r["floor_ratio"] > 0 and r["t_step"] > 0 for r in rows)

"""MLP: structure, dtype, gradient checks (finite differences + torch twin), optimizers vs torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reluscope.nn import MLP, SGD, Adam, get_optimizer
from reluscope.nn import functional as F
from reluscope.nn.gradcheck import check_gradients

ACTS = ["relu", "leaky", "prelu", "elu", "sigmoid", "tanh"]


def data(rng, n=12, d=3, c=4):
    return rng.standard_normal((n, d)), rng.integers(0, c, size=n)


def test_params_and_grads_share_keys_and_shapes(rng):
    net = MLP([2, 100, 3], seed=0)
    assert {k: v.shape for k, v in net.params.items()} == {"W1": (2, 100), "b1": (100,), "W2": (100, 3), "b2": (3,)}
    X, y = data(rng, d=2, c=3)
    _, grads = net.loss(X, y)
    assert grads.keys() == net.params.keys()
    assert all(grads[k].shape == net.params[k].shape for k in grads)
    assert net.hidden_names == ["hidden1"]
    pre = net.preactivations(X)
    assert len(pre) == 1 and pre[0].shape == (12, 100)


def test_prelu_has_slope_parameters():
    net = MLP([3, 5, 4, 2], "prelu", seed=0)
    assert sorted(net.params) == ["W1", "W2", "W3", "a1", "a2", "b1", "b2", "b3"]
    np.testing.assert_array_equal(net.params["a1"], 0.01)


@pytest.mark.parametrize("act", ACTS)
def test_gradients_match_finite_differences(act, rng):
    X, y = data(rng)
    net = MLP([3, 6, 5, 4], act, seed=3, bias_init=0.05)
    report = check_gradients(net, X, y, reg=1e-3)
    assert report.passed, report.to_dict()
    assert report.max_rel_error < 1e-7
    assert all(p.checked > 0 for p in report.params.values())


def test_gradcheck_reports_kinks_instead_of_failing():
    # A pre-activation at exactly 0 for one sample: nudging W1/b1 moves it across the kink.
    net = MLP([2, 3, 2], seed=0)
    net.params["W1"][:] = [[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]]
    net.params["b1"][:] = [0.0, 0.1, 0.2]
    X = np.array([[0.0, 1.0], [1.0, -1.0], [-0.5, 0.3]])  # sample 0, unit 0: z = 0 exactly
    y = np.array([0, 1, 1])
    report = check_gradients(net, X, y)
    assert report.params["b1"].kinks == 1
    assert report.params["W1"].kinks >= 1
    assert report.passed  # away from the kink everything agrees
    assert report.params["b1"].kink_rel_error is not None and report.params["b1"].kink_rel_error > 1e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_end_to_end(dtype, rng):
    net = MLP([3, 8, 4], seed=0, dtype=dtype)
    X, y = data(rng)
    _, grads = net.loss(X, y, reg=1e-3)
    assert all(p.dtype == np.dtype(dtype) for p in net.params.values())
    assert all(g.dtype == np.dtype(dtype) for g in grads.values())
    assert net.scores(X).dtype == np.dtype(dtype)
    opt = Adam(1e-2)
    opt.step(net.params, grads)
    assert all(p.dtype == np.dtype(dtype) for p in net.params.values())
    assert all(s.dtype == np.dtype(dtype) for slot in opt.state.values() for s in slot.values())


def test_float32_and_float64_nets_agree(rng):
    X, y = data(rng)
    n64 = MLP([3, 8, 4], seed=0)
    n32 = MLP([3, 8, 4], seed=0, dtype="float32")
    l64, g64 = n64.loss(X, y)
    l32, g32 = n32.loss(X, y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": [3]}, "at least"),
        ({"sizes": [3, 0, 2]}, "positive integer"),
        ({"sizes": [3, 2], "activation": "relux"}, "unknown activation 'relux'; choose one of relu"),
        ({"sizes": [3, 2], "init": "lecun"}, "unknown init 'lecun'"),
        ({"sizes": [3, 2], "dtype": "float16"}, "float32' or 'float64"),
        ({"sizes": [3, 2], "seed": None}, "seed must be an int"),
        ({"sizes": [3, 2], "init": "normal", "init_std": -1.0}, "init_std must be finite and > 0"),
    ],
)
def test_bad_construction_is_explained(kwargs, match):
    sizes = kwargs.pop("sizes")
    with pytest.raises((ValueError, TypeError), match=match):
        MLP(sizes, **kwargs)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros((4, 2)), "has 2 features but the network expects 3"),
        (np.zeros(3), r"must be 2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.array([[1.0, np.nan, 0.0]]), "NaN/inf"),
        (np.array([["a", "b", "c"]]), "must hold numbers"),
    ],
)
def test_bad_input_is_explained(X, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MLP([3, 4, 2], seed=0).forward(X)


def test_backward_before_forward_is_explained():
    with pytest.raises(RuntimeError, match="forward"):
        MLP([3, 4, 2], seed=0).backward(np.zeros((1, 2)))


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    n=st.integers(1, 9),
    dtype=st.sampled_from(["float32", "float64"]),
    act=st.sampled_from(ACTS),
)
def test_shapes_property(sizes, n, dtype, act):
    sizes = [*sizes[:-1], max(sizes[-1], 2)]
    net = MLP(sizes, act, seed=0, dtype=dtype)
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], size=n)
    loss, grads = net.loss(X, y, reg=0.1)
    assert np.isfinite(loss)
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in net.params.items()}
    assert all(g.dtype == np.dtype(dtype) for g in grads.values())
    assert [p.shape for p in net.preactivations(X)] == [(n, h) for h in sizes[1:-1]]


def test_optimizer_names_and_errors():
    assert isinstance(get_optimizer("momentum", 0.1), SGD)
    assert get_optimizer("nesterov", 0.1).nesterov
    assert get_optimizer("adamw", 0.1).decoupled
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        get_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        SGD(0.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        SGD(0.1, nesterov=True)


@pytest.mark.torch
class TestTorchTwin:
    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")

    def torch_loss(self, net, X, y, reg):
        torch = self.torch
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
        acts = {
            "relu": torch.relu,
            "leaky": lambda t: torch.nn.functional.leaky_relu(t, net.activation.slope),
            "elu": lambda t: torch.nn.functional.elu(t, net.activation.alpha),
            "sigmoid": torch.sigmoid,
            "tanh": torch.tanh,
        }
        h = torch.tensor(X)
        for layer in range(1, net.n_layers + 1):
            h = h @ tp[f"W{layer}"] + tp[f"b{layer}"]
            if layer < net.n_layers:
                if net.activation.name == "prelu":
                    h = torch.nn.functional.prelu(h, tp[f"a{layer}"])
                else:
                    h = acts[net.activation.name](h)
        loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
        loss = loss + sum(0.5 * reg * (tp[f"W{i}"] ** 2).sum() for i in range(1, net.n_layers + 1))
        return loss, tp

    @pytest.mark.parametrize("act", ACTS)
    def test_every_gradient_matches_autograd(self, act, rng):
        X, y = data(rng, n=16)
        X[0] = 0.0  # with zero biases every unit sits exactly at the kink for this sample
        net = MLP([3, 7, 6, 4], act, seed=5)
        loss, grads = net.loss(X, y, reg=1e-2)
        t_loss, tp = self.torch_loss(net, X, y, 1e-2)
        t_loss.backward()
        assert loss == pytest.approx(t_loss.item(), rel=1e-10)
        for k in net.params:
            np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-6, atol=1e-12, err_msg=k)

    @pytest.mark.parametrize(
        ("name", "kw", "tname", "tkw"),
        [
            ("sgd", {}, "SGD", {}),
            ("momentum", {}, "SGD", {"momentum": 0.9}),
            ("nesterov", {}, "SGD", {"momentum": 0.9, "nesterov": True}),
            ("sgd", {"momentum": 0.5, "weight_decay": 0.1}, "SGD", {"momentum": 0.5, "weight_decay": 0.1}),
            ("adam", {}, "Adam", {}),
            ("adam", {"weight_decay": 0.1}, "Adam", {"weight_decay": 0.1}),
            ("adamw", {}, "AdamW", {"weight_decay": 1e-2}),
        ],
    )
    def test_optimizers_follow_torch_optim(self, name, kw, tname, tkw, rng):
        torch = self.torch
        X, y = data(rng, n=16)
        net = MLP([3, 7, 4], seed=2)
        opt = get_optimizer(name, 0.05, **kw)
        _, tp = self.torch_loss(net, X, y, 0.0)
        topt = getattr(torch.optim, tname)(list(tp.values()), lr=0.05, **tkw)
        for _ in range(5):
            _, grads = net.loss(X, y)
            opt.step(net.params, grads)
            topt.zero_grad()
            t_loss, _ = self._loss_with(tp, net, X, y)
            t_loss.backward()
            topt.step()
        for k in net.params:
            np.testing.assert_allclose(net.params[k], tp[k].detach().numpy(), rtol=1e-6, atol=1e-10, err_msg=k)

    def _loss_with(self, tp, net, X, y):
        torch = self.torch
        h = torch.relu(torch.tensor(X) @ tp["W1"] + tp["b1"])
        return torch.nn.functional.cross_entropy(h @ tp["W2"] + tp["b2"], torch.tensor(y)), tp


def test_softmax_scores_consistency(rng):
    net = MLP([3, 5, 4], seed=1)
    X, y = data(rng)
    np.testing.assert_allclose(net.forward(X), net.scores(X))
    loss, _ = net.loss(X, y)
    assert loss == pytest.approx(F.softmax_cross_entropy(net.scores(X), y)[0])
    assert net.predict(X).shape == (12,)


def test_gradcheck_does_not_fail_a_gradient_that_is_exactly_zero():
    net = MLP([2, 3, 2], seed=0)
    net.params["b1"][:] = -10.0  # every unit dead on every sample: all first-layer gradients are exactly 0
    X = np.array([[0.1, 0.2], [-0.3, 0.1]])
    report = check_gradients(net, X, np.array([0, 1]))
    assert report.passed
    assert report.params["W1"].rel_error < 1e-7


def test_gradcheck_that_checked_nothing_does_not_pass():
    from reluscope.nn.gradcheck import GradCheckReport, ParamCheck

    vacuous = GradCheckReport({"b1": ParamCheck("b1", checked=0, kinks=3, rel_error=0.0, max_abs_error=0.0,
                                                kink_rel_error=0.5)}, tol=1e-7, h=1e-5)  # fmt: skip
    assert not vacuous.passed

"""Every forward/backward pair against centred finite differences (float64) and against torch.autograd."""

from __future__ import annotations

import numpy as np
import pytest

from reluscope.nn import functional as F
from reluscope.nn.gradcheck import numerical_gradient, numerical_gradient_array, relative_error

ELEMENTWISE = {
    "relu": (F.relu_forward, F.relu_backward, {}),
    "leaky": (F.leaky_relu_forward, F.leaky_relu_backward, {"slope": 0.07}),
    "elu": (F.elu_forward, F.elu_backward, {"alpha": 0.8}),
    "sigmoid": (F.sigmoid_forward, F.sigmoid_backward, {}),
    "tanh": (F.tanh_forward, F.tanh_backward, {}),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_backward_matches_finite_differences(name, away_from_zero, rng):
    fwd, bwd, kw = ELEMENTWISE[name]
    x = away_from_zero(5, 7)
    dout = rng.standard_normal((5, 7))
    out, cache = fwd(x, **kw)
    assert out.shape == x.shape and out.dtype == x.dtype
    dx = bwd(dout, cache)
    num = numerical_gradient_array(lambda v: fwd(v, **kw)[0], x, dout)
    assert relative_error(dx, num) < 1e-7


def test_dense_backward_matches_finite_differences(rng):
    x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    out, cache = F.dense_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W + b)
    dx, dW, db = F.dense_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda v: F.dense_forward(v, W, b)[0], x, dout)) < 1e-7
    assert relative_error(dW, numerical_gradient_array(lambda v: F.dense_forward(x, v, b)[0], W, dout)) < 1e-7
    assert relative_error(db, numerical_gradient_array(lambda v: F.dense_forward(x, W, v)[0], b, dout)) < 1e-7


def test_prelu_backward_matches_finite_differences(away_from_zero, rng):
    x = away_from_zero(6, 4)
    alpha = rng.uniform(0.05, 0.3, size=4)
    dout = rng.standard_normal((6, 4))
    _, cache = F.prelu_forward(x, alpha)
    dx, dalpha = F.prelu_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda v: F.prelu_forward(v, alpha)[0], x, dout)) < 1e-7
    num_a = numerical_gradient_array(lambda a: F.prelu_forward(x, a)[0], alpha, dout)
    assert relative_error(dalpha, num_a) < 1e-7


def test_relu_derivative_at_exactly_zero_is_zero():
    x = np.array([[-1.0, 0.0, 2.0]])
    out, mask = F.relu_forward(x)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(F.relu_backward(np.ones_like(x), mask), [[0.0, 0.0, 1.0]])
    _, cache = F.leaky_relu_forward(x, slope=0.1)
    np.testing.assert_allclose(F.leaky_relu_backward(np.ones_like(x), cache), [[0.1, 0.1, 1.0]])


def test_softmax_cross_entropy_matches_finite_differences_and_is_stable(rng):
    scores = rng.standard_normal((6, 4)) * 3
    y = rng.integers(0, 4, size=6)
    loss, dscores = F.softmax_cross_entropy(scores, y)
    num = numerical_gradient(lambda s: F.softmax_cross_entropy(s, y)[0], scores.copy())
    assert relative_error(dscores, num) < 1e-7
    big = scores + 1e4  # a shift must not change anything (and must not overflow)
    loss_big, d_big = F.softmax_cross_entropy(big, y)
    assert loss_big == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(d_big, dscores, atol=1e-12)
    p = F.softmax(scores)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), y])))


def test_l2_penalty():
    W = np.array([[1.0, -2.0], [3.0, 0.5]])
    loss, dW = F.l2_penalty(W, 0.1)
    assert loss == pytest.approx(0.5 * 0.1 * (1 + 4 + 9 + 0.25))
    np.testing.assert_allclose(dW, 0.1 * W)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_no_silent_upcast(name, dtype, rng):
    fwd, bwd, kw = ELEMENTWISE[name]
    x = rng.standard_normal((3, 4)).astype(dtype)
    out, cache = fwd(x, **kw)
    assert out.dtype == dtype
    assert bwd(np.ones_like(x), cache).dtype == dtype


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = F.sigmoid_forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])


@pytest.mark.torch
class TestTorchTwin:
    """The same inputs through torch.autograd: every gradient must agree (float64, rtol 1e-6)."""

    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")

    def _grad(self, fn, *arrays, dout):
        ts = [self.torch.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*ts)
        out.backward(self.torch.tensor(dout))
        return out.detach().numpy(), [t.grad.numpy() for t in ts]

    @pytest.mark.parametrize("name", sorted(ELEMENTWISE))
    def test_elementwise(self, name, rng):
        torch = self.torch
        tf = {
            "relu": torch.relu,
            "leaky": lambda t: torch.nn.functional.leaky_relu(t, 0.07),
            "elu": lambda t: torch.nn.functional.elu(t, 0.8),
            "sigmoid": torch.sigmoid,
            "tanh": torch.tanh,
        }[name]
        fwd, bwd, kw = ELEMENTWISE[name]
        x = rng.standard_normal((8, 5))
        x[0, :3] = 0.0  # the kink itself: torch also uses f'(0) = 0 for relu and the slope for leaky
        dout = rng.standard_normal((8, 5))
        out, cache = fwd(x, **kw)
        t_out, (t_dx,) = self._grad(tf, x, dout=dout)
        np.testing.assert_allclose(out, t_out, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(bwd(dout, cache), t_dx, rtol=1e-6, atol=1e-12)

    def test_dense_and_prelu(self, rng):
        torch = self.torch
        x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
        dout = rng.standard_normal((4, 3))
        _, cache = F.dense_forward(x, W, b)
        _, grads = self._grad(lambda a, w, c: a @ w + c, x, W, b, dout=dout)
        for mine, theirs in zip(F.dense_backward(dout, cache), grads, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-6)
        alpha = rng.uniform(0.05, 0.3, size=3)
        z = rng.standard_normal((4, 3))
        _, pcache = F.prelu_forward(z, alpha)
        _, (t_dz, t_da) = self._grad(lambda a, w: torch.nn.functional.prelu(a, w), z, alpha, dout=dout)
        dz, da = F.prelu_backward(dout, pcache)
        np.testing.assert_allclose(dz, t_dz, rtol=1e-6)
        np.testing.assert_allclose(da, t_da, rtol=1e-6)

    def test_softmax_cross_entropy(self, rng):
        torch = self.torch
        scores = rng.standard_normal((6, 4))
        y = rng.integers(0, 4, size=6)
        loss, dscores = F.softmax_cross_entropy(scores, y)
        ts = torch.tensor(scores, requires_grad=True)
        t_loss = torch.nn.functional.cross_entropy(ts, torch.tensor(y))
        t_loss.backward()
        assert loss == pytest.approx(t_loss.item(), rel=1e-12)
        np.testing.assert_allclose(dscores, ts.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array([0, 1, 3]), r"\[0, 3\), got max label 3"),
        (np.array([[0], [1], [2]]), r"ravel"),
        (np.array([0.0, 1.0, 2.0]), r"astype\(np.int64\)"),
        (np.array([0, 1]), r"2 labels but there are 3 samples"),
        (np.array([-1, 0, 1]), r"got min label -1"),
        (np.eye(3, dtype=int), r"one-hot"),
    ],
)
def test_softmax_cross_entropy_rejects_bad_labels(y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        F.softmax_cross_entropy(np.zeros((3, 3)), y)

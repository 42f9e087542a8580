"""The activation registry: every entry is complete and its parts agree with each other.

Each test is parametrized over the whole registry, so a new entry (softplus was added this way, touching only
``nn/activations.py``) is checked by all of them: its reference pair against finite differences, its fast kernel
against the pair, its f'(0) convention, gradcheck on an MLP, and its PyTorch twin against the engine.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.explain import SUPPORTED_ACTIVATIONS
from reluscope.nn import ACTIVATIONS, MLP, REGISTRY, get_activation, get_spec, register
from reluscope.nn.activations import fires, softplus_backward, softplus_forward
from reluscope.nn.gradcheck import check_gradients, numerical_gradient_array
from reluscope.remedies import leaky_swap

ALL = list(ACTIVATIONS)
RTOL = {"float64": 1e-12, "float32": 4 * float(np.finfo(np.float32).eps)}


def configured(name: str):
    """Non-default options, so a kernel that ignores slope or alpha fails."""
    return get_activation(name, slope=0.05, alpha=1.5)


def param_for(act, h: int, rng) -> np.ndarray | None:
    return rng.uniform(0.05, 0.3, size=h) if act.learnable else None


def test_every_entry_is_complete_and_reachable():
    assert list(REGISTRY) == ALL and "softplus" in ALL
    for name, spec in REGISTRY.items():
        assert spec.name == name and get_spec(name.upper()) is spec
        assert all(get_spec(alias) is spec for alias in spec.aliases)
        act = configured(name)
        assert act.spec is spec and act.formula and act.derivative and spec.display
        assert "{" not in act.formula + act.derivative  # every placeholder filled in
        assert spec.leaky is None or spec.leaky in REGISTRY
        assert spec.torch_twin.startswith("torch.nn.")
        assert spec.colour.startswith("#") and len(spec.colour) == 7
    colours = [spec.colour for spec in REGISTRY.values()]
    assert len(set(colours)) == len(colours)  # one colour per activation across every figure
    with pytest.raises(ValueError, match=r"unknown activation 'swish'; choose one of relu, .*softplus"):
        get_activation("swish")
    with pytest.raises(TypeError, match="activation must be a name"):
        get_activation(3)  # type: ignore[arg-type]


def test_a_name_can_be_registered_only_once():
    with pytest.raises(ValueError, match="'relu' is already registered"):
        register(REGISTRY["relu"])
    with pytest.raises(ValueError, match="'logistic' is already registered"):
        register(replace(REGISTRY["sigmoid"], name="sigmoid2"))


def test_fires_is_strictly_positive():
    z = np.array([[-1.0, 0.0, 1e-300, 2.0]])
    np.testing.assert_array_equal(fires(z), [[False, False, True, True]])


@pytest.mark.parametrize("name", ALL)
def test_reference_pair_matches_finite_differences(name, away_from_zero, rng):
    act = configured(name)
    x = away_from_zero(5, 4)  # |x| >= 0.1: no ±1e-5 nudge crosses a kink
    param = param_for(act, 4, rng)
    dout = rng.standard_normal((5, 4))
    _, cache = act.forward(x, param)
    dx, dparam = act.backward(dout, cache)
    num = numerical_gradient_array(lambda v: act.forward(v, param)[0], x, dout)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-10)  # centred differences are O(h²) ~ 1e-10 here
    if param is not None:
        num_p = numerical_gradient_array(lambda p: act.forward(x, p)[0], param, dout)
        np.testing.assert_allclose(dparam, num_p, rtol=1e-7, atol=1e-10)
    else:
        assert dparam is None


@pytest.mark.parametrize("name", ALL)
def test_derivative_at_zero_follows_the_entry_convention(name):
    act = configured(name)
    x = np.zeros((2, 3))
    param = np.full(3, act.slope) if act.learnable else None
    _, cache = act.forward(x, param)
    dx, _ = act.backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, act.spec.at_zero(act), rtol=1e-15)
    assert not act.spec.fires(x).any()  # exactly 0 is "did not fire", whatever the activation


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ALL)
def test_fast_kernel_equals_reference_pair(name, dtype, rng):
    act = configured(name)
    z0 = (rng.standard_normal((7, 6)) * 3).astype(dtype)
    z0[0] = 0.0  # exactly at the kink
    z0[1, :2] = [-800.0, 800.0]  # exp overflow territory: the kernels must stay finite and quiet
    param = param_for(act, 6, rng)
    param = None if param is None else param.astype(dtype)
    z, deriv, tmp = z0.copy(), np.empty_like(z0), np.empty_like(z0)
    extra = np.empty_like(z0) if act.spec.needs_extra else None
    act.spec.fast(act, z, deriv, tmp, extra, param)
    out, cache = act.forward(z0, param)
    dout = rng.standard_normal(z0.shape).astype(dtype)
    dx, _ = act.backward(dout, cache)
    scale = max(float(np.max(np.abs(out))), 1.0)
    # the kernels do the reference's arithmetic in another order (e.g. fired-or-slope by exact arithmetic), so
    # agreement is to the dtype's rounding, relative to the largest value
    assert out.dtype == z.dtype == np.dtype(dtype)
    np.testing.assert_allclose(z, out, rtol=0, atol=RTOL[dtype] * scale)
    np.testing.assert_allclose(dout * deriv, dx, rtol=0, atol=RTOL[dtype] * max(float(np.max(np.abs(dx))), 1.0))


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_passes_on_an_mlp(name, rng):
    net = MLP([3, 6, 5, 4], configured(name), seed=1, bias_init=0.01)
    X, y = rng.standard_normal((10, 3)), rng.integers(0, 4, size=10)
    report = check_gradients(net, X, y, reg=1e-3, max_checks=12, seed=0)
    assert report.passed, report.to_dict()
    if not net.activation.spec.kinked(net.activation):
        assert report.total_kinks == 0  # no kink search for smooth activations


@pytest.mark.torch
@pytest.mark.parametrize("name", ALL)
def test_torch_twin_matches_the_engine(name, rng):
    torch = pytest.importorskip("torch")
    from reluscope.torch import from_mlp

    net = MLP([3, 7, 6, 4], configured(name), seed=5, bias_init=0.01)
    twin = from_mlp(net)
    assert type(twin.hidden1).__name__ == net.activation.spec.torch_twin.rsplit(".", 1)[1]
    X, y = rng.standard_normal((16, 3)), rng.integers(0, 4, size=16)
    X[0] = 0.0
    loss, grads = net.loss(X, y, reg=0.0)
    t_loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(X)), torch.from_numpy(y))
    t_loss.backward()
    # float64 through different BLAS calls (numpy vs torch matmul): equal to a few hundred ulps, not bit for bit
    assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    for layer in range(1, net.n_layers + 1):
        fc = getattr(twin, f"fc{layer}")
        np.testing.assert_allclose(grads[f"W{layer}"], fc.weight.grad.numpy().T, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(grads[f"b{layer}"], fc.bias.grad.numpy(), rtol=1e-6, atol=1e-12)
        if net.activation.learnable and layer < net.n_layers:
            slope = getattr(twin, f"hidden{layer}").weight.grad.numpy()
            np.testing.assert_allclose(grads[f"a{layer}"], slope, rtol=1e-6, atol=1e-12)


def test_the_rest_of_reluscope_asks_the_registry():
    assert "softplus" in SUPPORTED_ACTIVATIONS and "prelu" not in SUPPORTED_ACTIVATIONS  # PReLU: learned slope
    with pytest.raises(ValueError, match=r"converts ReLU networks, got activation 'softplus'; .*relu or leaky"):
        leaky_swap(MLP([2, 4, 3], "softplus"))
    assert leaky_swap(MLP([2, 4, 3], "relu"), 0.1).activation.name == REGISTRY["relu"].leaky


# Softplus, the entry added to prove the registry ------------------------------------------------------------------
def test_softplus_is_stable_and_matches_its_definition():
    x = np.array([[-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0]])
    out, cache = softplus_forward(x)
    with np.errstate(over="ignore"):
        direct = np.log1p(np.exp(x))  # overflows to inf at 1000: the reason for the stable form
    np.testing.assert_allclose(out[:, 1:-1], direct[:, 1:-1], rtol=1e-15)
    assert out[0, -1] == 1000.0 and out[0, 0] == 0.0
    dx = softplus_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, expit(x), rtol=1e-14)  # f'(z) = sigmoid(z)
    assert dx[0, 1] > 0  # tiny but not 0: softplus has no gate


def test_cli_trains_a_softplus_network():
    res = CliRunner().invoke(
        app, ["train", "--activation", "softplus", "--epochs", "3", "--hidden", "8", "--n-per-class", "20"]
    )
    assert res.exit_code == 0, res.output
    bad = CliRunner().invoke(app, ["train", "--activation", "swish", "--epochs", "1"])
    assert bad.exit_code == 2 and "choose one of relu" in bad.output and "softplus" in bad.output


# Nothing else lists the family ------------------------------------------------------------------------------------
SRC = Path(__file__).resolve().parents[1] / "src" / "reluscope"
# Modules that speak PyTorch's function names ("relu", "elu", "leaky_relu", ...), a vocabulary of their own.
TORCH_VOCABULARY = ("torch/", "cli/_torch_diagnose.py")
REGISTRY_HOME = ("nn/activations.py", "nn/functional.py")
# Known lists still to move to the registry, each with its owner; delete the entry with the fix.
ALLOWED_LISTS: set[str] = set()  # places still enumerating activations by name (none left)


def literal_names(node: ast.AST) -> list[str]:
    """The registered activation names among the string literals of a tuple/list/set/dict display."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"frozenset", "set"}:
        return literal_names(node.args[0]) if node.args else []
    elts = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
    if not isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict) or elts is None:
        return []
    return [e.value for e in elts if isinstance(e, ast.Constant) and e.value in REGISTRY]


def family_lists(path: Path) -> list[str]:
    """Places that enumerate activations: ``name in ("sigmoid", "tanh")`` tests, and module-level collections
    naming two or more of them. A single default (``activation="relu"``) is a choice, not a list."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        membership = isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
        if membership and any(literal_names(c) for c in node.comparators):
            found.append(f"line {node.lineno}: membership test against a list of activations")
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if value is not None and len(literal_names(value)) >= 2:
            found.append(f"line {node.lineno}: module-level list of activations {literal_names(value)}")
    return found


def test_no_module_but_the_registry_lists_the_activations():
    offenders, allowed_seen = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(TORCH_VOCABULARY) or rel in REGISTRY_HOME:
            continue
        found = family_lists(path)
        if found and rel in ALLOWED_LISTS:
            allowed_seen.add(rel)
        elif found:
            offenders += [f"{rel} {f}" for f in found]
    assert offenders == [], "ask reluscope.nn.REGISTRY (an ActivationSpec field) instead:\n" + "\n".join(offenders)
    assert allowed_seen == ALLOWED_LISTS, f"fixed, so delete from ALLOWED_LISTS: {ALLOWED_LISTS - allowed_seen}"


def test_explain_walks_through_a_softplus_network():
    res = CliRunner().invoke(app, ["explain", "--activation", "softplus", "--format", "markdown"])
    assert res.exit_code == 0, res.output
    assert "softplus has no gate: f'(z) > 0 for every z" in res.output
    assert "log(1 + exp(z))" in res.output

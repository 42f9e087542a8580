"""reluscope.torch Continual Backprop, Shrink & Perturb and ReDo's bias correction: exactly which entries change,
the output right after a replacement, the optimizer state of the other units."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.torch import ContinualBackprop, ShrinkPerturb, redo, scan, shrink_perturb  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _trained(sizes=(4, 8, 6, 3), seed=0):
    """A small ReLU MLP trained a few Adam steps (so every optimizer-state entry is non-zero), and its data."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (64,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    return model, opt, X


def _state(model, opt):
    return {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in model.named_parameters()}


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _pick(cbp, site, utility, mean=None):
    """Mature every unit of ``site`` with these utilities (others immature), no pending activations."""
    for name, tr in cbp.sites.items():
        tr.unit_abs = tr.feat_mean = None
        tr.age[:] = cbp.maturity + 5 if name == site else 0
    cbp.sites[site].utility[:] = torch.tensor(utility, dtype=torch.float64)
    if mean is not None:
        cbp.sites[site].mean[:] = torch.as_tensor(mean, dtype=torch.float64)


def test_torch_cbp_replaces_exactly_the_chosen_units_elementwise():
    model, opt, X = _trained()
    cbp = ContinualBackprop(model, opt, example=X[:2], replacement_rate=0.25, maturity=10, seed=7)
    assert list(cbp.sites) == ["1", "3"]
    mean = np.linspace(0.1, 0.8, 8)
    _pick(cbp, "1", [0.9, 0.8, 0.01, 0.7, 0.6, 0.001, 0.5, 0.4], mean)
    before, state = _params(model), _state(model, opt)
    report = cbp.step()
    assert report.units == {"1": [2, 5], "3": []}
    idx, other = [2, 5], [0, 1, 3, 4, 6, 7]
    p = _params(model)
    fresh = torch.empty(8, 4)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=torch.Generator().manual_seed(7))
    assert torch.equal(p["0.weight"][idx], fresh[idx])  # the same draw: exact
    assert torch.equal(p["0.weight"][other], before["0.weight"][other])
    assert torch.equal(p["0.bias"][idx], torch.zeros(2)) and torch.equal(p["0.bias"][other], before["0.bias"][other])
    assert torch.equal(p["2.weight"][:, idx], torch.zeros(6, 2))
    assert torch.equal(p["2.weight"][:, other], before["2.weight"][:, other])
    expected_bias = before["2.bias"] + before["2.weight"][:, idx] @ torch.tensor(mean[idx], dtype=torch.float32)
    torch.testing.assert_close(p["2.bias"], expected_bias, rtol=1e-6, atol=1e-6)  # float32 matvec of 2 terms
    for key in ("4.weight", "4.bias"):
        assert torch.equal(p[key], before[key])
    s = _state(model, opt)
    for k in ("exp_avg", "exp_avg_sq"):
        assert torch.all(s["0.weight"][k][idx] == 0) and torch.all(s["0.bias"][k][idx] == 0)
        assert torch.all(s["2.weight"][k][:, idx] == 0)
        assert torch.equal(s["0.weight"][k][other], state["0.weight"][k][other])
        assert torch.equal(s["0.bias"][k][other], state["0.bias"][k][other])
        assert torch.equal(s["2.weight"][k][:, other], state["2.weight"][k][:, other])
        for key in ("2.bias", "4.weight", "4.bias"):
            assert torch.equal(s[key][k], state[key][k])
    for key in s:
        assert torch.equal(s[key]["step"], state[key]["step"])
    cbp.remove()
    cbp.remove()  # idempotent


def test_torch_cbp_output_moves_by_the_bias_corrected_residual_only():
    """float32: the change of the output equals -(h_u - mean_u) W[:, u] up to rounding (twice the K·u·Σ|x_i·w_i|
    bound of a K-term dot product, Higham eq. 3.5, for each of the products involved), averages to ~0 over X, and
    has a smaller RMS than without the correction."""
    rms = {}
    for correct in (True, False):
        model, opt, X = _trained(sizes=(4, 12, 3))
        with torch.no_grad():
            h = torch.relu(model[0](X))
            W = model[2].weight.clone()
            s0 = model(X)
        cbp = ContinualBackprop(model, opt, example=X[:2], replacement_rate=0.25, maturity=0, bias_correction=correct)
        _pick(cbp, "1", list(range(12))[::-1], h.double().mean(0))
        assert cbp.step().units["1"] == [9, 10, 11]
        idx = [9, 10, 11]
        with torch.no_grad():
            delta = model(X) - s0
        centred = h[:, idx] - (h[:, idx].mean(0) if correct else 0.0)
        expected = -(centred @ W[:, idx].T)
        scale = float(h[:, idx].abs().max() * W[:, idx].abs().sum(1).max())
        assert scale > 0.1
        eps = torch.finfo(torch.float32).eps
        b_terms = (s0 - h @ W.T).abs() + model[2].bias.detach().abs()
        bound = 4 * (12 + 2) * eps * (h.abs() @ W.abs().T + b_terms + centred.abs() @ W[:, idx].abs().T)
        assert bool(((delta - expected).abs() <= bound).all())
        if correct:
            assert bool((delta.mean(0).abs() <= bound.mean(0)).all())
        rms[correct] = float(delta.pow(2).mean().sqrt())
    assert rms[True] < rms[False]


def test_torch_cbp_utility_follows_the_paper_formula():
    model, opt, X = _trained(sizes=(4, 5, 3))
    cbp = ContinualBackprop(model, opt, example=X[:2], decay=0.9, maturity=1000)
    with torch.no_grad():
        h = torch.relu(model[0](X)).double()
        model(X)  # the hook reads the consumer's input
    cbp.step()
    out_w = model[2].weight.detach().abs().double().sum(0)
    torch.testing.assert_close(cbp.sites["1"].utility, 0.1 * h.abs().mean(0) * out_w, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(cbp.sites["1"].mean, 0.1 * h.mean(0), rtol=1e-6, atol=1e-9)
    assert cbp.sites["1"].age.tolist() == [1] * 5
    u = cbp.sites["1"].utility.clone()
    cbp.step()  # no forward since the last step: nothing new to count
    assert torch.equal(cbp.sites["1"].utility, u) and cbp.sites["1"].age.tolist() == [2] * 5


def test_torch_cbp_errors():
    model, opt, X = _trained()
    with pytest.raises(ValueError, match="cannot track site"):
        ContinualBackprop(model, opt, example=X[:2], sites=["nope"])
    with pytest.raises(TypeError, match="seed"):
        ContinualBackprop(model, opt, example=X[:2], seed=-1)
    with pytest.raises(ValueError, match="replacement_rate"):
        ContinualBackprop(model, opt, example=X[:2], replacement_rate=3)


def test_torch_shrink_perturb_elementwise_and_optimizer_untouched():
    model, opt, _ = _trained()
    model.add_module("5", nn.PReLU(3))
    before, state = _params(model), _state(model, opt)
    changed = shrink_perturb(model, shrink=0.6, noise=0.1, seed=4)
    assert changed == ["0", "2", "4"]
    g = torch.Generator().manual_seed(4)
    p = _params(model)
    for name in changed:
        w, b = before[f"{name}.weight"], before[f"{name}.bias"]
        eps = torch.empty(w.shape)
        nn.init.kaiming_uniform_(eps, a=math.sqrt(5), generator=g)
        bound = 1 / math.sqrt(w.shape[1])
        eb = torch.empty(b.shape).uniform_(-bound, bound, generator=g)
        assert torch.equal(p[f"{name}.weight"], w.mul(0.6).add(0.1 * eps))  # same ops, same order: exact
        assert torch.equal(p[f"{name}.bias"], b.mul(0.6).add(0.1 * eb))
    assert torch.equal(p["5.weight"], before["5.weight"])  # PReLU slope untouched
    s = _state(model, opt)
    for n in state:
        for k in state[n]:
            assert torch.equal(s[n][k], state[n][k])
    sched = ShrinkPerturb(model, every=2, shrink=0.5, noise=0.0, modules=["4"])
    w4 = model[4].weight.detach().clone()
    assert [sched.step() for _ in range(4)] == [False, True, False, True]
    assert torch.equal(model[4].weight.detach(), w4 * 0.5 * 0.5)
    with pytest.raises(ValueError, match="not a Linear/Conv"):
        shrink_perturb(model, modules=["1"])
    with pytest.raises(ValueError, match="shrink must be in"):
        shrink_perturb(model, shrink=1.5)


def test_torch_redo_bias_correction():
    for correct in (False, True):
        model, opt, X = _trained(sizes=(4, 16, 3))
        stats = scan(model, [X])
        with torch.no_grad():
            h = torch.relu(model[0](X))
            s0 = model(X)
        b0, W = model[2].bias.detach().clone(), model[2].weight.detach().clone()
        report = redo(model, opt, stats, 0.6, example=X[:2], seed=0, bias_correction=correct)
        idx = report.units["1"]
        assert idx and float(h[:, idx].sum()) > 0, "some recycled unit must be active"
        with torch.no_grad():
            delta = model(X) - s0
        if correct:
            torch.testing.assert_close(model[2].bias.detach(), b0 + W[:, idx] @ h[:, idx].mean(0), rtol=1e-5, atol=1e-6)
            assert float(delta.mean(0).abs().max()) < 1e-4
        else:
            assert torch.equal(model[2].bias.detach(), b0)  # the default is unchanged
            assert float(delta.mean(0).abs().max()) > 1e-3


@pytest.mark.parametrize("consumer", ["flatten-linear", "conv"])
def test_torch_cbp_conv_sites_replace_whole_channels(consumer):
    """A conv site: the producer's output channel is redrawn; the consumer's weights from that channel (the block of
    H*W features after a flatten, or the input channel of a conv) are zeroed and their mean folded into the bias."""
    torch.manual_seed(0)
    head: list[nn.Module] = (
        [nn.Flatten(), nn.Linear(4 * 4 * 4, 3)] if consumer == "flatten-linear" else [nn.Conv2d(4, 3, 3)]
    )
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), *head)
    X = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    model(X).sum().backward()
    opt.step()
    cbp = ContinualBackprop(model, opt, example=X[:2], replacement_rate=0.25, maturity=0, seed=3)
    with torch.no_grad():
        model(X)  # the consumer's input: per feature (flatten) or per channel (conv) means
    tr = cbp.sites["1"]
    tr.age[:] = 5
    before, state = _params(model), _state(model, opt)
    cbp.step()  # utilities from that forward; one channel (4 x 0.25) replaced
    chosen = [u for u in range(4) if not torch.equal(model[0].weight[u], before["0.weight"][u])]
    assert len(chosen) == 1
    u = chosen[0]
    others = [k for k in range(4) if k != u]
    cons = model[3] if consumer == "flatten-linear" else model[2]
    name = "3" if consumer == "flatten-linear" else "2"
    W0 = before[f"{name}.weight"]
    if consumer == "flatten-linear":
        cols = list(range(u * 16, (u + 1) * 16))
        keep = [c for c in range(64) if c not in cols]
        assert torch.equal(cons.weight[:, cols], torch.zeros(3, 16))
        assert torch.equal(cons.weight[:, keep], W0[:, keep])
        assert torch.all(state[f"{name}.weight"]["momentum_buffer"][:, cols] != 0)
        assert torch.all(opt.state[cons.weight]["momentum_buffer"][:, cols] == 0)
    else:
        assert torch.equal(cons.weight[:, u], torch.zeros(3, 3, 3))
        assert torch.equal(cons.weight[:, others], W0[:, others])
    # the bias moved by the replaced channel's running mean contribution (decay 0.99: one update = 0.01 x mean)
    with torch.no_grad():
        h = torch.relu(nn.functional.conv2d(X, before["0.weight"], before["0.bias"])).double()
    if consumer == "flatten-linear":
        shift = W0[:, cols].double() @ (0.01 * h.flatten(1).mean(0)[cols])
    else:
        shift = W0[:, u].double().sum((1, 2)) * (0.01 * h[:, u].mean())
    expected = before[f"{name}.bias"] + shift.float()
    torch.testing.assert_close(cons.bias.detach(), expected, rtol=1e-5, atol=1e-6)  # float32 sums, other order
    assert torch.equal(model[0].weight[others], before["0.weight"][others])

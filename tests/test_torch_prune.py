"""reluscope.torch.prune_dead on real shapes: a Conv-BN-ReLU CNN with a flatten into a Linear, a transformer encoder
layer's MLP (ReLU, and GELU with the mean folded), vgg11's features with a VGG-shaped classifier; outputs kept,
parameter counts and shapes as reported, refused sites untouched; redo/prune_dead need no example after scan."""

from __future__ import annotations

import copy
import json
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from conftest import import_torchvision  # noqa: E402
from reluscope.remedies import PruneReport  # noqa: E402
from reluscope.torch import load_pruned, monitor, prune_dead, redo, scan  # noqa: E402

pytestmark = pytest.mark.torch

# "Equal up to rounding": the pruned layers compute the same dot products without the terms of removed units (exact
# zeros for a dead ReLU), but a narrower matrix product / conv may be blocked and summed in another order by the
# kernel (it depends on the shapes, the CPU and the BLAS), so results differ in the last bits, not bit for bit. A K-term
# dot product is within K*u*sum|x_i w_i| of the exact value (Higham, eq. 3.5), so two orders differ by at most
# K*eps*sum|x_i w_i| per layer. Most tests run in float64 (eps 2.2e-16): K <= 25088 terms and sum|x w| <= ~100 x the
# largest output give <= ~6e-10 x max|output| per layer, so atol 1e-8 x max|output| leaves >10x room for a few layers,
# while a wrong fold or a wrong column is off by the size of a weight (>= 1e-3 relative). float32 (eps 1.2e-7) runs
# get 1e-4 x max|output| (~800 ulps) for the same reason on the small layers used there.
TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def assert_same_function(actual, expected):
    tol = TOL[expected.dtype] * float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=tol)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def seeded(build, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def kill(bias, units, value=-100.0):
    """Make ``units`` of a layer dead: a bias far below anything the weights can reach."""
    with torch.no_grad():
        bias[units] = value


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 10),
    )


def dead_cnn():
    model = seeded(cnn)
    with torch.no_grad():  # BatchNorm running stats that are not the identity
        model[1].running_mean.copy_(randn(8, seed=1) * 0.1)
        model[1].running_var.copy_(randn(8, seed=2).abs() + 0.5)
    kill(model[1].bias, [0, 3, 5])
    kill(model[5].bias, [1, 2, 7, 8, 9, 15])
    kill(model[8].bias, list(range(0, 32, 3)))
    return model


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


# CNN -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cnn_outputs_kept_shapes_and_counts_as_reported(dtype):
    model = dead_cnn().to(dtype)
    x = randn(48, 3, 8, 8, seed=3).to(dtype)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    stats = scan(model, [x[:24], x[24:]])
    dead = {name: int(stats.dead_mask(name).sum()) for name in stats.names}
    assert dead["2"] >= 3 and dead["6"] >= 6 and dead["9"] >= 11
    report = prune_dead(model, stats, data=[x])  # no example: scan remembered its first batch
    pruned = report.model
    assert pruned is not model
    # the original is untouched (a copy was pruned)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before_state[k]), k
    # outputs kept (dead ReLU: mean 0, nothing folded)
    assert_same_function(outputs(pruned, x), outputs(model, x))
    assert report.max_abs_delta is not None and report.max_abs_delta <= TOL[dtype] * report.max_abs_output
    assert report.delta_on == "data" and report.delta_samples == 48
    # shapes as reported
    by_name = {s.name: s for s in report.sites}
    c1, c2 = 8 - dead["2"], 16 - dead["6"]
    f1 = 32 - dead["9"]
    assert by_name["2"].units_after == c1 and by_name["6"].units_after == c2 and by_name["9"].units_after == f1
    assert pruned[0].weight.shape == (c1, 3, 3, 3) and pruned[0].bias.shape == (c1,)
    assert pruned[1].weight.shape == (c1,) and pruned[1].running_var.shape == (c1,) and pruned[1].num_features == c1
    assert pruned[4].weight.shape == (c2, c1, 3, 3) and pruned[4].bias is None
    assert pruned[8].weight.shape == (f1, c2 * 16) and pruned[8].in_features == c2 * 16
    assert pruned[11].weight.shape == (10, f1)
    assert all(s.max_fold == 0.0 for s in report.sites)
    # parameter counts as reported, and as counted by hand
    expected = (c1 * 27 + c1) + 2 * c1 + (c2 * c1 * 9) + 2 * c2 + (f1 * c2 * 16 + f1) + (10 * f1 + 10)
    assert report.params_after == sum(p.numel() for p in pruned.parameters()) == expected
    assert report.params_before == sum(p.numel() for p in model.parameters())
    macs = c1 * 27 * 64 + c2 * c1 * 9 * 16 + f1 * c2 * 16 + 10 * f1
    assert report.macs_after == macs
    assert sum(layer.params_after for layer in report.layers) + 0 <= report.params_after
    # the pruned copy trains: gradients flow through every resized layer
    pruned.train()
    pruned(x[:4]).sum().backward()
    assert all(p.grad is not None for p in pruned.parameters())


def test_inplace_and_report_round_trip():
    model = dead_cnn().double()
    x = randn(16, 3, 8, 8, seed=4).double()
    ref = outputs(copy.deepcopy(model), x)
    stats = scan(model, [x])
    report = prune_dead(model, stats, inplace=True)
    assert report.model is model and model[0].out_channels == report.sites[0].units_after
    assert report.delta_on == "example" and report.delta_samples == 2
    assert_same_function(outputs(model, x), ref)
    d = report.to_dict()
    again = PruneReport.from_dict(json.loads(json.dumps(d)))
    assert again == report and again.to_dict() == d
    with pytest.raises(ValueError, match="not a PruneReport"):
        PruneReport.from_dict({"format": "x"})
    with pytest.raises(ValueError, match="malformed"):
        PruneReport.from_dict({**d, "sites": [{"name": "a"}]})


# Refusals ---------------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.fc = nn.Linear(16, 16)
        self.mid = nn.Linear(16, 12)
        self.out = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))  # read by fc and by the skip: refused
        h = torch.relu(self.fc(h) + h)  # pre-activation is an add: refused
        return self.out(torch.relu(self.mid(h)))  # prunable


def test_refused_sites_are_listed_and_untouched():
    model = seeded(Residual).double()
    kill(model.inp.bias, [0, 1, 2, 3])
    kill(model.mid.bias, [0, 5])
    x = randn(32, 6, seed=5).double()
    stats = scan(model, [x])
    report = prune_dead(model, stats, data=[x])
    assert set(report.refused) == {"relu", "relu#2"}
    assert "used by 2 operations" in report.refused["relu"] or "also used" in report.refused["relu"]
    assert "add" in report.refused["relu#2"]
    pruned = report.model
    for path in ("inp", "fc"):
        for name, p in getattr(model, path).named_parameters():
            assert torch.equal(getattr(getattr(pruned, path), name), p), (path, name)
    assert pruned.mid.out_features == 12 - int(stats.dead_mask("relu#3").sum()) <= 10
    assert_same_function(outputs(pruned, x), outputs(model, x))


def test_output_site_and_all_dead_site_refused():
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU()))
    kill(model[0].bias, list(range(8)))
    x = randn(10, 4, seed=6)
    stats = scan(model, [x])
    report = prune_dead(model, stats)
    assert "output" in report.refused["3"] and "no units" in report.refused["1"]
    assert report.params_after == report.params_before and report.sites == []


def test_errors_teach():
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    other = seeded(lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)))
    x = randn(8, 4, seed=7)
    stats = scan(model, [x])
    with pytest.raises(ValueError, match="fold must be"):
        prune_dead(model, stats, fold="median")
    with pytest.raises(ValueError, match="tau"):
        prune_dead(model, stats, tau=-1)
    with pytest.raises(TypeError, match="ActivationStats"):
        prune_dead(model, {"1": 0})
    fresh = seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    with pytest.raises(ValueError, match="example"):
        prune_dead(fresh, stats)  # never scanned, no example
    scan(other, [x])
    with pytest.raises(ValueError, match="units"):
        prune_dead(other, stats)
    with warnings.catch_warnings():  # TorchScript is deprecated in recent PyTorch; prune_dead refuses it anyway
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    with pytest.raises(TypeError, match="TorchScript"):
        prune_dead(scripted, stats)


# redo and prune_dead need no example after scan / monitor ----------------------------------------------------------
def test_redo_after_scan_and_monitor_needs_no_example():
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    kill(model[0].bias, [1, 2])
    x = randn(8, 4, seed=8)
    stats = scan(model, [(x, torch.zeros(8))])
    assert redo(model, None, stats, tau=0.0).counts == {"1": 2}
    trained = seeded(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    kill(trained[0].bias, [0])
    with monitor(trained) as m:
        trained(x)
    assert redo(trained, None, m.stats, tau=0.0).counts == {"1": 1}
    assert prune_dead(trained, m.stats).sites[0].units_before == 8


# Transformer encoder MLP -------------------------------------------------------------------------------------------
def encoder(activation):
    # batch_first=False keeps PyTorch's fused inference path (which bypasses Python) out of the way
    return nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=128, dropout=0.0, activation=activation)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_mlp(activation):
    model = seeded(lambda: encoder(activation)).double()
    dead = list(range(0, 128, 2))[:52]  # ~40% of the FFN
    with torch.no_grad():  # dead GELU units around x = -1, where GELU(x) = -0.16 varies a little: a real fold
        model.linear1.weight[dead] *= 0.02
    kill(model.linear1.bias, dead, value=-1.0)
    x = randn(12, 5, 32, seed=9).double()  # (L, N, D)
    stats = scan(model, [x])  # units of the (L, N, 128) activations on the last dim (from linear1)
    (site,) = stats.names
    assert set(np.flatnonzero(stats.dead_mask(site))) >= set(dead)
    report = prune_dead(model, stats, data=[x])
    pruned = report.model
    (ps,) = report.sites
    assert pruned.linear1.out_features == ps.units_after == 128 - len(ps.removed)
    assert pruned.linear2.weight.shape == (32, ps.units_after)
    assert report.params_before - report.params_after == len(ps.removed) * (32 + 1 + 32)

    # the MLP's output (linear2), recorded in both models
    seen = {}
    for name, m in (("orig", model), ("pruned", pruned)):
        m.linear2.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, out))
    out_o, out_p = outputs(model, x), outputs(pruned, x)
    assert report.max_abs_delta == pytest.approx(float((out_p - out_o).abs().max()), rel=1e-6, abs=1e-12)
    if activation == "relu":
        assert ps.max_fold == 0.0
        assert_same_function(out_p, out_o)
        assert_same_function(seen["pruned"], seen["orig"])
        return
    # GELU: the removed units' outputs g lie in [min GELU, 0] = [-0.170, 0] (they never fired), and so does their
    # folded mean m, so |linear2 change| <= sum_u |W2[:, u]| * (max_u g - min_u g) <= sum_u |W2[:, u]| * 0.170.
    # The measured range of g is much smaller here (pre-activations near -1), so the bound uses it.
    gelu_min = 0.16997  # GELU's minimum, at x = -0.7518
    removed = torch.tensor(ps.removed)
    with torch.no_grad():
        pre = model.linear1(x)[..., removed]
        g = torch.nn.functional.gelu(pre)
    assert float(g.max()) <= 0 and float(g.min()) >= -gelu_min
    spread = float(g.max() - g.min())
    bound = float(model.linear2.weight.detach()[:, removed].abs().sum(1).max()) * spread
    delta_mlp = float((seen["pruned"] - seen["orig"]).abs().max())
    assert 0 < delta_mlp <= bound * (1 + 1e-4) + 1e-6
    assert 0.1 < ps.max_fold <= gelu_min
    dropped = prune_dead(model, stats, data=[x], fold="none")
    assert report.max_abs_delta < dropped.max_abs_delta / 10  # the fold removes most of the change


def test_gelu_dormant_units_that_fired_are_kept():
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 2)))
    x = randn(64, 4, seed=10)
    stats = scan(model, [x])
    report = prune_dead(model, stats, tau=0.5)
    (ps,) = report.sites
    candidates = int(stats.dormant_mask("1", 0.5).sum())
    assert candidates > 0
    assert ps.kept == candidates - int(stats.dead_mask("1").sum()) and len(ps.removed) == candidates - ps.kept


# vgg11 -------------------------------------------------------------------------------------------------------------
class VGGShaped(nn.Module):
    """torchvision's VGG forward (features -> adaptive avg pool 7x7 -> flatten -> classifier) with vgg11's real
    features and a classifier of vgg11's shape (Linear-ReLU-Dropout x2 + Linear) but 256 wide instead of 4096:
    vgg11's 25088x4096 Linear takes ~7 s to initialise on one core, too slow for a test (the benchmark uses it)."""

    def __init__(self, width: int = 256) -> None:
        super().__init__()
        tv = import_torchvision()
        self.features = tv.models.vgg.make_layers(tv.models.vgg.cfgs["A"])
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, width),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(width, width),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(width, 10),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_vgg11_features_and_classifier():
    model = seeded(VGGShaped).double()
    w = 256
    kill(model.classifier[0].bias, list(range(0, w, 5)) + list(range(1, w, 5)))  # 40%
    kill(model.classifier[3].bias, list(range(2, w, 5)) + list(range(3, w, 5)))
    x = randn(6, 3, 32, 32, seed=11).double()
    stats = scan(model, [x])
    report = prune_dead(model, stats, data=[x])
    pruned = report.model
    by_name = {s.name: s for s in report.sites}
    f1 = by_name["classifier.1"].units_after
    f2 = by_name["classifier.4"].units_after
    assert f1 <= 0.6 * w and f2 <= 0.6 * w
    last = by_name["features.19"].units_after  # vgg11's last conv ReLU, flattened (1x1 -> 7x7 blocks) into fc1
    assert pruned.classifier[0].weight.shape == (f1, last * 49)
    assert pruned.classifier[3].weight.shape == (f2, f1) and pruned.classifier[6].weight.shape == (10, f2)
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    assert report.refused == {}
    assert_same_function(outputs(pruned, x), outputs(model, x))


# reluscope diagnose --torch-model: savings printed, --prune-out writes tensors + an architecture note ------------
MODULE = "reluscope_test_prunable_models"
USER_CODE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class CNN(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * 64, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def make():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CNN()
    with torch.no_grad():
        model.bn.bias[0] = -100.0  # channel 0 never fires
    return model


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 8, 8, generator=g)
    return DataLoader(TensorDataset(x, torch.zeros(40, dtype=torch.long)), batch_size=16)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's model file next to the working directory, importable as MODULE; sys.path/modules restored."""
    path = tmp_path / f"{MODULE}.py"
    path.write_text(USER_CODE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield path
    sys.modules.pop(MODULE, None)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_cli_torch_prune_out(user_module, tmp_path, suffix):
    from typer.testing import CliRunner

    from reluscope.cli import app
    from reluscope.cli._torch_diagnose import load_torch_model

    runner = CliRunner()
    out = tmp_path / f"pruned{suffix}"
    args = ["diagnose", f"--torch-model={MODULE}:make", f"--data={MODULE}:loader", "--prune-out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())  # rich wraps long lines
    assert "pruning would remove" in text and str(out) in "".join(text.split())  # rich may wrap inside the path
    if suffix == ".pt":
        state = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(out)
    note = json.loads((tmp_path / f"pruned{suffix}.arch.json").read_text())
    assert note["format"] == "reluscope.PrunedArchitecture" and note["weights"] == out.name
    report = PruneReport.from_dict(note["prune"])
    width = note["layers"]["conv"]["out_channels"]
    assert width == 3 and note["layers"]["fc"]["in_features"] == width * 64  # channel 0 of 4 was dead
    buffers = 2 * width + 1  # BatchNorm's running mean and var, num_batches_tracked
    assert report.params_after + buffers == sum(v.numel() for v in state.values())
    # rebuild from the note and compare with the original on the scanned data
    original = load_torch_model(f"{MODULE}:make")
    rebuilt = load_pruned(load_torch_model(f"{MODULE}:make"), out)
    assert rebuilt.conv.weight.shape == (width, 1, 3, 3) and rebuilt.bn.num_features == width
    assert all(torch.equal(v, state[k]) for k, v in rebuilt.state_dict().items())
    x = torch.cat([b[0] for b in sys.modules[MODULE].loader()])
    assert_same_function(outputs(rebuilt, x), outputs(original, x))
    res = runner.invoke(app, ["diagnose", f"--torch-model={MODULE}:make", f"--data={MODULE}:loader", "--json"])
    assert json.loads(res.stdout)["prune"]["params_before"] == report.params_before


def test_load_pruned_errors(user_module, tmp_path):
    from typer.testing import CliRunner

    from reluscope.cli import app
    from reluscope.cli._torch_diagnose import load_torch_model

    out = tmp_path / "p.pt"
    args = ["diagnose", f"--torch-model={MODULE}:make", f"--data={MODULE}:loader", "--prune-out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    with pytest.raises(ValueError, match="should be a Conv2d"):
        load_pruned(nn.Sequential(nn.Linear(2, 2)), out)
    with pytest.raises(FileNotFoundError):
        load_pruned(load_torch_model(f"{MODULE}:make"), tmp_path / "missing.pt")
    (tmp_path / "bad.pt.arch.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match=r"not a reluscope\.PrunedArchitecture"):
        load_pruned(load_torch_model(f"{MODULE}:make"), tmp_path / "bad.pt")


def test_cli_torch_prune_refusal_is_a_note_or_an_error(user_module, tmp_path):
    from typer.testing import CliRunner

    from reluscope.cli import app

    runner = CliRunner()
    args = ["diagnose", f"--torch-model={MODULE}:make", "--data=digits", "--input-shape=64"]
    res = runner.invoke(app, [*args, "--json"])  # (N, 64) into a conv: the model fails, exit 2 as before
    assert res.exit_code == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2)))
        path = tmp_path / "m.pt"
        torch.jit.save(scripted, str(path))
    base = ["diagnose", f"--torch-model={path}", "--data=digits"]
    res = runner.invoke(app, base)
    text = " ".join(res.stdout.split())
    assert res.exit_code == 0 and "pruning not estimated" in text and "TorchScript" in text
    res = runner.invoke(app, [*base, "--prune-out", str(tmp_path / "p.pt")])
    assert res.exit_code == 2 and "TorchScript" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "p.pt").exists()


def test_gelu_conv_consumer_with_padding_folds_and_reports_the_border():
    model = seeded(
        lambda: nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 3)
        )
    ).double()
    with torch.no_grad():  # channels 0-3 dead near x = -1 (GELU about -0.16, varying a little)
        model[0].weight[:4] *= 0.01
    kill(model[0].bias, [0, 1, 2, 3], value=-1.0)
    x = randn(20, 2, 4, 4, seed=12).double()
    stats = scan(model, [x])
    folded = prune_dead(model, stats, data=[x])
    dropped = prune_dead(model, stats, data=[x], fold="none")
    site = next(s for s in folded.sites if s.name == "1")
    assert site.removed == [0, 1, 2, 3] and "zero-pads" in site.note and 0.1 < site.max_fold < 0.17
    # per-position counts give the same mean per position (float64 sums in another order: 1e-12 relative)
    per_position = prune_dead(model, scan(model, [x], per_position=True), data=[x])
    assert per_position.sites[0].max_fold == pytest.approx(site.max_fold, rel=1e-12)
    assert per_position.max_abs_delta == pytest.approx(folded.max_abs_delta, rel=1e-9)
    assert folded.max_abs_delta is not None and dropped.max_abs_delta is not None
    # on a 4x4 input 12 of 16 positions are border, where the fold adds what padding never gave: folding still
    # helps on average, and the change is measured
    assert folded.max_abs_delta > 0 and folded.mean_abs_delta < dropped.mean_abs_delta
    # the fold is exact in the interior: with padding removed from the consumer, only the GELU variation is left
    interior = copy.deepcopy(model)
    interior[2].padding = (0, 0)
    interior[4] = nn.Linear(16, 3).double()
    stats_i = scan(interior, [x])
    rep_i = prune_dead(interior, stats_i, data=[x])
    assert rep_i.sites[0].note == "" and rep_i.max_abs_delta < folded.max_abs_delta / 5

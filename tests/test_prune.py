"""reluscope.remedies.prune_dead on the numpy MLP: dead ReLUs removed with the scores kept, leaky/sigmoid means folded,
sizes and counts as reported, refusals and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _rounding import rounding_bounds
from reluscope.data import spiral
from reluscope.diagnose import scan
from reluscope.nn import MLP
from reluscope.remedies import PruneReport, prune_dead


def score_bound(net, X):
    """(N, C): how far two BLAS kernels' scores of ``net`` may be apart (tests/_rounding.py's rigorous bound, Higham
    eq. 3.5, carried through the output layer). The pruned net runs narrower products than the original, summed in
    another order; dropping exact zero terms (dead ReLUs) adds no error of its own, so the two nets' scores must agree
    within the sum of both nets' bounds."""
    eps = float(np.finfo(net.dtype).eps)
    h = np.abs(net.hidden_outputs(X)[-1][1].astype(np.float64))
    carried = rounding_bounds(net, X)[-1]
    W, b = np.abs(net.params[f"W{net.n_layers}"]), np.abs(net.params[f"b{net.n_layers}"])
    return 2.0 * ((W.shape[0] + 1) * eps * (h @ W + b) + carried @ W)


def assert_same_scores(pruned, net, X):
    diff = np.abs(pruned.scores(X) - net.scores(X))
    bound = score_bound(net, X) + score_bound(pruned, X)
    assert (diff <= bound).all(), f"max excess {float((diff - bound).max())}"


def dead_net(activation="relu", sizes=(2, 40, 30, 3), seed=0):
    net = MLP(list(sizes), activation=activation, seed=seed)
    net.params["b1"][::3] = -50.0  # every third unit of hidden1 never fires (|W x| << 50 on the spiral)
    net.params["b2"][1::4] = -50.0
    return net


def test_relu_scores_kept_sizes_and_counts():
    X, _ = spiral(n_per_class=60, n_classes=3, seed=1)
    net = dead_net()
    stats = scan(net, X, 64)
    dead1, dead2 = stats.dead_mask("hidden1"), stats.dead_mask("hidden2")
    assert dead1.sum() >= 14 and dead2.sum() >= 8
    before = {k: v.copy() for k, v in net.params.items()}
    report = prune_dead(net, stats, X=X)
    pruned = report.model
    h1, h2 = int((~dead1).sum()), int((~dead2).sum())
    assert pruned.sizes == [2, h1, h2, 3]
    assert pruned.params["W1"].shape == (2, h1) and pruned.params["W2"].shape == (h1, h2)
    assert pruned.params["W3"].shape == (h2, 3)
    assert_same_scores(pruned, net, X)
    assert report.max_abs_delta is not None and report.max_abs_delta <= float(score_bound(net, X).max()) * 2
    assert report.delta_samples == len(X) and report.delta_on == "data"
    assert [s.removed for s in report.sites] == [list(np.flatnonzero(dead1)), list(np.flatnonzero(dead2))]
    assert report.params_after == sum(v.size for v in pruned.params.values())
    assert report.params_before == sum(v.size for v in net.params.values())
    assert report.macs_after == 2 * h1 + h1 * h2 + h2 * 3 and report.macs_before == 2 * 40 + 40 * 30 + 30 * 3
    assert [layer.name for layer in report.layers] == ["W1", "W2", "W3"]
    for k, v in net.params.items():  # the original is not changed
        np.testing.assert_array_equal(v, before[k])
    # the kept units keep their weights exactly (copied, not recomputed)
    np.testing.assert_array_equal(pruned.params["W2"], net.params["W2"][~dead1][:, ~dead2])
    again = PruneReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert "pruning would remove" in report.summary() and f"{report.params_saved}" in report.summary()


def test_leaky_dead_units_fold_their_mean():
    X, _ = spiral(n_per_class=50, n_classes=3, seed=2)
    net = MLP([2, 40, 3], activation="leaky", seed=3)
    net.params["b1"][::2] = -2.0  # dead, but leaky: output 0.01 * (W x - 2), varying a little
    stats = scan(net, X, 50)
    folded = prune_dead(net, stats, X=X)
    dropped = prune_dead(net, stats, X=X, fold="none")
    assert folded.sites[0].max_fold > 0
    assert folded.max_abs_delta is not None and dropped.max_abs_delta is not None
    assert folded.mean_abs_delta is not None and dropped.mean_abs_delta is not None
    assert folded.max_abs_delta < dropped.max_abs_delta / 3 and folded.mean_abs_delta < dropped.mean_abs_delta / 5
    assert folded.max_abs_delta <= fold_bound(net, X, folded.sites[0].removed)


def fold_bound(net, X, removed):
    """Each removed unit's output lies in [min, max] over X and its folded mean inside that range, so a score
    changes by at most sum_u |W2[u, c]| * (max_u - min_u); 1e-9 relative room for float64 rounding."""
    act = net.hidden_outputs(X)[0][1][:, removed]
    spread = act.max(0) - act.min(0)
    return float((np.abs(net.params["W2"][removed]) * spread[:, None]).sum(0).max()) * (1 + 1e-9)


def test_sigmoid_dormant_units_use_the_exact_mean():
    X, _ = spiral(n_per_class=40, n_classes=3, seed=4)
    net = MLP([2, 30, 3], activation="sigmoid", seed=5)
    net.params["b1"][:10] = -8.0  # sigmoid(-8) = 3e-4: τ-dormant, positive, nearly constant
    stats = scan(net, X, 40)
    report = prune_dead(net, stats, tau=0.05, X=X)
    (site,) = report.sites
    assert set(range(10)) <= set(site.removed) and site.kept == 0
    assert report.max_abs_delta is not None and report.max_abs_delta <= fold_bound(net, X, site.removed)
    dropped = prune_dead(net, stats, tau=0.05, X=X, fold="none")
    assert dropped.max_abs_delta is not None and report.max_abs_delta < dropped.max_abs_delta


def test_tanh_dormant_units_that_fired_are_kept():
    X, _ = spiral(n_per_class=40, n_classes=3, seed=6)
    net = MLP([2, 20, 3], activation="tanh", seed=7)
    stats = scan(net, X, 40)
    report = prune_dead(net, stats, tau=0.9)
    (site,) = report.sites
    candidates = int(stats.dormant_mask("hidden1", 0.9).sum())
    assert candidates > 0 and site.kept == candidates - int(stats.dead_mask("hidden1").sum())


def test_all_dead_layer_refused_and_errors():
    X, _ = spiral(n_per_class=20, n_classes=3, seed=8)
    net = MLP([2, 10, 3], seed=9)
    net.params["b1"][:] = -50.0
    stats = scan(net, X, 60)
    report = prune_dead(net, stats)
    assert "no units" in report.refused["hidden1"] and report.model.sizes == net.sizes
    with pytest.raises(ValueError, match="fold must be"):
        prune_dead(net, stats, fold="max")
    with pytest.raises(ValueError, match="tau"):
        prune_dead(net, stats, tau=float("nan"))
    with pytest.raises(TypeError, match="MLP"):
        prune_dead("net", stats)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="another network"):
        prune_dead(MLP([2, 11, 3], seed=0), stats)
    with pytest.raises(ValueError, match="no site"):
        prune_dead(MLP([2, 10, 10, 3], seed=0), stats)


# reluscope diagnose: what pruning would save, --prune-out -------------------------------------------------------
def test_cli_prints_savings_and_writes_the_pruned_model(tmp_path):
    from typer.testing import CliRunner

    from reluscope.cli import app
    from reluscope.io import load_model, save_model

    net = MLP([2, 10, 3], seed=0)
    net.params["b1"][:4] = -50.0  # 4 of 10 units can never fire on the spiral
    path = tmp_path / "m.npz"
    save_model(path, net)
    out = tmp_path / "sub" / "pruned.npz"
    runner = CliRunner()
    res = runner.invoke(app, ["diagnose", str(path), "--prune-out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())  # rich wraps long lines
    assert "pruning would remove 4 of 10 units" in text and "multiply-adds per sample" in text
    pruned = load_model(out)
    assert pruned.sizes == [2, 6, 3]
    X, _ = spiral(100, 3, seed=0)
    assert_same_scores(pruned, net, X)
    res = runner.invoke(app, ["diagnose", str(path), "--json"])
    prune = json.loads(res.stdout)["prune"]
    assert PruneReport.from_dict(prune).params_saved == 4 * (2 + 1 + 3)
    (tmp_path / "file.npz").write_text("not a directory")
    bad = runner.invoke(app, ["diagnose", str(path), "--prune-out", str(tmp_path / "file.npz" / "x.npz")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and bad.stderr.strip().count("\n") == 0


def test_prelu_slopes_are_pruned_and_their_sign_used():
    X, _ = spiral(n_per_class=40, n_classes=3, seed=10)
    net = MLP([2, 12, 3], activation="prelu", seed=11)
    net.params["a1"][:] = np.linspace(-0.3, 0.3, 12)  # negative slopes: a dead unit's output is >= 0 there
    net.params["b1"][:6] = -3.0
    stats = scan(net, X, 40)
    report = prune_dead(net, stats, X=X)
    (site,) = report.sites
    assert site.removed == list(range(6))
    np.testing.assert_array_equal(report.model.params["a1"], net.params["a1"][6:])
    dropped = prune_dead(net, stats, X=X, fold="none")
    assert report.max_abs_delta <= fold_bound(net, X, site.removed) < dropped.max_abs_delta

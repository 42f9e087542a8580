"""`reluscope explain`: every number recomputed from the JSON output (plain numpy and torch autograd), the ReLU gate
(a unit exactly at 0, a unit dead for the whole batch), the renderers, and every error path of the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reluscope.cli.explain import explain as explain_command
from reluscope.explain import explain, explain_net, render_json, render_markdown, rich_sections
from reluscope.nn import MLP

app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
app.command("explain")(explain_command)


@app.callback()
def _root() -> None:
    """Throwaway app around the command (the lead registers it in reluscope.cli)."""


runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["explain", *args])


def run_json(*args: str) -> dict:
    res = run("--format", "json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def steps(d: dict) -> dict[str, np.ndarray]:
    return {s["key"]: np.asarray(s["value"], dtype=float) for s in d["steps"]}


# A hand-made case: unit 0 sits exactly at z1 = 0 on sample 0, unit 1 never fires, unit 3 fires on sample 1 only.
X_KINK = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 1.0]])
Y_KINK = np.array([0, 2])
W_KINK = {
    "W1": np.array([[1.0, -1.0, 0.5, 1.0], [1.0, -1.0, 0.5, -1.0], [-1.0, -1.0, 0.5, 0.0]]),
    "b1": np.zeros(4),
    "W2": np.array([[1.0, -1.0, 0.5], [0.5, 0.5, -1.0], [-0.5, 1.0, 0.25], [1.0, 0.0, -1.0]]),
    "b2": np.array([0.1, -0.2, 0.0]),
}


@pytest.fixture
def kink_files(tmp_path):
    np.savez(tmp_path / "w.npz", **W_KINK)
    np.savez(tmp_path / "data.npz", X=X_KINK, y=Y_KINK)
    return tmp_path / "w.npz", tmp_path / "data.npz"


# Independent recomputations ---------------------------------------------------------------------------------------
def numpy_pass(d: dict) -> dict[str, np.ndarray]:
    """Every intermediate and gradient, written out in plain numpy from the JSON's inputs and weights."""
    X, y = np.asarray(d["X"]), np.asarray(d["y"])
    P = {k: np.asarray(v) for k, v in d["params"].items()}
    act, slope, alpha, reg = d["activation"]["name"], d["activation"]["slope"], d["activation"]["alpha"], d["reg"]
    n = len(y)
    z1 = X @ P["W1"] + P["b1"]
    if act == "relu":
        h, local = np.maximum(z1, 0), (z1 > 0).astype(float)
    elif act == "leaky":
        h, local = np.where(z1 > 0, z1, slope * z1), np.where(z1 > 0, 1.0, slope)
    elif act == "elu":
        h, local = (
            np.where(z1 > 0, z1, alpha * (np.exp(np.minimum(z1, 0)) - 1)),
            np.where(z1 > 0, 1, alpha * np.exp(z1)),
        )
    elif act == "sigmoid":
        h = 1 / (1 + np.exp(-z1))
        local = h * (1 - h)
    else:
        h = np.tanh(z1)
        local = 1 - h**2
    scores = h @ P["W2"] + P["b2"]
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * reg * (np.sum(P["W1"] ** 2) + np.sum(P["W2"] ** 2))
    dscores = p.copy()
    dscores[np.arange(n), y] -= 1
    dscores /= n
    dh = dscores @ P["W2"].T
    dz1 = dh * local
    return {
        "z1": z1,
        "h": h,
        "scores": scores,
        "p": p,
        "loss": np.asarray(loss),
        "dscores": dscores,
        "dW2": h.T @ dscores + reg * P["W2"],
        "db2": dscores.sum(axis=0),
        "dh": dh,
        "dz1": dz1,
        "dW1": X.T @ dz1 + reg * P["W1"],
        "db1": dz1.sum(axis=0),
    }


def torch_pass(d: dict) -> dict[str, np.ndarray]:
    """The same network through torch.autograd: gradients of every parameter and intermediate."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    act = d["activation"]
    fn = {
        "relu": torch.relu,
        "leaky": lambda t: tf.leaky_relu(t, act["slope"]),
        "elu": lambda t: tf.elu(t, act["alpha"]),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[act["name"]]
    X = torch.tensor(d["X"], dtype=torch.float64)
    y = torch.tensor(d["y"])
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in d["params"].items()}
    z1 = X @ P["W1"] + P["b1"]
    h = fn(z1)
    scores = h @ P["W2"] + P["b2"]
    for t in (z1, h, scores):
        t.retain_grad()
    loss = tf.cross_entropy(scores, y) + 0.5 * d["reg"] * ((P["W1"] ** 2).sum() + (P["W2"] ** 2).sum())
    loss.backward()
    out = {"z1": z1, "h": h, "scores": scores, "p": torch.softmax(scores, dim=1), "loss": loss}
    out |= {"dscores": scores.grad, "dh": h.grad, "dz1": z1.grad}
    out |= {f"d{k}": P[k].grad for k in P}
    return {k: v.detach().numpy() for k, v in out.items()}


CASES = [
    ("relu", "0"),
    ("relu", "0.1"),
    ("leaky", "0"),
    ("elu", "0"),
    ("sigmoid", "0.05"),
    ("tanh", "0"),
]


@pytest.mark.parametrize(("activation", "reg"), CASES)
def test_every_step_matches_plain_numpy(activation, reg):
    d = run_json("--activation", activation, "--reg", reg, "--seed", "3", "--samples", "5", "--hidden", "6")
    shown, ref = steps(d), numpy_pass(d)
    assert list(shown) == ["z1", "h", "scores", "p", "loss", "dscores", "dW2", "db2", "dh", "dz1", "dW1", "db1"]
    for key, value in ref.items():
        np.testing.assert_allclose(shown[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
        assert list(shown[key].shape) == next(s["shape"] for s in d["steps"] if s["key"] == key)


@pytest.mark.torch
@pytest.mark.parametrize(("activation", "reg"), CASES)
def test_every_gradient_matches_torch_autograd(activation, reg):
    d = run_json("--activation", activation, "--reg", reg, "--seed", "3", "--samples", "5", "--hidden", "6")
    shown, ref = steps(d), torch_pass(d)
    for key, value in ref.items():
        np.testing.assert_allclose(shown[key], value, rtol=1e-10, atol=1e-14, err_msg=key)


@pytest.mark.torch
def test_default_run_matches_torch_and_numpy():
    d = run_json()
    shown = steps(d)
    for ref in (numpy_pass(d), torch_pass(d)):
        for key, value in ref.items():
            np.testing.assert_allclose(shown[key], value, rtol=1e-10, atol=1e-14, err_msg=key)


# The default case --------------------------------------------------------------------------------------------------
def test_default_is_the_small_seed_architecture_and_instructive():
    d = run_json()
    assert d["sizes"] == {"inputs": 3, "hidden": 4, "classes": 3, "samples": 2}
    assert d["activation"]["name"] == "relu" and d["reg"] == 0
    gate = d["gate"]
    fired = np.array(gate["fired"])
    # Documented: units 0 and 2 fire on neither sample, unit 1 fires on sample 1 only.
    assert gate["dead_units"] == [0, 2]
    assert fired[:, 1].tolist() == [False, True]
    assert gate["off"] and all(e["exactly_zero"] for e in gate["off"])
    assert d["column"]["sample"] == 0 and d["column"]["matches"]
    assert d["gradcheck"]["ok"] and d["gradcheck"]["passed"] and d["gradcheck"]["max_rel_error"] < 1e-7
    assert d["engine_max_abs_diff"] < 1e-12
    assert d["sgd"]["loss_after"] < d["sgd"]["loss_before"]
    assert d["sgd"]["frozen_units"] == [0, 2]
    assert d["warnings"] == []


def test_rich_output_names_every_step_and_the_gate():
    res = run()
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in (
        "z1 = X · W1 + b1",
        "h = max(0, z1)",
        "dscores = (p − onehot(y)) / N",
        "dW2 = hᵀ · dscores",
        "dh = dscores · W2ᵀ",
        "dz1 = dh ⊙ [z1 > 0]",
        "dW1 = Xᵀ · dz1",
        "db1 = Σ_n dz1[n]",
    ):
        assert text in out, text
    assert "the relu gate" in out and "derivative is" in out and "taken as 0" in out
    assert "outer(z > 0, x)" in out and "dW = outer(dz, x)" in out
    assert "gradient check passed" in out and "one SGD step" in out
    assert "units 0, 2 fired on none of the 2 samples" in re.sub(r"[│\s]+", " ", out)


# A unit exactly at 0, a unit dead for the whole batch ---------------------------------------------------------------
def test_unit_exactly_at_zero_and_dead_unit_json(kink_files):
    weights, data = kink_files
    d = run_json("--weights", str(weights), "--input", str(data))
    assert d["sizes"] == {"inputs": 3, "hidden": 4, "classes": 3, "samples": 2}
    gate = d["gate"]
    z1 = np.array(steps(d)["z1"])
    assert z1[0, 0] == 0.0  # 1 + 2 - 3, exactly
    assert gate["at_zero"][0][0] and not gate["fired"][0][0] and gate["fired"][1][0]
    entry = next(e for e in gate["off"] if (e["sample"], e["unit"]) == (0, 0))
    assert entry["at_zero"] and entry["local_grad"] == 0.0 and entry["dz"] == 0.0
    assert entry["upstream"] != 0.0  # a non-zero gradient arrived and the gate stopped it
    assert entry["dW1"] == [0.0, 0.0, 0.0] and entry["db1"] == 0.0 and entry["exactly_zero"]
    # Unit 1 is negative on both samples: dead for the batch, exactly zero gradient, unchanged by SGD.
    assert gate["dead_units"] == [1]
    s = steps(d)
    assert np.all(s["dW1"][:, 1] == 0.0) and s["db1"][1] == 0.0 and np.all(s["dW2"][1] == 0.0)
    assert gate["dead_dW1"] == [[0.0], [0.0], [0.0]] and gate["dead_db1"] == [0.0]
    assert d["sgd"]["frozen_units"] == [1]
    np.testing.assert_array_equal(np.array(d["sgd"]["params_after"]["W1"])[:, 1], W_KINK["W1"][:, 1])
    # Unit 0 still learns from sample 1, where it fires: gradient descent is not killed.
    assert np.any(s["dW1"][:, 0] != 0)
    # The finite differences straddle the kink of unit 0 on sample 0: reported apart, the rest passes.
    assert d["gradcheck"]["ok"] and d["gradcheck"]["params"]["W1"]["kinks"] > 0
    assert d["gradcheck"]["total_kinks"] > 0
    # Independent recomputations agree at the kink too (torch's relu also has derivative 0 at 0).
    for key, value in numpy_pass(d).items():
        np.testing.assert_allclose(s[key], value, rtol=1e-12, atol=1e-15, err_msg=key)


@pytest.mark.torch
def test_unit_exactly_at_zero_matches_torch(kink_files):
    weights, data = kink_files
    d = run_json("--weights", str(weights), "--input", str(data))
    s = steps(d)
    for key, value in torch_pass(d).items():
        np.testing.assert_allclose(s[key], value, rtol=1e-12, atol=1e-15, err_msg=key)


def test_unit_exactly_at_zero_and_dead_unit_text(kink_files):
    weights, data = kink_files
    res = run("--weights", str(weights), "--x", "1,2,3; 2,1,1", "--y", "0,2", "--format", "markdown")
    assert res.exit_code == 0, res.output
    md = res.stdout
    assert "sample 0, unit 0: z1 is exactly 0. ReLU's derivative at 0 is taken as 0" in md
    assert "**at 0** (0)" in md
    assert "unit 1 fired on none of the 2 samples: dW1[:, 1] and db1[1] get exactly 0" in md
    assert "A unit that never fires on any sample of the dataset is dead" in md
    assert "units 1: incoming" not in md and "unit 1: incoming weights and bias did not move at all" in md
    assert "sat on a kink" in md
    rich_out = re.sub(r"[│\s]+", " ", run("--weights", str(weights), "--input", str(data)).stdout)
    assert "at 0 (0)" in rich_out and "z1 is exactly 0" in rich_out
    assert "unit 1 fired on none of the 2 samples" in rich_out


def test_leaky_relu_changes_only_the_local_derivative(kink_files):
    weights, data = kink_files
    relu = run_json("--weights", str(weights), "--input", str(data))
    leaky = run_json("--weights", str(weights), "--input", str(data), "--activation", "leaky", "--slope", "0.1")
    gate = leaky["gate"]
    assert not gate["closes"] and relu["gate"]["closes"]
    entry = next(e for e in gate["off"] if (e["sample"], e["unit"]) == (0, 0))
    assert entry["local_grad"] == 0.1 and entry["dz"] == pytest.approx(0.1 * entry["upstream"])  # slope at 0
    assert not entry["exactly_zero"]
    dz1 = next(s for s in leaky["steps"] if s["key"] == "dz1")
    assert dz1["formula"] == "dz1 = dh ⊙ f'(z1),  f'(z) = 1 if z > 0 else 0.1"
    assert np.all(steps(leaky)["dW1"][:, 1] != 0)  # the "dead" unit still learns
    chosen = [a for a in gate["alternatives"] if a["chosen"]]
    assert [a["activation"] for a in chosen] == ["leaky"]
    assert leaky["sgd"]["frozen_units"] == []
    np.testing.assert_array_equal(steps(leaky)["z1"], steps(relu)["z1"])  # same weights, same pre-activations
    md = run(
        "--weights",
        str(weights),
        "--input",
        str(data),
        "--activation",
        "leaky",
        "--slope",
        "0.1",
        "--format",
        "markdown",
    ).stdout
    assert "leaky passes f'(z1) = 0.1" in md and "it is not dead and can recover" in md


@pytest.mark.parametrize(("activation", "line"), [("sigmoid", "h * (1 - h)"), ("tanh", "1 - h**2")])
def test_saturating_activations_show_their_derivative_line(activation, line):
    d = run_json("--activation", activation)
    dz1 = next(s for s in d["steps"] if s["key"] == "dz1")
    assert dz1["formula"].endswith(line)
    assert d["gate"]["dead_units"] == [0, 2]  # did not fire ...
    assert np.all(np.array(d["gate"]["local_grad"]) > 0)  # ... but still passes gradient
    assert any("has no gate" in n for n in d["gate"]["notes"])


def test_width_one_hidden_layer_warns():
    d = run_json("--hidden", "1", "--x", "1,2,3;-1,-2,-3", "--y", "0,1", "--seed", "3")
    assert len(d["warnings"]) == 1 and "single ReLU" in d["warnings"][0]
    assert d["gate"]["silent_samples"] == [0]
    s = steps(d)
    np.testing.assert_array_equal(s["scores"][0], np.asarray(d["params"]["b2"]))  # output is constant b2
    res = run("--hidden", "1", "--x", "1,2,3;-1,-2,-3", "--y", "0,1", "--seed", "3")
    assert "warning:" in res.stdout and "single ReLU" in res.stdout
    md = run("--hidden", "1", "--x", "1,2,3;-1,-2,-3", "--y", "0,1", "--seed", "3", "--format", "markdown").stdout
    assert "> **Warning:** the hidden layer has a single unit" in md
    assert "no hidden unit fired, so h[0] = 0 and scores[0] = b2" in md


def test_whole_layer_dead_warns():
    W = {k: v.copy() for k, v in W_KINK.items()}
    W["W1"] = -np.abs(W["W1"]) - 0.1
    net = MLP([3, 4, 3], seed=0)
    net.set_params(W)
    ex = explain_net(net, np.abs(X_KINK), Y_KINK)
    assert ex.gate.dead_units == [0, 1, 2, 3] and ex.gate.silent_samples == [0, 1]
    assert any("whole layer is dead" in w for w in ex.warnings)
    assert not np.any(ex.step("dW1").value) and not np.any(ex.step("db1").value)


# The column-vector form ----------------------------------------------------------------------------------------------
def test_column_form_is_the_batch_form_transposed():
    d = run_json("--seed", "1", "--samples", "3", "--sample", "2")
    c = {k: np.asarray(v) if isinstance(v, list) else v for k, v in d["column"].items()}
    X, W1, b1 = np.asarray(d["X"]), np.asarray(d["params"]["W1"]), np.asarray(d["params"]["b1"])
    s = steps(d)
    assert c["sample"] == 2
    np.testing.assert_array_equal(c["W"], W1.T)
    np.testing.assert_allclose(c["a"], W1.T @ X[2] + b1, rtol=1e-14)
    np.testing.assert_array_equal(c["z"], np.maximum(c["a"], 0))
    np.testing.assert_array_equal(c["local"], np.outer(c["a"] > 0, X[2]))
    np.testing.assert_array_equal(c["dz"], s["dh"][2] * (c["a"] > 0))
    np.testing.assert_allclose(c["dW"], np.outer(s["dz1"][2], X[2]), rtol=1e-14)
    np.testing.assert_allclose(c["dW"], np.outer(X[2], s["dz1"][2]).T, rtol=1e-14)
    total = sum(np.outer(s["dz1"][n], X[n]) for n in range(3))
    np.testing.assert_allclose(total, s["dW1"].T, rtol=1e-12, atol=1e-15)
    assert c["matches"]


# Renderers -----------------------------------------------------------------------------------------------------------
def test_json_round_trip_is_to_dict():
    ex = explain(seed=2, reg=0.01)
    assert json.loads(render_json(ex)) == ex.to_dict()


def _table_blocks(md: str) -> list[list[str]]:
    blocks, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


@pytest.mark.parametrize("args", [(), ("--activation", "tanh", "--reg", "0.1"), ("--hidden", "15", "--samples", "14")])
def test_markdown_is_pasteable(args):
    from markdown_it import MarkdownIt

    md = run("--format", "markdown", *args).stdout
    assert md.count("```") % 2 == 0
    blocks = _table_blocks(md)
    assert len(blocks) >= 15
    for block in blocks:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block}
        assert len(widths) == 1, block  # every row has the header's number of cells
        assert re.fullmatch(r"\|( ---:? \|)+", block[1]), block[1]
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    assert sum(t.type == "table_open" for t in tokens) == len(blocks)
    if "--hidden" in args:
        assert "`--format json` has all" in md  # big matrices are cut in text, never in JSON


def test_library_never_prints_and_rich_sections_render(capsys):
    from rich.console import Console

    ex = explain()
    render_markdown(ex)
    sections = rich_sections(ex)
    assert capsys.readouterr() == ("", "")
    titles = [t for t, _ in sections]
    assert titles[0] == "inputs and parameters" and titles[-3:] == ["column form", "gradient check", "sgd"]
    assert {"z1", "dz1", "dW1", "gate"} <= set(titles)
    console = Console(record=True, width=100, file=open("/dev/null", "w"))  # noqa: SIM115
    for _, renderable in sections:
        console.print(renderable)
    console.file.close()
    assert "dz1 = dh ⊙ [z1 > 0]" in console.export_text()


def test_import_does_not_import_rich():
    code = "import sys, reluscope.explain; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_step_mode_does_not_wait_without_a_terminal():
    res = runner.invoke(app, ["explain", "--step"], input="")
    assert res.exit_code == 0, res.output
    assert res.stdout == run().stdout


# Library-level properties ---------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 4),
    h=st.integers(1, 5),
    c=st.integers(2, 4),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_gate_closed_means_exactly_zero_gradient(d, h, c, n, seed):
    ex = explain(inputs=d, hidden=h, classes=c, samples=n, seed=seed)
    z1, dz1 = ex.step("z1").value, ex.step("dz1").value
    assert np.all(dz1[z1 <= 0] == 0)
    assert {(e.sample, e.unit) for e in ex.gate.off} == set(zip(*np.nonzero(z1 <= 0), strict=True))
    assert all(e.exactly_zero and not np.any(e.dW2) for e in ex.gate.off)
    for j in ex.gate.dead_units:
        assert not np.any(ex.step("dW1").value[:, j]) and ex.step("db1").value[j] == 0
    # dead => frozen; not conversely: a live unit whose outgoing weights are equal for every class gets dh = 0
    assert set(ex.gate.dead_units) <= set(ex.sgd.frozen_units)
    assert ex.column.matches and ex.gradcheck["ok"]
    assert ex.engine_max_abs_diff <= 1e-12


def test_live_unit_with_equal_outgoing_weights_is_frozen_but_not_dead():
    ex = explain(inputs=2, hidden=4, classes=2, samples=2, seed=3580)  # found by hypothesis: W2[3] = [-0.27, -0.27]
    assert 3 in ex.sgd.frozen_units and 3 not in ex.gate.dead_units
    assert np.all(ex.step("dh").value[:, 3] == 0) or np.allclose(ex.step("dh").value[:, 3], 0, atol=1e-15)


def test_sizes_follow_weights_and_data():
    net = MLP([2, 5, 4], seed=1)
    ex = explain(np.ones((3, 2)), [0, 3, 1], params=net.params)
    assert ex.sizes == (2, 5, 4) and ex.n_samples == 3
    ex = explain([[1.0, 2.0]], [1])  # labels imply at least 2 classes
    assert ex.sizes == (2, 4, 2)
    ex = explain([[1.0, 2.0]], [4], classes=6)
    assert ex.sizes == (2, 4, 6)


# Errors: one line on stderr, exit 2 -----------------------------------------------------------------------------------
@pytest.fixture
def bad_weights(tmp_path):
    def make(**changes):
        w = {**W_KINK, **changes}
        w = {k: v for k, v in w.items() if v is not None}
        path = tmp_path / "bad.npz"
        np.savez(path, **w)
        return str(path)

    return make


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden", "0"], "hidden (--hidden) must be a positive integer, got 0"),
        (["--inputs", "-1"], "inputs (--inputs) must be a positive integer, got -1"),
        (["--samples", "0"], "samples (--samples) must be a positive integer"),
        (["--classes", "0"], "classes (--classes) must be a positive integer"),
        (["--classes", "1"], "classes must be at least 2, got 1"),
        (["--seed", "-1"], "seed must be a non-negative integer"),
        (["--lr", "0"], "lr must be finite and > 0"),
        (["--reg", "-1"], "reg must be finite and >= 0"),
        (["--activation", "relux"], "unknown activation 'relux'"),
        (["--activation", "prelu"], "explain covers the activations"),
        (["--format", "pdf"], "--format must be one of rich, markdown, json, html, png"),
        (["--x", "1,nan,3", "--y", "0"], "NaN/inf"),
        (["--x", "1,2,3;4,5", "--y", "0,1"], "every sample needs the same number of features"),
        (["--x", "1,a,3", "--y", "0"], "is not a list of numbers"),
        (["--x", "1,2,3"], "--x needs --y too"),
        (["--y", "0"], "--y needs --x too"),
        (["--x", "1,2,3", "--y", "x"], "--y must be comma-separated integer class labels"),
        (["--x", "1,2,3;4,5,6", "--y", "0"], "has 1 labels but there are 2 samples"),
        (["--x", "1,2,3", "--y", "5", "--classes", "3"], "must be integers in [0, 3)"),
        (["--x", "1,2,3", "--y", "0", "--inputs", "2"], "--inputs is 2 but X with 3 columns implies 3"),
        (["--sample", "7"], "sample must be an index in [0, 2)"),
        (["--weights", "missing.npz"], "weights file not found: missing.npz"),
        (["--input", "missing.npz"], "missing.npz"),
    ],
)
def test_bad_options_print_one_line_and_exit_2(args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"b2": None}, "missing ['b2']"),
        ({"W3": np.ones((3, 3))}, "a deeper network's weights do not fit"),
        ({"b1": np.zeros(5)}, "b1 must have shape (4,)"),
        ({"W2": np.ones((5, 3))}, "W2 must have shape (H, C) with H = 4 rows"),
        ({"W1": np.ones(3)}, "W1 must be 2-D"),
        ({"W2": np.ones((4, 1)), "b2": np.zeros(1)}, "classes must be at least 2"),
        ({"W1": np.where(np.eye(3, 4) > 0, np.nan, 1.0)}, "W1 contains 3 NaN/inf"),
        ({"b2": np.array(["a", "b", "c"])}, "must hold numbers"),
    ],
)
def test_bad_weights_files_exit_2(bad_weights, changes, message):
    res = run("--weights", bad_weights(**changes))
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_weights_that_disagree_with_options_or_data(kink_files, tmp_path):
    weights, data = kink_files
    res = run("--weights", str(weights), "--hidden", "7")
    assert res.exit_code == 2 and "--hidden is 7 but the weights implies 4" in res.stderr
    res = run("--weights", str(weights), "--x", "1,2", "--y", "0")
    assert res.exit_code == 2 and "X has 2 features per sample but W1 expects 3" in res.stderr
    res = run("--input", str(data), "--x", "1,2,3", "--y", "0")
    assert res.exit_code == 2 and "not both" in res.stderr
    (tmp_path / "text.npz").write_text("not a zip")
    res = run("--weights", str(tmp_path / "text.npz"))
    assert res.exit_code == 2 and "is not a readable .npz archive" in res.stderr
    np.save(tmp_path / "single.npy", np.ones(3))
    res = run("--weights", str(tmp_path / "single.npy"))
    assert res.exit_code == 2 and "holds a single .npy array" in res.stderr
    np.savez(tmp_path / "obj.npz", **{**W_KINK, "b2": np.array([1, "a", None], dtype=object)})
    res = run("--weights", str(tmp_path / "obj.npz"))
    assert res.exit_code == 2 and "object array" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_model_saved_by_train_can_be_explained(tmp_path):
    from reluscope.io import save_model

    save_model(tmp_path / "model.npz", MLP([2, 3, 2], seed=4))
    d = run_json("--weights", str(tmp_path / "model.npz"))
    assert d["sizes"]["inputs"] == 2 and d["sizes"]["hidden"] == 3 and d["sizes"]["classes"] == 2
    assert d["source"]["weights"].endswith("model.npz")
    np.testing.assert_array_equal(np.asarray(d["params"]["W1"]), MLP([2, 3, 2], seed=4).params["W1"])


def test_inline_inputs_accept_negative_numbers_and_spaces():
    d = run_json("--x", "-1, 2, 3; 4,-5,6", "--y", "0, 1")
    assert d["X"] == [[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]] and d["y"] == [0, 1]
    assert d["sizes"]["classes"] == 2 and d["source"]["inputs"] == "given"


def test_a_model_file_is_explained_with_the_activation_it_was_trained_with(tmp_path):
    from reluscope.io import save_model

    save_model(tmp_path / "leaky.npz", MLP([2, 3, 2], "leaky", slope=0.05, seed=4))
    d = run_json("--weights", str(tmp_path / "leaky.npz"))
    assert d["activation"]["name"] == "leaky" and "0.05" in json.dumps(d["activation"])
    res = run("--weights", str(tmp_path / "leaky.npz"), "--activation", "relu")
    assert res.exit_code == 2 and "trained with activation 'leaky', but --activation relu" in res.stderr
    assert run_json("--weights", str(tmp_path / "leaky.npz"), "--activation", "leaky")["activation"]["name"] == "leaky"

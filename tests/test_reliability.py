"""The fault campaign of issue 15, one small input per kind: every bad input is exit 2 (or exit 1 for a run that
diverged) with one line on stderr and no traceback, and nothing is written half or torn."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reluscope.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, code: int = 2) -> str:
    """The result is exit ``code`` with exactly one line on stderr starting with 'error:' and no traceback."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in res.output
    return lines[0]


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def junk_npz(path: Path, *, member: str = "X", good: dict[str, np.ndarray]) -> Path:
    """An .npz whose ``member``.npy holds the bytes b"junk" beside valid members ``good``."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{member}.npy", b"junk")
        for name, a in good.items():
            z.writestr(f"{name}.npy", _npy(a))
    return path


# -- kind 1: non-array .npz members ----------------------------------------------------------------------------
@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    res = run("train", "--epochs", "2", "--hidden", "4", "--out", tmp_path / "m", "--quiet")
    assert res.exit_code == 0, res.output
    return tmp_path / "m" / "model.npz"


def test_npz_member_that_is_not_an_array_is_named(tmp_path: Path, model_file: Path) -> None:
    data = junk_npz(tmp_path / "d.npz", good={"y": np.array([0, 1, 0, 1])})
    commands = [
        ["train", "--data", data, "--epochs", "1"],
        ["diagnose", model_file, "--data", data],
        ["explain", "--input", data],
        ["sweep", "--data", data, "--out", tmp_path / "sw"],
    ]
    for args in commands:
        line = one_line_error(run(*args))
        assert "member 'X' is not a numpy array" in line and "np.savez" in line, (args, line)


def test_npz_weights_and_model_with_a_junk_member(tmp_path: Path, model_file: Path) -> None:
    from reluscope.io import load_model

    w = junk_npz(tmp_path / "w.npz", member="W1", good={"b1": np.zeros(3), "W2": np.zeros((3, 2)), "b2": np.zeros(2)})
    line = one_line_error(run("explain", "--weights", w))
    assert "member 'W1'" in line
    # a model.npz with a junk parameter: the model loader goes through the same reader
    with np.load(model_file, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files if k != "W1"}
    bad_model = junk_npz(tmp_path / "model.npz", member="W1", good=members)
    with pytest.raises(ValueError, match="member 'W1' is not a numpy array"):
        load_model(bad_model)
    line = one_line_error(run("diagnose", bad_model))
    assert "member 'W1'" in line


# -- kind 2: sizes are estimated before anything is allocated ---------------------------------------------------
def test_huge_hidden_layer_is_refused_with_the_estimate_and_the_limit() -> None:
    line = one_line_error(run("train", "--hidden", "10000000000", "--epochs", "1"))
    assert "would need about" in line and "iB" in line and "more than this machine's memory" in line
    assert "--hidden" in line


def test_huge_spiral_is_refused() -> None:
    line = one_line_error(run("train", "--n-per-class", "100000000000", "--epochs", "1"))
    assert "spiral of 100000000000 points" in line and "more than this machine's memory" in line


def test_fit_estimates_its_training_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import reluscope._validate as v
    from reluscope.nn import MLP
    from reluscope.train import fit

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), np.arange(64) % 3
    net = MLP([4, 32, 3], seed=0)
    # enough for the parameters alone, not for gradients, optimizer state and the per-batch activations
    monkeypatch.setattr(v, "memory_limit", lambda: net.n_parameters() * 8 * 2)
    with pytest.raises(ValueError, match=r"training an MLP with sizes \[4, 32, 3\] on batches of 64 samples"):
        fit(net, X, y, epochs=1)


def test_csv_label_far_beyond_the_sample_count(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,2000000000\n5,6,1\n")
    line = one_line_error(run("train", "--data", path, "--epochs", "1"))
    assert "imply 2000000001 classes" in line and "only 3 samples" in line and "--n-classes 2000000001" in line
    # given explicitly, the class count reaches the network, whose size is then estimated and refused
    line = one_line_error(run("train", "--data", path, "--epochs", "1", "--n-classes", "2000000001"))
    assert "2000000001]" in line and "more than this machine's memory" in line


def test_npz_with_one_label_of_a_million_needs_an_explicit_class_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.standard_normal((50, 3)), y=np.r_[np.arange(49) % 2, 10**6])
    for command in (["train", "--epochs", "1"], ["sweep", "--out", tmp_path / "sw"], ["lr-check"]):
        line = one_line_error(run(*command, "--data", path))
        assert "imply 1000001 classes" in line, line
    # given explicitly, a class count far beyond the samples is accepted (a smaller one here: a 10^6-way softmax
    # trains slowly, and the refusal above is what the input exercises)
    np.savez(path, X=np.random.default_rng(1).standard_normal((50, 3)), y=np.r_[np.arange(49) % 2, 500])
    assert "imply 501 classes" in one_line_error(run("train", "--data", path, "--epochs", "1"))
    res = run("train", "--data", path, "--epochs", "1", "--hidden", "2", "--n-classes", "501", "--json")
    assert res.exit_code == 0, res.output


def test_n_classes_reaches_a_file_only_when_given(tmp_path: Path) -> None:
    from reluscope.data import load_dataset

    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.standard_normal((20, 3)), y=np.arange(20) % 4)
    assert load_dataset(path).n_classes == 4
    assert load_dataset(path, file_n_classes=6).n_classes == 6
    assert load_dataset("spiral").n_classes == 3  # the spiral's default number of arms is unchanged
    res = run("train", "--data", path, "--epochs", "1", "--quiet")  # the default --n-classes 3 is the spiral's
    assert res.exit_code == 0, res.output
    line = one_line_error(run("train", "--data", path, "--epochs", "1", "--n-classes", "3"))
    assert "in [0, 3), got max label 3" in line


# -- kind 12: degenerate data --------------------------------------------------------------------------------
def test_labels_of_one_class_are_refused(tmp_path: Path, model_file: Path) -> None:
    rng = np.random.default_rng(0)
    zeros, ones = tmp_path / "zeros.npz", tmp_path / "ones.npz"
    np.savez(zeros, X=rng.standard_normal((30, 2)), y=np.zeros(30, dtype=np.int64))
    np.savez(ones, X=rng.standard_normal((30, 2)), y=np.ones(30, dtype=np.int64))
    line = one_line_error(run("train", "--data", zeros, "--epochs", "1"))
    assert "only one class" in line
    line = one_line_error(run("train", "--data", ones, "--epochs", "1"))
    assert "single class (1) in all 30 samples" in line and "at least two classes" in line
    line = one_line_error(run("diagnose", model_file, "--data", zeros))  # diagnose's data: a class count < 2
    assert "only one class" in line


def test_fit_refuses_a_single_class() -> None:
    from reluscope.nn import MLP
    from reluscope.train import fit

    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match="single class"):
        fit(MLP([2, 4, 3], seed=0), X, np.full(10, 2), epochs=1)


# -- kind 17: library type checks ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 1.5, "epochs": 2}, r"batch_size must be an int, got float 1.5"),
        ({"epochs": 2.5}, r"epochs must be an int, got float 2.5"),
        ({"iterations": 3.0}, r"iterations must be an int, got float 3.0; pass iterations=3"),
    ],
)
def test_fit_never_truncates_a_float_count(kwargs: dict[str, float], match: str) -> None:
    from reluscope.nn import MLP
    from reluscope.train import fit

    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=match):
        fit(MLP([2, 4, 3], seed=0), rng.standard_normal((12, 2)), np.arange(12) % 3, **kwargs)


def test_stats_from_dict_with_an_overflowing_or_fractional_count() -> None:
    import json

    from reluscope.diagnose import ActivationStats

    stats = ActivationStats()
    stats.update("h", np.array([[1.0, -1.0], [2.0, 0.5]]))
    good = stats.to_dict()
    for field, value in (("n_samples", json.loads("1e400")), ("n_samples", 2.5), ("fire_count", [1.5, 0])):
        d = json.loads(json.dumps(good))
        d["sites"][0][field] = value
        with pytest.raises(ValueError, match=rf"site 0 is malformed \({field} must"):
            ActivationStats.from_dict(d)
    assert ActivationStats.from_dict(json.loads(json.dumps(good))).to_dict() == good


def test_torch_redo_refuses_an_optimizer_of_another_model() -> None:
    torch = pytest.importorskip("torch")
    from reluscope.torch import ContinualBackprop, ReDoSchedule, monitor, redo, scan

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    other = torch.nn.Linear(3, 2)
    x = torch.randn(8, 3)
    stats = scan(model, [x])
    with pytest.raises(ValueError, match="none of them the model's"):
        redo(model, torch.optim.Adam(other.parameters()), stats, example=x[:2])
    with monitor(model) as m, pytest.raises(ValueError, match="none of them the model's"):
        ReDoSchedule(model, torch.optim.SGD(other.parameters(), lr=0.1), m, every=1, tau=0.0)
    with pytest.raises(ValueError, match="none of them the model's"):
        ContinualBackprop(model, torch.optim.Adam(other.parameters()), example=x[:2])
    redo(model, torch.optim.Adam(model.parameters()), stats, example=x[:2])  # its own optimizer is fine


# -- kind 5: divergence that is not NaN; every divergence saves the last good weights --------------------------
@pytest.fixture
def pixels(tmp_path: Path) -> Path:
    """600 samples of 64 'pixels' in 0..255 and 3 classes: unscaled inputs that make lr 1.0 blow up."""
    rng = np.random.default_rng(0)
    path = tmp_path / "pixels.npz"
    np.savez(path, X=rng.integers(0, 256, size=(600, 64)).astype(np.float64), y=rng.integers(0, 3, 600))
    return path


def test_finite_blowup_is_a_divergence_with_advice_to_standardise(tmp_path: Path, pixels: Path) -> None:
    import json

    from reluscope.io import load_model
    from reluscope.train import BLOWUP_FACTOR

    out = tmp_path / "run"
    res = run("train", "--data", pixels, "--hidden", "20", "--lr", "1.0", "--epochs", "50", "--out", out, "--quiet")
    line = one_line_error(res, code=1)
    assert "training diverged" in line and f"above {BLOWUP_FACTOR:g} x max(first loss, ln C)" in line
    assert "The inputs reach |x| = 255: standardise them (--standardize" in line
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "diverged" and len(record["history"]["loss"]) < 50
    net = load_model(out / "model.npz")  # the restored weights: finite, from before the blow-up
    assert all(np.isfinite(p).all() for p in net.params.values())
    # standardised, the same data and step size train to the end
    res = run("train", "--data", pixels, "--hidden", "20", "--lr", "1.0", "--epochs", "50", "--standardize", "--json")
    assert res.exit_code == 0, res.output


def test_finite_blowup_in_sweep_cells_and_the_lr_range_test(tmp_path: Path, pixels: Path) -> None:
    import json

    from reluscope.data import load_npz
    from reluscope.remedies import lr_range_test

    X, y = load_npz(pixels)
    result = lr_range_test(X, y, hidden=(20,), lrs=[1.0], steps=50, seed=0)
    assert result.trials[0].diverged and result.trials[0].diverged_at_step is not None
    assert result.trials[0].diverged_at_step < 50
    out = tmp_path / "sw"
    res = run("sweep", "--data", pixels, "--lrs", "1", "--seeds", "0", "--hidden", "20", "--epochs", "50",
              "--jobs", "1", "--out", out, "--quiet", "--no-plots")  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["status"] for r in rows} == {"diverged"}
    assert all(r["diverged_at_epoch"] < 50 for r in rows)


def test_divergence_found_by_a_scan_saves_the_run(tmp_path: Path) -> None:
    import json

    out = tmp_path / "D"
    res = run("train", "--lr", "1e7", "--dtype", "float32", "--track-dead", "1", "--hidden", "100,100",
              "--epochs", "20", "--out", out, "--quiet")  # fmt: skip
    line = one_line_error(res, code=1)
    assert "training diverged" in line
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"
    assert (out / "model.npz").is_file()


def test_a_callback_finding_overflowing_activations_is_a_divergence() -> None:
    from reluscope._validate import NonFiniteError
    from reluscope.nn import MLP
    from reluscope.train import Callback, DivergenceError, fit

    class Overflowing(Callback):
        def on_epoch_end(self, state) -> None:  # type: ignore[no-untyped-def]
            if state.epoch == 3:
                raise NonFiniteError("hidden1: act contains NaN or inf values", site="hidden1")

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 2)), np.arange(30) % 3
    net = MLP([2, 5, 3], seed=0)
    with pytest.raises(DivergenceError, match="activations of hidden1 overflowed") as info:
        fit(net, X, y, epochs=10, lr=0.1, callbacks=[Overflowing()])
    assert info.value.epoch == 3 and "end of epoch 2" in str(info.value)
    # the network holds the weights of the end of epoch 2, as a run of two epochs would
    twin = MLP([2, 5, 3], seed=0)
    fit(twin, X, y, epochs=2, lr=0.1)
    for key, p in twin.params.items():
        np.testing.assert_array_equal(net.params[key], p)  # the same calls in the same order: exact


# -- kind 16: one line, no warnings beside it ------------------------------------------------------------------
def test_csv_of_huge_values_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("a,b,label\n1e308,-1e308,0\n-1e308,1e308,1\n1e308,1e308,0\n")
    line = one_line_error(run("train", "--data", path, "--epochs", "3"), code=1)
    assert "training diverged" in line and "standardise them" in line
    line = one_line_error(run("train", "--data", path, "--epochs", "3", "--standardize"))
    assert "too large to standardise" in line and "divide them by 1e+308" in line


def test_lr_check_with_an_overflowing_lr_prints_json_only() -> None:
    import json

    res = run("lr-check", "--lrs", "1e300", "--json")
    assert res.exit_code == 1, res.output
    assert not res.stderr.strip(), res.stderr
    assert json.loads(res.stdout)["trials"][0]["diverged"] is True


def test_report_of_a_diverged_run(tmp_path: Path) -> None:
    out = tmp_path / "D"
    res = run("train", "--lr", "1e7", "--dtype", "float32", "--hidden", "100,100", "--epochs", "20", "--out", out,
              "--track-dead", "2", "--quiet")  # fmt: skip
    assert res.exit_code == 1
    res = run("report", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert not res.stderr.strip(), res.stderr
    assert (out / "report.html").is_file()


# -- kind 15: messages that say expected / got / fix -------------------------------------------------------------
def test_float_one_hot_labels_are_told_to_use_argmax_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.int64):  # the advice is the same before and after an astype
        path = tmp_path / f"onehot_{np.dtype(dtype).name}.npz"
        np.savez(path, X=rng.standard_normal((30, 2)), y=np.eye(3, dtype=dtype)[np.arange(30) % 3])
        line = one_line_error(run("train", "--data", path, "--epochs", "1"))
        assert "got shape (30, 3)" in line and "y.argmax(axis=1)" in line and "astype" not in line


def test_out_that_is_a_file_is_explained(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    line = one_line_error(run("sweep", "--out", afile, "--epochs", "1", "--lrs", "1", "--seeds", "0"))
    assert str(afile) in line and "File exists" not in line and "choose another" in line


def test_sweep_record_without_cells(tmp_path: Path) -> None:
    d = tmp_path / "sw"
    d.mkdir()
    (d / "sweep.json").write_text('{"kind": "sweep", "config": {}}')
    line = one_line_error(run("report", d))
    assert "incomplete sweep record: expected 'cells' (a list of cell keys)" in line and "missing key" not in line


def test_a_directory_as_data(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    line = one_line_error(run("train", "--data", tmp_path, "--epochs", "1"))
    assert "is a directory, expected a dataset file" in line and "d.npz" in line and "--labels" not in line[:80]


def test_os_errors_are_expected_got_fix() -> None:
    import errno

    from reluscope.cli._common import os_error_message

    for code in (errno.EEXIST, errno.EACCES, errno.ENOSPC, errno.EROFS, errno.ENOENT, errno.EISDIR):
        msg = os_error_message(OSError(code, os.strerror(code), "/some/path"))
        assert "/some/path" in msg and os.strerror(code) not in msg and "Errno" not in msg
    # a text of our own in strerror (e.g. "weights file not found") is kept
    assert os_error_message(FileNotFoundError(errno.ENOENT, "weights file not found", "w.pt")).startswith("weights")


def test_a_bare_key_error_is_a_bug_and_debug_shows_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """friendly_errors: a KeyError carrying a sentence of ours is one line (exit 2); a bare KeyError is a bug and
    keeps its traceback; --debug (or RELUSCOPE_DEBUG=1) keeps every traceback."""
    import typer

    from reluscope.cli._common import friendly_errors

    app2 = typer.Typer()

    @app2.command()
    @friendly_errors
    def cmd(kind: str) -> None:
        if kind == "sentence":
            raise KeyError("no statistics for site 'h9'; known sites: 'hidden1'")
        if kind == "bare":
            raise KeyError("cells")
        raise ValueError("bad value; pass a good one")

    res = runner.invoke(app2, ["sentence"])
    assert res.exit_code == 2 and "no statistics for site 'h9'" in res.stderr
    res = runner.invoke(app2, ["bare"])
    assert isinstance(res.exception, KeyError)  # not dressed up as the user's fault
    monkeypatch.setenv("RELUSCOPE_DEBUG", "1")
    res = runner.invoke(app2, ["value"])
    assert isinstance(res.exception, ValueError)
    monkeypatch.delenv("RELUSCOPE_DEBUG")
    res = run("--debug", "train", "--lr", "-1")
    assert isinstance(res.exception, ValueError)
    res = run("train", "--lr", "-1")  # the flag does not stick to the next invocation
    one_line_error(res)


# -- kinds 6-10: output written whole, checked first, strict JSON, locked, modes kept ------------------------------
def test_run_directory_is_replaced_whole_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    out = tmp_path / "M"
    assert run("train", "--epochs", "3", "--hidden", "4", "--out", out, "--quiet").exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("model.npz", "run.json")}

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    line = one_line_error(run("train", "--epochs", "5", "--hidden", "4", "--out", out, "--quiet"))
    assert "no space left" in line and str(out) in line
    assert {name: (out / name).read_bytes() for name in before} == before  # the old pair, untouched
    assert sorted(p.name for p in out.iterdir()) == ["model.npz", "run.json"]  # no temp file left behind


def test_out_is_checked_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    out = tmp_path / "ro"
    for command in (["train"], ["sweep"], ["born-dead"]):
        # the data does not even exist: the --out error comes first, before any loading or training
        args = [*command, "--out", out] + (["--data", tmp_path / "missing.npz"] if command != ["born-dead"] else [])
        line = one_line_error(run(*args))
        assert f"--out {out} is not writable" in line, (command, line)


def test_run_json_and_json_output_are_strict(tmp_path: Path) -> None:
    import json

    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))

    out = tmp_path / "D"
    res = run("train", "--lr", "1e6", "--val-fraction", "0.2", "--epochs", "20", "--out", out, "--json")
    assert res.exit_code == 1
    strict(res.stdout)
    record = strict((out / "run.json").read_text())
    assert isinstance(record, dict) and record["status"] == "diverged"
    assert all(v is None or np.isfinite(v) for v in record["history"]["val_loss"])
    # every --json goes through one printer: a NaN becomes null, and the reason is recorded
    import typer

    from reluscope.cli._common import echo_json

    app2 = typer.Typer()
    app2.command()(lambda: echo_json({"history": {"val_loss": [1.0, float("nan")]}}))
    printed = strict(runner.invoke(app2, []).stdout)
    assert printed == {
        "history": {"val_loss": [1.0, None]},
        "non_finite": {"paths": ["history.val_loss[1]"], "reason": printed["non_finite"]["reason"]},  # type: ignore[index]
    }


def test_two_sweeps_into_one_directory(tmp_path: Path) -> None:
    from reluscope.io import directory_lock

    out = tmp_path / "sw"
    with directory_lock(out, what="sweep"):  # a sweep in flight holds the lock
        line = one_line_error(run("sweep", "--out", out, "--lrs", "1", "--seeds", "0", "--epochs", "2"))
        assert "in use by another reluscope sweep" in line
        line = one_line_error(run("report", out))
        assert "in use by another reluscope" in line
    assert not (out / "sweep.json").exists()


def test_an_overwrite_keeps_the_file_mode(tmp_path: Path) -> None:
    out = tmp_path / "D"
    assert run("train", "--epochs", "2", "--hidden", "4", "--out", out, "--quiet").exit_code == 0
    for f in out.iterdir():
        f.chmod(0o600)
    assert run("train", "--epochs", "2", "--hidden", "4", "--out", out, "--quiet").exit_code == 0
    assert {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()} == {"model.npz": 0o600, "run.json": 0o600}


# -- the fuzz test: any bytes or array through the loaders and the CLI is exit 0 or 2 with one line ----------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def _exit_0_or_one_line(res) -> None:  # type: ignore[no-untyped-def]
    if res.exit_code == 0:
        return
    one_line_error(res, code=res.exit_code if res.exit_code in (1, 2) else 2)


def _load_quietly(kind: str, path: Path) -> None:
    """The library loader: a clean result or a ValueError/FileNotFoundError, nothing else."""
    from reluscope.data import load_csv, load_idx, load_npz

    try:
        if kind == "npz":
            load_npz(path)
        elif kind == "csv":
            load_csv(path)
        else:
            load_idx(path, path.with_name("labels.idx"))
    except (ValueError, FileNotFoundError):
        pass


@_FUZZ
@given(raw=st.binary(max_size=512), kind=st.sampled_from(["npz", "csv", "idx"]))
def test_fuzz_any_bytes_through_the_loaders_and_train(tmp_path: Path, raw: bytes, kind: str) -> None:
    path = tmp_path / f"data.{kind}"
    path.write_bytes(raw)
    labels = tmp_path / "labels.idx"
    labels.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01")  # 2 labels: a valid IDX labels file
    _load_quietly(kind, path)
    args = ["train", "--data", path, "--epochs", "1", "--hidden", "3", "--quiet"]
    res = run(*args, *(["--labels", labels] if kind == "idx" else []))
    _exit_0_or_one_line(res)


_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_, np.complex64, np.dtype("U3")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    elements=None,
)


@_FUZZ
@given(X=_arrays, y=_arrays)
def test_fuzz_any_arrays_in_an_npz_through_train_and_diagnose(
    tmp_path: Path, model_file: Path, X: np.ndarray, y: np.ndarray
) -> None:
    path = tmp_path / "d.npz"
    with np.errstate(all="ignore"):
        np.savez(path, X=X, y=y)
    _load_quietly("npz", path)
    _exit_0_or_one_line(run("train", "--data", path, "--epochs", "1", "--hidden", "3", "--quiet"))
    _exit_0_or_one_line(run("diagnose", model_file, "--data", path, "--quiet"))


@_FUZZ
@given(
    rows=st.lists(
        st.lists(
            st.one_of(st.floats(allow_nan=True), st.integers(-(2**40), 2**40), st.text(max_size=3)),
            min_size=3,
            max_size=3,
        ),
        min_size=0,
        max_size=6,
    )
)
def test_fuzz_csv_cells_through_train(tmp_path: Path, rows: list[list[object]]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + "\n".join(",".join(str(c) for c in r) for r in rows) + "\n")
    _load_quietly("csv", path)
    _exit_0_or_one_line(run("train", "--data", path, "--epochs", "1", "--hidden", "3", "--quiet"))


# -- kinds 3 and 4: the user's torch code and devices --------------------------------------------------------------
_USER_MODEL = """
import torch
from torch import nn

def good():
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))

def zero():
    return 1 / 0

def runtime():
    raise RuntimeError("factory failed on purpose")

class Indexing(nn.Module):
    def forward(self, x):
        return [x][3]

def indexing():
    return Indexing()

def batches():
    return [torch.zeros(3, 2), torch.zeros(3, 2)]

def broken_loader():
    def gen():
        yield torch.zeros(3, 2)
        raise KeyError("loader broke")
    return gen()

def raising_loader():
    raise ZeroDivisionError("no data today")
"""


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    path = tmp_path / "user_model.py"
    path.write_text(_USER_MODEL)
    return path


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        ("zero", "batches", "the factory raised ZeroDivisionError: division by zero"),
        ("runtime", "batches", "the factory raised RuntimeError: factory failed on purpose"),
        ("indexing", "batches", "the model's forward on batch 1 of shape (3, 2) raised IndexError"),
        ("good", "broken_loader", "the loader (producing batch 2) raised KeyError: 'loader broke'"),
        ("good", "raising_loader", "the loader factory raised ZeroDivisionError: no data today"),
    ],
)
def test_user_code_raising_is_one_line_naming_it(user_code: Path, model: str, data: str, expected: str) -> None:
    res = run("diagnose", "--torch-model", f"{user_code}:{model}", "--data", f"{user_code}:{data}")
    line = one_line_error(res)
    assert expected in line and "--debug" in line, line
    res = run("--debug", "diagnose", "--torch-model", f"{user_code}:{model}", "--data", f"{user_code}:{data}")
    assert res.exception is not None and not isinstance(res.exception, SystemExit)  # the traceback is kept


def test_user_module_that_cannot_be_imported(tmp_path: Path, user_code: Path) -> None:
    bad_syntax = tmp_path / "bad_syntax.py"
    bad_syntax.write_text("def make(:\n    pass\n")
    line = one_line_error(run("diagnose", "--torch-model", f"{bad_syntax}:make", "--data", f"{user_code}:batches"))
    assert f"running {bad_syntax} raised SyntaxError" in line and "(line 1)" in line
    failing = tmp_path / "failing_import.py"
    failing.write_text("import json\njson.loads('{')\n")
    line = one_line_error(run("diagnose", "--torch-model", f"{failing}:make", "--data", f"{user_code}:batches"))
    assert "raised JSONDecodeError" in line


def test_a_device_that_does_not_exist(user_code: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() > 9:  # pragma: no cover - a machine with ten GPUs has cuda:9
        pytest.skip("cuda:9 exists here")
    line = one_line_error(
        run("diagnose", "--torch-model", f"{user_code}:good", "--data", f"{user_code}:batches", "--device", "cuda:9")
    )
    assert "--device cuda:9 is not available" in line and "devices here: cpu" in line


# -- kinds 2, 13, 14 in explain --------------------------------------------------------------------------------
def test_explain_with_too_many_samples_is_refused_before_allocating() -> None:
    line = one_line_error(run("explain", "--samples", "100000000"))
    assert "explaining 100000000 samples" in line and "more than this machine's memory" in line


@pytest.mark.parametrize("fmt", ["rich", "json", "markdown"])
def test_explain_inputs_whose_products_overflow(fmt: str) -> None:
    line = one_line_error(run("explain", "--x", "1e200,1e200,1e200;1,2,3", "--y", "0,1", "--format", fmt))
    assert "too large to walk through: inputs up to 1e+200" in line and "order 1" in line


def test_a_gradient_check_that_checked_nothing_does_not_pass() -> None:
    import json

    res = run("explain", "--x", "0,0,0", "--y", "0", "--format", "json")
    assert res.exit_code == 0, res.output
    g = json.loads(res.stdout)["gradcheck"]
    assert g["passed"] is False and g["ok"] is False  # one verdict, the library's
    assert g["unchecked"] == ["b1"] and g["params"]["b1"]["ok"] is False and g["params"]["b1"]["checked"] == 0
    res = run("explain", "--x", "0,0,0", "--y", "0", "--format", "markdown")
    assert "numerical gradient check INCOMPLETE" in res.stdout and "passed" not in res.stdout.split("INCOMPLETE")[0]
    assert "b1 was not checked at all: all 4 of its sampled entries sat on a kink" in res.stdout


def test_check_gradients_rule() -> None:
    from reluscope.nn import MLP
    from reluscope.nn.gradcheck import check_gradients

    net = MLP([3, 4, 3], seed=0)
    net.params["b1"][:] = 0.0
    report = check_gradients(net, np.zeros((1, 3)), np.array([0]))  # every b1 entry on a kink
    assert report.unchecked == ["b1"] and not report.ok("b1") and not report.passed
    assert report.to_dict()["passed"] is False


# -- kind 11: SIGTERM on a parallel sweep stops like Ctrl-C -----------------------------------------------------
def test_sigterm_on_a_parallel_sweep_is_a_clean_stop(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    psutil = pytest.importorskip("psutil")
    out = tmp_path / "sw"
    args = ["sweep", "--out", str(out), "--jobs", "2", "--epochs", "300", "--lrs", "0.1,0.3,1,3,10,30",
            "--seeds", "0,1,2,3", "--activations", "relu,leaky", "--no-plots"]  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-c", "from reluscope.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()  # stdout is a pipe: one line per finished cell; blocks until the first
            assert first, proc.stderr.read()
            workers = psutil.Process(proc.pid).children(recursive=True)
            assert workers, "a sweep with --jobs 2 runs worker processes"
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=120) == 143
            err = proc.stderr.read()
            assert "terminated (SIGTERM): the" in err and "finished cells of this sweep are kept" in err
            assert "Traceback" not in err
            _, alive = psutil.wait_procs(workers, timeout=60)  # bounded: the workers are shut down, not orphaned
            assert not alive, [p.cmdline() for p in alive]
            assert list((out / "cells").glob("*.json"))  # the finished cells are kept
        finally:
            if proc.poll() is None:  # pragma: no cover - only when an assertion above failed
                proc.kill()
                proc.wait(timeout=30)


def test_interrupted_sweep_counts_only_its_own_cells(tmp_path: Path) -> None:
    from reluscope.cli.sweep import _finished_cells

    out = tmp_path / "sw"
    common = ["--out", out, "--lrs", "1", "--activations", "relu", "--no-plots", "--quiet", "--jobs", "1"]
    assert run("sweep", *common, "--epochs", "2", "--seeds", "0,1").exit_code == 0
    assert _finished_cells(out) == 2
    # a second sweep with other options into the same directory: its count starts from its own cells
    (out / "cells" / "0000000000000000.json").write_text("{}")  # a stray cell file of another sweep
    assert run("sweep", *common, "--epochs", "3", "--seeds", "0").exit_code == 0
    assert _finished_cells(out) == 1


# -- kind 18: a 1-D tensor is one unbatched sample, and the site record says so --------------------------------------
def test_a_one_d_tensor_is_one_unbatched_sample() -> None:
    torch = pytest.importorskip("torch")
    from reluscope.diagnose import ActivationStats
    from reluscope.torch import scan_with_sites

    class Relu(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.relu(x)

    x = torch.tensor([1.0, -1.0, 2.0, -3.0, 0.5])
    stats, sites = scan_with_sites(Relu(), [x, -x])
    (site,) = sites
    assert site.shape == (5,) and site.axis_source == "unbatched"
    assert stats.n_samples(site.name) == 2  # two calls, one sample each; not 5 samples of one unit
    assert stats.fire_count(site.name).tolist() == [1, 1, 1, 1, 1]
    assert ActivationStats.from_dict(stats.to_dict()).axis_source(site.name) == "unbatched"
    # the same values as a batch of one (1, 5): the same counts, under the fallback rule
    stats2, sites2 = scan_with_sites(Relu(), [x[None], -x[None]])
    assert stats2.fire_count(sites2[0].name).tolist() == [1, 1, 1, 1, 1] and sites2[0].axis_source == "rule"


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["--n-inits", "1000000000000", "--depths", "2", "--widths", "4"], "1000000000000 random initialisations"),
        (["--widths", "100000000", "--depths", "2", "--n-inits", "10"], "widths [100000000, 100000000]"),
        (["--inputs", "grid", "--grid-size", "1000000", "--depths", "1", "--widths", "2"], "a grid of 1000000^2"),
    ],
)
def test_born_dead_sizes_are_estimated(tmp_path: Path, args: list[str], what: str) -> None:
    line = one_line_error(run("born-dead", *args, "--out", tmp_path / "bd", "--no-plots"))
    assert what in line and "more than this machine's memory" in line


def test_single_file_outputs_are_checked_before_any_work(tmp_path: Path, model_file: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    line = one_line_error(run("explain", "--format", "json", "--out", afile / "x.json"))
    assert str(afile) in line and "must be a directory" in line
    line = one_line_error(run("explain", "--format", "json", "--out", tmp_path))
    assert "--out must be a file" in line
    line = one_line_error(run("diagnose", model_file, "--prune-out", afile / "pruned.npz"))
    assert "--prune-out's directory" in line and str(afile) in line


def test_interrupted_continual_counts_only_its_own_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reluscope.continual as continual
    from reluscope.cli._common import Terminated

    out = tmp_path / "c"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "0000000000000000.json").write_text("{}")  # a stray cell file of another benchmark

    def stopped(*args: object, **kwargs: object) -> None:
        raise Terminated()

    monkeypatch.setattr(continual, "run_continual", stopped)
    res = run("continual", "--out", out)
    assert res.exit_code == 143
    assert "terminated (SIGTERM): 0 finished cells of this benchmark are kept" in res.stderr


def test_sigterm_during_train_says_nothing_was_written_and_leaves_no_empty_directory(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    code = "from reluscope.cli import main; main()"
    args = ["train", "--epochs", "1000000", "--out", str(out)]  # far longer than the test waits
    with subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            for _ in range(600):  # the directory is created (checked writable) before training starts
                if out.exists() or proc.poll() is not None:
                    break
                subprocess.run(["sleep", "0.1"], check=True)
            assert out.exists(), proc.stderr.read() if proc.stderr else ""
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=120) == 143
            err = proc.stderr.read() if proc.stderr else ""
            assert f"terminated (SIGTERM): training stopped before its last epoch; nothing was written to {out}" in err
            assert "Traceback" not in err
            assert not out.exists()  # created by this command and still empty: removed
        finally:
            if proc.poll() is None:  # pragma: no cover - only when an assertion above failed
                proc.kill()
                proc.wait(timeout=30)


# == issue 29 (reliability round 3), the kinds outside torch/ and diagnose/ ======================================
_CLI = "from reluscope.cli import main; main()"

_EXITING_USER_CODE = """
import sys
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, exits=False):
        super().__init__()
        self.lin, self.exits = nn.Linear(2, 3), exits
    def forward(self, x):
        print("forward says hello")
        if self.exits:
            sys.exit(0)
        return torch.relu(self.lin(x))

def good():
    print("factory says hello")
    return Net()

def exits_in_factory():
    sys.exit(0)

def exits_in_forward():
    return Net(exits=True)

def batches():
    print("loader says hello")
    return [torch.ones(4, 2), -torch.ones(4, 2)]

def exits_in_loader():
    raise SystemExit(0)

def exits_in_batches():
    yield torch.ones(4, 2)
    sys.exit(0)
"""


@pytest.fixture
def exiting_user_code(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(0)\ndef make():\n    pass\n")
    path = tmp_path / "user_exits.py"
    path.write_text(_EXITING_USER_CODE)
    return path


# -- kind 2: sys.exit() in user code is never a silent pass ---------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "data", "where"),
    [
        ("user_exits.py:exits_in_factory", "user_exits.py:batches", "user_exits.py:21 (in exits_in_factory)"),
        ("user_exits.py:exits_in_forward", "user_exits.py:batches", "user_exits.py:13 (in forward)"),
        ("exits_at_import.py:make", "user_exits.py:batches", "exits_at_import.py:2 (in <module>)"),
        ("user_exits.py:good", "user_exits.py:exits_in_loader", "user_exits.py:31 (in exits_in_loader)"),
        ("user_exits.py:good", "user_exits.py:exits_in_batches", "user_exits.py:35 (in exits_in_batches)"),
    ],
)
def test_sys_exit_in_user_code_is_an_error_naming_it(
    exiting_user_code: Path, model: str, data: str, where: str
) -> None:
    d = exiting_user_code.parent
    args = ["diagnose", "--torch-model", d / model, "--data", d / data, "--max-dead", "0", "--json"]
    res = run(*args)
    assert res.exit_code == 2, res.output  # not the 0 the user code asked for
    assert res.stdout == "" and "Traceback" not in res.stderr
    said, err = res.stderr.strip().splitlines()[:-1], res.stderr.strip().splitlines()[-1]
    assert all("says hello" in line for line in said) and err.startswith("error: ")  # the user's prints, then one line
    assert f"user code at {d / where}" in err and "called sys.exit(0)" in err and "--debug" in err, err
    res = run("--debug", *args)  # the traceback, and still exit 2: --debug never turns the gate into a pass
    assert res.exit_code == 2 and "Traceback" in res.stderr and "sys.exit(0)" in res.stderr


def test_every_command_guards_user_code() -> None:
    """The guard is friendly_errors itself, so every command has it: a SystemExit from anything a command calls."""
    from reluscope.cli import _common

    guarded = _common.friendly_errors(lambda: None).__code__
    assert len(app.registered_commands) >= 8
    for command in app.registered_commands:
        assert command.callback is not None and command.callback.__code__ is guarded, command.name


# -- kind 13: with --json, stdout is exactly the JSON ---------------------------------------------------------------
def test_json_stdout_holds_only_the_json_when_user_code_prints(exiting_user_code: Path) -> None:
    import json

    d = exiting_user_code.parent
    res = run("diagnose", "--torch-model", d / "user_exits.py:good", "--data", d / "user_exits.py:batches", "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)  # nothing but the JSON
    assert record["n_samples"] == 8
    for said in ("factory says hello", "loader says hello", "forward says hello"):
        assert said in res.stderr and said not in res.stdout
    # without --json the user's prints stay where they were
    res = run("diagnose", "--torch-model", d / "user_exits.py:good", "--data", d / "user_exits.py:batches")
    assert res.exit_code == 0 and "factory says hello" in res.stdout


def test_json_only_stdout_restores_stdout() -> None:
    import contextlib
    import sys

    from reluscope.cli._common import echo_json, json_only_stdout

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with json_only_stdout(True):
            print("chatter")
            echo_json({"a": 1})
        assert sys.stdout is out
    assert out.getvalue() == '{"a": 1}\n' and err.getvalue() == "chatter\n"


# -- kind 20: a closed stdout is a quiet exit 141 ------------------------------------------------------------------
def _with_stdout_closed(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stdout a pipe whose reader left before it started (``| true``): (exit code, stderr)."""
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    with subprocess.Popen([sys.executable, "-c", _CLI, *args], stdout=w, stderr=subprocess.PIPE, text=True) as proc:
        os.close(w)
        _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "--format", "json"],  # typer.echo
        ["explain"],  # rich's console
        ["train", "--epochs", "2", "--hidden", "4", "--json"],
    ],
)
def test_a_closed_stdout_is_a_quiet_exit_141(args: list[str]) -> None:
    from reluscope.cli import EXIT_BROKEN_PIPE

    assert _with_stdout_closed(args) == (EXIT_BROKEN_PIPE, "")


class _ReaderLeavesAfter(io.StringIO):
    """A stdout whose reader takes ``n`` characters and leaves (``| head -c n``): later writes are a broken pipe."""

    def __init__(self, n: int, devnull: int) -> None:
        super().__init__()
        self.n, self.devnull = n, devnull

    def fileno(self) -> int:
        return self.devnull

    def write(self, s: str) -> int:
        if self.tell() + len(s) > self.n:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)


@pytest.mark.parametrize("args", [["explain", "--format", "json"], ["explain"], ["explain", "--format", "markdown"]])
def test_a_reader_that_leaves_early_is_the_same_quiet_exit(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from reluscope.cli import EXIT_BROKEN_PIPE

    devnull = os.open(os.devnull, os.O_WRONLY)
    monkeypatch.setattr(sys, "stdout", _ReaderLeavesAfter(10, devnull))
    try:
        with pytest.raises(SystemExit) as exc:
            app(args)
    finally:
        os.close(devnull)
    assert exc.value.code == EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


# -- kind 7: an empty output path is refused, never read as the current directory ---------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "1", "--out", ""],
        ["train", "--epochs", "1", "--out", "   "],
        ["train", "--epochs", "1", "--out="],
        ["sweep", "--epochs", "1", "--out", ""],
        ["born-dead", "--out", ""],
        ["continual", "--out", ""],
        ["explain", "--format", "json", "-o", ""],
        ["diagnose", "model.npz", "--prune-out", " "],
    ],
)
def test_an_empty_output_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text("mine")
    line = one_line_error(run(*args))
    assert "is empty" in line and "pass the path to write to" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"] and (tmp_path / "run.json").read_text() == "mine"


def test_every_output_option_is_covered() -> None:
    """Every option named --out, --prune-out or --out-... of every command goes through the one check."""
    import typer.main

    from reluscope.cli import refuse_empty_output_paths

    group = typer.main.get_command(app)
    found = 0
    for command in group.commands.values():  # type: ignore[attr-defined]
        for param in command.params:
            for opt in param.opts:
                if opt == "--out" or opt.endswith("-out") or opt.startswith("--out-"):
                    found += 1
                    with pytest.raises(Exception, match="is empty"):
                        refuse_empty_output_paths(command, [opt, ""])
    assert found >= 6


def test_the_library_refuses_an_empty_directory_too() -> None:
    from reluscope.io import check_writable

    for empty in ("", "  "):
        with pytest.raises(ValueError, match="--out is empty"):
            check_writable(empty)


# -- kind 14: an .npz member's claimed shape is checked before anything is allocated ---------------------------------
def _forged_npz(path: Path, member: str, shape: tuple[int, ...], good: dict[str, np.ndarray]) -> Path:
    """An .npz whose ``member``.npy has a header claiming ``shape`` (float64) followed by 16 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{member}.npy", header.getvalue() + b"\0" * 16)
        for name, a in good.items():
            z.writestr(f"{name}.npy", _npy(a))
    return path


def test_a_header_claiming_30_gb_is_refused_by_every_reader(tmp_path: Path, model_file: Path) -> None:
    from reluscope.data import load_npz
    from reluscope.io import load_model

    shape = (100_000, 40_000)  # 32 GB of float64 in a file of about 1 KB
    data = _forged_npz(tmp_path / "d.npz", "X", shape, {"y": np.array([0, 1, 0, 1])})
    assert data.stat().st_size < 2048
    claimed = "array X's header claims shape (100000, 40000) of float64 (32000000000 bytes)"
    with pytest.raises(ValueError, match=re.escape(claimed)):
        load_npz(data)
    for args in (["train", "--data", data, "--epochs", "1"], ["diagnose", model_file, "--data", data],
                 ["explain", "--input", data], ["sweep", "--data", data, "--out", tmp_path / "sw"]):  # fmt: skip
        line = one_line_error(run(*args))
        assert claimed in line and "the file is truncated or was not written by numpy" in line, (args, line)
    weights = _forged_npz(tmp_path / "w.npz", "W1", shape, {"b1": np.zeros(3), "W2": np.zeros((3, 2))})
    assert "array W1's header claims" in one_line_error(run("explain", "--weights", weights))
    with np.load(model_file, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files if k != "W1"}
    with pytest.raises(ValueError, match="array W1's header claims shape"):
        load_model(_forged_npz(tmp_path / "model.npz", "W1", shape, members))


def test_a_claimed_size_beyond_memory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that really holds its data (a zip of zeros expands ~1000x) but more than the memory limit."""
    import reluscope._validate as v
    from reluscope.data import load_npz

    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X=np.zeros((1000, 100)), y=np.zeros(1000, dtype=np.int64))
    monkeypatch.setattr(v, "memory_limit", lambda: 100_000)
    with pytest.raises(ValueError, match=r"array X \(shape \(1000, 100\), float64\) would need about 781 KiB, more"):
        load_npz(path)
    monkeypatch.undo()
    assert load_npz(path)[0].shape == (1000, 100)  # the same file reads within the limit

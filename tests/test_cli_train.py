"""`reluscope train` through typer's CliRunner: outputs, files, and every error path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.io import load_json, load_model

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_train_json_summary_and_run_dir(tmp_path):
    res = run("train", "--epochs", "30", "--json", "--out", str(tmp_path / "run"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert 0 <= summary["train_accuracy"] <= 1
    assert set(summary["dead_fraction"]) == {"hidden1"}
    record = load_json(tmp_path / "run" / "run.json")
    assert record["status"] == "finished"
    assert len(record["history"]["loss"]) == 30
    assert record["config"]["net"]["sizes"] == [2, 100, 3]
    net = load_model(tmp_path / "run" / "model.npz")
    assert net.sizes == [2, 100, 3]


def test_train_prints_accuracy_and_dead_units():
    res = run("train", "--epochs", "20", "--hidden", "16,8", "--dtype", "float32", "--val-fraction", "0.2")
    assert res.exit_code == 0, res.output
    assert "training accuracy" in res.stdout and "validation accuracy" in res.stdout
    assert "hidden1" in res.stdout and "hidden2" in res.stdout and "dead %" in res.stdout


def test_train_on_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((40, 5)), y=rng.integers(0, 4, 40))
    res = run("train", "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--json", "--batch-size", "8")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "finished"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "lr must be finite and > 0"),
        (["--lr", "0"], "lr must be finite and > 0"),
        (["--activation", "relux"], "unknown activation 'relux'"),
        (["--init", "lecun"], "unknown init 'lecun'"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["--hidden", "10,x"], "--hidden must be comma-separated integers"),
        (["--hidden", "0"], "--hidden sizes must be positive"),
        (["--data", "nope"], "unknown dataset 'nope'"),
        (["--data", "missing.npz"], "missing.npz"),
    ],
)
def test_bad_options_print_one_line_and_exit_2(args, message):
    res = run("train", "--epochs", "1", *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_labels_in_file_exit_2(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.array([0.5, 1, 0, 1]))
    res = run("train", "--data", str(tmp_path / "d.npz"), "--epochs", "1")
    assert res.exit_code == 2
    assert "label" in res.stderr


def test_divergence_exits_1_and_writes_last_finite_model(tmp_path):
    res = run("train", "--lr", "1e200", "--epochs", "5", "--out", str(tmp_path))
    assert res.exit_code == 1
    assert "lower the learning rate" in res.stderr
    assert load_json(tmp_path / "run.json")["status"] == "diverged"
    net = load_model(tmp_path / "model.npz")
    assert all(np.isfinite(p).all() for p in net.params.values())


def test_help_teaches():
    res = run("train", "--help")
    assert res.exit_code == 0
    for option in ("--data", "--hidden", "--activation", "--lr", "--out", "spiral"):
        assert option in res.stdout


def test_track_dead_records_unit_history(tmp_path):
    res = run("train", "--epochs", "40", "--lr", "5", "--track-dead", "10", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    history = load_json(tmp_path / "run.json")["unit_history"]["hidden1"]
    dead_now = load_json(tmp_path / "run.json")["dead_fraction"]["hidden1"]
    assert history["n_dead_at_end"] == round(dead_now * 100)
    assert "died during training" in res.stdout


def test_standardizer_is_saved_and_used_by_diagnose(tmp_path):
    from reluscope.io import load_standardizer

    res = run(
        "train",
        "--data",
        "digits",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--standardize",
        "--lr",
        "0.1",
        "--val-fraction",
        "0.3",
        "--out",
        str(tmp_path),
    )
    assert res.exit_code == 0, res.output
    scaler = load_standardizer(tmp_path / "model.npz")
    assert scaler is not None and scaler.mean.shape == (64,)
    res = run("diagnose", str(tmp_path / "model.npz"), "--data", "digits", "--json")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args", [["train", "--epochs", "0"], ["train", "--bogus"], ["train", "--dtype", "float16"]])
def test_usage_errors_are_one_line_too(args):
    res = run(*args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--help" in lines[0]


def test_redo_and_death_spikes_are_reported():
    res = run("train", "--init", "normal", "--lr", "3", "--epochs", "120", "--redo", "40", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["death_spikes"], "lr 3 with 0.01*randn init kills units within a few steps"
    assert summary["death_spikes"][0]["after"] > summary["death_spikes"][0]["before"]
    assert [r["epoch"] for r in summary["redo"]] == [40]  # the first half of training only
    res = run("train", "--init", "normal", "--lr", "3", "--epochs", "30")
    assert "death spike at step" in res.stderr


def test_linear_classifier_trains_without_a_dead_unit_table(tmp_path):
    res = run("train", "--hidden", "", "--epochs", "20", "--json", "--out", str(tmp_path / "lin"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dead_fraction"] == {}
    assert load_model(tmp_path / "lin" / "model.npz").sizes == [2, 3]
    res = run("train", "--hidden", "", "--epochs", "2", "--track-dead", "1")
    assert res.exit_code == 2 and "need a hidden layer" in res.stderr


def test_out_must_be_a_directory_and_is_checked_before_training(tmp_path):
    (tmp_path / "file.npz").write_text("x")
    res = run("train", "--epochs", "1", "--out", str(tmp_path / "file.npz"))
    assert res.exit_code == 2 and "--out must be a directory" in res.stderr


def test_json_on_divergence_still_prints_a_result():
    res = run("train", "--lr", "1e200", "--epochs", "5", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["status"] == "diverged"

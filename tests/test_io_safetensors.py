"""reluscope.io: the numpy engine's models as .safetensors (config in the metadata, never pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("safetensors")

from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.data import Standardizer
from reluscope.io import load_model, load_standardizer, save_model
from reluscope.nn import MLP


def test_round_trip_with_standardizer(tmp_path) -> None:
    net = MLP([2, 7, 3], seed=0)
    scaler = Standardizer(np.array([0.5, -1.0]), np.array([2.0, 3.0]))
    save_model(tmp_path / "m.safetensors", net, standardizer=scaler)
    back = load_model(tmp_path / "m.safetensors")
    assert back.config() == net.config()
    for key, value in net.params.items():
        assert back.params[key].dtype == value.dtype and np.array_equal(back.params[key], value)
    got = load_standardizer(tmp_path / "m.safetensors")
    assert got is not None and np.array_equal(got.mean, scaler.mean) and np.array_equal(got.std, scaler.std)
    # a plain safetensors file other tools read: the weights by name
    assert set(load_file(str(tmp_path / "m.safetensors"))) >= set(net.params)
    x = np.random.default_rng(0).normal(size=(5, 2))
    assert np.array_equal(back.forward(x), net.forward(x))


def test_foreign_and_corrupt_files_are_explained(tmp_path) -> None:
    save_file({"W1": np.zeros((2, 3))}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="no reluscope config"):
        load_model(tmp_path / "foreign.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x07" * 20)
    with pytest.raises(ValueError, match=r"not a readable \.safetensors file"):
        load_model(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")


def test_diagnose_reads_a_safetensors_model(tmp_path) -> None:
    net = MLP([2, 16, 3], seed=0)
    save_model(tmp_path / "m.safetensors", net)
    save_model(tmp_path / "m.npz", net)
    runner = CliRunner()
    reports = []
    for name in ("m.safetensors", "m.npz"):
        res = runner.invoke(app, ["diagnose", str(tmp_path / name), "--data", "spiral", "--json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert report.pop("model").endswith(name)
        reports.append(report)
    assert reports[0] == reports[1]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x07" * 20)
    res = runner.invoke(app, ["diagnose", str(bad), "--data", "spiral"])
    assert res.exit_code == 2 and "Traceback" not in res.output

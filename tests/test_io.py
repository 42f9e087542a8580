"""Atomic files and checkpoints that load without unpickling."""

from __future__ import annotations

import numpy as np
import pytest

from reluscope.io import atomic_write, load_json, load_model, save_json, save_model
from reluscope.nn import MLP


def test_model_round_trip(tmp_path):
    net = MLP([3, 5, 4, 2], "prelu", init="xavier", bias_init=0.1, seed=3, dtype="float32")
    save_model(tmp_path / "m.npz", net)
    back = load_model(tmp_path / "m.npz")
    assert back.config() == net.config()
    for k, v in net.params.items():
        np.testing.assert_array_equal(back.params[k], v)
        assert back.params[k].dtype == np.float32


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    save_json(path, {"a": 1})
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path, "w") as f:
        f.write("{half")
        raise RuntimeError("boom")
    assert load_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind


def test_corrupt_and_foreign_files_are_explained(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz archive"):
        load_model(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, W1=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no reluscope config"):
        load_model(foreign)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"not a readable \.npz archive"):
        load_model(pickled)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        load_model(tmp_path / "plain.npy")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


def test_shape_mismatch_is_explained(tmp_path):
    net = MLP([3, 5, 2], seed=0)
    save_model(tmp_path / "m.npz", net)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W1"] = np.zeros((4, 5))
    np.savez(tmp_path / "m2.npz", **arrays)
    with pytest.raises(ValueError, match=r"W1 must have shape \(3, 5\), got \(4, 5\)"):
        load_model(tmp_path / "m2.npz")


def test_bad_json_is_explained(tmp_path):
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(tmp_path / "x.json")


def test_corrupt_member_directory_and_bad_csv_are_one_clear_error(tmp_path):
    from reluscope.data import load_csv, load_npz

    path = tmp_path / "crc.npz"
    np.savez(path, X=np.arange(400.0).reshape(200, 2), y=np.zeros(200, dtype=np.int64))
    raw = bytearray(path.read_bytes())
    raw[300] ^= 0xFF  # inside X.npy's data: the zip's CRC check fails when X is read
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"array X is corrupt"):
        load_npz(path)
    save_model(tmp_path / "run" / "model.npz", MLP([2, 3, 2], seed=0))
    with pytest.raises(ValueError, match=r"is a directory, expected a model file .* pass e\.g\. .*model\.npz"):
        load_model(tmp_path / "run")
    (tmp_path / "bad.csv").write_text("a,label\n" + "1" * 200_000 + ",0\n")
    with pytest.raises(ValueError, match=r"line \d+ is not valid CSV"):
        load_csv(tmp_path / "bad.csv")

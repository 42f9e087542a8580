"""Atomic files and checkpoints that load without unpickling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reluscope.io import (
    atomic_write,
    check_writable,
    directory_lock,
    load_json,
    load_model,
    save_json,
    save_model,
    strict_json,
    write_together,
)
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


# Output that is whole, strict and safe (issue 15: kinds 6-10) ---------------------------------------------------
def test_overwrite_keeps_the_file_mode_and_new_files_follow_the_umask(tmp_path):
    path = tmp_path / "run.json"
    save_json(path, {"a": 1})
    new_mode = path.stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    assert new_mode == 0o666 & ~mask
    path.chmod(0o600)
    save_json(path, {"a": 2})
    assert path.stat().st_mode & 0o777 == 0o600 and load_json(path) == {"a": 2}


def test_write_together_replaces_all_files_or_none(tmp_path):
    write_together(tmp_path, {"a.txt": lambda f: f.write(b"old a"), "b.txt": lambda f: f.write(b"old b")})

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"could not write .*b\.txt: No space left on device"):
        write_together(tmp_path, {"a.txt": lambda f: f.write(b"new a"), "b.txt": fail})
    assert (tmp_path / "a.txt").read_bytes() == b"old a" and (tmp_path / "b.txt").read_bytes() == b"old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temp file left
    write_together(tmp_path, {"a.txt": lambda f: f.write(b"new a"), "b.txt": lambda f: f.write(b"new b")})
    assert (tmp_path / "a.txt").read_bytes() == b"new a" and (tmp_path / "b.txt").read_bytes() == b"new b"


def test_read_only_directory_is_refused_before_any_work(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", refuse)
    with pytest.raises(ValueError, match=rf"--out {tmp_path} is not writable \(Permission denied\)"):
        check_writable(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="--out must be a directory, got the file"):
        check_writable(tmp_path / "afile")


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    code = (
        "import sys, time; from reluscope.io import directory_lock\n"
        "with directory_lock(sys.argv[1]):\n    print('locked', flush=True); sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        busy = rf"in use by another reluscope sweep \(pid {holder.pid}\)"
        with pytest.raises(ValueError, match=busy), directory_lock(tmp_path, what="sweep"):
            pass
    finally:
        holder.communicate("\n", timeout=60)
    with directory_lock(tmp_path) as d:  # free again once the holder is gone
        assert d == tmp_path


def test_json_is_strict_and_says_where_values_were_not_finite(tmp_path):
    path = tmp_path / "run.json"
    save_json(path, {"history": {"val_loss": [1.0, float("nan"), float("inf")]}, "ok": 1})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # json.loads would accept both
    data = json.loads(text)
    assert data["history"]["val_loss"] == [1.0, None, None]
    assert data["non_finite"]["paths"] == ["history.val_loss[1]", "history.val_loss[2]"]
    assert strict_json([1.0, {"x": float("-inf")}]) == ([1.0, {"x": None}], ["[1].x"])

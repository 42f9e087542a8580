"""The fault campaign of issue 15, one small input per kind: every bad input is exit 2 (or exit 1 for a run that
diverged) with one line on stderr and no traceback, and nothing is written half or torn."""

from __future__ import annotations

import io
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

"""What a newcomer stumbled over (issue 13), each pinned by a test: a missing torch, lr-check's recommendation, the
-o flag, the example's section numbers, silent benchmarks in a log, the licence and package metadata."""

from __future__ import annotations

import io
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reluscope.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


# diagnose --torch-model without torch -----------------------------------------------------------------------------
def test_diagnose_torch_model_without_torch_is_one_red_line(monkeypatch, tmp_path):
    # None in sys.modules makes `import torch` raise ModuleNotFoundError, as on a machine without PyTorch
    for name in [k for k in sys.modules if k == "torch" or k.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    res = runner.invoke(app, ["diagnose", "--torch-model", "mypkg.models:make_net", "--data", "digits"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "pip install 'reluscope[torch]'" in err[0]


# lr-check ----------------------------------------------------------------------------------------------------------
def test_lr_check_defaults_recommend_with_a_margin_and_say_what_they_measured():
    """With the defaults (where the README's sweep shows lr 3 losing many units over 2000 epochs) the recommendation
    is one rate below the largest passing one, and the output says what was measured. Which rate passes is read
    from --json, not hard-coded: at lr ~3 one rounding can change which units die (here 3.162 passes with 2% dead,
    the same under OpenBLAS Haswell/Sandybridge kernels and one thread)."""
    d = json.loads(runner.invoke(app, ["lr-check", "--json"]).stdout)
    lrs = [t["lr"] for t in d["trials"]]
    assert len(lrs) == 7 and d["margin"] == 1 and d["largest_ok_lr"] is not None
    assert d["recommended_lr"] == lrs[max(0, lrs.index(d["largest_ok_lr"]) - 1)]
    res = runner.invoke(app, ["lr-check"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())  # rich may wrap long lines
    assert "measured: 7 learning rates, 200 steps each from the same initial weights" in out
    assert "fired on none of the 300 training samples" in out
    assert f"largest rate passing before the first failure: {d['largest_ok_lr']:.4g}" in out
    if d["first_failure_lr"] is not None:
        assert f"first failure: {d['first_failure_lr']:.4g}" in out
    assert (
        f"recommended learning rate: {d['recommended_lr']:.4g} (one rate below {d['largest_ok_lr']:.4g} for a margin"
        in out
    )


def test_lr_check_recommendation_keeps_units_alive_over_a_long_run():
    """The default recommendation trained as long as `reluscope train`/the sweep (2000 epochs) keeps the dead
    fraction under the threshold: lr 1 kills no unit in the sweep, far from the 10% threshold."""
    from reluscope.data import spiral
    from reluscope.diagnose import scan
    from reluscope.nn import MLP
    from reluscope.remedies import lr_range_test, overall_dead_fraction
    from reluscope.train import fit

    X, y = spiral(100, 3, seed=0)
    result = lr_range_test(X, y, seed=0)
    assert result.largest_ok_lr is not None and result.recommended_lr is not None
    assert result.recommended_lr < result.largest_ok_lr  # a margin below the boundary
    net = MLP([2, 100, 3], "relu", init="he", seed=0)
    fit(net, X, y, lr=result.recommended_lr, reg=1e-3, epochs=2000)
    assert overall_dead_fraction(scan(net, X)) <= result.threshold


def test_lr_check_margin_zero_recommends_the_largest_passing_rate():
    args = ["--init", "normal", "--lrs", "0.1,1,20", "--steps", "60", "--n-per-class", "40", "--threshold", "0.2"]
    res = runner.invoke(app, ["lr-check", *args, "--margin", "0"])
    assert res.exit_code == 0, res.output
    assert "recommended learning rate: 1 (the largest with at most 20% dead" in " ".join(res.stdout.split())


def test_lr_check_margin_must_be_non_negative():
    res = runner.invoke(app, ["lr-check", "--margin", "-1", "--steps", "2"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def test_lr_range_test_margin_steps_back_and_is_validated():
    from reluscope.remedies import lr_range_test

    X, y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), np.array([0, 1, 2])
    lrs = [0.001, 0.002, 0.004]  # all pass on this toy: nothing dies in 3 steps at these rates
    r0 = lr_range_test(X, y, lrs=lrs, steps=3, threshold=1.0, margin=0)
    r1 = lr_range_test(X, y, lrs=lrs, steps=3, threshold=1.0, margin=1)
    r5 = lr_range_test(X, y, lrs=lrs, steps=3, threshold=1.0, margin=5)
    assert r0.largest_ok_lr == r1.largest_ok_lr == r5.largest_ok_lr == 0.004
    assert (r0.recommended_lr, r1.recommended_lr, r5.recommended_lr) == (0.004, 0.002, 0.001)
    assert r1.first_failure_lr is None and r1.to_dict()["margin"] == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="margin must be an int >= 0"):
            lr_range_test(X, y, lrs=lrs, steps=1, margin=bad)


# -o is not --optimizer -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "sweep", "lr-check"])
def test_short_o_is_not_the_optimizer(command):
    """Users expect -o for output: --optimizer has no short flag (-o stays free for an output option)."""
    import typer

    click_cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    (opt,) = [p for p in click_cmd.params if p.name == "optimizer"]
    assert opt.opts == ["--optimizer"] and not opt.secondary_opts


# the example script ---------------------------------------------------------------------------------------------
def test_example_sections_are_numbered_once(monkeypatch, capsys):
    pytest.importorskip("torch")
    module = runpy.run_path(str(ROOT / "examples" / "torch_dead_units.py"), run_name="example")
    main = module["main"]
    # no training here: only the section headers the example prints around it
    monkeypatch.setitem(main.__globals__, "train", lambda *a, **k: None)
    main()
    headers = [line.split(".")[0] for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert headers == ["1", "2", "3"]


# benchmarks print progress in a log ---------------------------------------------------------------------------------
class _Raw(io.RawIOBase):
    """A file that records each write reaching the 'OS', as a pipe or log file would receive them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.chunks.append(bytes(b))
        return len(b)


def _run_bench(monkeypatch, script: str, args: list[str]) -> list[bytes]:
    raw = _Raw()
    # block-buffered like stdout redirected to a file: without line buffering everything arrives in one write
    out = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=1 << 16), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "argv", [script, *args])
    try:
        runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
    except SystemExit as exc:  # a script ending in sys.exit(main())
        assert exc.code in (0, None)
    out.flush()
    return raw.chunks


def test_bench_scan_writes_each_round_as_it_is_measured(monkeypatch):
    args = ["--n", "64", "--sizes", "4,8,3", "--batch-size", "16", "--rounds", "3", "--dtype", "float64"]
    chunks = _run_bench(monkeypatch, "bench_scan.py", args)
    rounds = [c for c in chunks if c.startswith(b"round ")]
    assert [c.split(b":")[0] for c in rounds] == [b"round 1/3", b"round 2/3", b"round 3/3"]
    assert any(c.startswith(b"ratio") for c in chunks)


def test_bench_engine_writes_each_row_as_it_is_measured(monkeypatch):
    chunks = _run_bench(monkeypatch, "bench_engine.py", ["--quick", "--no-torch", "--reps", "1", "--dtype", "float64"])
    lines = b"".join(chunks).decode().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("shape"))
    rows = [line for line in lines[head + 2 :] if line.strip() and not line.startswith("targets")]
    assert rows
    for row in rows:  # every row line reached the file in a write of its own
        assert (row + "\n").encode() in chunks


# licence and package metadata ------------------------------------------------------------------------------------
def test_license_file_and_metadata():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "reluscope developers" in text
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in meta["classifiers"]
    assert meta["authors"] and meta["keywords"]
    assert any(c.startswith("Programming Language :: Python :: 3.") for c in meta["classifiers"])

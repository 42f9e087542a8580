"""The continual-learning benchmark: records, resumable cells, summary intervals, CLI and report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.continual import (
    ContinualCell,
    ContinualConfig,
    effective_rank,
    load_continual,
    per_task_series,
    run_continual,
    run_continual_cell,
    srank,
    summarize_continual,
)

TINY = {
    "methods": ("none", "cbp"),
    "seeds": (0,),
    "n_tasks": 2,
    "hidden": (8,),
    "max_samples": 150,
    "batch_size": 16,
    "cbp_rate": 0.01,
    "cbp_maturity": 2,
}


def _strict(text):
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=bad)


def test_effective_rank_and_srank():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((20, 5)))
    assert effective_rank(q) == pytest.approx(5.0, rel=1e-12)  # 5 equal singular values
    assert srank(q) == 5
    assert effective_rank(np.zeros((4, 3))) == 0.0 and srank(np.zeros((4, 3))) == 0
    h = np.diag([1.0, 1e-9, 0.0])
    assert effective_rank(h) == pytest.approx(1.0, abs=1e-6) and srank(h) == 1


def test_cells_are_resumable_and_strict_json(tmp_path):
    cfg = ContinualConfig(**TINY)
    first = run_continual(cfg, tmp_path, jobs=1)
    assert sorted(first.ran) == sorted(c["key"] for c in cfg.cells()) and first.skipped == []
    files = sorted((tmp_path / "cells").glob("*.json"))
    assert len(files) == 2
    for f in files:
        cell = ContinualCell.from_dict(_strict(f.read_text()))
        assert len(cell.tasks) == 2 and cell.status == "finished"
    _strict((tmp_path / "continual.json").read_text())
    # a second run trains nothing and reads back identical records
    second = run_continual(cfg, tmp_path, jobs=1)
    assert second.ran == [] and len(second.skipped) == 2
    assert [c.to_dict() for c in second.cells] == [c.to_dict() for c in first.cells]
    # a missing and a truncated cell are rerun, the other is kept
    cbp_file = next(f for f in files if f.name.startswith("cbp"))
    none_file = next(f for f in files if f.name.startswith("none"))
    cbp_file.unlink()
    third = run_continual(cfg, tmp_path, jobs=1)
    assert [k.split("-")[0] for k in third.ran] == ["cbp"]
    none_file.write_text(none_file.read_text()[:50])
    fourth = run_continual(cfg, tmp_path, jobs=1)
    assert [k.split("-")[0] for k in fourth.ran] == ["none"]
    # the same cell trained twice gives the same numbers (same code path: exact)
    assert [c.to_dict()["tasks"] for c in fourth.cells] == [c.to_dict()["tasks"] for c in first.cells]
    # another configuration has other keys: nothing is reused by mistake
    other = run_continual(ContinualConfig(**{**TINY, "lr": 0.05}), tmp_path, jobs=1)
    assert len(other.ran) == 2
    loaded = load_continual(tmp_path)
    assert loaded.config.lr == 0.05


def test_cell_records_are_sane_and_cbp_replaces_units():
    cfg = ContinualConfig(**TINY)
    cells = [run_continual_cell(c) for c in cfg.cells()]
    for cell in cells:
        for r in cell.tasks:
            for frac in (r.online_accuracy, r.test_accuracy, r.dead_fraction, r.dormant_fraction):
                assert 0.0 <= frac <= 1.0
            assert r.dormant_fraction >= r.dead_fraction  # dead units are dormant too
            assert 0 <= r.srank <= 8 and 0.0 <= r.effective_rank <= 8.0 + 1e-9
            assert r.weight_magnitude > 0 and math.isfinite(r.loss)
    none, cbp = cells
    assert sum(r.replaced for r in none.tasks) == 0
    assert sum(r.replaced for r in cbp.tasks) > 0
    rt = ContinualCell.from_dict(cbp.to_dict())
    assert rt == cbp


def test_config_validation_and_versions():
    with pytest.raises(ValueError, match="methods must be"):
        ContinualConfig(methods=("nope",))
    with pytest.raises(ValueError, match="idx_images"):
        ContinualConfig(data="idx")
    with pytest.raises(ValueError, match="seeds"):
        ContinualConfig(seeds=(-1,))
    cfg = ContinualConfig(**TINY)
    assert ContinualConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="version"):
        ContinualConfig.from_dict({**cfg.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="unknown keys"):
        ContinualConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_summary_intervals_match_scipy():
    from scipy import stats

    cfg = ContinualConfig(**{**TINY, "methods": ("none",), "seeds": (0, 1, 2)})
    cells = [run_continual_cell(c) for c in cfg.cells()]
    rows = summarize_continual(cells, blocks=1)
    assert len(rows) == 1 and rows[0]["n_seeds"] == 3 and rows[0]["tasks"] == "1-2"
    per_seed = [np.mean([r.online_accuracy for r in c.tasks]) for c in cells]
    half = stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3)
    assert rows[0]["online_accuracy"] == pytest.approx(np.mean(per_seed), rel=1e-12)
    assert rows[0]["online_accuracy_hi"] - rows[0]["online_accuracy"] == pytest.approx(half, rel=1e-9)
    series = per_task_series(cells, "dead_fraction")
    assert series["none"]["task"] == [1.0, 2.0] and series["none"]["n_seeds"] == [3.0, 3.0]
    with pytest.raises(ValueError, match="unknown metric"):
        per_task_series(cells, "nope")


# CLI and report --------------------------------------------------------------------------------------------------
runner = CliRunner()
TINY_ARGS = ["--methods", "none,cbp", "--seeds", "0", "--tasks", "2", "--hidden", "8", "--max-samples", "150"]


def test_cli_runs_resumes_and_reports(tmp_path):
    out = tmp_path / "c"
    r = runner.invoke(app, ["continual", *TINY_ARGS, "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["ran"] == 2 and payload["skipped"] == 0 and len(payload["figures"]) == 5
    r = runner.invoke(app, ["continual", *TINY_ARGS, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "[1/2]" not in r.output and "skipped 2" in r.output
    record = json.loads((out / "continual.json").read_text())
    assert record["command"].startswith("reluscope continual --methods none,cbp --seeds 0 --tasks 2")
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    assert "Loss of plasticity" in page and "continual_dead" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "none,bogus"], "methods must be"),
        (["--images", "x.idx"], "--images and --labels go together"),
        (["--images", "nope-images", "--labels", "nope-labels"], "nope-images"),
        (["--seeds", "a"], "--seeds"),
    ],
)
def test_cli_errors_are_one_red_line(tmp_path, args, message):
    r = runner.invoke(app, ["continual", *TINY_ARGS, *args, "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_cli_help_teaches():
    r = runner.invoke(app, ["continual", "--help"])
    assert r.exit_code == 0 and "Permuted digits" in r.output


def _write_idx(path, magic, dims, payload):
    import struct

    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


def test_idx_files_are_used_when_given(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, size=60, dtype=np.uint8)
    _write_idx(tmp_path / "img", 0x00000803, (60, 4, 4), images.tobytes())
    _write_idx(tmp_path / "lab", 0x00000801, (60,), labels.tobytes())
    cfg = ContinualConfig(
        methods=("none",),
        seeds=(0,),
        n_tasks=2,
        hidden=(5,),
        data="idx",
        idx_images=str(tmp_path / "img"),
        idx_labels=str(tmp_path / "lab"),
        max_samples=50,
    )
    cell = run_continual_cell(cfg.cells()[0])
    assert len(cell.tasks) == 2
    # 50 samples, 10 held out: the online accuracy is a count over the 40 training images
    assert all(round(r.online_accuracy * 40, 9) == round(r.online_accuracy * 40) for r in cell.tasks)


def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    from reluscope.io import directory_lock

    with directory_lock(tmp_path, what="test"), pytest.raises(ValueError, match="in use"):
        run_continual(ContinualConfig(**TINY), tmp_path, jobs=1)
    assert not (tmp_path / "cells").exists()  # refused before any work

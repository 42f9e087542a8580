"""Sweeps on a real dask.distributed cluster (a LocalCluster of 2 worker processes): same results as a local run,
resume, the CLI options and their errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from distributed import LocalCluster
from typer.testing import CliRunner

import reluscope._cluster
from reluscope.cli import app
from reluscope.experiments import SweepConfig, run_sweep

# 2 lrs x 2 activations x 2 seeds = 8 cells, a fraction of a second each
TINY: dict[str, Any] = dict(n_per_class=12, hidden=(6,), lrs=(0.5, 50.0), seeds=(0, 1), epochs=12, track_every=4)


@pytest.fixture(scope="module")
def scheduler() -> Any:
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:  # ":0": a free port (None means 8787, taken if another cluster runs)
        yield cluster.scheduler_address


def same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal tables. The same float64 operations on the same machine, in another process: floats agree to 1e-12
    relative (in practice bit for bit; the bound only allows a BLAS threading difference in the worker)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key, va in ra.items():
            vb = rb[key]
            if isinstance(va, float) and not (math.isnan(va) and isinstance(vb, float) and math.isnan(vb)):
                assert vb == pytest.approx(va, rel=1e-12, abs=1e-300), key
            elif isinstance(va, float):
                continue  # both NaN
            else:
                assert va == vb, key


@pytest.mark.slow
def test_dask_sweep_equals_local_and_resumes(tmp_path: Path, scheduler: str) -> None:
    local = run_sweep(SweepConfig(**TINY), tmp_path / "local", jobs=1)
    remote = run_sweep(SweepConfig(**TINY), tmp_path / "dask", backend="dask", scheduler=scheduler)
    assert sorted(remote.ran) == sorted(local.ran) and len(remote.ran) == 8
    same_rows(local.rows, remote.rows)
    assert [c["key"] for c in remote.cells] == [c["key"] for c in local.cells]  # grid order, not arrival order
    # resume: delete three cells, rerun on the cluster: only those run, the tables are unchanged
    deleted = remote.ran[:3]
    for key in deleted:
        (tmp_path / "dask" / "cells" / f"{key}.json").unlink()
    again = run_sweep(SweepConfig(**TINY), tmp_path / "dask", backend="dask", scheduler=scheduler)
    assert sorted(again.ran) == sorted(deleted) and len(again.skipped) == 5
    same_rows(local.rows, again.rows)
    stored = json.loads((tmp_path / "dask" / "results.json").read_text())
    assert len(stored["rows"]) == 8


@pytest.mark.slow
def test_cli_backend_dask(tmp_path: Path, scheduler: str) -> None:
    runner = CliRunner()
    grid = ["sweep", "--n-per-class", "12", "--hidden", "6", "--lrs", "0.5", "--seeds", "0", "--epochs", "12"]
    grid += ["--track-every", "4", "--no-plots", "--quiet", "--out", str(tmp_path / "s")]
    res = runner.invoke(app, [*grid, "--backend", "dask", "--scheduler", scheduler, "--json"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "s" / "cells").glob("*.json"))) == 2  # relu and leaky at one lr and seed


def test_backend_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    base = ["sweep", "--n-per-class", "12", "--lrs", "0.5", "--seeds", "0", "--epochs", "2", "--no-plots", "--quiet"]
    base += ["--out", str(tmp_path / "s")]
    cases = [
        (["--backend", "dask"], "needs the scheduler's address"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "only makes sense with the dask backend"),
        (["--backend", "ray"], "Ray is not supported"),
    ]
    for extra, message in cases:
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2, res.output
        assert message in res.stderr and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.output
    monkeypatch.setattr(reluscope._cluster, "CONNECT_TIMEOUT_S", 1)
    res = runner.invoke(app, [*base, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2 and "could not reach the Dask scheduler at tcp://127.0.0.1:9" in res.stderr
    with pytest.raises(ValueError, match="backend must be one of local, dask"):
        run_sweep(SweepConfig(**TINY), tmp_path / "x", backend="loky")


def test_dask_backend_without_dask_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "distributed" or m.startswith("distributed.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    args = ["sweep", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", "--lrs", "1", "--seeds", "0"]
    result = CliRunner().invoke(app, [*args, "--epochs", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "pip install 'reluscope[dask]'" in result.output and "Traceback" not in result.output

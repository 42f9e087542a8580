"""reluscope.runs: the typed run layer. Records round-trip, JSON is strict, one run serves train and sweep cells."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reluscope.data import spiral
from reluscope.experiments import SweepConfig, load_sweep_data
from reluscope.runs import (
    CellResult,
    PreparedData,
    RunConfig,
    RunResult,
    load_run,
    mean_std,
    prepare_data,
    run,
    run_cell_config,
    save_run,
)

SMALL = RunConfig(n_per_class=20, hidden=(12,), lr=1.0, epochs=30, val_fraction=0.2, track_every=10, death_spike=0.05)


def test_run_config_round_trip_and_errors():
    cfg = RunConfig(hidden=(8, 4), batch_size=16, remedy="redo", redo_until=7, standardize=True)
    d = json.loads(json.dumps(cfg.to_dict(), allow_nan=False))
    assert d["version"] == 2 and d["hidden"] == [8, 4]
    assert RunConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown run config keys"):
        RunConfig.from_dict({**d, "colour": "red"})
    with pytest.raises(ValueError, match="version 3"):
        RunConfig.from_dict({**d, "version": 3})
    with pytest.raises(ValueError, match="unknown remedy 'dropout'"):
        RunConfig(remedy="dropout")
    with pytest.raises(ValueError, match="val_fraction must be in"):
        RunConfig(val_fraction=1.0)


def test_prepare_data_splits_standardises_and_casts():
    data = prepare_data(RunConfig(n_per_class=20, val_fraction=0.25, standardize=True, dtype="float32", data_seed=3))
    assert data.X.dtype == np.float32 and data.X_val.dtype == np.float32
    assert data.X.shape == (45, 2) and data.X_val.shape == (15, 2) and data.has_val
    assert data.standardizer is not None
    # standardised in float64, then rounded to float32 (relative error <= 2^-24 per value, |x| < 4): the float64
    # mean of the float32 values is within 4 * 2^-24 < 1e-6 of 0, on any BLAS
    np.testing.assert_allclose(data.X.astype(np.float64).mean(axis=0), 0.0, atol=1e-6)
    again = prepare_data(RunConfig(n_per_class=20, val_fraction=0.25, standardize=True, dtype="float32", data_seed=3))
    assert again.digest == data.digest  # the same config: the same arrays, exactly
    assert prepare_data(RunConfig(n_per_class=20, data_seed=4)).digest != data.digest


def test_run_result_round_trip_through_strict_json(tmp_path):
    result = run(SMALL)
    assert result.status == "finished" and result.stats is not None
    path = tmp_path / "run.json"
    save_run(path, result)
    text = path.read_text()
    back = load_run(path)
    assert back == RunResult.from_dict(json.loads(text))
    assert back.to_dict() == json.loads(text)
    assert back.scan == result.stats.summary()
    assert back.fire_rates == {"hidden1": result.stats.frequency("hidden1").tolist()}
    history = back.unit_history["hidden1"]
    last = np.asarray(history["fire_counts"][-1]) / history["n_samples"]
    np.testing.assert_array_equal(last, back.fire_rates["hidden1"])  # the tracker's last scan is the final scan


def test_cell_result_round_trip(tmp_path):
    cfg = SweepConfig(
        n_per_class=12, hidden=(6,), lrs=(0.5,), activations=("relu",), seeds=(0,), epochs=8, track_every=4
    )
    data = load_sweep_data(cfg)
    cell = cfg.cells(data.digest)[0]
    record = CellResult.from_run(cell, run(run_cell_config(cell), data=data), seconds=0.5)
    path = tmp_path / "cell.json"
    record.write(path)
    back = CellResult.from_dict(json.loads(path.read_text()))
    assert back == record
    v1 = {**record.to_dict(), "version": 1}
    assert CellResult.from_dict(v1).layers == record.layers  # cells of reluscope 0.1 read the same
    with pytest.raises(ValueError, match="version 7"):
        CellResult.from_dict({**v1, "version": 7})
    with pytest.raises(ValueError, match="lacks"):
        CellResult.from_dict({k: v for k, v in v1.items() if k != "layers"})


def test_records_are_strict_json_with_nulls_and_where(tmp_path):
    """A non-finite value in a record is written as null and its path listed; no bare NaN/Infinity in any file."""
    cfg = SweepConfig(n_per_class=12, hidden=(6,), lrs=(0.5,), activations=("relu",), seeds=(0,), epochs=8)
    data = load_sweep_data(cfg)
    cell = cfg.cells(data.digest)[0]
    record = CellResult.from_run(cell, run(run_cell_config(cell), data=data), seconds=math.inf)
    record.write(tmp_path / "cell.json")
    result = run(SMALL)
    result.history["loss"][3] = math.nan
    save_run(tmp_path / "run.json", result)
    for name, where in (("cell.json", "seconds"), ("run.json", "history.loss[3]")):
        d = json.loads((tmp_path / name).read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
        assert where in d["non_finite"]["paths"]
    assert json.loads((tmp_path / "cell.json").read_text())["seconds"] is None
    assert load_run(tmp_path / "run.json").history["loss"][3] is None


def test_a_diverged_run_is_a_strict_record(tmp_path):
    result = run(RunConfig(n_per_class=20, hidden=(12,), lr=1e200, epochs=5))
    assert result.status == "diverged" and result.exception is not None
    assert "lower the learning rate" in (result.error or "")
    save_run(tmp_path / "run.json", result)
    text = (tmp_path / "run.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in a record"))
    assert load_run(tmp_path / "run.json").status == "diverged"


def test_overflow_stop_measures_the_last_finite_scan():
    """Sweep cells (overflow="stop") turn overflowing activations into a diverged result with finite statistics."""
    for lr in (1e5, 1e8, 1e12):
        cfg = RunConfig(n_per_class=15, hidden=(8, 6), lr=lr, epochs=40, track_every=5, overflow="stop")
        result = run(cfg)
        assert result.status == "diverged" and result.stats is not None, lr
        assert result.diverged_at_epoch is not None and result.final_epoch < result.diverged_at_epoch
        assert all(np.isfinite(v).all() for v in result.net.params.values())
        assert 0.0 <= result.train_accuracy <= 1.0


def test_run_from_arrays_and_callbacks_see_every_epoch():
    from reluscope.train import Callback

    class Count(Callback):
        n = 0

        def on_epoch_end(self, state):
            Count.n += 1

    X, y = spiral(20, 3, seed=0)
    result = run(RunConfig(hidden=(10,), epochs=7, remedy="leaky"), [Count()], data=PreparedData.from_arrays(X, y))
    assert Count.n == 7 and result.net.activation.name == "leaky"
    assert result.config["n_samples"] == 60


def test_the_same_config_runs_the_same_twice():
    """Exactness that is a property of our code: the same config, the same data and seeds, the same weights."""
    a, b = run(SMALL), run(SMALL)
    assert all(np.array_equal(a.net.params[k], b.net.params[k]) for k in a.net.params)
    assert a.to_dict()["history"] == b.to_dict()["history"]


def test_mean_std():
    assert mean_std([]) == (None, None)
    assert mean_std([2.0]) == (2.0, 0.0)
    mean, std = mean_std([1.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(math.sqrt(2.0), rel=1e-15)  # float64: last-bit rounding only
    assert mean_std([1e308, 1e308])[0] is None  # the mean overflows: None, not inf


def test_remedies_come_from_the_registry():
    from reluscope.experiments import SWEEP_REMEDIES
    from reluscope.remedies import REMEDY_REGISTRY
    from reluscope.runs import REMEDIES, check_remedy

    assert tuple(REMEDY_REGISTRY) == REMEDIES
    assert tuple(r for r in REMEDIES if not REMEDY_REGISTRY[r].swaps_activation) == SWEEP_REMEDIES
    assert [check_remedy(r) for r in REMEDIES] == list(REMEDIES)
    with pytest.raises(ValueError, match=r"unknown remedy 'leaky'; choose from none, redo \(leaky is an activation"):
        check_remedy("leaky", allowed=SWEEP_REMEDIES)
    with pytest.raises(ValueError, match=r"unknown remedy 'shrink'; choose from none, redo, leaky$"):
        check_remedy("shrink")

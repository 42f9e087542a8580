"""reluscope.integrations.loggers: TensorBoard event files and W&B offline runs, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reluscope.diagnose import ActivationStats
from reluscope.integrations.loggers import dead_unit_metrics, fire_rate_histograms, log_dead_units


def make_stats(seed: int = 0) -> ActivationStats:
    """Two sites; 'a' has units 0-2 dead (never > 0), 'b' is fully alive."""
    g = np.random.default_rng(seed)
    stats = ActivationStats()
    pre_a = g.normal(size=(64, 8))
    pre_a[:, :3] = -np.abs(pre_a[:, :3])
    stats.update("a", pre_a, np.maximum(pre_a, 0))
    pre_b = g.normal(size=(64, 5)) + 0.5
    pre_b[0] = 1.0
    stats.update("b", pre_b, np.maximum(pre_b, 0))
    return stats


def test_metrics_and_histograms() -> None:
    stats = make_stats()
    m = dead_unit_metrics(stats, tau=0.1)
    assert m["dead_fraction/a"] == 3 / 8 and m["dead_fraction/b"] == 0.0
    assert m["dead_fraction/overall"] == 3 / 13
    assert m["dormant_fraction/a"] == float(stats.dormant_mask("a", 0.1).mean())
    assert "dormant_fraction/a" not in dead_unit_metrics(stats, dormant=False)
    hists = fire_rate_histograms(stats, bins=4)
    counts, edges = hists["fire_rate/a"]
    assert counts.sum() == 8 and counts[0] >= 3 and edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(TypeError, match="ActivationStats"):
        dead_unit_metrics({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        dead_unit_metrics(stats, tau=-1)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        dead_unit_metrics(stats, tau=float("nan"))
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        log_dead_units(object(), stats, -1)
    with pytest.raises(TypeError, match=r"SummaryWriter .* or a wandb run"):
        log_dead_units(object(), stats, 0)


def test_tensorboard_event_file_reads_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter

    from _integrations import read_tensorboard

    del torch
    writer = SummaryWriter(str(tmp_path))
    logged = [log_dead_units(writer, make_stats(seed), step, bins=10) for step, seed in ((0, 0), (5, 1))]
    writer.close()
    scalars, hists = read_tensorboard(tmp_path)
    for key in logged[0]:
        steps_values = scalars[key]
        assert [s for s, _ in steps_values] == [0, 5]
        # TensorBoard stores scalars as float32
        assert [v for _, v in steps_values] == pytest.approx([m[key] for m in logged], rel=1e-7)
    event = hists["fire_rate/a"][-1]
    assert event.step == 5
    counts, edges = fire_rate_histograms(make_stats(1), bins=10)["fire_rate/a"]
    assert list(event.histogram_value.bucket) == counts.tolist()
    assert list(event.histogram_value.bucket_limit) == pytest.approx(edges[1:].tolist())


def test_wandb_offline_history_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")
    from _integrations import read_wandb_history

    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    run = wandb.init(project="reluscope-test", dir=str(tmp_path), mode="offline")
    try:
        logged = [log_dead_units(run, make_stats(seed), step, bins=10) for step, seed in ((0, 0), (3, 1))]
    finally:
        run.finish()
        wandb.teardown()  # finish() can return before the wandb-core service has flushed the run file
    rows = read_wandb_history(tmp_path)
    assert [r["_step"] for r in rows] == [0, 3]
    for row, metrics in zip(rows, logged, strict=True):
        for key, value in metrics.items():
            assert row[key] == value  # JSON float64: exact
    counts, _ = fire_rate_histograms(make_stats(1), bins=10)["fire_rate/a"]
    assert rows[1]["fire_rate/a/_type"] == "histogram" and rows[1]["fire_rate/a/values"] == counts.tolist()

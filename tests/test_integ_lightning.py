"""reluscope.integrations.lightning: DeadUnitCallback inside a real Lightning fit (CPU, tiny model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import import_torchvision  # noqa: E402

import_torchvision()  # Lightning imports torchmetrics, which imports torchvision
pytest.importorskip("lightning")

import lightning.pytorch as L  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from reluscope.integrations.lightning import DeadUnitCallback  # noqa: E402
from reluscope.torch import scan  # noqa: E402

pytestmark = pytest.mark.torch

# Lightning's advice for real runs, not faults of these tiny CPU fits
QUIET = [
    pytest.mark.filterwarnings("ignore:The 'train_dataloader' does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
    # Lightning 2.6 on torch 2.13: a pytree deprecation inside Lightning's own loader code
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
]


def quiet(f: Any) -> Any:
    for mark in QUIET:
        f = mark(f)
    return f


class Memory(Logger):  # type: ignore[misc]
    """Keeps every log_metrics call: (step, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))


class Tiny(L.LightningModule):  # type: ignore[misc]
    """4 -> 16 -> 16 -> 3 ReLU MLP, some units of each hidden layer dead by construction (bias -50)."""

    def __init__(self, lr: float, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()
        with torch.no_grad():
            self.net[0].bias[:5] = -50.0
            self.net[2].bias[:3] = -50.0

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def data(n: int = 96, seed: int = 0) -> TensorDataset:
    g = np.random.default_rng(seed)
    x = torch.from_numpy(g.normal(size=(n, 4)))
    y = torch.from_numpy(g.integers(0, 3, size=n))
    return TensorDataset(x, y)


def trainer(logger: Any, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "logger": logger,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "precision": "64-true",
    }
    return L.Trainer(**{**options, **kw})


@quiet
def test_epoch_windows_equal_a_scan_at_the_same_weights() -> None:
    """lr=0: the weights never move, so each epoch's window (every training pass recorded, full counts on every
    pass) covers exactly the forward passes a scan of the same data makes: masks and dormant flags must agree."""
    ds = data()
    model = Tiny(lr=0.0)
    mem = Memory()
    cb = DeadUnitCallback(every_n_steps=1, full_every=1, tau=0.1, log_every_n_steps=1000)
    trainer(mem, log_every_n_steps=1000, callbacks=[cb]).fit(model, DataLoader(ds, batch_size=32))
    stats = scan(model, DataLoader(ds, batch_size=32))
    ours = [(step, m) for step, m in mem.rows if any(k.startswith("dead_fraction/") for k in m)]
    assert [step for step, _ in ours] == [3, 6]  # once per epoch (3 batches each), no duplicates
    assert stats.names == ["net.1", "net.3"]
    # the fire decisions are far from the kink: the same float64 values in both runs give the same masks
    for name in stats.names:
        pre = stats.max_preactivation(name)
        assert np.all(np.abs(pre) > 1e-6)
        assert np.all(np.abs(stats.dormant_scores(name) - 0.1) > 1e-6)
    for _, metrics in ours:
        for name in stats.names:
            assert metrics[f"dead_fraction/{name}"] == stats.dead_fraction(name)
            assert metrics[f"dormant_fraction/{name}"] == float(stats.dormant_mask(name, 0.1).mean())
        assert metrics["dead_fraction/overall"] == sum(int(stats.dead_mask(n).sum()) for n in stats.names) / 32
    assert mem.rows and ours[0][1]["dead_fraction/net.1"] >= 5 / 16
    assert cb.last_window is not None and cb.last_window.n_samples("net.1") == 96


@quiet
def test_training_is_bit_identical_with_and_without_the_callback() -> None:
    ds = data()
    weights = []
    for callbacks in ([], [DeadUnitCallback(full_every=2, log_every_n_steps=2)]):
        model = Tiny(lr=0.1)
        trainer(Memory(), log_every_n_steps=2, callbacks=callbacks).fit(model, DataLoader(ds, batch_size=32))
        weights.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        assert torch.equal(a, b)


@quiet
def test_cadence_logs_running_window_and_state_round_trips() -> None:
    ds = data()
    mem = Memory()
    cb = DeadUnitCallback(full_every=None, log_every_n_steps=2)
    trainer(mem, log_every_n_steps=2, callbacks=[cb]).fit(Tiny(lr=0.05), DataLoader(ds, batch_size=32))
    steps = [step for step, m in mem.rows if "dead_fraction/overall" in m]
    assert steps == [2, 3, 4, 6]  # cadence 2 plus each epoch's end (step 6 is both: logged once)
    assert not any(k.startswith("dormant_fraction/") for _, m in mem.rows for k in m)  # no full passes
    state = cb.state_dict()
    assert state["epochs_closed"] == 2 and state["last_logged_step"] == 6
    other = DeadUnitCallback(full_every=None)
    other.load_state_dict(state)
    assert other.state_dict() == state
    import json

    assert json.loads(json.dumps(state)) == state  # plain data
    with pytest.raises(ValueError, match="version"):
        other.load_state_dict({"version": 99})


@quiet
def test_callback_errors_teach() -> None:
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer"):
        DeadUnitCallback(every_n_steps=0)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):  # reluscope._validate.check_tau
        DeadUnitCallback(tau=-0.5)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        DeadUnitCallback(redo_tau=float("inf"))
    with pytest.raises(ValueError, match="full_every must be set"):
        DeadUnitCallback(redo=1, redo_tau=0.1, full_every=None)

    class Direct(Tiny):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)  # bypasses self(x)

    with pytest.raises(RuntimeError, match="module='net'"):
        trainer(Memory(), callbacks=[DeadUnitCallback()]).fit(Direct(lr=0.0), DataLoader(data(), batch_size=32))
    mem = Memory()
    trainer(mem, callbacks=[DeadUnitCallback(module="net")]).fit(Direct(lr=0.0), DataLoader(data(), batch_size=32))
    assert any("dead_fraction/1" in m for _, m in mem.rows)  # sites named inside net


@quiet
def test_redo_recycles_dead_units_at_epoch_end() -> None:
    ds = data()
    model = Tiny(lr=0.0)
    cb = DeadUnitCallback(redo=1, full_every=None)
    trainer(Memory(), max_epochs=1, callbacks=[cb]).fit(model, DataLoader(ds, batch_size=32))
    assert cb.state_dict()["redo_calls"] == 1 and cb.state_dict()["recycled"] >= 8
    after = scan(model, DataLoader(ds, batch_size=32))
    assert after.dead_fraction("net.1") < 5 / 16


@pytest.mark.slow
def test_ddp_two_gloo_ranks_log_once_with_merged_counts(tmp_path: Path) -> None:
    """Two CPU processes (gloo), each sees half of the data: rank 0 logs once per epoch, and the logged fractions
    equal a single-process scan of all the data (lr=0, exact merged counts)."""
    script = Path(__file__).with_name("_lightning_ddp.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    expected = json.loads(out.read_text())
    rank0 = json.loads(Path(f"{out}.rank0.json").read_text())
    rank1 = json.loads(Path(f"{out}.rank1.json").read_text())
    assert len(rank0["rows"]) == 2 and rank1["rows"] == []  # once per epoch, rank 0 only
    assert rank0["window_samples"] == rank1["window_samples"] == 96  # 48 per rank, merged on both
    for metrics in rank0["rows"]:
        assert metrics == expected


@quiet
def test_state_travels_in_a_lightning_checkpoint(tmp_path: Path) -> None:
    ds = data()
    cb = DeadUnitCallback(full_every=None)
    first = trainer(Memory(), max_epochs=1, callbacks=[cb])
    first.fit(Tiny(lr=0.05), DataLoader(ds, batch_size=32))
    first.save_checkpoint(tmp_path / "one.ckpt")
    from reluscope.torch import read_state_dict

    assert set(read_state_dict(tmp_path / "one.ckpt", model=Tiny(lr=0.0).net)) == set(Tiny(lr=0.0).net.state_dict())
    resumed = DeadUnitCallback(full_every=None)
    trainer(Memory(), max_epochs=2, callbacks=[resumed]).fit(
        Tiny(lr=0.05), DataLoader(ds, batch_size=32), ckpt_path=tmp_path / "one.ckpt"
    )
    assert resumed.state_dict()["epochs_closed"] == 2  # one restored from the checkpoint, one run now


@quiet
def test_tensorboard_and_wandb_loggers_get_scalars_and_histograms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    from _integrations import read_tensorboard, read_wandb_history

    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    tb = TensorBoardLogger(str(tmp_path / "tb"), name="", version="")
    wb = WandbLogger(project="reluscope-test", save_dir=str(tmp_path), offline=True)
    cb = DeadUnitCallback(full_every=1, log_every_n_steps=1000)
    try:
        trainer([tb, wb], callbacks=[cb]).fit(Tiny(lr=0.05), DataLoader(data(), batch_size=32))
    finally:
        wandb.finish()
        wandb.teardown()
    logged = dict(cb.history)
    scalars, hists = read_tensorboard(tmp_path / "tb")
    assert [s for s, _ in scalars["dead_fraction/net.1"]] == [3, 6]
    assert [v for _, v in scalars["dead_fraction/net.1"]] == pytest.approx(
        [logged[3]["dead_fraction/net.1"], logged[6]["dead_fraction/net.1"]],
        rel=1e-7,  # TensorBoard keeps float32
    )
    assert [e.step for e in hists["fire_rate/net.3"]] == [3, 6]
    rows = [r for r in read_wandb_history(tmp_path) if "dead_fraction/net.1" in r]
    assert [r["trainer/global_step"] for r in rows] == [3, 6]
    assert [r["dead_fraction/overall"] for r in rows] == [
        logged[3]["dead_fraction/overall"],
        logged[6]["dead_fraction/overall"],
    ]
    assert rows[0]["fire_rate/net.1/_type"] == "histogram" and sum(rows[0]["fire_rate/net.1/values"]) == 16

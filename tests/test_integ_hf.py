"""reluscope.integrations.hf: DeadUnitTrainerCallback in a real transformers Trainer run (CPU, tiny local model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import import_torchvision  # noqa: E402

import_torchvision()  # transformers' model code imports torchvision when it is installed
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from torch import nn  # noqa: E402
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments  # noqa: E402

from reluscope.integrations.hf import DeadUnitTrainerCallback  # noqa: E402
from reluscope.torch import scan  # noqa: E402

pytestmark = pytest.mark.torch


class TinyConfig(PretrainedConfig):  # type: ignore[misc]
    model_type = "reluscope-tiny"

    def __init__(self, d_in: int = 4, hidden: int = 16, n_classes: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.d_in, self.hidden, self.n_classes = d_in, hidden, n_classes


class TinyModel(PreTrainedModel):  # type: ignore[misc]
    """Built locally from a config (no download): two ReLU layers, 5 units of the first dead by construction."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(config.d_in, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.n_classes),
        )
        with torch.no_grad():
            self.net[0].bias[:5] = -50.0
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        pass  # keep PyTorch's default initialisation (seeded above)

    def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def rows(n: int = 96, seed: int = 0) -> list[dict[str, Any]]:
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 4)).astype(np.float32)
    y = g.integers(0, 3, size=n)
    return [{"x": torch.from_numpy(x[i]), "labels": torch.tensor(int(y[i]))} for i in range(n)]


def test_trainer_logs_dead_fractions_equal_to_a_scan(tmp_path: Path) -> None:
    """learning_rate=0: the weights stay put, so each epoch's window (every forward recorded, full counts) holds
    the same fire decisions as a scan of the training set; the Trainer's shuffling only reorders samples."""
    ds = rows()
    model = TinyModel(TinyConfig())
    cb = DeadUnitTrainerCallback(full_every=1, tau=0.1)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        num_train_epochs=2,
        per_device_train_batch_size=32,
        learning_rate=0.0,
        logging_strategy="epoch",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()
    x = torch.stack([r["x"] for r in ds])
    stats = scan(model, [x[i : i + 32] for i in range(0, 96, 32)])
    # float32 through differently composed batches: the decisions must not sit within rounding of a threshold
    for name in stats.names:
        assert np.all(np.abs(stats.max_preactivation(name)) > 1e-4)
        assert np.all(np.abs(stats.dormant_scores(name) - 0.1) > 1e-4)
    logged = list(cb.history)
    assert [step for step, _ in logged] == [3, 6]  # one per epoch; the closing summary log is not repeated
    for _, metrics in logged:
        for name in stats.names:
            assert metrics[f"dead_fraction/{name}"] == stats.dead_fraction(name)
            assert metrics[f"dormant_fraction/{name}"] == float(stats.dormant_mask(name, 0.1).mean())
    assert logged[0][1]["dead_fraction/net.1"] >= 5 / 16
    assert cb.last_window is not None and cb.last_window.n_samples("net.1") == 96
    assert cb.state_dict()["epochs_closed"] == 2


def test_log_history_and_writer_receive_the_keys(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from _integrations import read_tensorboard

    writer = SummaryWriter(str(tmp_path / "tb"))
    cb = DeadUnitTrainerCallback(full_every=2, writer_or_run=writer)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to=[],
        num_train_epochs=1,
        per_device_train_batch_size=16,
        logging_steps=2,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=TinyModel(TinyConfig()), args=args, train_dataset=rows(), callbacks=[cb])
    trainer.train()
    writer.close()
    history = [e for e in trainer.state.log_history if "dead_fraction/overall" in e]
    assert [e["step"] for e in history] == [2, 4, 6]
    assert {"dead_fraction/net.1", "dead_fraction/net.3", "dormant_fraction/net.1"} <= set(history[0])
    scalars, hists = read_tensorboard(tmp_path / "tb")
    assert [s for s, _ in scalars["dead_fraction/net.1"]] == [2, 4, 6]
    expected = [e["dead_fraction/overall"] for e in history]
    assert [v for _, v in scalars["dead_fraction/overall"]] == pytest.approx(expected, rel=1e-7)  # stored as float32
    assert "fire_rate/net.1" in hists


def test_errors_teach() -> None:
    with pytest.raises(ValueError, match="full_every must be a positive integer or None"):
        DeadUnitTrainerCallback(full_every=0)
    with pytest.raises(ValueError, match="version"):
        DeadUnitTrainerCallback().load_state_dict({})

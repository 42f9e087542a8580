"""reluscope.torch.read_state_dict and `reluscope diagnose --weights`: .safetensors, Lightning .ckpt, torch.save."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from reluscope.cli import app  # noqa: E402
from reluscope.torch import read_state_dict  # noqa: E402

pytestmark = pytest.mark.torch

MODULE = "reluscope_test_weights_models"
USER_CODE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def loader():
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x), batch_size=16)
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / f"{MODULE}.py"
    path.write_text(textwrap.dedent(USER_CODE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield path
    sys.modules.pop(MODULE, None)


def trained() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # 3 of 8 units dead: visible only when the weights are loaded
    return model


def test_safetensors_and_prefixed_torch_files(tmp_path: Path) -> None:
    model = trained()
    sd = model.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    got = read_state_dict(tmp_path / "w.safetensors")
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    # a LightningModule-like checkpoint: weights under `state_dict`, prefixed by the attribute, plus a loss buffer
    ckpt = {"epoch": 3, "state_dict": {**{f"model.net.{k}": v for k, v in sd.items()}, "loss.weight": torch.ones(2)}}
    torch.save(ckpt, tmp_path / "fake.ckpt")
    got = read_state_dict(tmp_path / "fake.ckpt", model=nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert set(read_state_dict(tmp_path / "fake.ckpt")) == {*(f"model.net.{k}" for k in sd), "loss.weight"}


def test_errors_teach(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"not a readable \.safetensors file"):
        read_state_dict(tmp_path / "bad.safetensors")
    torch.save({"epoch": 1}, tmp_path / "noweights.ckpt")
    with pytest.raises(ValueError, match="not a state_dict"):
        read_state_dict(tmp_path / "noweights.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(TypeError, match=r"nn\.Module"):
        read_state_dict(tmp_path / "noweights.ckpt", model="net")  # type: ignore[arg-type]


def test_cli_reads_safetensors_and_ckpt_like_torch_save(user_module: Path, tmp_path: Path) -> None:
    sd = trained().state_dict()
    torch.save(sd, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"net.{k}": v for k, v in sd.items()}}, tmp_path / "w.ckpt")
    runner = CliRunner()
    reports = []
    for name in ("w.pt", "w.safetensors", "w.ckpt"):
        args = ["diagnose", f"--torch-model={MODULE}:make", f"--data={MODULE}:loader", "--weights", name, "--json"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        reports.append(json.loads(res.stdout))
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["layers"][0]["dead_fraction"] == 3 / 8
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    bad = runner.invoke(app, ["diagnose", f"--torch-model={MODULE}:make", "--weights", "bad.safetensors"])
    assert bad.exit_code == 2 and ".safetensors" in bad.stderr and "Traceback" not in bad.output


def test_real_lightning_checkpoint(tmp_path: Path) -> None:
    from conftest import import_torchvision

    import_torchvision()
    L = pytest.importorskip("lightning.pytorch")

    class Module(L.LightningModule):  # type: ignore[misc]
        def __init__(self, width: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = trained()
            self.loss = nn.CrossEntropyLoss(weight=torch.ones(2))  # a buffer outside the model

    module = Module()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    got = read_state_dict(tmp_path / "m.ckpt", model=nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)))
    sd = module.net.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)

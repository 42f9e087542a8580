"""The torch part of `reluscope diagnose` (reluscope.cli._torch_diagnose): import strings, weights, TorchScript,
data loaders, errors; exercised directly and through a throwaway typer app like the one diagnose will wire."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from reluscope.cli import app  # noqa: E402
from reluscope.cli._common import load_data  # noqa: E402
from reluscope.cli._torch_diagnose import (  # noqa: E402
    is_import_string,
    load_torch_model,
    parse_input_shape,
    parse_unit_axis,
    torch_diagnosis,
)
from test_torch_models import one_torch_thread  # noqa: E402, F401

pytestmark = pytest.mark.torch

MODULE = "reluscope_test_user_models"
USER_CODE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class CNN(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(width * 64, 10)

    def forward(self, x):
        return self.fc(torch.nn.functional.relu(self.act(self.conv(x)).flatten(1)))


def make():
    torch.manual_seed(0)
    model = CNN()
    with torch.no_grad():
        model.conv.bias[0] = -100.0  # channel 0 never fires
    return model


def make_wide():
    return CNN(width=6)


def make_tanh():
    return nn.Sequential(nn.Linear(64, 3), nn.Tanh())


def not_a_model():
    return 42


def needs_width(width):
    return CNN(width=width)


def make_broken_inside():
    return CNN(width="four")  # a TypeError raised inside a factory that takes no arguments


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 8, 8, generator=g)
    return DataLoader(TensorDataset(x, torch.zeros(40, dtype=torch.long)), batch_size=16)


def make_dead():
    model = make()
    with torch.no_grad():
        model.conv.bias.fill_(-100.0)  # every channel dead: the whole site is zero
    return model


class Mixed(nn.Module):
    # the mixed CNN + token model of tests/test_torch_real.py (issue 14)
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.to_tokens = nn.Conv2d(6, 8, 2, stride=2)
        self.mlp = nn.Sequential(nn.Linear(8, 32), nn.ReLU(inplace=True), nn.Linear(32, 8))
        with torch.no_grad():
            self.stem[1].bias[0] = -50.0
            self.mlp[0].bias[:12] = -50.0

    def forward(self, x):
        return self.mlp(self.to_tokens(self.stem(x)).flatten(2).transpose(1, 2)).mean(1)


def make_mixed():
    torch.manual_seed(0)
    return Mixed()


def mixed_loader():
    x = torch.randn(64, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    return [x[:40], x[40:]]
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's model file next to the working directory, importable as MODULE; sys.path/modules restored."""
    path = tmp_path / f"{MODULE}.py"
    path.write_text(textwrap.dedent(USER_CODE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield path
    sys.modules.pop(MODULE, None)


@pytest.fixture
def weights(user_module: Path, tmp_path: Path) -> Path:
    model = load_torch_model(f"{user_module}:make")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # differ from the factory's own init, so loading is visible
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return path


def _digits_X() -> np.ndarray:
    return load_data("digits", labels=None, label_column="label", n_per_class=1, n_classes=2, seed=0).X


def test_import_strings_and_shapes() -> None:
    assert is_import_string("pkg.mod:make") and is_import_string("dir/file.py:Factory.build")
    assert not is_import_string("digits") and not is_import_string("pkg.mod:1bad")
    assert parse_input_shape("1,8,8") == (1, 8, 8) and parse_input_shape(None) is None
    with pytest.raises(ValueError, match=r"e\.g\. 1,8,8"):
        parse_input_shape("1,a")
    with pytest.raises(ValueError, match=r"e\.g\. 1,8,8"):
        parse_input_shape("0,8")


def test_factory_with_weights_on_dataset_rows(user_module: Path, weights: Path) -> None:
    progress: list[tuple[int, int | None]] = []
    X = _digits_X()
    result = torch_diagnosis(
        f"{MODULE}:make",
        weights=weights,
        X=X,
        data_name="digits",
        input_shape=(1, 8, 8),
        batch_size=500,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert result.stats.names == ["act", "relu"] and result.n_samples == len(X) == 1797
    assert progress[-1] == (1797, 1797) and len(progress) == 4
    assert result.activation == "relu" and result.functions == {"act": "relu", "relu": "relu"}
    assert result.model.startswith("CNN (reluscope_test_user_models:make,") and result.data == "digits"
    # the weights were loaded: the model built by hand with them gives the same statistics
    from reluscope.torch import scan

    model = load_torch_model(f"{user_module}:make", weights)
    x = torch.from_numpy(X).float().reshape(-1, 1, 8, 8)
    assert scan(model, list(x.split(500))) == result.stats
    assert scan(load_torch_model(f"{user_module}:make"), list(x.split(500))) != result.stats


def test_loader_factory_and_checkpoint_layouts(user_module: Path, weights: Path, tmp_path: Path) -> None:
    sd = torch.load(weights, weights_only=True)
    nested, ddp = tmp_path / "ckpt.pt", tmp_path / "ddp.pt"
    torch.save({"model_state_dict": sd, "epoch": 3}, nested)
    torch.save({f"module.{k}": v for k, v in sd.items()}, ddp)
    results = [torch_diagnosis(f"{MODULE}:make", weights=w, data=f"{MODULE}:loader") for w in (weights, nested, ddp)]
    assert results[0].n_samples == 40 and results[0].data == f"{MODULE}:loader"
    assert results[0].stats == results[1].stats == results[2].stats


def test_torchscript_file(user_module: Path, tmp_path: Path) -> None:
    model = load_torch_model(f"{user_module}:make").eval()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(path))
    result = torch_diagnosis(str(path), data=f"{MODULE}:loader")
    eager = torch_diagnosis(f"{MODULE}:make", data=f"{MODULE}:loader")
    assert result.stats == eager.stats and result.uninstrumented == []
    assert "TorchScript" in result.model
    with pytest.raises(ValueError, match="drop --weights"):
        load_torch_model(str(path), tmp_path / "w.pt")


class Opaque:
    """Not an allowed type for torch.load(weights_only=True)."""


@pytest.mark.parametrize(
    ("spec", "kind", "match"),
    [
        ("nosuchmodule_xyz:make", ValueError, "cannot import 'nosuchmodule_xyz'"),
        (f"{MODULE}:missing", ValueError, "has no attribute 'missing'"),
        (f"{MODULE}:not_a_model", TypeError, "must return a torch.nn.Module, got int"),
        ("model.pt", FileNotFoundError, "TorchScript file not found"),
        ("resnet", ValueError, "pkg.module:factory"),
        ("missing_dir/file.py:make", FileNotFoundError, "Python file not found"),
    ],
)
def test_model_spec_errors(user_module: Path, spec: str, kind: type[Exception], match: str) -> None:
    with pytest.raises(kind, match=match):
        load_torch_model(spec)


def test_weight_and_data_errors(user_module: Path, weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"does not match the model.*missing \['conv.bias'"):
        bad = tmp_path / "partial.pt"
        torch.save({k: v for k, v in torch.load(weights, weights_only=True).items() if k != "conv.bias"}, bad)
        load_torch_model(f"{MODULE}:make", bad)
    with pytest.raises(ValueError, match=r"shapes differ.*conv.weight \(4, 1, 3, 3\) vs \(6, 1, 3, 3\)"):
        load_torch_model(f"{MODULE}:make_wide", weights)
    pickled = tmp_path / "object.pt"
    torch.save({"thing": Opaque()}, pickled)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_torch_model(f"{MODULE}:make", pickled)
    not_sd = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_sd)
    with pytest.raises(ValueError, match="not a state_dict"):
        load_torch_model(f"{MODULE}:make", not_sd)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a model")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_torch_model(str(garbage))
    with pytest.raises(ValueError, match=r"failed on batch 1 of shape \(7, 64\).*--input-shape"):
        torch_diagnosis(f"{MODULE}:make", X=_digits_X()[:7])
    with pytest.raises(ValueError, match="product is 64"):
        torch_diagnosis(f"{MODULE}:make", X=_digits_X()[:7], input_shape=(1, 4, 4))
    with pytest.raises(
        ValueError, match=r"found no rectifier.*saw 2 torch functions.*linear, tanh.*register_rectifier"
    ):
        torch_diagnosis(f"{MODULE}:make_tanh", X=_digits_X()[:7])
    with pytest.raises(ValueError, match="no data"):
        torch_diagnosis(f"{MODULE}:make")


# The real `reluscope diagnose` command ---------------------------------------------------------------------------


def test_cli_json_gate_and_errors(user_module: Path, weights: Path) -> None:
    runner = CliRunner()
    args = ["diagnose", "--data", "digits", "--torch-model", f"{MODULE}:make", "--weights", str(weights)]
    ok = runner.invoke(app, [*args, "--input-shape", "1,8,8", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["n_samples"] == 1797 and [row["name"] for row in report["layers"]] == ["act", "relu"]
    gate = ["diagnose", f"--torch-model={MODULE}:make", f"--data={MODULE}:loader", "--max-dead"]
    over = runner.invoke(app, [*gate, "0.2"])  # channel 0 of 4 is dead: 25%
    assert over.exit_code == 1 and "dead fraction above --max-dead 0.2: act" in over.stderr
    assert runner.invoke(app, [*gate, "0.3"]).exit_code == 0
    bad = runner.invoke(app, ["diagnose", "--torch-model", f"{MODULE}:make", "--weights", "nope.pt"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().count("\n") == 0 and "weights file not found: nope.pt" in bad.stderr
    shape = runner.invoke(app, ["diagnose", "--data", "digits", "--torch-model", f"{MODULE}:make"])
    assert shape.exit_code == 2 and "--input-shape" in shape.stderr and "Traceback" not in shape.output
    needs = runner.invoke(app, ["diagnose", "--data", "digits", "--torch-model", f"{MODULE}:needs_width"])
    assert needs.exit_code == 2 and "calls the factory with no arguments, but it needs some" in needs.stderr
    inside = runner.invoke(app, ["diagnose", "--data", "digits", "--torch-model", f"{MODULE}:make_broken_inside"])
    assert inside.exit_code == 2 and "the factory raised TypeError" in inside.stderr
    for junk in (b"junk", b"PK\x03\x04 not a zip", b"\x80\x02}q\x00."):  # short, foreign, an empty pickle
        path = Path(user_module).parent / "junk.pt"
        path.write_bytes(junk)
        res = runner.invoke(app, ["diagnose", "--torch-model", f"{MODULE}:make", "--weights", str(path)])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "\x1b[" not in res.stderr


def test_model_and_torch_model_are_exclusive(user_module: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["diagnose", str(tmp_path / "m.npz"), "--torch-model", f"{MODULE}:make"])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = runner.invoke(app, ["diagnose"])
    assert res.exit_code == 2 and "--torch-model" in res.stderr
    res = runner.invoke(app, ["diagnose", str(tmp_path / "m.npz"), "--weights", "w.pt"])
    assert res.exit_code == 2 and "go with --torch-model" in res.stderr


def test_unit_axis_option_parsing() -> None:
    assert parse_unit_axis(["mlp.1=-1", "a=b=2"]) == {"mlp.1": -1, "a=b": 2} and parse_unit_axis(None) is None
    for bad in ("mlp.1", "=1", "mlp.1=last"):
        with pytest.raises(ValueError, match=r"SITE=AXIS"):
            parse_unit_axis([bad])


def test_cli_mixed_cnn_and_tokens_without_options(user_module: Path) -> None:
    """Issue 14's model through `diagnose --torch-model`: stem 6 units / 1 dead, MLP 32 units / 14 dead."""
    runner = CliRunner()
    args = ["diagnose", "--torch-model", f"{MODULE}:make_mixed", "--data", f"{MODULE}:mixed_loader"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    layers = {row["name"]: (row["units"], row["dead"], row["n_samples"]) for row in report["layers"]}
    assert layers == {"stem.2": (6, 1, 64), "mlp.1": (32, 14, 576)}
    assert report["unit_axes"] == {"stem.2": "dim 1 (conv), 64 samples", "mlp.1": "dim 2 (linear), 64×9 positions"}
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "mlp.1: 32 units on dim 2 (linear), 64×9 positions" in text.stdout
    user = runner.invoke(app, [*args, "--unit-axis", "mlp.1=1", "--json"])  # the token axis, on request
    assert json.loads(user.stdout)["layers"][1]["units"] == 9
    for bad, match in (("mlp.1=x", "SITE=AXIS"), ("nope=1", "ran as no site"), ("mlp.1=0", "dim 0 is the batch")):
        res = runner.invoke(app, [*args, "--unit-axis", bad])
        assert res.exit_code == 2 and match in res.stderr and res.stderr.strip().count("\n") == 0, res.output


def test_cli_advice_for_torch_models(user_module: Path) -> None:
    """A torch site that is zero everywhere gets torch remedies, not `reluscope train` options."""
    res = CliRunner().invoke(
        app, ["diagnose", "--torch-model", f"{MODULE}:make_dead", "--data", f"{MODULE}:loader", "--json"]
    )
    assert res.exit_code == 0, res.output
    message = json.loads(res.stdout)["message"]
    assert "site act is zero for every sample" in message
    assert "swap_relu_to_leaky" in message and "reluscope.torch.redo" in message and "--bias-init" not in message

"""``reluscope diagnose`` through typer's CliRunner, including its error paths and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from reluscope.cli.diagnose import dead_layer_message, diagnose, render_dead_table
from reluscope.data import spiral
from reluscope.diagnose import scan
from reluscope.io import save_model
from reluscope.nn import MLP

runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """Test root (so that `diagnose` is a subcommand, as in the real app)."""

    app.command("diagnose")(diagnose)
    return app


APP = make_app()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(APP, ["diagnose", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    X, _ = spiral(100, 3, seed=0)
    half = MLP([2, 10, 3], seed=0)
    half.params["b1"][:4] = -50.0  # 4 of 10 units can never fire on the spiral
    born_dead = next(
        net
        for net in (MLP([2, *[3] * 10, 3], seed=s) for s in range(50))
        if any(scan(net, X).all_dead(n) for n in net.hidden_names)
    )
    paths = {"half": d / "half.npz", "born_dead": d / "born_dead.npz", "corrupt": d / "corrupt.npz"}
    save_model(paths["half"], half)
    save_model(paths["born_dead"], born_dead)
    paths["corrupt"].write_bytes(b"PK\x03\x04 this is not a zip archive")
    return paths


def test_table_and_worst_units(models: dict[str, Path]) -> None:
    code, out, err = invoke(models["half"], "--top", "3")
    assert code == 0, err
    assert "hidden1" in out and "40.0%" in out
    assert "3 least active units" in out
    assert "zero for every sample" not in out


def test_json_output(models: dict[str, Path]) -> None:
    code, out, _ = invoke(models["half"], "--json", "--top", "4", "--tau", "0.2", "--nearly-dead", "0.05")
    assert code == 0
    report = json.loads(out)
    (layer,) = report["layers"]
    assert layer["name"] == "hidden1" and layer["dead"] == 4 and layer["dead_fraction"] == 0.4
    assert layer["tau"] == 0.2
    assert report["n_samples"] == 300
    assert len(report["worst_units"]) == 4
    assert {w["unit"] for w in report["worst_units"]} == {0, 1, 2, 3}
    assert report["fully_dead_layer"] is None and report["message"] is None and report["passed"] is True


def test_max_dead_gate(models: dict[str, Path]) -> None:
    code, _, err = invoke(models["half"], "--max-dead", "0.5", "--quiet")
    assert code == 0, err
    code, out, err = invoke(models["half"], "--max-dead", "0.2", "--quiet")
    assert code == 1
    assert out == ""
    assert "dead fraction above --max-dead 0.2: hidden1 40.0%" in err
    code, out, _ = invoke(models["half"], "--max-dead", "0.2", "--json")
    assert code == 1
    assert json.loads(out)["passed"] is False


def test_born_dead_network_is_reported_in_plain_words(models: dict[str, Path]) -> None:
    code, out, _ = invoke(models["born_dead"], "--top", "0")
    assert code == 0
    flat = " ".join(out.split())
    assert "is zero for every sample: the output is constant and nothing upstream can learn" in flat
    assert "born dead" in flat
    report = json.loads(invoke(models["born_dead"], "--json")[1])
    assert report["fully_dead_layer"].startswith("hidden")
    assert "zero for every sample" in report["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("{missing}",), "model file not found"),
        (("{corrupt}",), "is not a readable .npz archive"),
        (("{half}", "--data", "digits"), "expects 2 input features but dataset digits has 64"),
        (("{half}", "--n-classes", "5"), "dataset spiral has 5 classes but the model"),
        (("{half}", "--data", "nosuchset"), "unknown dataset 'nosuchset'"),
    ],
)
def test_bad_input_is_one_red_line_exit_2(
    models: dict[str, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    paths = {**{k: str(v) for k, v in models.items()}, "missing": str(tmp_path / "nope.npz")}
    code, out, err = invoke(*(a.format(**paths) for a in args))
    assert code == 2
    assert message in " ".join(err.split())
    assert err.startswith("error:")
    assert "Traceback" not in err + out


def test_option_validation_exit_2(models: dict[str, Path]) -> None:
    code, _, err = invoke(models["half"], "--max-dead", "1.5")
    assert code == 2
    assert "--max-dead" in err


def test_render_dead_table_and_message_helpers() -> None:
    from rich.console import Console

    X, _ = spiral(20, 3, seed=0)
    net = MLP([2, 4, 3], seed=0)
    net.params["b1"][:] = -100.0
    stats = scan(net, X)
    console = Console(record=True, width=120)
    console.print(render_dead_table(stats, 0.1, 0.01))
    text = console.export_text()
    assert "hidden1" in text and "100.0%" in text
    assert dead_layer_message(stats, "relu") is not None
    assert "can recover" in str(dead_layer_message(stats, "leaky"))
    alive = scan(MLP([2, 4, 3], seed=0), np.random.default_rng(0).standard_normal((50, 2)))
    assert dead_layer_message(alive) is None

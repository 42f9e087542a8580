"""Every page in docs/integrations/ runs: its python example is executed as written (tiny data, CPU, no network)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations"
LIGHTNING_NOISE = [
    "ignore:The 'train_dataloader' does not have many workers:UserWarning",
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning",
]


def example(page: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert len(blocks) == 1, f"{page}: expected one python example, found {len(blocks)}"
    return blocks[0]


def run_page(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *needs: str) -> dict[str, object]:
    pytest.importorskip("torch")
    from conftest import import_torchvision

    import_torchvision()
    for module in needs:
        pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    exec(compile(example(page), str(DOCS / page), "exec"), namespace)
    return namespace


@pytest.mark.torch
@pytest.mark.filterwarnings(LIGHTNING_NOISE[0])
@pytest.mark.filterwarnings(LIGHTNING_NOISE[1])
def test_lightning_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_page("lightning.md", tmp_path, monkeypatch, "lightning")
    step, metrics = ns["callback"].history[-1]  # type: ignore[attr-defined]
    assert step == 16 and "dead_fraction/net.1" in metrics and "dormant_fraction/overall" in metrics
    assert (tmp_path / "lightning_logs").is_dir()


@pytest.mark.torch
def test_hf_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_page("hf.md", tmp_path, monkeypatch, "transformers", "accelerate")
    logged = [e for e in ns["trainer"].state.log_history if "dead_fraction/net.1" in e]  # type: ignore[attr-defined]
    assert [e["step"] for e in logged] == [2, 4, 6, 8]


@pytest.mark.torch
def test_tensorboard_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from _integrations import read_tensorboard

    run_page("tensorboard.md", tmp_path, monkeypatch, "tensorboard")
    scalars, hists = read_tensorboard(tmp_path / "runs" / "example")
    assert [s for s, _ in scalars["dead_fraction/1"]] == [0, 1, 2] and "fire_rate/1" in hists


@pytest.mark.torch
def test_wandb_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from _integrations import read_wandb_history

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_page("wandb.md", tmp_path, monkeypatch, "wandb")
    rows = read_wandb_history(tmp_path)
    assert [r["_step"] for r in rows] == [0, 1] and "dead_fraction/1" in rows[0]


@pytest.mark.torch
def test_weights_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_page("weights.md", tmp_path, monkeypatch, "safetensors")
    assert ns["load_model"]("mlp.safetensors").config()["sizes"] == [2, 8, 3]  # type: ignore[operator]


@pytest.mark.slow
def test_dask_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}  # run as a script, past its __main__ guard
    exec(compile(example("dask.md"), str(DOCS / "dask.md"), "exec"), namespace)
    assert len(namespace["result"].ran) == 8 and namespace["again"].ran == []  # type: ignore[attr-defined]

"""The docs: docs/generate.py's pure parts, every generated region has a producer, every code block runs.

Code blocks (```python and ```bash in README.md and docs/*.md) run as written, each in its own process in a fresh
directory. A block preceded by ``<!-- docs-test: skip: REASON -->`` is not run: the test is reported as skipped
with that reason. ``<!-- docs-test: setup=torch: ... -->`` runs a python fragment after the setup code below,
which defines the names the fragment takes from the reader's own program (a model, a loader, ...).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _load_generator():
    spec = importlib.util.spec_from_file_location("reluscope_docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# docs/generate.py: pure parts ------------------------------------------------------------------------------------
DOC = """intro
<!-- generated:a -->
old a
<!-- /generated:a -->
middle
<!-- generated:b -->
<!-- /generated:b -->
<!-- generated:a -->
old a again
<!-- /generated:a -->
end
"""


def test_replace_region_replaces_every_copy_and_nothing_else():
    new, n = gen.replace_region(DOC, "a", "new a\n\n\n")
    assert n == 2
    assert new.count("new a\n<!-- /generated:a -->") == 2
    assert "old a" not in new
    assert new.startswith("intro\n") and "\nmiddle\n" in new and new.endswith("end\n")
    assert "<!-- generated:b -->\n<!-- /generated:b -->" in new  # other regions untouched
    again, n2 = gen.replace_region(new, "a", "new a")
    assert again == new and n2 == 2  # idempotent


def test_replace_region_fills_an_empty_region_and_ignores_unknown_names():
    new, n = gen.replace_region(DOC, "b", "| t |")
    assert n == 1 and "<!-- generated:b -->\n| t |\n<!-- /generated:b -->" in new
    same, n0 = gen.replace_region(DOC, "c", "x")
    assert same == DOC and n0 == 0


def test_region_names_and_unclosed_region():
    assert gen.region_names(DOC) == ["a", "b", "a"]
    with pytest.raises(ValueError, match=r"\['z'\] opened but not closed"):
        gen.region_names(DOC + "<!-- generated:z -->\nx\n")


def test_mean_ci_is_the_student_t_interval():
    m, lo, hi = gen.mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sample std sqrt(5/3), sem = std / 2, t(0.975, 3 dof) = 3.182446305...
    half = 3.182446305284263 * (5 / 3) ** 0.5 / 2
    assert m == 2.5
    assert lo == pytest.approx(2.5 - half, rel=1e-9) and hi == pytest.approx(2.5 + half, rel=1e-9)
    assert gen.mean_ci([0.5, 0.5]) == (0.5, 0.5, 0.5)  # no spread: a point, not NaN


def test_compare_word_follows_the_interval():
    assert gen.compare_word((0.1, 0.05, 0.2), "up", "down", "same") == "up"
    assert gen.compare_word((-0.1, -0.2, -0.01), "up", "down", "same") == "down"
    assert gen.compare_word((0.01, -0.02, 0.05), "up", "down", "same") == "same"


def test_prose_wraps_paragraphs():
    text = gen.prose("word " * 60 + "\n\n" + "b " * 3, width=40)
    first, second = text.split("\n\n")
    assert all(len(line) <= 40 for line in first.splitlines())
    assert second == "b b b"


def test_every_generated_region_has_a_producer_and_every_producer_a_region():
    found: dict[str, list[str]] = {}
    for path in MARKDOWN:
        for name in gen.region_names(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(path.name)
    produced = gen.produced_regions()
    orphans = {name: files for name, files in found.items() if name not in produced}
    assert not orphans, f"generated regions without a producer in docs/generate.py: {orphans}"
    unused = produced - set(found)
    assert not unused, f"docs/generate.py produces regions no markdown file has: {sorted(unused)}"


def test_generator_only_option_rejects_unknown_parts(capsys):
    with pytest.raises(SystemExit) as exc:
        gen.main(["--only", "nope"])
    assert exc.value.code == 2
    assert "unknown part" in capsys.readouterr().err


def test_generator_refuses_fewer_than_20_seeds(capsys):
    with pytest.raises(SystemExit):
        gen.main(["--only", "remedies", "--seeds", "5"])
    assert "at least 20 seeds" in capsys.readouterr().err


def test_readme_does_not_copy_images_over_the_generated_ones():
    for path in MARKDOWN:
        assert "docs/images/" not in "".join(b for _, b, *_ in _blocks_of(path)), (
            f"{path.name}: a code block writes docs/images/, which docs/generate.py owns"
        )


# Code blocks --------------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_MARK = re.compile(r"<!-- docs-test: (skip|setup=\w+): ?(.*?) -->\s*\Z", re.DOTALL)


def _blocks_of(path: Path):
    text = path.read_text(encoding="utf-8")
    for m in _FENCE.finditer(text):
        before = text[: m.start()]
        line = before.count("\n") + 1
        prev = before.rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(prev)
        yield m.group(1), m.group(2), line, (mark.group(1), mark.group(2)) if mark else None


def _all_blocks():
    out = []
    for path in MARKDOWN:
        for lang, code, line, mark in _blocks_of(path):
            out.append(pytest.param(lang, code, mark, id=f"{path.name}:{line}"))
    return out


TORCH_SETUP = """
import socket
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from reluscope.data import spiral
from reluscope.nn import MLP

torch.manual_seed(0)
X_np, y_np = spiral(n_per_class=20, n_classes=3, seed=0)
x = torch.from_numpy(X_np).float()
y = torch.from_numpy(y_np)
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
loader = [(x[i : i + 20], y[i : i + 20]) for i in range(0, len(x), 20)]
held_out = loader
epochs = 2
net = MLP([2, 16, 3], seed=0)


def train_one_epoch(model):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss_fn(model(xb), yb).backward()
        optimizer.step()


with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    _port = _s.getsockname()[1]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_port}", rank=0, world_size=1)
"""

SETUPS = {"torch": TORCH_SETUP}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    # `reluscope` as the user types it: this interpreter's console script, or the module when it is not installed
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    return env


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "code", "mark"), _all_blocks())
def test_code_block_runs_as_written(lang, code, mark, tmp_path):
    if mark is not None and mark[0] == "skip":
        pytest.skip(f"not run (marked in the markdown): {mark[1]}")
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # blocks that name repository files, as from the root
    if lang == "python":
        setup = ""
        if mark is not None:
            name = mark[0].split("=", 1)[1]
            if name == "torch":
                pytest.importorskip("torch")
            setup = SETUPS[name]
        teardown = "\nimport torch.distributed as _d\n_d.destroy_process_group()\n" if setup else ""
        cmd = [sys.executable, "-c", setup + "\n" + code + teardown]
    else:
        shim = tmp_path / "bin"
        shim.mkdir()
        entry = "from reluscope.cli import main; main()"
        (shim / "reluscope").write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{entry}" "$@"\n')
        (shim / "reluscope").chmod(0o755)
        (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (shim / "python").chmod(0o755)
        cmd = ["bash", "-euo", "pipefail", "-c", f'export PATH="{shim}:$PATH"\n{code}']
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (
        f"block failed (exit {proc.returncode}):\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )

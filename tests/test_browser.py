"""The HTML report in a real browser: Debian's chromium, headless, offline. Skipped when chromium is absent
(install it with `apt-get install -y chromium`)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reluscope.experiments import SweepConfig, run_sweep
from reluscope.report import build_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    # CI installs chromium (.ci/run), so there a missing browser fails the test instead of skipping it
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason="needs /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

# headless, no GPU, no network at all: every host name fails to resolve, nothing phones home
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",  # page console messages (e.g. "Uncaught ...") go to stderr, where we look
    "--v=0",
]
# what chromium logs when a page pulls a resource it cannot load
LOAD_ERRORS = re.compile(r"net::ERR_|Failed to load resource|Not allowed to load local resource|Uncaught")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    cfg = SweepConfig(n_per_class=15, hidden=(8,), lrs=(0.3, 30.0), seeds=(0, 1), epochs=40, track_every=5)
    run_sweep(cfg, out, jobs=1)
    return build_report(out)


def test_report_renders_its_figures_offline(report_html, tmp_path):
    shot = tmp_path / "shot.png"
    res = chromium(tmp_path, "--window-size=1200,1400", f"--screenshot={shot}", report_html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
    assert not LOAD_ERRORS.search(res.stderr), res.stderr[-2000:]

    from matplotlib.image import imread  # a test may decode PNGs with matplotlib; the library never does

    img = imread(shot)[..., :3]
    assert img.shape[:2] == (1400, 1200)
    assert img.std() > 0.05  # not a blank page
    # ReLU's red (#d62728) appears only inside the inlined figures (the page's own CSS has no red): they rendered
    red = np.all(np.abs(img - np.array([0xD6, 0x27, 0x28]) / 255) < 0.06, axis=-1)
    assert red.sum() > 200


def test_dom_holds_every_inlined_figure(report_html, tmp_path):
    res = chromium(tmp_path, "--dump-dom", report_html.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<h1>reluscope sweep" in dom
    expected = len(re.findall(r"<img ", report_html.read_text()))
    assert expected >= 3
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}" alt="([^"]+)"', dom)
    assert len(images) == expected
    assert "dead fraction vs learning rate" in images
    assert not re.search(r"(src|href)=\"(?!data:)", dom)  # nothing loaded from anywhere but the page itself
    assert not LOAD_ERRORS.search(res.stderr), res.stderr[-2000:]


# `reluscope explain --format html`: the circuit page in the browser ------------------------------------------------
EXPLAIN_ARGS = [
    "--inputs",
    "2",
    "--hidden",
    "3",
    "--classes",
    "2",
    "--samples",
    "1",
    "--seed",
    "3",
]  # unit 2 is off on the sample


def explain_cli(*args: str) -> str:
    from typer.testing import CliRunner

    from reluscope.cli import app

    res = CliRunner().invoke(app, ["explain", *EXPLAIN_ARGS, *args])
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture(scope="module")
def explain_page(tmp_path_factory) -> tuple[Path, Path, dict]:
    out = tmp_path_factory.mktemp("explain")
    page, stepping = out / "explain.html", out / "explain_step.html"
    explain_cli("--format", "html", "--out", str(page))
    explain_cli("--format", "html", "--out", str(stepping), "--step")
    import json

    return page, stepping, json.loads(explain_cli("--format", "json"))


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots are kept: $RELUSCOPE_SCREENSHOT_DIR (CI collects it as an artifact), else pytest's tmp."""
    where = os.environ.get("RELUSCOPE_SCREENSHOT_DIR")
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_explain_page_dom_holds_the_circuit_with_the_runs_numbers(explain_page, tmp_path):
    page, _, d = explain_page
    res = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert not LOAD_ERRORS.search(res.stderr), res.stderr[-2000:]
    dom = res.stdout
    assert not re.search(r"(src|href)=\"(?![#])", dom)  # nothing but in-page links
    assert "<script" not in dom
    svgs = re.findall(r'<svg [^>]*data-level="(\w+)"', dom)
    assert svgs == ["matrix", "scalar"]
    steps = {s["key"]: s["value"] for s in d["steps"]}
    # every node of the scalar circuit shows the JSON's number, read back from the rendered DOM
    for j, (z, dz) in enumerate(zip(steps["z1"][0], steps["dz1"][0], strict=True)):
        assert f'data-node="z{j}" data-role="value" data-value="{z!r}"' in dom
        assert f'data-node="z{j}" data-role="grad" data-value="{dz!r}"' in dom
    for c, ds in enumerate(steps["dscores"][0]):
        assert re.search(rf'data-node="s{c}[^"]*" data-role="grad" data-value="{re.escape(repr(ds))}"', dom)
    loss = steps["loss"]
    assert f'data-node="loss" data-role="value" data-value="{loss!r}"' in dom
    # the gate of the off unit is drawn blocked, the others passed
    fired = d["gate"]["fired"][0]
    assert fired == [True, True, False]
    for j, f in enumerate(fired):
        status = "passed" if f else "blocked"
        assert f'data-gate="{j}" data-sample="0" data-status="{status}"' in dom
    assert 'data-cut="2"' in dom
    # the matrix circuit's z1 wire holds the JSON values
    values = " ".join(repr(v) for v in steps["z1"][0])
    assert f'data-role="value" data-name="z1" data-values="{values}"' in dom


def test_explain_page_screenshot_shows_the_blocked_gate(explain_page, tmp_path, capsys):
    page, _, _ = explain_page
    shot = screenshot_dir(tmp_path) / "explain_circuit.png"
    res = chromium(tmp_path, "--window-size=1600,1500", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert not LOAD_ERRORS.search(res.stderr), res.stderr[-2000:]
    with capsys.disabled():
        print(f"\nexplain circuit screenshot: {shot}")
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert img.shape[:2] == (1500, 1600)

    def count(hex_color: str) -> int:
        rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
        return int(np.all(np.abs(img - rgb) < 0.06, axis=-1).sum())

    assert count("#d62728") > 300  # gradients and the red cut/blocked gate outline
    assert count("#fdecea") > 500  # the blocked gate's fill
    assert count("#e8f5e9") > 500  # the passed gates' fill


def test_explain_stepping_changes_the_visible_part(explain_page, tmp_path):
    _, stepping, _ = explain_page
    shots = []
    for k in (1, 3):
        shot = tmp_path / f"step{k}.png"
        res = chromium(tmp_path, "--window-size=1200,900", f"--screenshot={shot}", f"{stepping.as_uri()}#step-{k}")
        assert res.returncode == 0, res.stderr[-2000:]
        assert not LOAD_ERRORS.search(res.stderr), res.stderr[-2000:]
        from matplotlib.image import imread

        shots.append(imread(shot)[..., :3])
    # part 1 is the circuit (green and red wires), part 3 a table; the two views differ substantially
    assert np.abs(shots[0] - shots[1]).mean() > 0.01

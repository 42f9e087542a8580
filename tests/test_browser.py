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

"""reluscope.report: figures tested for what they show (the data behind each), the HTML page, run-dir reports."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib.collections import PathCollection
from typer.testing import CliRunner

from reluscope.cli.report import report
from reluscope.cli.train import train
from reluscope.experiments import BornDeadConfig, SweepConfig, born_dead_study, run_sweep, write_born_dead
from reluscope.report import (
    build_report,
    pick_dying_cell,
    plot_accuracy_vs_lr,
    plot_born_dead,
    plot_dead_fraction_history,
    plot_dead_over_training,
    plot_dead_vs_lr,
    plot_fire_rate_heatmap,
    plot_fire_rate_histogram,
    plot_training_curves,
    run_kind,
    sweep_plots,
    to_png,
)
from reluscope.report.html import Code, Image, Section, Table, Text, render_html

SRC = Path(__file__).resolve().parents[1] / "src" / "reluscope"


def summary_rows():
    """Two activations x three learning rates, as summarize_sweep returns them."""
    rows = []
    for act, dead in (("relu", [0.0, 0.4, 1.0]), ("leaky", [0.0, 0.3, 0.9])):
        for lr, d in zip((0.1, 1.0, 10.0), dead, strict=True):
            rows.append(
                {
                    "activation": act,
                    "init": "he",
                    "layer": "hidden1",
                    "lr": lr,
                    "n": 3,
                    "n_diverged": 1 if (act, lr) == ("leaky", 10.0) else 0,
                    "dead_fraction_mean": d,
                    "dead_fraction_std": 0.05,
                    "no_gradient_fraction_mean": d if act == "relu" else 0.0,
                    "no_gradient_fraction_std": 0.0,
                    "train_accuracy_mean": 1 - d / 2,
                    "train_accuracy_std": 0.01,
                    "val_accuracy_mean": 0.9 - d / 2,
                    "val_accuracy_std": 0.02,
                    "final_loss_mean": 1.0,
                    "final_loss_std": 0.0,
                }
            )
    return rows


# Figures: content ---------------------------------------------------------------------------------------------------
def test_dead_vs_lr_draws_the_summary():
    fig, data = plot_dead_vs_lr(summary_rows())
    assert data["layer"] == "hidden1"
    relu, leaky = data["series"]
    assert (relu["activation"], leaky["activation"]) == ("relu", "leaky")  # grid order kept
    assert relu["lr"] == [0.1, 1.0, 10.0] and relu["dead_mean"] == [0.0, 0.4, 1.0]
    assert leaky["no_gradient_mean"] == [0.0, 0.0, 0.0] and leaky["n_diverged"] == [0, 0, 1]
    ax_dead, ax_grad = fig.axes
    assert ax_dead.get_xscale() == "log"
    drawn = {c.get_label(): c.lines[0].get_ydata().tolist() for c in ax_dead.containers}
    assert drawn == {"relu": [0.0, 0.4, 1.0], "leaky": [0.0, 0.3, 0.9]}
    grad = {c.get_label(): c.lines[0].get_ydata().tolist() for c in ax_grad.containers}
    assert grad["leaky"] == [0.0, 0.0, 0.0] and grad["relu"] == [0.0, 0.4, 1.0]
    # the diverged point is circled
    circled = [c.get_offsets().tolist() for c in ax_dead.collections if isinstance(c, PathCollection)]
    assert circled == [[[10.0, 0.9]]]
    with pytest.raises(ValueError, match="no layer 'hidden9'"):
        plot_dead_vs_lr(summary_rows(), "hidden9")
    with pytest.raises(ValueError, match="empty"):
        plot_dead_vs_lr([])


def test_accuracy_vs_lr_and_chance_line():
    fig, data = plot_accuracy_vs_lr(summary_rows(), n_classes=3)
    assert data["chance"] == pytest.approx(1 / 3)
    assert data["series"][0]["train_mean"] == [1.0, 0.8, 0.5]
    drawn = {c.get_label(): c.lines[0].get_ydata().tolist() for c in fig.axes[0].containers}
    assert drawn["relu train"] == [1.0, 0.8, 0.5] and drawn["leaky validation"] == pytest.approx([0.9, 0.75, 0.45])
    assert [line.get_label() for line in fig.axes[0].lines if line.get_label().startswith("chance")] == ["chance (1/3)"]


def test_dead_over_training_one_panel_per_activation():
    series = [
        {"activation": "relu", "init": "he", "lr": lr, "epochs": [0, 5, 10], "mean": [0.0, f, f]}
        for lr, f in ((0.1, 0.0), (10.0, 1.0))
    ] + [{"activation": "leaky", "init": "he", "lr": 10.0, "epochs": [0, 5], "mean": [0.0, 0.5]}]
    fig, data = plot_dead_over_training(series)
    assert [(p["activation"], len(p["lines"])) for p in data["panels"]] == [("relu", 2), ("leaky", 1)]
    assert len(fig.axes) == 2
    assert fig.axes[0].lines[1].get_ydata().tolist() == [0.0, 1.0, 1.0]
    assert fig.axes[1].lines[0].get_xdata().tolist() == [0, 5]


def heat_counts():
    # 4 scans of 10 samples, 4 units: 0 always fires on 5; 1 dies at scan 2; 2 never fires; 3 dies at scan 3
    return np.array([[5, 4, 0, 2], [5, 3, 0, 1], [5, 0, 0, 1], [5, 0, 0, 0]])


def test_heatmap_dead_units_are_solid_black_rows_sorted_by_death():
    fig, data = plot_fire_rate_heatmap([0, 10, 20, 30], {"hidden1": heat_counts()}, 10)
    layer = data["layers"]["hidden1"]
    assert layer["order"] == [0, 3, 1, 2]  # live first, then by when the final dead stretch began (latest first)
    assert layer["dead_at_end"] == 3 and layer["dead_rows"] == 1
    assert layer["died_at"] == [None, 30, 20, 0]
    np.testing.assert_allclose(layer["rates"], heat_counts().T[[0, 3, 1, 2]] / 10)
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(4, 4), layer["rates"])
    colours = mesh.to_rgba(np.asarray(mesh.get_array()).reshape(4, 4))
    black = np.all(colours[..., :3] == 0, axis=-1)
    np.testing.assert_array_equal(black, np.array(layer["rates"]) == 0)  # black exactly where the rate is 0
    assert black[3].all()  # the unit that never fired is one solid row
    assert "3/4 units dead" in fig.axes[0].get_title()


def test_heatmap_checks_shapes():
    with pytest.raises(ValueError, match=r"must be \(records, units\)"):
        plot_fire_rate_heatmap([0, 1], {"hidden1": heat_counts()}, 10)
    with pytest.raises(ValueError, match="n_samples must be > 0"):
        plot_fire_rate_heatmap([0, 1, 2, 3], {"hidden1": heat_counts()}, 0)


def test_histogram_counts_dead_units_apart():
    rates = {"hidden1": np.array([0.0, 0.0, 0.01, 0.5, 0.52, 1.0]), "hidden2": np.array([0.3, 0.3])}
    fig, data = plot_fire_rate_histogram(rates, bins=10)
    h1 = data["layers"]["hidden1"]
    assert h1["n_dead"] == 2 and h1["n_units"] == 6
    assert sum(h1["counts"]) == 4 and h1["counts"][0] == 1 and h1["counts"][5] == 2 and h1["counts"][-1] == 1
    assert data["layers"]["hidden2"]["n_dead"] == 0
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [*h1["counts"], 2]
    with pytest.raises(ValueError, match=r"fire rates in \[0, 1\]"):
        plot_fire_rate_histogram({"h": np.array([1.5])})


def test_born_dead_plot_matches_the_study():
    rows = born_dead_study(BornDeadConfig(depths=(1, 2, 5), widths=(2, 4), inits=("he", "he+bias"), n_inits=200))
    fig, data = plot_born_dead(rows)
    assert [p["init"] for p in data["panels"]] == ["he", "he+bias"] and data["panels"][1]["bias"] == 0.1
    w2 = data["panels"][0]["widths"][0]
    assert w2["width"] == 2 and w2["depth"] == [1, 2, 5]
    assert w2["closed_form"] == pytest.approx([0.25, 1 - 0.75**2, 1 - 0.75**5])
    assert w2["p_hat"] == [r["p_hat"] for r in rows if r["init"] == "he" and r["width"] == 2]
    assert fig.axes[0].lines[0].get_ydata().tolist() == pytest.approx(w2["closed_form"])


def test_training_curves_and_png():
    history = {"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.25], "accuracy": [0.3, 0.6, 0.9], "val_loss": [],
               "val_accuracy": []}  # fmt: skip
    fig, data = plot_training_curves(history)
    assert data["loss"] == [1.0, 0.5, 0.25] and fig.axes[0].get_yscale() == "log"
    png = to_png(fig)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    with pytest.raises(ValueError, match="no epochs"):
        plot_training_curves({"epoch": []})


def test_only_report_plots_imports_matplotlib():
    importers = [
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if re.search(r"^\s*(import matplotlib|from matplotlib)", p.read_text(), re.M)
    ]
    assert importers == ["report/plots.py"]
    code = "import sys, reluscope.experiments, reluscope.cli.sweep; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# HTML ---------------------------------------------------------------------------------------------------------------
def test_html_is_self_contained_and_escaped():
    fig, _ = plot_training_curves({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, 0.7]})
    png = to_png(fig)
    page = render_html(
        "a <b>title</b>",
        [
            Section("s & t", [Text("x < y"), Code("reluscope sweep --out 'a b'"), Image(png, 'alt "quoted"', "cap")]),
            Section("table", [Table([{"a": 0.123456789, "b": None, "c": True}], caption="cap <2>")]),
        ],
        subtitle="sub",
    )
    assert "a &lt;b&gt;title&lt;/b&gt;" in page and "x &lt; y" in page and "s &amp; t" in page
    assert "<td>0.1235</td><td></td><td>yes</td>" in page and "cap &lt;2&gt;" in page
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert base64.b64decode(b64) == png
    assert 'alt="alt &quot;quoted&quot;"' in page
    assert not re.search(r"https?:|//", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    assert "<script" not in page and "<link" not in page
    with pytest.raises(ValueError, match="must be PNG bytes"):
        Image(b"GIF89a", "x")


# Run directories ----------------------------------------------------------------------------------------------------
def app():
    a = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
    a.command("report")(report)
    a.command("train")(train)
    return a


def invoke(*args: str):
    return CliRunner().invoke(app(), list(args))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = SweepConfig(n_per_class=15, hidden=(8,), lrs=(0.3, 30.0), seeds=(0, 1), epochs=40, track_every=5)
    run_sweep(cfg, out, jobs=1)
    return out


def img_alts(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)


def test_sweep_report(sweep_dir):
    assert run_kind(sweep_dir) == "sweep"
    path = build_report(sweep_dir)
    page = path.read_text()
    alts = img_alts(page)
    assert alts[:3] == ["dead fraction vs learning rate", "accuracy vs learning rate", "dead fraction over training"]
    assert "8 of 8 cells finished" in page
    assert "reluscope sweep --data spiral" in page and f"reluscope report {sweep_dir}" in page
    assert "&quot;lrs&quot;: [" in page  # the configuration


def test_sweep_plots_pick_a_dying_cell(sweep_dir):
    from reluscope.experiments import load_sweep

    _, cells = load_sweep(sweep_dir)
    plots = sweep_plots(cells, n_classes=3)
    dying = pick_dying_cell(cells)
    if dying is None:
        assert "fire_rate_heatmap" not in plots
    else:
        assert dying["layers"]["hidden1"]["n_died"] > 0
        heat = plots["fire_rate_heatmap"].data["layers"]["hidden1"]
        assert heat["dead_at_end"] == round(dying["layers"]["hidden1"]["dead_fraction"] * 8)
    assert plots["dead_vs_lr"].data["series"][0]["lr"] == [0.3, 30.0]


def test_partial_sweep_report_says_how_to_finish(sweep_dir, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(sweep_dir, partial)
    for p in sorted((partial / "cells").glob("*.json"))[:3]:
        p.unlink()
    page = build_report(partial).read_text()
    assert "5 of 8 cells finished" in page and "interrupted" in page


def test_born_dead_report(tmp_path):
    cfg = BornDeadConfig(depths=(1, 3), widths=(2,), inits=("he", "he+bias"), n_inits=300)
    write_born_dead(tmp_path, cfg, born_dead_study(cfg), command=None)
    assert run_kind(tmp_path) == "born-dead"
    page = build_report(tmp_path).read_text()
    assert img_alts(page) == ["born dead probability vs depth"]
    assert "reluscope born-dead --depths 1,3 --widths 2 --inits he,he+bias" in page
    assert page.count("<tr>") == 1 + 4  # header + 2 inits x 2 depths


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    res = invoke("train", "--epochs", "60", "--lr", "30", "--hidden", "12", "--n-per-class", "20", "--val-fraction",
                 "0.2", "--out", str(out), "--quiet")  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_train_report_draws_the_recorded_scan_and_hints_at_track_dead(train_dir):
    page = build_report(train_dir).read_text()
    assert img_alts(page) == ["training curves", "fire-rate histogram"]
    assert "the final scan of the training set, recorded by the run" in page
    assert "--track-dead EVERY" in page


def test_train_report_never_trains_scans_or_splits(train_dir, tmp_path, monkeypatch):
    """The report reads records and draws: with fit, scan and the split made to raise, it is the same page."""
    import shutil

    import reluscope.data
    import reluscope.diagnose
    import reluscope.train

    run = tmp_path / "run"
    shutil.copytree(train_dir, run)
    expected = build_report(run).read_text()

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must not train, scan or split data")

    for module, name in ((reluscope.train, "fit"), (reluscope.diagnose, "scan"), (reluscope.data, "train_val_split"),
                         (reluscope.data, "load_dataset")):  # fmt: skip
        monkeypatch.setattr(module, name, forbidden)
    assert build_report(run).read_text() == expected


def test_train_report_reads_a_version_1_record(train_dir, tmp_path):
    """run.json of reluscope 0.1 (no format/version, no scan): read, and the page says what it lacks."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(train_dir, run)
    record = json.loads((run / "run.json").read_text())
    for key in ("format", "version", "scan", "fire_rates"):
        del record[key]
    (run / "run.json").write_text(json.dumps(record))
    page = build_report(run).read_text()
    assert img_alts(page) == ["training curves"]
    assert "record version 1 (reluscope 0.1)" in page and "<td>hidden1</td>" in page


def test_train_report_refuses_a_newer_record(train_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(train_dir, run)
    record = json.loads((run / "run.json").read_text())
    record["version"] = 99
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"version 99.*reads 'reluscope\.run' versions 1 and 2"):
        build_report(run)


def test_train_report_uses_recorded_unit_history(train_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(train_dir, run)
    record = json.loads((run / "run.json").read_text())
    counts = heat_counts().tolist()
    record["unit_history"] = {
        "hidden1": {"epochs": [0, 10, 20, 30], "n_samples": 10, "fire_counts": counts, "n_born_dead": 1,
                    "n_died": 2, "n_revived": 0, "n_dead_at_end": 3}
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(record))
    page = build_report(run).read_text()
    assert "fire-rate heat map" in img_alts(page)
    assert "<td>hidden1</td><td>1</td><td>2</td><td>0</td><td>3</td>" in page


def test_train_report_of_a_tracked_run(tmp_path):
    """--track-dead records the fire counts of every scan: the heat map is drawn from them, and its last column is
    the run's final scan (the same weights, the same training set)."""
    out = tmp_path / "tracked"
    res = invoke("train", "--epochs", "40", "--lr", "30", "--hidden", "10", "--n-per-class", "20", "--track-dead", "10",
                 "--out", str(out), "--quiet")  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "run.json").read_text())
    recorded = record["unit_history"]["hidden1"]
    assert recorded["epochs"] == [0, 10, 20, 30, 40]
    last = np.asarray(recorded["fire_counts"][-1]) / recorded["n_samples"]
    np.testing.assert_array_equal(last, record["fire_rates"]["hidden1"])  # exact: the same integer counts
    page = build_report(out).read_text()
    assert img_alts(page) == ["training curves", "fire-rate histogram", "fire-rate heat map"]
    counts = "".join(f"<td>{recorded[k]}</td>" for k in ("n_born_dead", "n_died", "n_revived", "n_dead_at_end"))
    assert f"<td>hidden1</td>{counts}" in page
    assert "--track-dead EVERY" not in page


def test_train_report_dead_fraction_history_without_counts(tmp_path):
    """A tracked record without fire counts (trimmed by a tool) still shows the dead fraction over training."""
    out = tmp_path / "tracked"
    res = invoke("train", "--epochs", "20", "--hidden", "10", "--n-per-class", "20", "--track-dead", "10",
                 "--out", str(out), "--quiet")  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "run.json").read_text())
    del record["unit_history"]["hidden1"]["fire_counts"]
    (out / "run.json").write_text(json.dumps(record))
    page = build_report(out).read_text()
    assert img_alts(page) == ["training curves", "fire-rate histogram", "dead fraction over training"]
    assert "--track-dead EVERY" in page


def test_dead_fraction_history_plot():
    fig, data = plot_dead_fraction_history([0, 5, 10], {"hidden1": [0.0, 0.2, 0.5], "hidden2": [0.0, 0.0, 0.1]})
    assert data == {"epochs": [0, 5, 10], "layers": {"hidden1": [0.0, 0.2, 0.5], "hidden2": [0.0, 0.0, 0.1]}}
    assert [line.get_ydata().tolist() for line in fig.axes[0].lines] == [[0.0, 0.2, 0.5], [0.0, 0.0, 0.1]]
    with pytest.raises(ValueError, match="one per epoch"):
        plot_dead_fraction_history([0, 5], {"hidden1": [0.0]})


def test_report_cli(train_dir, tmp_path):
    res = invoke("report", str(train_dir))
    assert res.exit_code == 0, res.output
    assert "report.html" in res.stdout and (train_dir / "report.html").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "holds no run.json, sweep.json or born_dead.json"),
        (lambda d: d / "missing", "run directory not found"),
        (lambda d: ((d / "sweep.json").write_text("{not json"), d)[1], "is not valid JSON"),
        (lambda d: ((d / "run.json").write_text("[]"), d)[1], "is not a reluscope run record"),
    ],
)
def test_report_cli_errors_one_red_line(tmp_path, make, message):
    res = invoke("report", str(make(tmp_path)))
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_report_cli_replay_was_removed_and_says_what_to_do(train_dir):
    res = invoke("report", str(train_dir), "--replay", "10")
    assert res.exit_code == 2
    assert "--replay was removed" in res.stderr and "--track-dead 10" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_sweep_report_reads_version_1_cells(sweep_dir, tmp_path):
    """Cells written by reluscope 0.1 (version 1, the same fields) are read as they are."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(sweep_dir, old)
    for p in (old / "cells").glob("*.json"):
        record = json.loads(p.read_text())
        record["version"] = 1
        p.write_text(json.dumps(record))
    assert "8 of 8 cells finished" in build_report(old).read_text()
    bad = next((old / "cells").glob("*.json"))
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "version": 5}))
    with pytest.raises(ValueError, match=r"version 5.*rerun the sweep"):
        build_report(old)

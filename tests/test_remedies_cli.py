"""`reluscope lr-check` through typer's CliRunner (a throwaway app until the lead registers the command)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from reluscope.cli.lr_check import lr_check, parse_lrs, sparkline

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("lr-check")(lr_check)


@app.command("noop")
def _noop() -> None:  # a second command, so typer keeps the "lr-check" subcommand name
    """Unused."""


runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["lr-check", *args])


def test_lr_check_table_and_recommendation():
    res = run("--init", "normal", "--lrs", "0.1,1,20", "--steps", "60", "--threshold", "0.2", "--n-per-class", "40")
    assert res.exit_code == 0, res.output
    assert "learning-rate range test" in res.stdout
    assert "too many dead" in res.stdout
    assert "recommended learning rate: 0.1 (one rate below 1 for a margin" in " ".join(res.stdout.split())


def test_lr_check_json():
    res = run("--lr-min", "0.1", "--lr-max", "1", "--n-lrs", "2", "--steps", "5", "--json", "--n-per-class", "20")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert [t["lr"] for t in d["trials"]] == pytest.approx([0.1, 1.0])
    assert all(len(t["losses"]) == 5 for t in d["trials"])
    assert d["largest_ok_lr"] == pytest.approx(1.0)
    assert d["recommended_lr"] == pytest.approx(0.1)  # one rate below it: the default margin
    assert d["margin"] == 1 and d["first_failure_lr"] is None


def test_lr_check_no_safe_rate_exits_1():
    res = run("--init", "normal", "--lrs", "50,500", "--steps", "40", "--n-per-class", "40", "--quiet")
    assert res.exit_code == 1, res.output
    assert "no safe learning rate" in res.stdout
    assert "learning-rate range test" not in res.stdout  # --quiet: no table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lrs", "0.1,x"], "--lrs must be comma-separated numbers"),
        (["--lrs", "0.1,-1"], "must be finite and > 0"),
        (["--threshold", "2"], "threshold must be a fraction in"),
        (["--hidden", ""], "--hidden must name at least one hidden layer"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["--data", "nope"], "unknown dataset 'nope'"),
        (["--lr-min", "1", "--lr-max", "0.5"], "lr_max must be larger than lr_min"),
    ],
)
def test_lr_check_errors_are_one_red_line(args, message):
    res = run(*args, "--steps", "2")
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_helpers():
    assert parse_lrs("") is None and parse_lrs("0.1, 1") == [0.1, 1.0]
    line = sparkline([3.0, 2.0, 1.0, 0.5], width=4)
    assert len(line) == 4 and line[0] == "█" and line[-1] == "▁"
    assert sparkline([]) == "" and sparkline([1.0, 1.0]) == "▁▁"

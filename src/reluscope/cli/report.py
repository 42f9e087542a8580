"""``reluscope report``: one self-contained report.html for a train, sweep or born-dead run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reluscope.cli._common import console, friendly_errors

__all__ = ["report"]


@friendly_errors
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A directory written by `reluscope train --out`, `reluscope sweep --out` or `reluscope born-dead "
            "--out`.",
            show_default=False,
        ),
    ],
    replay: Annotated[
        int | None,
        typer.Option("--replay", hidden=True, help="Removed: the report no longer retrains (see the error)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Write RUN_DIR/report.html: figures (inlined PNGs), tables, the config and the commands to reproduce.

    The page has no scripts and no external resources: it opens offline and can be attached to a CI run.
    """
    from reluscope.report import build_report

    if replay is not None:
        raise ValueError(
            "--replay was removed: the report draws only what the run recorded; rerun the training with "
            f"`reluscope train ... --track-dead {max(replay, 1)} --out {run_dir}` to record the fire counts over time"
        )
    from reluscope.io import directory_lock

    out_console = console(quiet=quiet)
    if not run_dir.is_dir():
        raise FileNotFoundError(2, "run directory not found", str(run_dir))
    # a sweep, study or benchmark still writing into run_dir holds its lock: the report waits for it to finish
    with directory_lock(run_dir, what="report"), out_console.status("drawing the report"):
        path = build_report(run_dir)
    out_console.print(f"wrote {path}")

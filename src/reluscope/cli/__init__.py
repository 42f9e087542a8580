"""The ``reluscope`` command line: a thin typer app over the library.

Each command lives in its own module (``train.py``, ``explain.py``, ...), imports the library lazily inside its body,
and turns library errors into one red line with exit code 2 (see ``_common.friendly_errors``).
"""

from __future__ import annotations

import typer

from reluscope.cli import diagnose as _diagnose
from reluscope.cli import train as _train

__all__ = ["app", "main"]

app = typer.Typer(
    name="reluscope",
    help="Backprop through ReLU networks, step by step, and dead-unit diagnosis.\n\n"
    "Start with `reluscope train` (spiral data, no download) or `reluscope explain`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from reluscope import __version__

        typer.echo(f"reluscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Backprop through ReLU networks, step by step, and dead-unit diagnosis."""


app.command("train")(_train.train)
app.command("diagnose")(_diagnose.diagnose)


def main() -> None:
    """Console-script entry point."""
    app()

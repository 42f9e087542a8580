"""The ``reluscope`` command line: a thin typer app over the library.

Each command lives in its own module (``train.py``, ``explain.py``, ...), imports the library lazily inside its body,
and turns library errors into one red line with exit code 2 (see ``_common.friendly_errors``). Usage errors that
click catches itself (an unknown option, a value out of range) are shortened to one line the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx  # type: ignore[no-redef]

from reluscope.cli import _common
from reluscope.cli import born_dead as _born_dead
from reluscope.cli import continual as _continual
from reluscope.cli import diagnose as _diagnose
from reluscope.cli import explain as _explain
from reluscope.cli import lr_check as _lr_check
from reluscope.cli import report as _report
from reluscope.cli import sweep as _sweep
from reluscope.cli import train as _train
from reluscope.cli._common import EXIT_BAD_INPUT, fail

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Print click's usage errors as one red line (plus the --help hint) instead of a usage block."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        def run(standalone: bool) -> Any:
            return super(_OneLineErrors, self).main(
                args, prog_name, complete_var, standalone, windows_expand_args, **extra
            )

        if not standalone_mode:
            return run(False)
        try:
            rv = run(False)
        except _cx.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except _cx.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "reluscope"
            fail(f"{exc.format_message()} (see `{command} --help`)")
            sys.exit(EXIT_BAD_INPUT)
        except _cx.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="reluscope",
    cls=_OneLineErrors,
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
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show the full traceback of an error instead of one red line (same as RELUSCOPE_DEBUG=1).",
    ),
) -> None:
    """Backprop through ReLU networks, step by step, and dead-unit diagnosis."""
    _common.set_debug(debug)


app.command("train")(_train.train)
app.command("explain")(_explain.explain)
app.command("diagnose")(_diagnose.diagnose)
app.command("sweep")(_sweep.sweep)
app.command("born-dead")(_born_dead.born_dead)
app.command("report")(_report.report)
app.command("lr-check")(_lr_check.lr_check)
app.command("continual")(_continual.continual)


def main() -> None:
    """Console-script entry point."""
    app()

"""The ``reluscope`` command line: a thin typer app over the library.

Each command lives in its own module (``train.py``, ``explain.py``, ...), imports the library lazily inside its body,
and turns library errors into one red line with exit code 2 (see ``_common.friendly_errors``). Usage errors that
click catches itself (an unknown option, a value out of range) are shortened to one line the same way.

Exit codes: 0 success, 1 a finding (a failed gate, a diverged run), 2 bad input (one red line), 130/143 Ctrl-C /
SIGTERM, and 141 (128 + SIGPIPE, as ``cat`` or ``grep`` under a shell) when stdout was closed before everything was
written (``reluscope ... | head -c 10``, ``| true``): nothing is printed then, and the exit is never 0, since the
output did not reach its reader. An output written whole into the pipe before the reader left is a success.
"""

from __future__ import annotations

import os
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

__all__ = ["EXIT_BROKEN_PIPE", "app", "main"]

EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for ``cat`` or ``grep`` whose reader closed the pipe."""


def _quiet_broken_pipe() -> int:
    """stdout's reader went away: point fd 1 at /dev/null (so the interpreter's final flush cannot complain on
    stderr either, as the Python docs advise for SIGPIPE) and return the exit code, printing nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (under tests): nothing to silence
        pass
    return EXIT_BROKEN_PIPE


def _is_output_option(arg: str) -> bool:
    """``--out``, ``--prune-out``, ``--out-...``: an option naming where to write."""
    return arg == "--out" or arg.endswith("-out") or arg.startswith("--out-")


def refuse_empty_output_paths(command: Any, args: Sequence[str]) -> None:
    """An output option of ``command`` (a click command) given an empty or blank value (``--out ""``) is a
    UsageError, before anything runs.

    Click hands ``""`` to the command as ``Path("")``, which is ``Path(".")``: the command would write into the
    current directory, replacing what is there. This one check covers every command's output options (``--out``,
    ``--prune-out``, ``--out-...`` and their short aliases such as ``-o``).
    """
    names: dict[str, str] = {}
    for param in getattr(command, "params", []):
        opts = list(getattr(param, "opts", [])) + list(getattr(param, "secondary_opts", []))
        long = next((o for o in opts if o.startswith("--") and _is_output_option(o)), None)
        if long is not None:
            names.update({o: long for o in opts})
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--":
            return
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in names:
            continue
        if not eq:
            if i + 1 >= len(args):
                continue  # click says the value is missing
            value = args[i + 1]
        if not value.strip():
            option = names[name]
            raise _cx.UsageError(
                f"{option} is empty ({value!r}); pass the path to write to, e.g. {option} runs/exp1 (an empty "
                f"path would mean the current directory: write {option} . if that is what you want)"
            )


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
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        except BrokenPipeError:
            sys.exit(_quiet_broken_pipe())
        except SystemExit as exc:  # rich's console exits 1 on a broken pipe: the same quiet exit as ours
            if isinstance(exc.__context__, BrokenPipeError):
                sys.exit(_quiet_broken_pipe())
            raise
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

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        refuse_empty_output_paths(command, rest)
        return name, command, rest


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

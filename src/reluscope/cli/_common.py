"""Shared pieces of the CLI: error reporting, consoles, dataset options.

Command modules import only typer and the standard library at top level; the library (numpy, rich, matplotlib,
torch) is imported inside the command body, so ``reluscope --help`` starts instantly.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from reluscope.data import Dataset

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2


def console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A rich console (stdout by default); ``quiet`` silences it."""
    from rich.console import Console

    return Console(stderr=stderr, quiet=quiet, highlight=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as if Ctrl-C had been pressed (see :func:`sigterm_as_interrupt`)."""


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)."""
    return 143 if isinstance(exc, Terminated) else 130


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, a job scheduler's stop) raises :class:`Terminated`, a
    KeyboardInterrupt: the command stops the same clean way as on Ctrl-C (finished work kept, joblib workers shut
    down) instead of dying with its worker processes left running. Only in the main thread, where signals land."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def echo_json(obj: Any) -> None:
    """Print ``obj`` on stdout as one line of strict JSON: NaN/inf become null and, in a dict, the key
    ``"non_finite"`` lists where (as every JSON file reluscope writes; see :func:`reluscope.io.strict_json`)."""
    import json

    from reluscope.io import strict_json

    clean, replaced = strict_json(obj)
    if replaced and isinstance(clean, dict):
        clean["non_finite"] = {"paths": replaced, "reason": "not a finite number, which JSON cannot hold: null"}
    typer.echo(json.dumps(clean, allow_nan=False), file=_json_stdout)


_json_stdout: IO[str] | None = None  # the real stdout while a --json command runs (see json_only_stdout)


@contextlib.contextmanager
def json_only_stdout(on: bool) -> Iterator[None]:
    """With ``--json``, stdout carries the JSON and nothing else: while the command runs, whatever else writes to
    ``sys.stdout`` (a ``print`` in the user's ``forward()``, factory or loader, a library's banner) goes to
    stderr, and :func:`echo_json` writes to the real stdout. Output written to file descriptor 1 directly (by C
    code) is not redirected."""
    global _json_stdout
    if not on or _json_stdout is not None:
        yield
        return
    _json_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stdout = None


_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _frame_of_user_code(tb: Any) -> str | None:
    """``file:line (in function)`` of the innermost frame of ``tb`` that is not reluscope's (preferring one outside
    the standard library and installed packages: the user's own file), or None."""
    import sysconfig

    libs = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    foreign = [(c, n) for c, n in frames if not Path(c.co_filename).resolve().is_relative_to(_PACKAGE_DIR)]
    own = [(c, n) for c, n in foreign if not any(Path(c.co_filename).resolve().is_relative_to(lib) for lib in libs)]
    if not (own or foreign):
        return None
    code, line = (own or foreign)[-1]
    return f"{code.co_filename}:{line} (in {code.co_name})"


def user_exit_message(exc: SystemExit) -> str:
    """The one line for a SystemExit raised inside a command: reluscope never exits that way itself (its commands
    raise typer.Exit), so it came from code reluscope was running for the user (a ``--torch-model`` factory, a
    module it imported, a ``--data`` loader, a ``forward``). Its exit code is not the command's result."""
    where = _frame_of_user_code(exc.__traceback__)
    return (
        f"user code {'at ' + where + ' ' if where else ''}called sys.exit({exc.code!r}) while reluscope was running "
        "it, so the command has no result (its exit code is not reluscope's verdict); remove that call (keep it "
        "under `if __name__ == '__main__':`), or run `reluscope --debug ...` to see the traceback"
    )


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    from rich.markup import escape

    console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


_debug = False  # set for each invocation by `reluscope --debug`


def set_debug(on: bool) -> None:
    """Called by the root command with its ``--debug`` flag, on every invocation."""
    global _debug
    _debug = bool(on)


def debugging() -> bool:
    """``reluscope --debug ...`` or ``RELUSCOPE_DEBUG=1``: errors show their traceback instead of one line."""
    return _debug or os.environ.get("RELUSCOPE_DEBUG", "").strip() not in ("", "0")


_OS_ERRORS: dict[int, str] = {
    errno.EEXIST: "{f} already exists and is not a directory; remove it or choose another path",
    errno.ENOTDIR: "{f}: a part of this path is a file, not a directory; choose another path",
    errno.EISDIR: "{f} is a directory, expected a file; pass the path of the file itself",
    errno.ENOENT: "{f} does not exist; check the path (relative paths start at {cwd})",
    errno.EACCES: "permission denied for {f}; choose a path you can access or change its permissions",
    errno.EPERM: "operation not permitted on {f}; choose a path you can access or change its permissions",
    errno.EROFS: "{f} is on a read-only file system; choose a writable path",
    errno.ENOSPC: "no space left on the device holding {f}; free some space or choose another path",
    errno.EDQUOT: "disk quota exceeded while writing {f}; free some space or choose another path",
}


def os_error_message(exc: OSError) -> str:
    """An OSError as expected / got / fix, naming its path; never the bare ``[Errno 17] File exists: x``."""
    if exc.filename is None:
        return str(exc) if exc.errno is None else (exc.strerror or str(exc))
    template = _OS_ERRORS.get(exc.errno or 0)
    ours = exc.strerror and exc.errno and exc.strerror != os.strerror(exc.errno)
    if ours and str(exc.strerror).startswith("could not write "):  # io's: names the path already
        return str(exc.strerror) if template is None else template.format(f=exc.filename, cwd=Path.cwd())
    if ours:  # a text of our own: keep it
        return f"{exc.strerror}: {exc.filename}"
    if template is None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return template.format(f=exc.filename, cwd=Path.cwd())


def friendly_errors(fn: F) -> F:
    """Turn the library's ValueError/TypeError/OSError, and a missing optional extra (an ImportError naming
    ``pip install 'reluscope[...]'``), into one red line and exit code 2 (never a traceback).

    User code run by the command (a factory, a loader, a ``forward``) is guarded the same way everywhere: a
    ``sys.exit()`` inside it is exit 2 with a line naming the file and line that called it (a CI gate never passes
    because a model's module exited 0), and with ``--json`` (the ``as_json`` parameter) whatever it prints goes to
    stderr, so stdout is exactly the JSON (:func:`json_only_stdout`). A closed stdout (BrokenPipeError) is left to
    :func:`reluscope.cli.main`'s quiet exit.

    ``reluscope.train.DivergenceError`` exits 1: the input was fine, the training run was not. A KeyError is a bug
    in reluscope unless it carries a sentence of our own (a lookup of a name the user chose, e.g. an unknown site):
    a bare KeyError is not caught, so its traceback reaches the bug report. Readers of user files turn a missing
    key into a ValueError naming the file. ``RELUSCOPE_DEBUG=1`` (or ``reluscope --debug``) shows the traceback
    of every error.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:

        # Warnings (numpy's overflow RuntimeWarnings on absurd inputs, matplotlib's on empty plots) are held back:
        # a command that fails prints its one red line alone, since the line already says what went wrong; a
        # command that succeeds shows them afterwards, as it always did. (Under filterwarnings=error, as in the
        # tests, a warning still raises at once: the filters are not changed here.)
        with warnings.catch_warnings(record=True) as held:
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                held.clear()
                raise
        for w in held:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return result

    @functools.wraps(fn)
    def errors(*args: Any, **kwargs: Any) -> Any:
        with json_only_stdout(bool(kwargs.get("as_json"))):
            return guarded(*args, **kwargs)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        from reluscope.train import DivergenceError

        try:
            return wrapper(*args, **kwargs)
        except SystemExit as exc:  # never reluscope's own (its commands raise typer.Exit): the user's code
            if isinstance(exc.__context__, BrokenPipeError):  # rich's console on a closed stdout
                raise exc.__context__ from None
            if debugging():  # the traceback, then the same refusal: --debug never turns a gate into a pass
                import traceback

                traceback.print_exception(exc, file=sys.stderr)
            raise fail(user_exit_message(exc)) from None
        except BrokenPipeError:
            raise  # stdout's reader went away: the quiet exit of reluscope.cli.main
        except OSError as exc:
            if isinstance(exc.__context__, BrokenPipeError):  # failed while handling a closed stdout
                raise exc.__context__ from None
            if debugging():
                raise
            raise fail(os_error_message(exc)) from None
        except DivergenceError as exc:
            if debugging():
                raise
            raise fail(str(exc), code=1) from None
        except ImportError as exc:  # an optional extra the command needs; any other ImportError is a bug
            if "pip install 'reluscope[" not in str(exc):
                raise
            raise fail(str(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            arg = exc.args[0] if exc.args else ""
            if debugging() or (isinstance(exc, KeyError) and not (isinstance(arg, str) and " " in arg)):
                raise  # a bare KeyError is a bug: its traceback is what a bug report needs
            msg = arg if isinstance(exc, KeyError) else str(exc)
            raise fail(msg) from None

    return errors  # type: ignore[return-value]


def invoked_command() -> str | None:
    """The ``reluscope ...`` command line this process runs, to record with a result (None when not run as the
    ``reluscope`` executable, e.g. under tests)."""
    import shlex
    import sys

    return "reluscope " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("reluscope") else None


# Dataset options shared by train, diagnose and sweep --------------------------------------------------------------
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="Dataset: 'spiral' (generated, no download), 'digits' (scikit-learn's 8x8 digits), or a file: "
        ".npz with X and y arrays, .csv with a label column, or an MNIST IDX images file (see --labels).",
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option("--labels", help="IDX labels file that goes with an IDX images file given to --data."),
]
LabelColumnOpt = Annotated[str, typer.Option("--label-column", help="Name of the label column of a .csv dataset.")]
PerClassOpt = Annotated[int, typer.Option("--n-per-class", min=1, help="Spiral: points per class.")]
ClassesOpt = Annotated[
    int,
    typer.Option(
        "--n-classes",
        min=2,
        help="Spiral: number of classes (arms). For a file, given explicitly: its class count C, when the labels "
        "do not reach C-1 or reach far beyond the number of samples (inferred as max label + 1 otherwise).",
    ),
]


def given_on_command_line(param: str) -> bool:
    """Whether the option ``param`` (its Python name) was typed by the user rather than left at its default."""
    try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover
        from click import get_current_context  # type: ignore[no-redef]

    ctx = get_current_context(silent=True)
    if ctx is None:
        return True
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def load_data(
    data: str, *, labels: Path | None, label_column: str, n_per_class: int, n_classes: int, seed: int
) -> Dataset:
    """Resolve the dataset options to a :class:`reluscope.data.Dataset`.

    ``--n-classes`` reaches a file's dataset only when typed: its default (3) is the spiral's number of arms.
    """
    from reluscope.data import load_dataset

    return load_dataset(
        data,
        labels_path=labels,
        label_column=label_column,
        n_per_class=n_per_class,
        n_classes=n_classes,
        seed=seed,
        file_n_classes=n_classes if given_on_command_line("n_classes") else None,
    )


# Network and training options shared by train, lr-check and sweep ------------------------------------------------
class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


def parse_hidden(text: str) -> list[int]:
    """'100' or '64,64' -> [100] / [64, 64]; '' -> [] (a linear softmax classifier)."""
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated integers such as 100 or 64,64, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise ValueError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


HiddenOpt = Annotated[
    str, typer.Option("--hidden", "-H", help="Hidden layer widths, comma separated (e.g. 64,64); '' = linear.")
]
ActivationOpt = Annotated[
    str,
    typer.Option(
        "--activation",
        "-a",
        help="A name of the activation registry (reluscope.nn.ACTIVATIONS): relu, leaky, prelu, elu, sigmoid, "
        "tanh, softplus, ...; an unknown name is refused with the full list.",
    ),
]
InitOpt = Annotated[str, typer.Option(help="Weight init: he, xavier, xavier_uniform or normal.")]
SeedOpt = Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed for data, init and shuffling.")]
SlopeOpt = Annotated[float, typer.Option(help="Negative slope of leaky ReLU / initial PReLU slope.")]
InitStdOpt = Annotated[float, typer.Option(help="Standard deviation for --init normal (CS231n: 0.01).")]
BiasInitOpt = Annotated[float, typer.Option(help="Initial value of every bias (> 0 fights born-dead units).")]
OptimizerOpt = Annotated[str, typer.Option("--optimizer", help="sgd, momentum, nesterov, adam or adamw.")]
RegOpt = Annotated[float, typer.Option(help="L2 strength: adds 0.5*reg*sum(W**2) over weight matrices.")]
BatchSizeOpt = Annotated[int, typer.Option(min=0, help="Samples per step; 0 = full batch (the CS231n case study).")]
StandardizeOpt = Annotated[bool, typer.Option(help="Standardise features with training-set mean/std.")]
DTypeOpt = Annotated[DType, typer.Option(help="Floating point type, end to end.")]


def config_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The options train and sweep share, by the field names of :class:`reluscope.runs.RunConfig` and
    :class:`reluscope.experiments.SweepConfig`: the dataset, the hidden widths, init scale and bias, leaky slope,
    optimizer, L2, epochs, batch size (0 = full batch = None) and dtype. ``opts`` are the command's ``locals()``."""
    return {
        "data": opts["data"],
        "labels": None if opts["labels"] is None else str(opts["labels"]),
        "label_column": opts["label_column"],
        "n_per_class": opts["n_per_class"],
        "n_classes": opts["n_classes"],
        "file_n_classes": opts["n_classes"] if given_on_command_line("n_classes") else None,
        "val_fraction": opts["val_fraction"],
        "standardize": opts["standardize"],
        "hidden": tuple(parse_hidden(opts["hidden"])),
        "init_std": opts["init_std"],
        "bias_init": opts["bias_init"],
        "slope": opts["slope"],
        "optimizer": opts["optimizer"],
        "reg": opts["reg"],
        "epochs": opts["epochs"],
        "batch_size": opts["batch_size"] or None,
        "dtype": opts["dtype"].value,
    }

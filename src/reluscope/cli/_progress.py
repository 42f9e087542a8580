"""Rich progress bars for long work; silent when the console is quiet or not a terminal."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from reluscope.train import Callback, TrainState

if TYPE_CHECKING:
    from rich.console import Console


def make_progress(console: Console) -> Progress:
    """A progress bar with a description, counts, time left and a free text field ``info``."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=console.quiet or not console.is_terminal,
    )


class _Bar:
    """A started-on-enter, stopped-on-exit progress bar with one task."""

    def __init__(self, console: Console, total: int, description: str) -> None:
        self.progress = make_progress(console)
        self.task = self.progress.add_task(description, total=total, info="")

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def stop(self) -> None:
        """Stop the bar now (before printing something else)."""
        self.progress.stop()


class EpochProgress(_Bar, Callback):
    """A training callback showing epochs done with the live loss and accuracy."""

    def __init__(self, total: int, *, console: Console, description: str = "training") -> None:
        super().__init__(console, total, description)

    def on_epoch_end(self, state: TrainState) -> None:
        h = state.history
        self.progress.update(self.task, completed=state.epoch, info=f"loss {h.loss[-1]:.4f}  acc {h.accuracy[-1]:.1%}")


class CellProgress(_Bar):
    """Progress of a grid of runs: a rich bar on a terminal; one line per finished cell otherwise (a log, CI or
    a pipe sees the sweep advance instead of nothing until it ends); nothing when the console is quiet.

    Use as ``with CellProgress(console, total, description) as p: run_sweep(..., progress=p.advance)``.
    """

    def __init__(self, console: Console, total: int, description: str) -> None:
        super().__init__(console, total, description)
        self.console = console
        self.lines = not console.is_terminal

    def advance(self, cell: dict[str, Any], done: int, total: int) -> None:
        """``progress`` callback of :func:`reluscope.experiments.run_sweep`: the cell record, cells done, total."""
        cfg = cell["config"]
        what = f"{cfg['activation']} lr {cfg['lr']:g} seed {cfg['seed']}"
        if self.lines:
            dead = ", ".join(f"{name} {layer['dead_fraction']:.0%} dead" for name, layer in cell["layers"].items())
            self.console.print(f"cell {done}/{total}: {what} {cell['status']} ({dead})", soft_wrap=True)
        else:
            self.progress.update(self.task, completed=done, info=f"last: {what} {cell['status']}")

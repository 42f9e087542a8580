"""Rich progress bars for long work; silent when the console is quiet or not a terminal."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

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


class EpochProgress(Callback):
    """A training callback showing epochs done with the live loss and accuracy."""

    def __init__(self, total: int, *, console: Console, description: str = "training") -> None:
        self.progress = make_progress(console)
        self.task = self.progress.add_task(description, total=total, info="")

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def on_epoch_end(self, state: TrainState) -> None:
        h = state.history
        self.progress.update(self.task, completed=state.epoch, info=f"loss {h.loss[-1]:.4f}  acc {h.accuracy[-1]:.1%}")

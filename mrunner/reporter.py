"""What mrunner tells the user while it works: steps and warnings on stderr, progress bars when interactive.

Results (ids, tables, logs) go to stdout; everything about the process goes to stderr, so
``mrunner status --json | jq`` and ``SWEEP=$(mrunner ... --detach --quiet)`` work.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Progress(Protocol):
    def advance(self, amount: int = 1) -> None: ...

    def update(self, completed: int, detail: str | None = None) -> None: ...


class Reporter:
    """Plain-text reporting; a rich progress bar only when stderr is a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def step(self, message: str) -> None:
        """One line about what is happening now."""
        if not self.quiet:
            print(_fitted(message), file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(_fitted(f"mrunner: warning: {message}"), file=sys.stderr, flush=True)

    @property
    def interactive(self) -> bool:
        """Whether progress bars are shown (stderr is a terminal and not quiet)."""
        return not self.quiet and sys.stderr.isatty()

    @contextmanager
    def progress(self, total: int, description: str, completed: int = 0) -> Iterator[Progress]:
        """A progress bar over ``total`` items, ``completed`` of them done already (its first frame shows the
        real count, not 0 for a sweep followed near its end); silent when not a terminal or quiet."""
        if not self.interactive:
            yield _NoProgress()
            return
        with _fitted_progress(_stderr_console()) as bar:
            task = bar.add_task(description, total=total, completed=completed, detail="")
            yield _RichProgress(bar, task)


#: The narrowest bar worth showing: on a narrower terminal the elapsed time goes first, then the bar.
NARROWEST_BAR = 10


def _fitted_progress(console: Any) -> Any:
    """A rich progress display that fits the terminal's width at every redraw (a line wider than the terminal
    wraps and leaves a stale copy behind at each redraw): the description (the sweep's id) and the count stay
    whole; the elapsed time, then the bar, give way; a detail (the count of each state) goes on the lines
    below, broken between words, never cut."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress
    from rich.table import Column
    from rich.text import Text

    class Fitted(RichProgress):
        def get_renderables(self) -> Iterator[Any]:
            width = console.width  # not self.console: rich asks for a render before it is set
            for task in self.tasks:
                label, count = task.description, f"{int(task.completed)}/{int(task.total or 0)}"
                elapsed = "0:00:00" if task.elapsed is None or task.elapsed < 36000 else "00:00:00"
                room = width - len(label) - len(count) - 2  # for the bar, beside them and a space each
                if room < NARROWEST_BAR:  # not even a bar: the label and the count, broken between words
                    yield Text(f"{label} {count}", overflow="fold")
                else:
                    timed = room - len(elapsed) - 1 >= NARROWEST_BAR
                    self.columns = (
                        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                        BarColumn(bar_width=min(40, room - (len(elapsed) + 1 if timed else 0))),
                        MofNCompleteColumn(),
                        *([TimeElapsedColumn()] if timed else []),
                    )
                    yield self.make_tasks_table([task])
                if task.fields.get("detail"):
                    yield Text(task.fields["detail"], overflow="fold")

    return Fitted(console=console, transient=False)


def _fitted(message: str) -> str:
    """``message`` with a URL's credentials masked (``errors.mask_credentials``), broken between words to the
    width of the terminal that stderr is (the terminal itself would break it anywhere, a sweep's id included);
    as it is when stderr is a file or a pipe."""
    from mrunner.errors import mask_credentials

    message = mask_credentials(message)
    if not sys.stderr.isatty():
        return message
    from mrunner import table

    width = shutil.get_terminal_size().columns
    return "\n".join(table.fit(line, width) for line in message.split("\n"))


class _NoProgress:
    def advance(self, amount: int = 1) -> None:
        pass

    def update(self, completed: int, detail: str | None = None) -> None:
        pass


class _RichProgress:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)

    def update(self, completed: int, detail: str | None = None) -> None:
        kwargs = {"detail": detail} if detail is not None else {}  # "" takes the detail away
        self._bar.update(self._task, completed=completed, **kwargs)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)

"""What mrunner tells the user while it works: steps and warnings on stderr, progress bars when interactive.

Results (ids, tables, logs) go to stdout; everything about the process goes to stderr, so
``mrunner status --json | jq`` and ``SWEEP=$(mrunner ... --detach --quiet)`` work.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Progress(Protocol):
    def advance(self, amount: int = 1) -> None: ...

    def update(self, completed: int, description: str | None = None) -> None: ...


class Reporter:
    """Plain-text reporting; a rich progress bar only when stderr is a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def step(self, message: str) -> None:
        """One line about what is happening now."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"mrunner: warning: {message}", file=sys.stderr, flush=True)

    @property
    def interactive(self) -> bool:
        """Whether progress bars are shown (stderr is a terminal and not quiet)."""
        return not self.quiet and sys.stderr.isatty()

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Progress]:
        """A progress bar over ``total`` items (silent when not a terminal or quiet)."""
        if not self.interactive:
            yield _NoProgress()
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            console=_stderr_console(),
        ) as bar:
            task = bar.add_task(description, total=total)
            yield _RichProgress(bar, task)


class _NoProgress:
    def advance(self, amount: int = 1) -> None:
        pass

    def update(self, completed: int, description: str | None = None) -> None:
        pass


class _RichProgress:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)

    def update(self, completed: int, description: str | None = None) -> None:
        kwargs = {"description": description} if description else {}
        self._bar.update(self._task, completed=completed, **kwargs)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)

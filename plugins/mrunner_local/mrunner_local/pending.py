"""The runs a supervisor has yet to start, and how a detached supervisor learns which runs are its own.

Both are lazy so that a sweep of a million experiments costs the supervisor what a chunk of runs costs: the
runs are read from the records as the workers take them, and the indices reach a detached supervisor on its
standard input (a command line of a million indices would exceed the system's limit) into a compact array.
"""

from __future__ import annotations

import array
import queue
import threading
from collections.abc import Iterable
from typing import IO

from mrunner.records import Run


class Pending:
    """A queue of runs taken one at a time from ``runs`` (an iterable, read as the workers ask)."""

    def __init__(self, runs: Iterable[Run]) -> None:
        self._runs = iter(runs)
        self._lock = threading.Lock()

    def get_nowait(self) -> Run:
        """The next run, or ``queue.Empty`` when none is left (as ``queue.Queue.get_nowait``)."""
        with self._lock:
            try:
                return next(self._runs)
            except StopIteration:
                raise queue.Empty from None


def write_indices(indices: Iterable[int], stream: IO[bytes]) -> None:
    """The runs' indices, one a line, for ``read_indices`` at the other end of a pipe."""
    batch: list[str] = []
    for index in indices:
        batch.append(str(index))
        if len(batch) == 4096:
            stream.write(("\n".join(batch) + "\n").encode())
            batch = []
    stream.write(("\n".join(batch) + "\n" if batch else "").encode())


def read_indices(stream: IO[bytes]) -> array.array:
    """What ``write_indices`` wrote, as an array of 8 bytes an index."""
    return array.array("q", (int(line) for line in stream if line.strip()))

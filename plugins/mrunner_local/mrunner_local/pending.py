"""The runs a supervisor has yet to start, and how a detached supervisor learns which runs are its own.

Both are lazy so that a sweep of a million experiments costs the supervisor what a chunk of runs costs: the
runs are read from the records as the workers take them, and the indices reach a detached supervisor on its
standard input (a command line of a million indices would exceed the system's limit) into a compact array.
"""

from __future__ import annotations

import array
import queue
import threading
from collections.abc import Iterable, Sequence
from typing import IO

from mrunner.records import Run


class Pending:
    """A queue of runs taken one at a time from ``runs`` (a sequence such as ``store.StoredRuns``, read as the
    workers ask)."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self._runs = runs
        self._lock = threading.Lock()
        self.taken = 0  # how many runs were taken so far

    def get_nowait(self) -> Run:
        """The next run, or ``queue.Empty`` when none is left (as ``queue.Queue.get_nowait``)."""
        with self._lock:
            if self.taken >= len(self._runs):
                raise queue.Empty
            run = self._runs[self.taken]
            self.taken += 1
            return run

    def qsize(self) -> int:
        """How many runs are still waiting (as ``queue.Queue.qsize``)."""
        return len(self._runs) - self.taken


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

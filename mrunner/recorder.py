"""The records of one sweep as a backend's own long-lived process reaches them: the core's API for recording
from a process that is not ``mrunner`` itself (the local backend's detached supervisor, and the inline one).

Records are written by the core only (``mrunner.hookspecs``). A backend whose experiments are watched by a
process that outlives the ``mrunner`` command cannot be handed the core's ``record`` callback across a
process boundary, so it is handed where the records are (``SubmitOptions.records``) and opens a
``Recorder`` there: the same rules as the callback (``Store.apply``: a terminal state is kept, an end read from
an exit-code file outranks a cancel), plus the two facts such a process owns about its sweep: that it
supervises it, and why it stopped when it stops early.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mrunner.errors import MrunnerError
from mrunner.records import Run, RunUpdate, Sweep
from mrunner.store import Store, StoredRuns

#: ``Sweep.detail`` keys a supervising process owns.
SUPERVISOR = "supervisor"
STOPPED = "stopped"


class Recorder:
    """One sweep's records, opened from the path a submission was given (``SubmitOptions.records``)."""

    def __init__(self, records: str, sweep_id: str) -> None:
        self._store = Store(Path(records))
        self.sweep_id = sweep_id

    def __call__(self, updates: Sequence[RunUpdate]) -> None:
        """Record state changes of the sweep's experiments (a ``record`` callback of the hooks)."""
        self._store.apply(self.sweep_id, updates)

    def sweep(self) -> Sweep:
        return self._store.sweep(self.sweep_id)

    def run(self, index: int) -> Run:
        return self._store.run(self.sweep_id, index)

    def runs(self, indices: Sequence[int]) -> Sequence[Run]:
        """The runs at ``indices``, read a chunk at a time as they are used (``store.StoredRuns``)."""
        return StoredRuns(self._store, self.sweep_id, indices)

    def handed(self) -> list[Run]:
        """The runs the backend named (a pid, a job): the only ones that can have started, read without the
        rest of a large sweep."""
        return self._store.runs(self.sweep_id, handed=True)

    def state(self, index: int) -> str:
        """The recorded state of one experiment: a cancel from another shell is seen here before it starts."""
        return self._store.state(self.sweep_id, index)

    def supervised_by(self, identity: str) -> None:
        """Say that the process ``identity`` (``mrunner.process.identity``) supervises the sweep now; a
        reason an earlier supervisor stopped for is cleared."""
        self._set_detail({SUPERVISOR: identity, STOPPED: None})

    def room_on(self, folder: str, experiments: int) -> int:
        """Bytes the records take of ``folder``'s disk while ``experiments`` more experiments run and end
        (``Store.room_for``): none when they lie on another disk; what a full disk's line asks to free adds it."""
        try:
            if os.stat(self._store.path.parent).st_dev != os.stat(folder).st_dev:
                return 0
            return self._store.room_for(experiments)
        except (OSError, sqlite3.Error) as error:
            raise MrunnerError(f"cannot measure the records {self._store.path}: {error}") from error

    def stopped(self, reason: str) -> None:
        """Say why the supervisor stops before the sweep ended (``mrunner status`` shows it)."""
        self._set_detail({STOPPED: reason})

    def _set_detail(self, values: dict[str, str | None]) -> None:
        sweep = self.sweep()
        for key, value in values.items():
            if value is None:
                sweep.detail.pop(key, None)
            else:
                sweep.detail[key] = value
        self._store.update_sweep(sweep)

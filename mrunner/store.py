"""The records: every sweep and experiment with its state history, in SQLite.

Several mrunner processes may use the database at once (a detached local sweep writes states while
`mrunner status` reads them): WAL mode lets readers and one writer proceed together, and every write is a
short ``BEGIN IMMEDIATE`` transaction that waits for the lock instead of failing.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

from mrunner import paths, process, records, states
from mrunner.errors import MrunnerError, NotFound, NotRecorded, os_error
from mrunner.records import ACTIVE, PLANNED, TERMINAL, Attempt, Run, RunUpdate, Sweep
from mrunner.states import Change

RECORD_CHUNK = 1000  # runs checked and inserted at once while a sweep is recorded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL, context_name TEXT NOT NULL,
    backend TEXT NOT NULL, context TEXT NOT NULL, project TEXT NOT NULL, snapshot_digest TEXT NOT NULL,
    project_dir TEXT NOT NULL, workdir TEXT NOT NULL, git_commit TEXT, git_dirty INTEGER,
    tags TEXT NOT NULL, argv TEXT NOT NULL, package TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    sweep_id TEXT NOT NULL REFERENCES sweeps(id), idx INTEGER NOT NULL, id TEXT NOT NULL,
    name TEXT NOT NULL, parameters TEXT NOT NULL, command TEXT NOT NULL, env TEXT NOT NULL,
    tags TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, backend_ref TEXT,
    exit_code INTEGER, updated_at REAL NOT NULL, resources TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (sweep_id, idx)
);
CREATE INDEX IF NOT EXISTS experiments_by_identity ON experiments(id);
CREATE TABLE IF NOT EXISTS events (
    sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    exit_code INTEGER, detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_experiment ON events(sweep_id, idx);
CREATE TABLE IF NOT EXISTS attempts (
    sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL, started_at REAL NOT NULL,
    cause TEXT NOT NULL, snapshot_digest TEXT NOT NULL, changes TEXT NOT NULL, ended_at REAL, ended TEXT,
    exit_code INTEGER, detail TEXT,
    PRIMARY KEY (sweep_id, idx, attempt)
);
CREATE TABLE IF NOT EXISTS submitters (sweep_id TEXT PRIMARY KEY, process TEXT NOT NULL);
"""

_RUN_COLUMNS = (
    "sweep_id, idx, id, name, parameters, command, env, tags, state, attempt, backend_ref, exit_code, updated_at, "
    "resources"
)
_SWEEP_COLUMNS = (
    "id, name, created_at, context_name, backend, context, project, snapshot_digest, project_dir, workdir, "
    "git_commit, git_dirty, tags, argv, package, detail"
)


@dataclass
class Recorded:
    """What ``record_sweep`` did: ``count`` runs recorded, ``repeated`` runs identical to an earlier one of
    the sweep, ``skipped`` runs already taken on the context by ``skipped_sweeps``."""

    count: int = 0
    repeated: int = 0
    skipped: int = 0
    skipped_sweeps: list[str] = field(default_factory=list)


def default_path() -> Path:
    return paths.data_dir() / "records.db"


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a failure of the database or its file system into one line that says what to do."""

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise self.failure(error) from None
        except OSError as error:
            raise os_error(error, "open the records in", error.filename or self.path.parent) from None

    return guarded


def _spends_the_reserve(method: Callable[..., Any]) -> Callable[..., Any]:
    """A write of what already happened (an experiment's end, a sweep's update) that meets a full disk makes
    room and is tried again: it frees the records' reserve, then folds the write-ahead log into the database
    and truncates it (the log grows by whole pages with every write until SQLite's checkpoint, megabytes on a
    busy sweep; folding needs room in the database first). Experiments that fill the disk the records share still get their ends
    recorded, so that `resume` knows what completed. Inside ``_guarded``."""

    @functools.wraps(method)
    def spending(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            if not _is_full(error):
                raise
        self._reserve.unlink(missing_ok=True)  # the room folding the log into the database needs, at first
        with contextlib.suppress(sqlite3.Error):  # another process reading: it folds in what it can
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return method(self, *args, **kwargs)

    return spending


def _is_full(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(error)


#: How long a write waits for another mrunner's transaction before it gives up.
LOCK_SECONDS = 60.0
#: Space the records keep beside them (``records.db.reserve``) for the writes of ``_spends_the_reserve``: room
#: for the ends of a sweep's running experiments and its stop. Made when a sweep is recorded, where the disk
#: has room for it a few times over.
RESERVE_BYTES = 256 * 1024


class Store:
    """The records database. Cheap to open; open one per process."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or default_path())
        self._open()

    @_guarded
    def _open(self) -> None:
        # the user's alone: the records keep what a resume needs, a requirements file's text too (an index's token)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a write waits for another process's transaction in ``_begin``, which says who holds it
        self._db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=False)
        # Switching a new database to WAL needs it alone and SQLite answers "locked" at once instead of waiting
        # (two first submissions opening a new database together hit that): wait here as the busy timeout would.
        deadline = time.monotonic() + LOCK_SECONDS
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                _add_columns(self._db)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def failure(self, error: sqlite3.Error) -> MrunnerError:
        """What a database error means for the user, as one line naming the database."""
        name = getattr(error, "sqlite_errorname", "") or ""
        text = str(error)
        path, folder = self.path, self.path.parent
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text or "not a database" in text:
            return MrunnerError(
                f"the records database {path} is damaged ({text}): set it aside with `mv {path} {path}.damaged` "
                f"(and its -wal and -shm files, if any); mrunner then starts new records"
            )
        if _is_full(error):
            return NotRecorded(
                f"cannot write the records database {path}: the disk is full; free some space on that file system, "
                f"or point XDG_DATA_HOME at another one (this change was not recorded)"
            )
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return NotRecorded(
                f"cannot write the records database {path}: it is read-only; make {folder} writable, or point "
                f"XDG_DATA_HOME at a writable folder"
            )
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return MrunnerError(
                f"cannot open the records database {path} ({text}): make {folder} readable and writable, or point "
                f"XDG_DATA_HOME at a folder that is"
            )
        if name.startswith("SQLITE_BUSY") or "locked" in text:
            holders = "; ".join(_holders(path)) or "another process"
            return MrunnerError(
                f"the records database {path} stayed locked for {LOCK_SECONDS:g} s by {holders}: let it finish "
                f"(or stop it), then try again"
            )
        return MrunnerError(f"the records database {path} failed: {text}")

    def close(self) -> None:
        self._db.close()

    def room_for(self, experiments: int) -> int:
        """Bytes of their disk the records take up while ``experiments`` more experiments run and end: what
        a full disk's line asks to free must count them when they share that disk. The database grows at its
        own bytes per recorded experiment (its rows, attempts and events); the write-ahead log grows to its
        checkpoint's size before SQLite folds it in and starts it over (it never shrinks by itself), and as much
        again while a reader keeps it from starting over; the reserve is made again once there is room."""

        def blocks(path: Path) -> int:
            try:
                return os.stat(path).st_blocks * 512  # what the file takes of its disk, not its length
            except OSError:
                return 0

        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        checkpoint = self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        count = self._db.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
        log_room = max(0, 2 * checkpoint * page - blocks(Path(f"{self.path}-wal")))
        growth = -(-blocks(self.path) // max(1, count)) * experiments
        return log_room + growth + (0 if self._reserve.exists() else RESERVE_BYTES)

    @property
    def _reserve(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _keep_reserve(self) -> None:
        if self._reserve.exists():
            return
        try:
            if shutil.disk_usage(self.path.parent).free > 4 * RESERVE_BYTES:
                self._reserve.write_bytes(bytes(RESERVE_BYTES))
        except OSError:
            self._reserve.unlink(missing_ok=True)  # no room after all: the records go on without it

    # -- writing -------------------------------------------------------------------------------------------

    def _begin(self, cursor: sqlite3.Cursor) -> None:
        """Start a write transaction, waiting up to ``LOCK_SECONDS`` for another process's; after the first
        second, say on stderr which process holds the database, so that a wait is never silent."""
        deadline = time.monotonic() + LOCK_SECONDS
        said = False
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")  # waits up to the connection's timeout (a second) itself
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                if not said:
                    holders = "; ".join(_holders(self.path)) or "another process"
                    print(
                        f"mrunner: waiting for the records database {self.path}, in use by {holders}", file=sys.stderr
                    )
                    said = True

    def _write(self, statements: Iterable[tuple[str, Sequence[object]]]) -> None:
        cursor = self._db.cursor()
        self._begin(cursor)
        try:
            for sql, group in itertools.groupby(statements, key=lambda statement: statement[0]):
                cursor.executemany(sql, [args for _, args in group])  # a run of the same statement at once
        except BaseException:
            _rollback(cursor)
            raise
        cursor.execute("COMMIT")

    @_guarded
    def record_sweep(self, sweep: Sweep, runs: Iterable[Run], skip_submitted: bool = True) -> Recorded:
        """Record a new sweep with its runs (state ``planned``) in one ``BEGIN IMMEDIATE`` transaction: all
        or nothing, and nothing at all when no run is left to record.

        ``runs`` is consumed in chunks, so memory does not grow with the sweep. A run identical to an
        earlier one of the same sweep is recorded once. With ``skip_submitted``, a run whose identity is
        planned, active or completed on the sweep's context in another sweep is skipped: the check and the
        insert are one transaction, so two identical submissions at the same moment record (and run) each
        experiment once. Recorded runs get consecutive indices from 0 (``run.index`` is set).
        """
        now = time.time()
        recorded = Recorded()
        taken = tuple(states.TAKEN)
        cursor = self._db.cursor()
        self._begin(cursor)
        try:
            if not cursor.execute("PRAGMA user_version").fetchone()[0]:  # the first sweep this mrunner records
                earlier = cursor.execute("SELECT 1 FROM sweeps LIMIT 1").fetchone() is not None
                cursor.execute(f"PRAGMA user_version = {int(time.time()) if earlier else 1}")  # former_identities
            cursor.execute(f"INSERT INTO sweeps ({_SWEEP_COLUMNS}) VALUES ({_marks(16)})", _sweep_row(sweep))
            cursor.execute("INSERT INTO submitters (sweep_id, process) VALUES (?, ?)", (sweep.id, process.identity()))
            remaining = iter(runs)
            while chunk := list(itertools.islice(remaining, RECORD_CHUNK)):
                self._record_chunk(cursor, sweep, chunk, now, taken if skip_submitted else None, recorded)
            if recorded.count == 0:
                cursor.execute("ROLLBACK")
                return recorded
        except BaseException:
            _rollback(cursor)
            raise
        cursor.execute("COMMIT")
        self._keep_reserve()
        return recorded

    @staticmethod
    def _record_chunk(
        cursor: sqlite3.Cursor,
        sweep: Sweep,
        chunk: list[Run],
        now: float,
        taken: tuple[str, ...] | None,
        recorded: Recorded,
    ) -> None:
        formers = {run.id: former for run in chunk if (former := getattr(run, "former_id", None))}
        identities = list({run.id for run in chunk} | set(formers.values()))
        found = _owners(cursor, identities, sweep.id, sweep.context_name, taken)
        rows, events, attempts = [], [], []
        for run in chunk:
            other = found.get(run.id)
            if other is None and run.id in formers:  # recorded by an earlier mrunner, its target spelled so
                other = found.get(formers[run.id])
            if other == sweep.id:
                recorded.repeated += 1
                continue
            if other is not None:
                recorded.skipped += 1
                if other not in recorded.skipped_sweeps:
                    recorded.skipped_sweeps.append(other)
                continue
            found[run.id] = sweep.id
            run.sweep_id, run.index, run.updated_at = sweep.id, recorded.count, now
            recorded.count += 1
            rows.append(_run_row(run))
            events.append((sweep.id, run.index, now, run.state, None, "recorded"))
            sql, row = _attempt_start(
                sweep.id, run.index, run.attempt, now, records.SUBMITTED_BY_USER, sweep.snapshot_digest, {}
            )
            attempts.append(row)
        cursor.executemany(f"INSERT INTO experiments ({_RUN_COLUMNS}) VALUES ({_marks(14)})", rows)
        cursor.executemany(_EVENT_INSERT, events)
        if attempts:
            cursor.executemany(sql, attempts)

    @_guarded
    def forget_sweep(self, sweep_id: str) -> None:
        """Remove a sweep none of whose runs ever reached a backend (its hand-over failed at once)."""
        self._write(
            [
                ("DELETE FROM submitters WHERE sweep_id=?", (sweep_id,)),
                ("DELETE FROM attempts WHERE sweep_id=?", (sweep_id,)),
                ("DELETE FROM events WHERE sweep_id=?", (sweep_id,)),
                ("DELETE FROM experiments WHERE sweep_id=?", (sweep_id,)),
                ("DELETE FROM sweeps WHERE id=?", (sweep_id,)),
            ]
        )

    @_guarded
    @_spends_the_reserve
    def update_sweep(self, sweep: Sweep) -> None:
        """Save the backend's bookkeeping of a sweep (``package`` and ``detail``) and what a resume may change
        (the context's resources and limits, the code snapshot)."""
        self._write([_sweep_update(sweep)])

    @_guarded
    @_spends_the_reserve
    def apply(self, sweep_id: str, updates: Sequence[RunUpdate], *, keep_terminal: bool = True) -> list[RunUpdate]:
        """Record state changes; return those that changed something.

        Which change an update makes is ``states.change`` (with ``keep_terminal`` an experiment that already
        ended keeps its final state). An update of a later attempt than the recorded one (``RunUpdate.attempt``:
        the platform requeued it) records the earlier attempts' ends and starts the new attempt. Every
        attempt's end is kept in the attempts table.
        """
        if not updates:
            return []
        now = time.time()
        changed: list[RunUpdate] = []
        rows: list[tuple] = []
        events: list[tuple] = []
        attempts: list[tuple[str, Sequence[object]]] = []
        same_state: list[RunUpdate] = []
        cursor = self._db.cursor()
        self._begin(cursor)
        try:
            current = self._current(cursor, sweep_id, [update.index for update in updates])
            for update in updates:
                if update.index not in current:
                    raise MrunnerError(f"sweep {sweep_id} has no experiment {update.index}")
                state, exit_code, backend_ref, attempt = current[update.index]
                new_ref = update.backend_ref if update.backend_ref is not None else backend_ref
                decided = states.change(state, attempt, update, keep_terminal)
                if decided is Change.LATER_ATTEMPT:
                    assert update.attempt is not None
                    attempts += self._requeued(sweep_id, update, attempt, now)
                    how = states.restart_cause(update, update.attempt)
                    why = "retried" if how == records.RETRIED else "requeued by the platform"
                    detail = f"attempt {update.attempt} ({update.restart_details.get(update.attempt) or why})"
                    events.append(_event(sweep_id, update.index, now, update.state, update.exit_code, detail)[1])
                    attempt, exit_code = update.attempt, update.exit_code
                    rows.append((update.state, exit_code, new_ref, attempt, now, sweep_id, update.index))
                    if update.state in TERMINAL:  # it ended before anyone looked
                        attempts.append(
                            _attempt_end(sweep_id, update.index, attempt, now, update.state, exit_code, update.detail)
                        )
                    current[update.index] = (update.state, exit_code, new_ref, attempt)
                    changed.append(update)
                    continue
                if decided in (Change.KEPT, Change.EARLIER_ATTEMPT):
                    continue
                new_exit = update.exit_code if update.exit_code is not None else exit_code
                if (state, new_exit, new_ref) == (update.state, exit_code, backend_ref):
                    if update.detail and state in ACTIVE:
                        same_state.append(update)  # a new reason for the same state (pending: Resources)
                    continue
                rows.append((update.state, new_exit, new_ref, attempt, now, sweep_id, update.index))
                if state != update.state:
                    events.append(_event(sweep_id, update.index, now, update.state, update.exit_code, update.detail)[1])
                if update.state in TERMINAL:
                    attempts.append(
                        _attempt_end(sweep_id, update.index, attempt, now, update.state, new_exit, update.detail)
                    )
                current[update.index] = (update.state, new_exit, new_ref, attempt)
                changed.append(update)
            cursor.executemany(
                "UPDATE experiments SET state=?, exit_code=?, backend_ref=?, attempt=?, updated_at=? "
                "WHERE sweep_id=? AND idx=?",
                rows,
            )
            if same_state:
                latest = self._latest_details(cursor, sweep_id, [update.index for update in same_state])
                for update in same_state:
                    if latest.get(update.index) != update.detail:
                        events.append(_event(sweep_id, update.index, now, update.state, None, update.detail)[1])
            cursor.executemany(_EVENT_INSERT, events)
            for sql, args in attempts:
                cursor.execute(sql, args)
        except BaseException:
            _rollback(cursor)
            raise
        cursor.execute("COMMIT")
        return changed

    def _requeued(
        self, sweep_id: str, update: RunUpdate, attempt: int, now: float
    ) -> list[tuple[str, Sequence[object]]]:
        """The attempt rows of a requeue seen by ``update``: the ends of the recorded attempt and of any
        the platform ran in between, and the start of ``update.attempt``."""
        assert update.attempt is not None
        row = self._db.execute(
            "SELECT snapshot_digest, changes FROM attempts WHERE sweep_id=? AND idx=? AND attempt=?",
            (sweep_id, update.index, attempt),
        ).fetchone()
        snapshot, changes = (row[0], json.loads(row[1])) if row else ("", {})
        statements = []
        for earlier in range(attempt, update.attempt):
            cause = states.start_cause(update, earlier, attempt)
            end = states.replaced_end(update, earlier)
            code = update.end_codes.get(earlier)
            why = update.end_details.get(earlier) or ("stopped by the platform" if code is None else "ended by itself")
            statements.append(_attempt_start(sweep_id, update.index, earlier, now, cause, snapshot, changes))
            statements.append(_attempt_end(sweep_id, update.index, earlier, now, end, code, why))
        cause = states.restart_cause(update, update.attempt)
        statements.append(_attempt_start(sweep_id, update.index, update.attempt, now, cause, snapshot, changes))
        return statements

    @staticmethod
    def _current(cursor: sqlite3.Cursor, sweep_id: str, indices: Sequence[int]) -> dict[int, tuple]:
        """(state, exit_code, backend_ref, attempt) of the given runs, read in a few queries instead of one each."""
        found: dict[int, tuple] = {}
        unique = sorted(set(indices))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = f"SELECT idx, state, exit_code, backend_ref, attempt FROM experiments WHERE sweep_id=? AND idx IN ({_marks(len(chunk))})"
            for index, *row in cursor.execute(query, (sweep_id, *chunk)):
                found[index] = tuple(row)
        return found

    @staticmethod
    def _latest_details(cursor: sqlite3.Cursor, sweep_id: str, indices: Sequence[int]) -> dict[int, str | None]:
        """The detail of the latest event of each of the given runs."""
        query = (
            "SELECT idx, detail FROM events WHERE rowid IN "
            "(SELECT max(rowid) FROM events WHERE sweep_id=?{} GROUP BY idx)"
        )
        found: dict[int, str | None] = {}
        unique = sorted(set(indices))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            found.update(cursor.execute(query.format(f" AND idx IN ({_marks(len(chunk))})"), (sweep_id, *chunk)))
        return found

    @_guarded
    def details(self, sweep_id: str, states: Iterable[str] | None = None) -> dict[int, str]:
        """What the backend last said about each run of the sweep (its pending reason, why it failed), if
        anything, in index order; with ``states``, only of the runs now in them (why pending runs wait), chosen
        by SQL: the runs in other states are never decoded (each look of a wait at a large sweep)."""
        chosen, arguments = "", [sweep_id]
        if states is not None:
            wanted = sorted(set(states))
            chosen = f" AND idx IN (SELECT idx FROM experiments WHERE sweep_id=? AND state IN ({_marks(len(wanted))}))"
            arguments += [sweep_id, *wanted]
        query = (
            f"SELECT idx, detail FROM events WHERE rowid IN (SELECT max(rowid) FROM events WHERE sweep_id=?{chosen} "
            "GROUP BY idx) ORDER BY idx"
        )
        return {index: detail for index, detail in self._db.execute(query, arguments) if detail}

    @_guarded
    @_spends_the_reserve
    def start_resume(
        self,
        sweep: Sweep,
        indices: Sequence[int],
        changes: dict | None = None,
        resources: dict | None = None,
        expected: dict[int, tuple[str, int]] | None = None,
    ) -> str | None:
        """What `resume` records first, in one transaction (all or nothing, so a failure of the records part-way
        leaves none of it): the sweep as ``sweep`` holds it now (its context with the changes, the snapshot), the
        given runs planned again under a new attempt number with the snapshot and the changed context keys, and
        ``resources`` (by index) that runs ask for from now on. With ``expected`` (index: the state and attempt
        the resume read), the resume takes the sweep's hand-over (``submitters``), and is refused if another
        mrunner took those runs since it read them, or is handing over planned ones right now: two resumes at
        once would both hand over the same runs. Returns who handed the sweep over before (for ``undo_resume``)."""
        now = time.time()
        current = {index: row[3] for index, row in self._current(self._db.cursor(), sweep.id, indices).items()}
        if expected is not None:
            current = {index: expected[index][1] for index in indices}
        again = (
            "UPDATE experiments SET state='planned', attempt=attempt+1, exit_code=NULL, backend_ref=NULL, "
            "updated_at=? WHERE sweep_id=? AND idx=? AND state!='planned'"
        )
        digest = sweep.snapshot_digest
        statements: list[tuple[str, Sequence[object]]] = [_sweep_update(sweep)]
        statements += [(again, (now, sweep.id, index)) for index in indices]
        statements += [_event(sweep.id, index, now, "planned", None, "resume") for index in indices]
        statements += [
            _attempt_start(sweep.id, index, current[index] + 1, now, records.RESUMED, digest, changes or {})
            for index in indices
        ]
        statements += [
            ("UPDATE experiments SET resources=? WHERE sweep_id=? AND idx=?", (_dump(own), sweep.id, index))
            for index, own in (resources or {}).items()
        ]
        if expected is None:
            self._write(statements)
            return None
        cursor = self._db.cursor()
        self._begin(cursor)
        try:
            previous = _take_over(cursor, sweep.id, expected, self._current(cursor, sweep.id, list(expected)))
            for sql, group in itertools.groupby(statements, key=lambda statement: statement[0]):
                cursor.executemany(sql, [args for _, args in group])
        except BaseException:
            _rollback(cursor)
            raise
        cursor.execute("COMMIT")
        return previous

    @_guarded
    def undo_resume(self, sweep: Sweep, runs: Sequence[Run], since: float, submitter: str | None = None) -> None:
        """Put back, in one transaction, what a resume begun at ``since`` recorded before its hand-over was
        refused: the sweep as ``sweep`` holds it (context, snapshot, the backend's bookkeeping), and each of
        ``runs`` as it was read then (state, attempt, resources), without the resume's events and attempts, and
        ``submitter`` (``start_resume``'s answer) as the process that handed the sweep over."""
        statements: list[tuple[str, Sequence[object]]] = [_sweep_update(sweep)]
        statements += [
            ("INSERT OR REPLACE INTO submitters (sweep_id, process) VALUES (?, ?)", (sweep.id, submitter))
            if submitter
            else ("DELETE FROM submitters WHERE sweep_id=?", (sweep.id,))
        ]
        statements += [
            (
                "UPDATE experiments SET state=?, attempt=?, exit_code=?, backend_ref=?, updated_at=?, resources=? "
                "WHERE sweep_id=? AND idx=?",
                (
                    run.state,
                    run.attempt,
                    run.exit_code,
                    run.backend_ref,
                    run.updated_at,
                    _dump(run.resources),
                    sweep.id,
                    run.index,
                ),
            )
            for run in runs
        ]
        statements += [
            ("DELETE FROM events WHERE sweep_id=? AND idx=? AND at>=?", (sweep.id, run.index, since)) for run in runs
        ]
        statements += [
            ("DELETE FROM attempts WHERE sweep_id=? AND idx=? AND attempt>?", (sweep.id, run.index, run.attempt))
            for run in runs
        ]
        self._write(statements)

    @_guarded
    def attempts(
        self, sweep_id: str, index: int | None = None, *, start: int = 0, stop: int | None = None
    ) -> dict[int, list[Attempt]]:
        """Every attempt of an experiment (or of every experiment of the sweep with ``start <= index < stop``),
        first to latest, by index."""
        query = (
            "SELECT idx, attempt, started_at, cause, snapshot_digest, changes, ended_at, ended, exit_code, detail "
            "FROM attempts WHERE sweep_id=?"
        )
        args: tuple = (sweep_id,)
        if index is not None:
            query += " AND idx=?"
            args += (index,)
        else:
            query += " AND idx>=?" + ("" if stop is None else " AND idx<?")
            args += (start,) if stop is None else (start, stop)
        found: dict[int, list[Attempt]] = {}
        for idx, number, started, cause, digest, changes, ended_at, ended, code, detail in self._db.execute(
            query + " ORDER BY idx, attempt", args
        ):
            found.setdefault(idx, []).append(
                Attempt(number, started, cause, digest, json.loads(changes), ended_at, ended, code, detail)
            )
        return found

    # -- reading -------------------------------------------------------------------------------------------

    @_guarded
    def sweep(self, ref: str) -> Sweep:
        """The sweep whose id is ``ref`` or starts with it (an unambiguous prefix)."""
        ref = _given(ref)
        rows = self._db.execute(
            f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE id=? OR id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
            (ref, _like_prefix(ref)),
        ).fetchall()
        exact = [row for row in rows if row[0] == ref]
        if exact:
            rows = exact
        if not rows:
            raise NotFound(f"no sweep {ref!r} in the records; `mrunner status` lists the recorded sweeps")
        if len(rows) > 1:
            names = ", ".join(row[0] for row in rows[:5])
            raise MrunnerError(f"sweep {ref!r} is ambiguous: it could be {names}; give more of the id")
        return _sweep(rows[0])

    @_guarded
    def sweeps(self, limit: int = 20) -> list[Sweep]:
        rows = self._db.execute(
            f"SELECT {_SWEEP_COLUMNS} FROM sweeps ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_sweep(row) for row in rows]

    @_guarded
    def runs(
        self,
        sweep_id: str,
        states: Iterable[str] | None = None,
        *,
        start: int = 0,
        stop: int | None = None,
        limit: int | None = None,
        last: bool = False,
        handed: bool = False,
        since: float | None = None,
    ) -> list[Run]:
        """The sweep's runs in index order: those in ``states`` (default all) with ``start <= index < stop``,
        at most ``limit`` of them (the last ones with ``last``); with ``handed``, only those the backend
        named (a job, a pid: the rest never started); with ``since``, only those recorded at or after that
        time. Read through the primary key, so a slice of a large sweep costs what the slice holds; the
        filters are SQL's, so the runs left out are never decoded."""
        query = f"SELECT {_RUN_COLUMNS} FROM experiments WHERE sweep_id=? AND idx>=?"
        arguments: list[object] = [sweep_id, start]
        if handed:
            query += " AND backend_ref IS NOT NULL AND backend_ref != ''"
        if since is not None:
            query += " AND updated_at>=?"
            arguments.append(since)
        if stop is not None:
            query += " AND idx<?"
            arguments.append(stop)
        if states is not None:
            wanted = sorted(set(states))
            query += f" AND state IN ({_marks(len(wanted))})"
            arguments += wanted
        query += " ORDER BY idx DESC" if last else " ORDER BY idx"
        if limit is not None:
            query += " LIMIT ?"
            arguments.append(limit)
        runs = [_run(row) for row in self._db.execute(query, arguments)]
        return runs[::-1] if last else runs

    @_guarded
    def runs_at(self, sweep_id: str, indices: Sequence[int]) -> list[Run]:
        """The sweep's runs of the given indices (in index order), through the primary key."""
        found: list[Run] = []
        unique = sorted(set(indices))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = f"SELECT {_RUN_COLUMNS} FROM experiments WHERE sweep_id=? AND idx IN ({_marks(len(chunk))}) ORDER BY idx"
            found += [_run(row) for row in self._db.execute(query, (sweep_id, *chunk))]
        return found

    def iter_runs(self, sweep_id: str, states: Iterable[str] | None = None, chunk: int = RECORD_CHUNK) -> Iterator[Run]:
        """The sweep's runs in index order, read ``chunk`` at a time: memory does not grow with the sweep."""
        wanted = None if states is None else list(states)
        start = 0
        while batch := self.runs(sweep_id, wanted, start=start, limit=chunk):
            yield from batch
            start = batch[-1].index + 1

    @_guarded
    def count(self, sweep_id: str) -> int:
        """How many runs the sweep has."""
        return int(self._db.execute("SELECT count(*) FROM experiments WHERE sweep_id=?", (sweep_id,)).fetchone()[0])

    @_guarded
    def counts(self, sweep_id: str) -> dict[str, int]:
        """How many runs of the sweep are in each state, in the order of ``records.STATES``: counted by SQL, as
        each look of a wait does, without decoding the runs."""
        found = dict(
            self._db.execute("SELECT state, count(*) FROM experiments WHERE sweep_id=? GROUP BY state", (sweep_id,))
        )
        return {state: found[state] for state in records.STATES if state in found}

    @_guarded
    def former_identities(self, context_name: str) -> bool:
        """Whether context ``context_name`` has sweeps recorded before experiment identities took the target
        as the backend spells it one way: only then may a run of it be recorded under its former identity,
        which a submission then computes too (``planning.PlannedRun``).

        The database's ``user_version`` says since when (no page of its own, and no write of its own: set in
        the transaction of the first sweep this mrunner records): 0, none recorded by it yet (every sweep is
        earlier); 1, the records began with it; else the time of that first sweep."""
        since = self._db.execute("PRAGMA user_version").fetchone()[0] or float("inf")
        found = self._db.execute(
            "SELECT 1 FROM sweeps WHERE context_name=? AND created_at < ? LIMIT 1", (context_name, since)
        ).fetchone()
        return found is not None

    @_guarded
    def taken(self, context_name: str, identities: Sequence[str]) -> set[str]:
        """Of ``identities``, those ``record_sweep`` of a new sweep on context ``context_name`` would skip as
        already submitted (``skip_submitted``), read without recording anything: how many runs a plan would
        record, for a refusal of the plan's number (``errors.RefusedAsPlanned``)."""
        taken = tuple(states.TAKEN)
        found: set[str] = set()
        cursor = self._db.cursor()
        for start in range(0, len(identities), RECORD_CHUNK):
            found.update(_owners(cursor, list(identities[start : start + RECORD_CHUNK]), "", context_name, taken))
        return found

    @_guarded
    def resource_classes(self, sweep_id: str) -> dict[str, int]:
        """How many runs of the sweep ask for each set of per-point resources (``Run.resource_class``; empty:
        the sweep's context as it is), in the order of their first run."""
        rows = self._db.execute(
            "SELECT resources, count(*), min(idx) FROM experiments WHERE sweep_id=? GROUP BY resources ORDER BY 3",
            (sweep_id,),
        )
        return {records.resource_label(json.loads(resources)): count for resources, count, _ in rows}

    @_guarded
    def latest_details(self, sweep_id: str, indices: Sequence[int]) -> dict[int, str]:
        """What the backend last said about each of the given runs, if anything (see ``details``)."""
        latest = self._latest_details(self._db.cursor(), sweep_id, indices)
        return {index: detail for index, detail in latest.items() if detail}

    @_guarded
    def state(self, sweep_id: str, index: int) -> str:
        """One experiment's recorded state alone: asked before and after each start by a supervisor, which
        needs neither its parameters nor its context (``run`` decodes both)."""
        row = self._db.execute("SELECT state FROM experiments WHERE sweep_id=? AND idx=?", (sweep_id, index)).fetchone()
        if row is None:
            return self.run(sweep_id, index).state  # its error, naming the experiments the sweep has
        return str(row[0])

    @_guarded
    def run(self, sweep_id: str, index: int) -> Run:
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM experiments WHERE sweep_id=? AND idx=?", (sweep_id, index)
        ).fetchone()
        if row is None:
            low, high = self._db.execute(  # the ends of the (sweep, index) key: no scan
                "SELECT min(idx), max(idx) FROM experiments WHERE sweep_id=?", (sweep_id,)
            ).fetchone()
            held = "none" if low is None else f"{low}" if low == high else f"{low}-{high}"
            raise NotFound(f"sweep {sweep_id} has no experiment {index}: the sweep has experiments {held}")
        return _run(row)

    def find(self, ref: str) -> tuple[Sweep, Run | None]:
        """A sweep (``SWEEP``: its id or a prefix) or one experiment (``SWEEP/INDEX`` or a prefix of its id)."""
        ref = _given(ref)
        if "/" in ref:
            return self.find_run(ref)
        try:
            return self.sweep(ref), None
        except NotFound:
            pass
        try:
            return self.find_run(ref)
        except NotFound:
            raise NotFound(
                f"no sweep or experiment {ref!r} in the records; `mrunner status` lists the recorded sweeps"
            ) from None

    @_guarded
    def find_run(self, ref: str) -> tuple[Sweep, Run]:
        """An experiment named ``SWEEP/INDEX`` or by a prefix (4+ characters) of its identity."""
        ref = _given(ref)
        if "/" in ref:
            sweep_ref, _, index = ref.rpartition("/")
            if not index.isdigit():
                raise MrunnerError(f"experiment {ref!r}: expected SWEEP/INDEX with a number after the slash")
            sweep = self.sweep(sweep_ref)
            return sweep, self.run(sweep.id, int(index))
        if len(ref) < 4:
            raise NotFound(f"experiment {ref!r}: give SWEEP/INDEX or at least 4 characters of its id")
        rows = self._db.execute(  # a range of the identity index, not a scan of every experiment
            f"SELECT {_RUN_COLUMNS} FROM experiments WHERE id>=? AND id<=? ORDER BY updated_at DESC LIMIT 100",
            (ref.lower(), ref.lower() + _LAST_CHARACTER),  # identities are lower-case hex
        ).fetchall()
        if not rows:
            raise NotFound(f"no experiment {ref!r} in the records; name it as SWEEP/INDEX (see `mrunner status SWEEP`)")
        distinct = {(row[0], row[1]) for row in rows}
        if len(distinct) > 1:
            names = ", ".join(f"{s}/{i}" for s, i in sorted(distinct)[:5])
            raise MrunnerError(f"experiment {ref!r} is ambiguous: it could be {names}")
        run = _run(rows[0])
        return self.sweep(run.sweep_id), run

    @_guarded
    def submitter(self, sweep_id: str) -> str | None:
        """``PID@START`` of the process that recorded the sweep (see ``mrunner.process``), if known."""
        row = self._db.execute("SELECT process FROM submitters WHERE sweep_id=?", (sweep_id,)).fetchone()
        return row[0] if row else None

    @_guarded
    def history(self, sweep_id: str, index: int) -> list[tuple[float, str, int | None, str | None]]:
        return self._db.execute(
            "SELECT at, state, exit_code, detail FROM events WHERE sweep_id=? AND idx=? ORDER BY at, rowid",
            (sweep_id, index),
        ).fetchall()


def _take_over(cursor: sqlite3.Cursor, sweep_id: str, expected: dict[int, tuple[str, int]], now: dict) -> str | None:
    """Inside a resume's transaction: refuse when its runs changed since it read them (another resume planned
    them again, or handed them over) or when another live process is handing over planned ones; else record
    this process as the one handing the sweep over, and return the one recorded before."""
    row = cursor.execute("SELECT process FROM submitters WHERE sweep_id=?", (sweep_id,)).fetchone()
    holder, me = (row[0] if row else None), process.identity()
    busy = holder is not None and holder != me and process.alive(holder)
    moved = [i for i, (state, attempt) in expected.items() if i in now and (now[i][0], now[i][3]) != (state, attempt)]
    if moved or (busy and any(state == PLANNED for state, _ in expected.values())):
        who = f" (process {holder.partition('@')[0]})" if busy and holder else ""
        raise MrunnerError(
            f"sweep {sweep_id} is being resumed or submitted by another mrunner{who}: its experiments are that "
            f"one's now; `mrunner status {sweep_id}` shows them, and a resume once it has ended takes what is left"
        )
    cursor.execute("INSERT OR REPLACE INTO submitters (sweep_id, process) VALUES (?, ?)", (sweep_id, me))
    return holder


class StoredRuns(Sequence[Run]):
    """Some runs of a sweep (``indices``, in that order) as a sequence read from the records a chunk at a
    time: a submission hands a million runs to its backend without holding them all in memory."""

    def __init__(self, store: Store, sweep_id: str, indices: Sequence[int]) -> None:
        self._store, self._sweep_id, self._indices = store, sweep_id, indices
        self._chunk_start, self._chunk = 0, cast("list[Run]", [])

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def indices(self) -> Sequence[int]:
        """The runs' indices in the sweep, in order, known without reading a run (a detached supervisor
        is handed these alone)."""
        return self._indices

    @overload
    def __getitem__(self, position: int) -> Run: ...
    @overload
    def __getitem__(self, position: slice) -> list[Run]: ...

    def __getitem__(self, position: int | slice) -> Run | list[Run]:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(position)
        if not self._chunk_start <= position < self._chunk_start + len(self._chunk):
            self._chunk_start = position - position % RECORD_CHUNK
            self._chunk = self._read(self._chunk_start)
        return self._chunk[position - self._chunk_start]

    def __iter__(self) -> Iterator[Run]:
        for start in range(0, len(self), RECORD_CHUNK):
            yield from self._read(start)

    def _read(self, start: int) -> list[Run]:
        wanted = list(self._indices[start : start + RECORD_CHUNK])
        found = {run.index: run for run in self._store.runs_at(self._sweep_id, wanted)}
        return [found[index] for index in wanted]


def _holders(path: Path) -> list[str]:
    """``pid N (command)`` of every other process of this machine that has the database open (from /proc)."""
    names = {str(path.resolve()), f"{path.resolve()}-wal", f"{path.resolve()}-shm"}
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            opened = any(os.readlink(f"/proc/{entry}/fd/{fd}") in names for fd in os.listdir(f"/proc/{entry}/fd"))
            if opened:
                with open(f"/proc/{entry}/cmdline", "rb") as stream:
                    # the words of its command line, on one line (a `python -c` program has line breaks)
                    command = " ".join(stream.read().decode(errors="replace").replace("\0", " ").split())
                found.append(f"pid {entry} ({command[:80]})")
        except OSError:
            continue
    return found


def _rollback(cursor: sqlite3.Cursor) -> None:
    """Undo the open transaction; if that fails too (a full disk), SQLite undoes it when the file is next opened."""
    try:
        cursor.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _owners(
    cursor: sqlite3.Cursor, identities: list[str], sweep_id: str, context_name: str, taken: tuple[str, ...] | None
) -> dict[str, str]:
    """The sweep owning each of ``identities`` that a run of sweep ``sweep_id`` must not repeat: a run of that
    sweep itself, or with ``taken`` one in those states on context ``context_name`` (``record_sweep``)."""
    query = (
        f"SELECT e.id, e.sweep_id, e.state, p.process, s.package FROM experiments e JOIN sweeps s ON s.id = e.sweep_id "
        f"LEFT JOIN submitters p ON p.sweep_id = e.sweep_id WHERE e.id IN ({_marks(len(identities))}) "
        f"AND (e.sweep_id = ?"
    )
    arguments: list[object] = [*identities, sweep_id]
    if taken is not None:
        query += f" OR (s.context_name = ? AND e.state IN ({_marks(len(taken))}))"
        arguments += [context_name, *taken]
    found: dict[str, str] = {}
    submitting: dict[str, bool] = {}  # a planned run is being submitted only while its submitter runs
    for identity, owner, state, submitter, package in cursor.execute(query + ")", arguments):
        # A submitter that died before its sweep was packaged handed nothing over: its planned runs are
        # free. Once packaged, the backend may have accepted some before they were recorded (a kill
        # between the two): they stay taken, and `mrunner resume` of that sweep finds what was accepted.
        if owner != sweep_id and state == PLANNED and package in ("", "{}"):
            if submitter not in submitting:
                submitting[submitter] = submitter is not None and process.alive(submitter)
            if not submitting[submitter]:
                continue
        found[identity] = owner
    return found


def _marks(count: int) -> str:
    return ", ".join("?" * count)


#: Above every character an identity holds: ``id BETWEEN prefix AND prefix + this`` is every id with the prefix.
_LAST_CHARACTER = "\U0010ffff"


def _given(ref: str) -> str:
    """A reference as typed, without the blanks around it (pasted ids carry them); an empty one is refused
    before it matches every sweep as a prefix of nothing."""
    ref = ref.strip()
    if not ref or ref.startswith("/"):
        raise MrunnerError(
            f"no sweep id given (in {ref!r}): name a sweep or SWEEP/INDEX; `mrunner status` lists the recorded sweeps"
        )
    return ref


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_ENCODER = json.JSONEncoder(sort_keys=True)  # one encoder: json.dumps(..., sort_keys=True) builds one per call


def _dump(value: object) -> str:
    if not value and type(value) in _EMPTY:  # a run's env, tags and resources, most often: spared the encoder
        return _EMPTY[type(value)]
    return _ENCODER.encode(value)


_EMPTY: dict[type, str] = {dict: "{}", list: "[]"}


def _sweep_update(sweep: Sweep) -> tuple[str, Sequence[object]]:
    """What a resume may change of a sweep (its context, snapshot and the backend's bookkeeping) as one statement:
    written by a resume, and written back as it was by an undone one."""
    return (
        "UPDATE sweeps SET package=?, detail=?, context=?, snapshot_digest=?, git_commit=?, git_dirty=? WHERE id=?",
        (
            _dump(sweep.package),
            _dump(sweep.detail),
            _dump(sweep.context),
            sweep.snapshot_digest,
            sweep.git_commit,
            None if sweep.git_dirty is None else int(sweep.git_dirty),
            sweep.id,
        ),
    )


_EVENT_INSERT = "INSERT INTO events (sweep_id, idx, at, state, exit_code, detail) VALUES (?, ?, ?, ?, ?, ?)"


def _event(sweep_id: str, index: int, at: float, state: str, exit_code: int | None, detail: str | None):
    return _EVENT_INSERT, (sweep_id, index, at, state, exit_code, detail)


def _attempt_start(
    sweep_id: str, index: int, attempt: int, at: float, cause: str, snapshot: str, changes: dict
) -> tuple[str, Sequence[object]]:
    """An attempt's start row; one that is there already is kept."""
    return (
        "INSERT INTO attempts (sweep_id, idx, attempt, started_at, cause, snapshot_digest, changes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sweep_id, idx, attempt) DO NOTHING",
        (sweep_id, index, attempt, at, cause, snapshot, _dump(changes)),
    )


def _attempt_end(
    sweep_id: str, index: int, attempt: int, at: float, end: str, exit_code: int | None, detail: str | None
) -> tuple[str, Sequence[object]]:
    return (
        "UPDATE attempts SET ended_at=?, ended=?, exit_code=?, detail=? WHERE sweep_id=? AND idx=? AND attempt=?",
        (at, end, exit_code, detail, sweep_id, index, attempt),
    )


#: Columns added after a table was first created, with their declaration: a database written by an earlier
#: mrunner gets them when opened (its runs asked for no per-point resources).
_ADDED_COLUMNS = {"experiments": {"resources": "TEXT NOT NULL DEFAULT '{}'"}}


def _add_columns(db: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns.items():
            if name not in present:
                try:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
                except sqlite3.OperationalError as error:
                    if "duplicate column" not in str(error):  # another mrunner added it just now
                        raise


def _sweep_row(sweep: Sweep) -> tuple:
    return (
        sweep.id,
        sweep.name,
        sweep.created_at,
        sweep.context_name,
        sweep.backend,
        _dump(sweep.context),
        sweep.project,
        sweep.snapshot_digest,
        sweep.project_dir,
        sweep.workdir,
        sweep.git_commit,
        None if sweep.git_dirty is None else int(sweep.git_dirty),
        _dump(sweep.tags),
        _dump(sweep.argv),
        _dump(sweep.package),
        _dump(sweep.detail),
    )


def _sweep(row: Sequence) -> Sweep:
    (
        id_,
        name,
        created_at,
        context_name,
        backend,
        context,
        project,
        digest,
        project_dir,
        workdir,
        git_commit,
        git_dirty,
        tags,
        argv,
        package,
        detail,
    ) = row
    return Sweep(
        id=id_,
        name=name,
        created_at=created_at,
        context_name=context_name,
        backend=backend,
        context=json.loads(context),
        project=project,
        snapshot_digest=digest,
        project_dir=project_dir,
        workdir=workdir,
        git_commit=git_commit,
        git_dirty=None if git_dirty is None else bool(git_dirty),
        tags=json.loads(tags),
        argv=json.loads(argv),
        package=json.loads(package),
        detail=json.loads(detail),
    )


def _run_row(run: Run) -> tuple:
    return (
        run.sweep_id,
        run.index,
        run.id,
        run.name,
        _dump(run.parameters),
        _dump(run.command),
        _dump(run.env),
        _dump(run.tags),
        run.state,
        run.attempt,
        run.backend_ref,
        run.exit_code,
        run.updated_at,
        _dump(run.resources),
    )


def _run(row: Sequence) -> Run:
    (
        sweep_id,
        index,
        id_,
        name,
        parameters,
        command,
        env,
        tags,
        state,
        attempt,
        backend_ref,
        exit_code,
        updated_at,
        resources,
    ) = row
    return Run(
        sweep_id=sweep_id,
        index=index,
        id=id_,
        name=name,
        parameters=json.loads(parameters),
        command=json.loads(command),
        env=_loads(env),
        tags=_loads(tags),
        state=state,
        attempt=attempt,
        backend_ref=backend_ref,
        exit_code=exit_code,
        updated_at=updated_at,
        resources=_loads(resources),
    )


def _loads(text: str) -> Any:
    """``json.loads``, without the decoder for the empty values most runs' env and tags hold (a large sweep's
    `status --json` decodes every run)."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)

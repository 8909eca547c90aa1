"""Running a sweep's experiments on this machine: at most ``max_parallel`` at once, GPUs handed out one
set per experiment, each attempt started through the core's attempt wrapper (``mrunner.attempt``, as every
backend starts one), every state change recorded through the core (``mrunner.recorder``) as it happens.

The supervisor runs inside `mrunner` (with a progress bar; Ctrl-C cancels) or, with ``--detach``, as a
background process of its own (``python -m mrunner_local.supervisor RECORDS SWEEP``, the indices on its
standard input) that records into the records database the sweep was submitted to.

Each attempt is one session: the wrapper leads it (its pid is the one recorded, and ``status`` shows), the
experiment leads a process group inside it. A SIGTERM to that pid, from the supervisor's stop, `mrunner cancel`
or a user's ``kill``, is passed on to the experiment's group, which gets ``grace_period`` seconds before
SIGKILL; the wrapper writes the attempt's exit-code file when the experiment ended by itself (always when it
exited 0), so an experiment that had ended before a stop keeps its real end. The wrapper starts the experiment
only once the supervisor has recorded it running (``--handshake``): a supervisor killed in between leaves nothing
running that the records do not know of. A wrapper killed outright takes its experiment with it (see
``mrunner.attempt``) and the supervisor stops what is left of its session.

A full disk (the storage's, or the records') stops the sweep: nothing more starts, the experiments that run end
as they end, and the reason, naming the disk and the space needed, is where ``mrunner`` and ``status`` show it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mrunner import layout as contract
from mrunner import process, treeguard
from mrunner.attempt import SETUP_FAILED, command_line
from mrunner.errors import MrunnerError, NoLog
from mrunner.recorder import Recorder
from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, RUNNING, SUBMITTED, TERMINAL, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.store import RECORD_CHUNK, StoredRuns, default_path
from mrunner_local.gpus import GpuPool
from mrunner_local.pending import Pending, read_indices, write_indices
from mrunner_local.wrapper import Wrapper, start_server

#: How long a killed process group may take to be gone: the kernel delivers SIGKILL when it next runs it.
KILLED_WITHIN_SECONDS = 10.0
#: Beyond ``grace_period``: how long a wrapper may take to kill its experiment's group and exit.
WRAPPER_MARGIN_SECONDS = 5.0
#: Below this much free space the storage's disk counts as full: no experiment starts, and one that failed is
#: taken to have failed of it.
FULL_BELOW_BYTES = 256 * 1024
#: The least the stop message asks to free, whatever the sweep's experiments wrote so far.
ASK_AT_LEAST_BYTES = 2**20


def parallelism(context: Mapping[str, Any]) -> int:
    gpus = context["gpus"]
    if context.get("max_parallel"):
        return max(1, int(context["max_parallel"]))
    if gpus:
        return max(1, len(gpus) // max(1, int(context["gpus_per_experiment"])))
    return os.cpu_count() or 1


def storage(sweep: Sweep) -> str:
    return str(Path(sweep.context["storage_dir"]).expanduser())


def layout_of(sweep: Sweep, run: Run) -> contract.Layout:
    return contract.of_run(storage(sweep), sweep, run)


def sweep_dir(sweep: Sweep) -> Path:
    return Path(contract.Layout(storage(sweep), sweep.project, sweep.id, 0, "").sweep_dir)


# -- which process supervises a sweep ------------------------------------------------------------------------


def supervisor_alive(sweep: Sweep) -> bool:
    """Whether the supervisor recorded for the sweep (``sweep.detail["supervisor"]``) still runs."""
    recorded = sweep.detail.get("supervisor")
    if not recorded:
        return False
    return process.alive(recorded)


# -- running -------------------------------------------------------------------------------------------------


class DiskFull(Exception):
    """The disk the sweep needs is full: the sweep stops (the message names the disk and the space needed).
    ``unstarted``: the experiment that was about to start, which does not."""

    def __init__(self, message: str, unstarted: Run | None = None) -> None:
        super().__init__(message)
        self.unstarted = unstarted


class Supervisor:
    def __init__(
        self,
        sweep: Sweep,
        runs: Sequence[Run],
        secrets: Mapping[str, str],
        recorder: Recorder,
        on_end: Callable[[Run], None] | None = None,
    ) -> None:
        self.sweep = sweep
        self.lock = threading.Lock()
        self.recorder = recorder
        self.secrets = dict(secrets)
        self.on_end = on_end
        self.pending = Pending(runs)  # read as workers take them: a million runs are never all in memory
        gpus = [str(g) for g in sweep.context["gpus"]]
        self.gpus = GpuPool(gpus)
        # with GPUs, each experiment's own count (a per-point gpus_per_experiment) bounds how many run at once:
        # as many workers as GPUs, each waiting in the pool for the GPUs its experiment asks
        workers = len(gpus) if gpus and not sweep.context.get("max_parallel") else parallelism(sweep.context)
        self.slots = min(workers, max(1, len(runs)))
        self.children: dict[int, Wrapper] = {}
        self.attempts: dict[int, int] = {}  # the attempt each child runs: what a stop's cancel of it names
        self.completed = 0  # how many of the runs taken completed: a full disk's line asks room for the others
        self.workers: list[threading.Thread] = []
        self.stopping = threading.Event()
        #: Why the sweep stopped before its end by itself (a full disk), as one line; None while it did not.
        self.failure: str | None = None
        self.stop_reason = "not started: the sweep was stopped"  # what ``stop`` was told
        self.base_env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}
        self.entries = list(sweep.package.get("entries") or [])
        self.code_dir = sweep.package["code_dir"]
        #: How experiments see the code (``package``): a copy-on-write view, or links to a watched snapshot
        #: (None: a sweep recorded before either, with links per top-level entry).
        self.view = sweep.package.get("view")
        self.grace = float(sweep.context["grace_period"])
        #: Where the sweep's experiments write, and the sweep's own folder: the same for every start.
        self.storage = storage(sweep)
        self.folder = str(sweep_dir(sweep))
        #: The wrappers that told their end, with the overlay work folders of their views: each wrapper's exit
        #: (its mount namespace torn down, the overlay's upper file system synced) and then the folder's removal
        #: wait on the kernel, so both are awaited while the next experiments run, not between one experiment's
        #: end and the next's start; the last ones when a worker ends.
        self.leftovers: list[tuple[Wrapper, str | None]] = []

    def record(self, update: RunUpdate) -> None:
        with self.lock:
            self.recorder([update])

    def run(self) -> None:
        """Run every pending experiment; returns when all have ended (or ``stop`` was called)."""
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.slots)]
        for worker in self.workers:
            worker.start()
        self.join()

    def join(self) -> None:
        """Wait for the workers: each records how its experiment ended before it returns."""
        for worker in self.workers:
            while worker.is_alive():
                worker.join(0.2)  # short joins keep the main thread responsive to Ctrl-C and signals

    def _work(self) -> None:
        try:
            self._take_runs()
        finally:
            self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        with self.lock:
            ended, self.leftovers = self.leftovers, []
        for wrapper, folder in ended:
            wrapper.gone()
            if folder is not None:  # the attempt's mount namespace ended with its wrapper: the view is gone
                shutil.rmtree(folder, ignore_errors=True)

    def _take_runs(self) -> None:
        while not self.stopping.is_set():
            try:
                run = self.pending.get_nowait()
            except queue.Empty:
                return
            if run.state in TERMINAL:  # cancelled when its chunk was read: skipped, with no folder and no query
                continue
            gpus = None
            if self.sweep.context.get("gpus"):
                gpus = self.gpus.take(max(1, int(run.context(self.sweep)["gpus_per_experiment"])), self.stopping)
                if gpus is None:  # the sweep stopped while it waited for GPUs
                    self._not_started(run)
                    return
            try:
                self._run_one(run, gpus, int(self.sweep.context["retry_failed"]))
            except DiskFull as full:
                self._fail(str(full), full.unstarted)
            except (MrunnerError, OSError) as error:  # the records cannot be written (a full disk, most often)
                self._fail(_as_line(error))
            finally:
                if gpus is not None:
                    self.gpus.give(gpus)

    def _not_started(self, run: Run) -> None:
        """Record a run this worker took but will not start (its sweep stopped while it waited) cancelled, as
        a stop records the waiting ones, unless a cancel recorded it first."""
        with self.lock:
            if self.recorder.state(run.index) == SUBMITTED:
                reason = f"not started: {self.failure}" if self.failure else self.stop_reason
                self.recorder([RunUpdate(run.index, CANCELLED, detail=reason, attempt=run.attempt)])

    def _run_one(self, run: Run, gpus: list[str] | None, retries: int) -> None:
        """Run the run's attempt; one that fails by itself is started again as the next attempt (same
        checkpoint folder, a log of its own) while ``retries`` (``retry_failed``) allow."""
        layout = layout_of(self.sweep, run)
        if _disk_full(self.storage):
            raise DiskFull(self._full_message(), run)
        damage = None
        if self.view == "watched":
            try:
                damage = treeguard.check(Path(self.code_dir), self.sweep.id)  # what an earlier experiment changed
            except OSError as error:
                detail = f"cannot check its code snapshot: {error}"
                self.record(RunUpdate(run.index, FAILED, exit_code=SETUP_FAILED, detail=detail, attempt=run.attempt))
                self._ended(run)
                return
        env = {**self.base_env, **run.env, **self.secrets, **layout.environment()}
        env["MRUNNER_CONFIG_DOCUMENT"] = json.dumps(run.config_document(self.sweep))
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        try:
            os.makedirs(os.path.dirname(layout.log_file()), exist_ok=True)
            output = open(layout.log_file(), "wb")
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(self._full_message(), run) from None
            self.record(
                RunUpdate(
                    run.index,
                    FAILED,
                    exit_code=SETUP_FAILED,
                    detail=f"cannot set up its folder: {error}",
                    attempt=run.attempt,
                )
            )
            self._ended(run)
            return
        command = command_line(
            sys.executable,
            self.code_dir,
            run.command,
            workdir=self.sweep.workdir,
            entries=self.entries,
            grace=self.grace,
            handshake=True,
            view=self.view == "overlay",
        )
        with output:
            if damage:
                output.write(f"mrunner: {damage}\n".encode())
                print(f"mrunner: warning: {damage}", file=sys.stderr, flush=True)
            with self.lock:  # a stop either sees this child or keeps it from starting: never neither
                if self.stopping.is_set() or self.recorder.state(run.index) != SUBMITTED:
                    return  # cancelled (or taken over) while it waited
                child: Wrapper | None
                try:
                    child = Wrapper(command, self.folder, env, output.fileno())
                except OSError as error:
                    output.write(f"mrunner: cannot start the attempt wrapper: {error}\n".encode())
                    self.recorder(
                        [
                            RunUpdate(
                                run.index,
                                FAILED,
                                exit_code=127,
                                detail=f"cannot start: {error.strerror}",
                                attempt=run.attempt,
                            )
                        ]
                    )
                    child = None
                else:
                    self.children[run.index] = child
                    self.attempts[run.index] = run.attempt
                    try:  # recorded running first: the wrapper starts the experiment once told to
                        pid = f"pid:{process.identity(child.pid)}"
                        self.recorder([RunUpdate(run.index, RUNNING, backend_ref=pid, attempt=run.attempt)])
                        # A cancel from another shell recorded between the look above and this record keeps
                        # its `cancelled` (and never learnt this pid): the experiment must not start then.
                        claimed = self.recorder.state(run.index) == RUNNING
                    except BaseException:
                        child.abandon()
                        child.wait()
                        child.gone()
                        self.children.pop(run.index, None)
                        self.attempts.pop(run.index, None)
                        raise
                    if not claimed:
                        child.abandon()
                        child.wait()
                        child.gone()
                        self.children.pop(run.index, None)
                        self.attempts.pop(run.index, None)
                        return
                    child.start()
            if child is None:
                self._ended(run)
                return
            self._clear_leftovers()
            code = child.wait()
        with self.lock:
            self.children.pop(run.index, None)
            self.attempts.pop(run.index, None)
            self.leftovers.append((child, layout.view_work_dir if self.view == "overlay" else None))
        end = end_of(run, layout.exit_code_file(), code, stopped=self.stopping.is_set())
        if end.detail and end.state == CANCELLED and self.recorder.state(run.index) == CANCELLED:
            end = replace(end, detail=None)  # `mrunner cancel` stopped it: its reason stays the cancel's
        if end.state == CANCELLED and not self.stopping.is_set():
            _stop_session(child.pid)  # the wrapper was killed outright: what is left of its session goes too
        if end.state == FAILED and _disk_full(self.storage):
            # why the sweep stops, recorded before this end: it may be the sweep's last, which a follower ends at
            self._fail(self._full_message())
            self.record(replace(end, detail=f"the disk is full: {_disk(storage(self.sweep))}"))
            self._ended(run)
            return
        following = self._retry(run, end) if retries > 0 else None
        if following is not None:
            self._clear_leftovers()  # its view's work folder, which the next attempt's takes the name of
            self._run_one(following, gpus, retries - 1)
            return
        self.record(end)
        if end.state == COMPLETED:
            with self.lock:
                self.completed += 1
        self._ended(run)

    def _retry(self, run: Run, end: RunUpdate) -> Run | None:
        """The next attempt of a run whose script failed by itself, recorded as submitted; None when the
        run was cancelled or the sweep is stopping meanwhile (then the failure is its end)."""
        if end.state != FAILED or not end.ended_by_itself or end.exit_code is None:
            return None
        with self.lock:
            if self.stopping.is_set() or self.recorder.state(run.index) != RUNNING:
                return None
            number = run.attempt + 1
            self.recorder(
                [
                    RunUpdate(
                        run.index,
                        SUBMITTED,
                        detail=f"attempt {run.attempt} failed (exit {end.exit_code})",
                        attempt=number,
                        ends={run.attempt: FAILED},
                        end_codes={run.attempt: end.exit_code},
                    )
                ]
            )
        return replace(run, attempt=number, state=SUBMITTED, exit_code=None)

    def _ended(self, run: Run) -> None:
        if self.on_end:
            self.on_end(run)

    def _full_message(self) -> str:
        """One line: which disk, how much is free, about how much the rest of the sweep needs."""
        folder = storage(self.sweep)
        written = _size_of(sweep_dir(self.sweep))
        # per completed experiment (what the ones the full disk cut short wrote counts too: more, never less),
        # for every one resume runs: those that did not start and those that ran when the disk filled
        with self.lock:
            completed = self.completed
        left = self.pending.qsize() + self.pending.taken - completed
        needed = written // max(1, completed) * left
        try:  # the records (their database and its log) grow on this disk too when they share it
            records = self.recorder.room_on(_existing(folder), left)
        except MrunnerError:
            records = 0  # the records cannot even be read: the line still names the disk
        needed = max(ASK_AT_LEAST_BYTES, needed + records)
        counted = " and what its records grow by" if records else ""
        return (
            f"the disk of {folder} ({_disk(folder)}) is full: free at least {_megabytes(needed)} there "
            f"(what the rest of sweep {self.sweep.id} needs, going by what its experiments wrote so far{counted}), then "
            f"`mrunner resume {self.sweep.id}` runs what did not complete"
        )

    def _fail(self, reason: str, unstarted: Run | None = None) -> None:
        """Stop the sweep for ``reason``: nothing more starts; what runs ends as it ends, recorded by its worker."""
        with self.lock:
            new_failure = self.failure is None
            if new_failure:
                self.failure = reason
                # recorded before the runs it will not start end: a follower that sees every run ended sees why
                # (``leave_reason`` says it again at the supervisor's end, with the room kept for a full disk)
                with contextlib.suppress(MrunnerError, OSError):
                    self.recorder.stopped(reason)
            self.stopping.set()
            try:
                first = {unstarted.index: unstarted.attempt} if unstarted else {}
                self._cancel_waiting(first, f"not started: {reason}")
            except (MrunnerError, OSError):
                pass  # the records' own disk is full: `status` finds them never started (the supervisor's reason)

    def _cancel_waiting(self, first: dict[int, int], detail: str) -> None:
        """Record ``first`` (index -> attempt) and every run still waiting cancelled (under ``self.lock``), a
        chunk at a time: a million waiting runs are never all in memory."""
        cancelled = dict(first)
        while True:
            try:
                run = self.pending.get_nowait()
            except queue.Empty:
                break
            cancelled[run.index] = run.attempt
            if len(cancelled) >= RECORD_CHUNK:
                self.recorder([RunUpdate(i, CANCELLED, detail=detail, attempt=n) for i, n in cancelled.items()])
                cancelled = {}
        if cancelled:
            self.recorder([RunUpdate(i, CANCELLED, detail=detail, attempt=n) for i, n in cancelled.items()])

    def stop(self, reason: str, reporter: Reporter | None = None) -> None:
        """Cancel everything: waiting experiments never start, running ones get SIGTERM, then the grace
        period, then SIGKILL of their whole session."""
        with self.lock:
            self.stop_reason = reason
            self.stopping.set()
            children = dict(self.children)
            self._cancel_waiting({index: self.attempts[index] for index in children}, reason)
        pids = [child.pid for child in children.values()]
        if pids and reporter is not None:
            reporter.step(
                f"stopping {len(pids)} running experiment{'s' * (len(pids) != 1)}: SIGTERM, then SIGKILL after {self.grace:g} s"
            )
        terminate_attempts(pids, self.grace)


def _as_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def end_of(run: Run, exit_file: str, code: int, stopped: bool) -> RunUpdate:
    """How an attempt ended, from its exit-code file and its wrapper's exit status ``code``: the
    experiment's own exit code when the file has one, or when the wrapper exited 0 (only an experiment that
    exited 0 makes it do that: completed, even if its file could not be written or a stop came just after);
    else cancelled when it was stopped (by this supervisor, or by a signal to its wrapper, the pid `status`
    shows); else how its wrapper ended (it could not set up the attempt, or failed itself)."""
    # Every end names its attempt: recorded after `resume` started the next one, it must not end that one.
    real = contract.read_exit_code(exit_file)
    if real is None and code == 0:
        real = 0
    if real is not None:
        state = COMPLETED if real == 0 else FAILED
        return RunUpdate(run.index, state, exit_code=real, ended_by_itself=True, attempt=run.attempt)
    own = contract.read_stopped_code(exit_file)  # what its script did with the stop: a handler's code, -N
    if stopped:
        return RunUpdate(run.index, CANCELLED, exit_code=code if own is None else own, attempt=run.attempt)
    if code < 0:  # the wrapper itself was killed (its experiment died with it)
        detail = f"its pid was killed ({signal.Signals(-code).name})"
        return RunUpdate(run.index, CANCELLED, detail=detail, attempt=run.attempt)
    stopping = code - 128 in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL)
    if own is not None or stopping:  # passed on (then the kill): a cancel's, or a signal to its pid
        detail = "stopped by a signal to its pid"
        return RunUpdate(run.index, CANCELLED, exit_code=own, detail=detail, attempt=run.attempt)
    if code == SETUP_FAILED:
        detail = "cannot set up its folder (its log says why)"
        return RunUpdate(run.index, FAILED, exit_code=code, detail=detail, attempt=run.attempt)
    return RunUpdate(run.index, FAILED, exit_code=code, attempt=run.attempt)


# -- stopping ------------------------------------------------------------------------------------------------


def terminate_attempts(pids: Sequence[int], grace: float) -> None:
    """Stop the attempts whose wrappers are ``pids`` as a cancel does: SIGTERM to each wrapper (it passes it
    on to the experiment's group and kills the group after ``grace`` seconds), then, should anything of an
    attempt's session be left a little after that, SIGKILL to all of it; returns once they are gone."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace + WRAPPER_MARGIN_SECONDS
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _session_members(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        _stop_session(pid)


def _stop_session(sid: int) -> None:
    """SIGKILL every process of the session ``sid`` and wait until they are gone."""
    killed = time.monotonic() + KILLED_WITHIN_SECONDS  # SIGKILL is not instant: return once they are gone
    members = _session_members(sid)
    while members and time.monotonic() < killed:
        for pid in members:
            _kill(pid, signal.SIGKILL)
        time.sleep(0.02)
        members = _session_members(sid)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _session_members(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stream:
                    fields = stream.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                members.append(int(entry))
    return members


# -- a full disk ---------------------------------------------------------------------------------------------


def _existing(path: str) -> str:
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _disk_full(folder: str) -> bool:
    try:
        return shutil.disk_usage(_existing(folder)).free < FULL_BELOW_BYTES
    except OSError:
        return False


def _disk(folder: str) -> str:
    """``N MB free of M MB on MOUNT``."""
    where = _existing(folder)
    usage = shutil.disk_usage(where)
    mount = os.path.realpath(where)
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    return f"{_megabytes(usage.free)} free of {_megabytes(usage.total)} on {mount}"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _size_of(folder: Path) -> int:
    """What ``folder`` takes of its disk: the blocks of its files and folders, not their lengths (a file of a few
    bytes takes a whole block, a folder too: a sweep of many small files would ask for a fraction of its need)."""
    total = 0
    for root, _, files in os.walk(folder):
        for path in (root, *(os.path.join(root, name) for name in files)):
            try:
                total += os.lstat(path).st_blocks * 512  # st_blocks counts 512-byte units, whatever the disk's
            except OSError:
                continue
    return total


# -- from another shell --------------------------------------------------------------------------------------


def run_inline(
    sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], store_path: str, reporter: Reporter
) -> None:
    """Run the sweep in this process with a progress bar; Ctrl-C cancels what runs and what waits. A sweep
    stopped by a full disk raises the reason."""
    recorder = Recorder(store_path, sweep.id)
    identity = process.identity(os.getpid())
    with reporter.progress(len(runs), f"sweep {sweep.id}") as progress:
        supervisor = Supervisor(sweep, runs, secrets, recorder, lambda run: progress.advance())
        recorder.supervised_by(identity)
        sweep.detail["supervisor"] = identity
        try:
            supervisor.run()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP to mrunner (the command line turns them into it)
            supervisor.stop("cancelled (mrunner was interrupted)", reporter)
            supervisor.join()
            raise
    if supervisor.failure is not None:
        leave_reason(sweep, recorder, identity, supervisor.failure)
        raise MrunnerError(f"sweep {sweep.id} stopped: {supervisor.failure}")


def spawn_detached(sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], store_path: str) -> int:
    """Start a background supervisor for ``runs``; secrets reach it through its environment only."""
    log = sweep_dir(sweep) / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        _room(sweep).write_bytes(bytes(ROOM_BYTES))
    except OSError:  # no room even for that: the supervisor goes on without it
        with contextlib.suppress(OSError):
            _room(sweep).unlink(missing_ok=True)
    with open(log, "ab") as output:
        started = subprocess.Popen(
            [sys.executable, "-m", "mrunner_local.supervisor", store_path, sweep.id],
            env={**os.environ, **secrets},
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert started.stdin is not None
    with started.stdin:  # the runs' indices, read by main() before it starts anything
        # records' runs say their indices without being read again (a sweep's every run, decoded, for a number)
        indices = runs.indices if isinstance(runs, StoredRuns) else (run.index for run in runs)
        write_indices(indices, started.stdin)
    # Recorded here, not only by the child, so a `status` right after submission finds it alive.
    Recorder(store_path, sweep.id).supervised_by(process.identity(started.pid))
    sweep.detail["supervisor"] = process.identity(started.pid)
    return started.pid


def cancel(sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]) -> list[RunUpdate]:
    """Record the runs cancelled first (so the supervisor neither starts them nor calls them failed), then
    stop those that run; one that had ended by itself meanwhile keeps its end (its supervisor records it)."""
    detail = "cancelled by `mrunner cancel`"
    updates = [RunUpdate(run.index, CANCELLED, detail=detail, attempt=run.attempt) for run in runs]
    record(updates)
    # The pids as recorded now, not as ``runs`` were read: a run the supervisor recorded running in between
    # (after that read, before the cancel) runs with a pid that only the records know.
    # Only runs recorded with a pid started (a wrapper is recorded before it starts its experiment): the
    # others are neither signalled nor looked for an exit code, so a large sweep's cancel costs what ran.
    wanted = {run.index for run in runs}
    recorded = [run for run in Recorder(str(default_path()), sweep.id).handed() if run.index in wanted]
    pids = [pid for pid in map(_pid_of, recorded) if pid is not None]
    terminate_attempts(pids, float(sweep.context["grace_period"]))
    where = storage(sweep)
    ends = {run.index: end for run in recorded if (end := _own_end(where, sweep, run, detail)) is not None}
    return list(ends.values()) + [update for update in updates if update.index not in ends]


def _own_end(where: str, sweep: Sweep, run: Run, stopped: str | None = None) -> RunUpdate | None:
    """How the run's attempt ended by itself (its exit-code file), else, when ``stopped`` says it was stopped,
    cancelled with what its script did with the stop (``layout.STOPPED_NOTE``); None when neither is known."""
    exit_file = contract.of_run(where, sweep, run).exit_code_file()
    code = contract.read_exit_code(exit_file)
    if code is not None:
        state = COMPLETED if code == 0 else FAILED
        return RunUpdate(run.index, state, exit_code=code, ended_by_itself=True, attempt=run.attempt)
    own = contract.read_stopped_code(exit_file) if stopped else None
    if own is None:
        return None
    return RunUpdate(run.index, CANCELLED, exit_code=own, detail=stopped, attempt=run.attempt)


def _pid_of(run: Run) -> int | None:
    """The pid of a running experiment's wrapper, if it is still that process (``backend_ref`` is
    ``pid:PID@START``)."""
    ref = run.backend_ref or ""
    if not ref.startswith("pid:"):
        return None
    pid = int(ref[4:].split("@", 1)[0])
    return pid if process.identity(pid) == ref[4:] else None


#: Room a detached supervisor keeps in its sweep's folder (``supervisor.room``) for the line saying why it
#: stopped: on a disk that filled under both the records and the outputs, nothing else would take it.
ROOM_BYTES = 64 * 1024


def _room(sweep: Sweep) -> Path:
    return sweep_dir(sweep) / "supervisor.room"


def leave_reason(sweep: Sweep, recorder: Recorder, identity: str, reason: str) -> None:
    """Say why supervisor ``identity`` stopped the sweep early: in the records, and in the sweep's
    ``supervisor.log``, which is all there is when the records' disk is the full one (the room kept for it
    freed first, for both)."""
    with contextlib.suppress(OSError):
        _room(sweep).unlink(missing_ok=True)
    try:
        recorder.stopped(reason)
    except (MrunnerError, OSError):
        pass
    try:
        with open(sweep_dir(sweep) / "supervisor.log", "a", encoding="utf-8") as log:
            log.write(f"mrunner: supervisor {identity} stopped: {reason}\n")
    except OSError:
        pass


def stop_reason(sweep: Sweep) -> str | None:
    """Why the sweep's latest supervisor stopped early, as it recorded it or, when the records could not take
    it, as its line in ``supervisor.log`` says."""
    if sweep.detail.get("stopped"):
        return str(sweep.detail["stopped"])
    prefix = f"mrunner: supervisor {sweep.detail.get('supervisor')} stopped: "
    try:
        with open(sweep_dir(sweep) / "supervisor.log", "rb") as stream:
            stream.seek(max(0, stream.seek(0, os.SEEK_END) - 4096))
            lines = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    return next((line[len(prefix) :] for line in reversed(lines) if line.startswith(prefix)), None)


def reconcile(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    """States of a sweep whose supervisor is gone: finished experiments left their exit code behind, live
    ones keep running (their wrappers see them to their end), and the rest never started or were stopped
    with their supervisor: cancelled when it stopped for a reason it gave (a full disk), else lost (so
    `resume` runs them, and only them, again)."""
    reason = stop_reason(sweep)
    updates = []
    for run in runs:
        if run.state == RUNNING:
            end = _own_end(storage(sweep), sweep, run)
            if end is not None:
                updates.append(end)
                continue
            if _pid_of(run) is not None:
                continue
        if reason:
            detail = f"its supervisor stopped: {reason}"
            updates.append(RunUpdate(run.index, CANCELLED, detail=detail, attempt=run.attempt))
        else:
            updates.append(
                RunUpdate(
                    run.index,
                    LOST,
                    detail="its supervisor is gone (killed, or the machine restarted)",
                    attempt=run.attempt,
                )
            )
    return updates


def follow_log(sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
    """The attempt's output; with ``follow``, new output as it comes until the experiment ends."""
    layout = layout_of(sweep, run)
    path = layout.log_file()
    position = 0
    found = False
    while True:
        done = contract.read_exit_code(layout.exit_code_file()) is not None or ended()
        if os.path.exists(path):
            found = True
            with open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
                position += len(chunk)
            if chunk:
                yield chunk.decode(errors="replace")
        if done and not found:
            raise NoLog(f"experiment {run.ref} has no log of attempt {run.attempt}")
        if not follow or done:
            return
        time.sleep(0.2)


def main(argv: Sequence[str]) -> int:
    """The detached supervisor: ``python -m mrunner_local.supervisor RECORDS SWEEP`` with the indices of its
    runs on standard input (``pending.write_indices``)."""
    start_server()  # its start goes on while the records are read
    recorder = Recorder(argv[0], argv[1])
    sweep = recorder.sweep()
    runs = recorder.runs(read_indices(sys.stdin.buffer))
    # secrets are in this process's environment already
    supervisor = Supervisor(sweep, runs, {}, recorder)
    recorder.supervised_by(process.identity(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop("cancelled (supervisor terminated)"))
    signal.signal(signal.SIGHUP, lambda *_: supervisor.stop("cancelled (supervisor hung up)"))
    try:
        supervisor.run()
    except KeyboardInterrupt:
        supervisor.stop("cancelled (supervisor interrupted)")
    if supervisor.failure is None:
        with contextlib.suppress(OSError):
            _room(sweep).unlink(missing_ok=True)
        return 0
    leave_reason(sweep, recorder, process.identity(os.getpid()), supervisor.failure)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Running a sweep's experiments on this machine: at most ``max_parallel`` at once, GPUs handed out one
set per experiment, each attempt laid out as ``mrunner.layout`` says, every state change recorded through
the core as it happens.

The supervisor runs inside `mrunner` (with a progress bar; Ctrl-C cancels) or, with ``--detach``, as a
background process of its own (``python -m mrunner_local.supervisor RECORDS SWEEP INDEX...``) that records
into the records database the sweep was submitted to.

Stopping is exact: a cancel is recorded before the signal (so a waiting experiment never starts), each
running experiment's process group gets SIGTERM and ``grace_period`` seconds, then SIGKILL; and an experiment
that had ended before the signal keeps its real end, which its exit-code file proves.
"""

from __future__ import annotations

import json
import os
import queue
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
from mrunner import process
from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, RUNNING, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store

Record = Callable[[Sequence[RunUpdate]], None]
#: How long a killed process group may take to be gone: the kernel delivers SIGKILL when it next runs it.
KILLED_WITHIN_SECONDS = 10.0
# The experiment runs under a tiny shell that writes its exit code to the attempt's exit-code file. If
# mrunner itself is killed, the experiment still finishes (it leads its own session), and `status` learns
# how it ended from this file instead of calling it lost and letting `resume` run it twice. The shell shares
# the experiment's process group, so a stop reaches it too: while the experiment runs, a stopping signal only
# marks the attempt stopped (the trap runs once the experiment is gone; the experiment itself gets the default
# disposition back at exec), and a stopped attempt writes no file. Once the experiment has ended the signals are
# ignored, so an end that came just before a stop is still written (a killed shell used to lose it).
_RECORD_EXIT = (
    'file=$1; shift; stopped=; trap "stopped=1" TERM INT HUP; code=0; "$@" || code=$?; trap "" TERM INT HUP; '
    'if [ -z "$stopped" ]; then printf "%s\\n" "$code" > "$file.tmp" && mv -f "$file.tmp" "$file"; fi; exit "$code"'
)


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


class Supervisor:
    def __init__(
        self,
        sweep: Sweep,
        runs: Sequence[Run],
        secrets: Mapping[str, str],
        record: Record,
        state_of: Callable[[int], str],
        on_end: Callable[[Run], None] | None = None,
    ) -> None:
        self.sweep = sweep
        self.lock = threading.Lock()
        self._record = record
        self.state_of = state_of
        self.secrets = dict(secrets)
        self.on_end = on_end
        self.pending: queue.Queue[Run] = queue.Queue()
        for run in runs:
            self.pending.put(run)
        self.gpus: queue.Queue[list[str]] = queue.Queue()
        gpus = [str(g) for g in sweep.context["gpus"]]
        per = max(1, int(sweep.context["gpus_per_experiment"]))
        for start in range(0, len(gpus) - per + 1, per):
            self.gpus.put(gpus[start : start + per])
        self.slots = min(parallelism(sweep.context), max(1, len(runs)))
        self.children: dict[int, subprocess.Popen] = {}
        self.workers: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.base_env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}
        self.entries = list(sweep.package.get("entries") or [])
        self.code_dir = sweep.package["code_dir"]

    def record(self, update: RunUpdate) -> None:
        with self.lock:
            self._record([update])

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
        while not self.stopping.is_set():
            try:
                run = self.pending.get_nowait()
            except queue.Empty:
                return
            gpus = self.gpus.get() if self.sweep.context.get("gpus") else None
            try:
                self._run_one(run, gpus, int(self.sweep.context["retry_failed"]))
            finally:
                if gpus is not None:
                    self.gpus.put(gpus)

    def _run_one(self, run: Run, gpus: list[str] | None, retries: int) -> None:
        """Run the run's attempt; one that fails by itself is started again as the next attempt (same
        checkpoint folder, a log of its own) while ``retries`` (``retry_failed``) allow."""
        layout = layout_of(self.sweep, run)
        exit_file = layout.exit_code_file()
        try:
            contract.prepare(layout, self.code_dir, self.entries, json.dumps(run.config_document(self.sweep)))
        except OSError as error:
            self.record(RunUpdate(run.index, FAILED, exit_code=97, detail=f"cannot set up its folder: {error}"))
            self._ended(run)
            return
        env = {**self.base_env, **run.env, **self.secrets, **layout.environment()}
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        cwd = contract.working_directory(layout, self.sweep.workdir)
        with open(layout.log_file(), "wb") as output:
            with self.lock:  # a stop either sees this child or keeps it from starting: never neither
                if self.stopping.is_set() or self.state_of(run.index) != SUBMITTED:
                    return  # cancelled (or taken over) while it waited
                child: subprocess.Popen[bytes] | None
                try:
                    child = subprocess.Popen(
                        ["/bin/sh", "-c", _RECORD_EXIT, "mrunner-experiment", exit_file, *run.command],
                        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                except OSError as error:
                    output.write(f"mrunner: cannot start {run.command[0]}: {error}\n".encode())
                    self._record(
                        [RunUpdate(run.index, FAILED, exit_code=127, detail=f"cannot start: {error.strerror}")]
                    )
                    child = None
                else:
                    self.children[run.index] = child
                    self._record([RunUpdate(run.index, RUNNING, backend_ref=f"pid:{process.identity(child.pid)}")])
            if child is None:
                self._ended(run)
                return
            code = child.wait()
        with self.lock:
            self.children.pop(run.index, None)
        end = end_of(run, exit_file, code, stopped=self.stopping.is_set())
        following = self._retry(run, end) if retries > 0 else None
        if following is not None:
            self._run_one(following, gpus, retries - 1)
            return
        self.record(end)
        self._ended(run)

    def _retry(self, run: Run, end: RunUpdate) -> Run | None:
        """The next attempt of a run whose script failed by itself, recorded as submitted; None when the
        run was cancelled or the sweep is stopping meanwhile (then the failure is its end)."""
        if end.state != FAILED or not end.ended_by_itself or end.exit_code is None:
            return None
        with self.lock:
            if self.stopping.is_set() or self.state_of(run.index) != RUNNING:
                return None
            number = run.attempt + 1
            self._record(
                [
                    RunUpdate(
                        run.index, SUBMITTED, detail=f"attempt {run.attempt} failed (exit {end.exit_code})",
                        attempt=number, ends={run.attempt: FAILED}, end_codes={run.attempt: end.exit_code},
                    )
                ]
            )  # fmt: skip
        return replace(run, attempt=number, state=SUBMITTED, exit_code=None)

    def _ended(self, run: Run) -> None:
        if self.on_end:
            self.on_end(run)

    def stop(self, reason: str, reporter: Reporter | None = None) -> None:
        """Cancel everything: waiting experiments never start, running ones get SIGTERM, then the grace
        period, then SIGKILL of their whole process group."""
        with self.lock:
            self.stopping.set()
            children = dict(self.children)
            waiting = []
            while True:
                try:
                    waiting.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            self._record(
                [RunUpdate(index, CANCELLED, detail=reason) for index in [*children, *(r.index for r in waiting)]]
            )
        pids = [child.pid for child in children.values()]
        grace = float(self.sweep.context["grace_period"])
        if pids and reporter is not None:
            reporter.step(
                f"stopping {len(pids)} running experiment{'s' * (len(pids) != 1)}: SIGTERM, then SIGKILL after {grace:g} s"
            )
        terminate_groups(pids, grace)


def end_of(run: Run, exit_file: str, code: int, stopped: bool) -> RunUpdate:
    """How an attempt ended: its own exit code when its exit-code file has one (it ended by itself, even if
    a stop came just after), else cancelled when it was stopped, else what its shell returned."""
    real = contract.read_exit_code(exit_file)
    if real is not None:
        return RunUpdate(run.index, COMPLETED if real == 0 else FAILED, exit_code=real, ended_by_itself=True)
    if stopped:
        return RunUpdate(run.index, CANCELLED, exit_code=code)
    detail = f"signal {-code}" if code < 0 else None
    return RunUpdate(run.index, COMPLETED if code == 0 else FAILED, exit_code=code, detail=detail)


def terminate_groups(pids: Sequence[int], grace: float) -> None:
    """SIGTERM each process group, wait up to ``grace`` seconds for them to be gone, SIGKILL what is left and
    wait until it is gone too."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _group_alive(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        _kill(pid, signal.SIGKILL)
    killed = time.monotonic() + KILLED_WITHIN_SECONDS  # SIGKILL is not instant: return once they are gone
    while alive and time.monotonic() < killed:
        alive = [pid for pid in alive if _group_alive(pid)]
        if alive:
            time.sleep(0.02)


def _kill(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: this reaches its children too
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a group whose only member is an unreaped leader has ended
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z" or _other_members(pid)
    except OSError:
        return _other_members(pid)


def _other_members(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pgid:
            try:
                with open(f"/proc/{entry}/stat") as stream:
                    if int(stream.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        return True
            except (OSError, ValueError, IndexError):
                continue
    return False


def run_inline(
    sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], record: Record, store_path: str, reporter: Reporter
) -> None:
    """Run the sweep in this process with a progress bar; Ctrl-C cancels what runs and what waits."""
    store = Store(Path(store_path))
    with reporter.progress(len(runs), f"sweep {sweep.id}") as progress:
        supervisor = Supervisor(
            sweep, runs, secrets, record, lambda index: store.run(sweep.id, index).state, lambda run: progress.advance()
        )
        _claim(sweep, store)
        try:
            supervisor.run()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP to mrunner (the command line turns them into it)
            supervisor.stop("cancelled (mrunner was interrupted)", reporter)
            supervisor.join()
            raise


def _claim(sweep: Sweep, store: Store) -> None:
    """Say in the records that this process supervises the sweep."""
    sweep.detail["supervisor"] = process.identity(os.getpid())
    store.update_sweep(sweep)


def spawn_detached(sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], store_path: str) -> int:
    """Start a background supervisor for ``runs``; secrets reach it through its environment only."""
    log = sweep_dir(sweep) / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        started = subprocess.Popen(
            [sys.executable, "-m", "mrunner_local.supervisor", store_path, sweep.id, *(str(run.index) for run in runs)],
            env={**os.environ, **secrets}, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    # Recorded here, not only by the child, so a `status` right after submission finds it alive.
    sweep.detail["supervisor"] = process.identity(started.pid)
    Store(Path(store_path)).update_sweep(sweep)
    return started.pid


def cancel(sweep: Sweep, runs: Sequence[Run], record: Record) -> list[RunUpdate]:
    """Record the runs cancelled first (so the supervisor neither starts them nor calls them failed), then
    stop those that run; one that had ended by itself meanwhile keeps its end (its supervisor records it)."""
    updates = [RunUpdate(run.index, CANCELLED, detail="cancelled by `mrunner cancel`") for run in runs]
    record(updates)
    pids = [pid for pid in map(_pid_of, runs) if pid is not None]
    terminate_groups(pids, float(sweep.context["grace_period"]))
    ends = [_own_end(sweep, run) for run in runs]
    return [end for end in ends if end is not None] + [u for u, e in zip(updates, ends) if e is None]


def _own_end(sweep: Sweep, run: Run) -> RunUpdate | None:
    code = contract.read_exit_code(layout_of(sweep, run).exit_code_file())
    if code is None:
        return None
    return RunUpdate(run.index, COMPLETED if code == 0 else FAILED, exit_code=code, ended_by_itself=True)


def _pid_of(run: Run) -> int | None:
    """The pid of a running experiment, if it is still that process (``backend_ref`` is ``pid:PID@START``)."""
    ref = run.backend_ref or ""
    if not ref.startswith("pid:"):
        return None
    pid = int(ref[4:].split("@", 1)[0])
    return pid if process.identity(pid) == ref[4:] else None


def reconcile(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    """States of a sweep whose supervisor is gone: finished experiments left their exit code behind, live
    ones keep running, and the rest are lost (so `resume` runs them, and only them, again)."""
    updates = []
    for run in runs:
        if run.state == RUNNING:
            end = _own_end(sweep, run)
            if end is not None:
                updates.append(end)
                continue
            if _pid_of(run) is not None:
                continue
        updates.append(RunUpdate(run.index, LOST, detail="its supervisor is gone (killed, or the machine restarted)"))
    return updates


def follow_log(sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
    """The attempt's output; with ``follow``, new output as it comes until the experiment ends."""
    layout = layout_of(sweep, run)
    path = layout.log_file()
    position = 0
    while True:
        done = contract.read_exit_code(layout.exit_code_file()) is not None or ended()
        if os.path.exists(path):
            with open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
                position += len(chunk)
            if chunk:
                yield chunk.decode(errors="replace")
        if not follow or done:
            return
        time.sleep(0.2)


def main(argv: Sequence[str]) -> int:
    """The detached supervisor: ``python -m mrunner_local.supervisor RECORDS SWEEP INDEX...``."""
    store = Store(Path(argv[0]))
    sweep = store.sweep(argv[1])
    runs = [store.run(sweep.id, int(index)) for index in argv[2:]]

    def record(updates: Sequence[RunUpdate]) -> None:
        store.apply(sweep.id, updates)

    # secrets are in this process's environment already
    supervisor = Supervisor(sweep, runs, {}, record, lambda index: store.run(sweep.id, index).state)
    _claim(sweep, store)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop("cancelled (supervisor terminated)"))
    signal.signal(signal.SIGHUP, lambda *_: supervisor.stop("cancelled (supervisor hung up)"))
    try:
        supervisor.run()
    except KeyboardInterrupt:
        supervisor.stop("cancelled (supervisor interrupted)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Running a sweep's experiments on this machine: at most ``max_parallel`` at once, GPUs handed out one
set per experiment, output to a log per experiment, every state change recorded as it happens.

The supervisor runs inside `mrunner` (with a progress bar; Ctrl-C cancels) or, with ``--detach``, as a
background process of its own (``python -m mrunner_local.supervisor``) that `status`, `logs` and `cancel`
find through the records.
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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, RUNNING, SUBMITTED, TERMINAL, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store

KILL_GRACE_SECONDS = 5.0
EXIT_CODE_FILE = ".exit_code"
# The experiment runs under a tiny shell that writes its exit code next to its output. If mrunner itself is
# killed, the experiment still finishes (it leads its own session), and `status` learns how it ended from
# this file instead of calling it lost and letting `resume` run it twice.
_RECORD_EXIT = (
    'code=0; "$@" || code=$?; printf "%s\\n" "$code" > "$MRUNNER_EXPERIMENT_DIR/' + EXIT_CODE_FILE + '"; exit "$code"'
)


def parallelism(context: Mapping[str, Any]) -> int:
    gpus = context.get("gpus") or []
    if context.get("max_parallel"):
        return max(1, int(context["max_parallel"]))
    if gpus:
        return max(1, len(gpus) // max(1, int(context.get("gpus_per_experiment") or 1)))
    return os.cpu_count() or 1


def sweep_dir(sweep: Sweep) -> Path:
    return Path(sweep.context["storage_dir"]).expanduser() / sweep.project / sweep.id


def experiment_dir(sweep: Sweep, run: Run) -> Path:
    return sweep_dir(sweep) / f"{run.index}-{run.name}"


def log_path(sweep: Sweep, run: Run) -> Path:
    return experiment_dir(sweep, run) / "output.log"


# -- which process supervises a sweep ------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time (from /proc), so a reused pid is not mistaken for the supervisor."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _identity(pid: int) -> str:
    return f"{pid}@{_start_time(pid)}"


def supervisor_alive(sweep: Sweep) -> bool:
    """Whether the supervisor recorded for the sweep (``sweep.detail["supervisor"]``) still runs."""
    recorded = Store().sweep(sweep.id).detail.get("supervisor")
    if not recorded:
        return False
    pid = int(recorded.split("@", 1)[0])
    return _identity(pid) == recorded


# -- running -------------------------------------------------------------------------------------------------


class Supervisor:
    def __init__(self, sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], on_end=None) -> None:
        self.sweep = sweep
        self.store = Store()
        self.lock = threading.Lock()
        self.secrets = dict(secrets)
        self.on_end = on_end
        self.pending: queue.Queue[Run] = queue.Queue()
        for run in runs:
            self.pending.put(run)
        self.gpus: queue.Queue[list[str]] = queue.Queue()
        gpus = [str(g) for g in sweep.context.get("gpus") or []]
        per = max(1, int(sweep.context.get("gpus_per_experiment") or 1))
        for start in range(0, len(gpus) - per + 1, per):
            self.gpus.put(gpus[start : start + per])
        self.slots = min(parallelism(sweep.context), max(1, len(runs)))
        self.children: dict[int, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.base_env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1")}

    def record(self, update: RunUpdate) -> None:
        with self.lock:
            self.store.apply(self.sweep.id, [update])

    def claim(self) -> None:
        """Say in the records that this process supervises the sweep."""
        with self.lock:
            self.sweep.detail["supervisor"] = _identity(os.getpid())
            self.store.update_sweep(self.sweep)

    def run(self) -> None:
        """Run every pending experiment; returns when all have ended (or ``stop`` was called)."""
        workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.slots)]
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)  # short joins keep the main thread responsive to Ctrl-C and signals

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                run = self.pending.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                current = self.store.run(self.sweep.id, run.index).state
            if current != SUBMITTED:
                continue  # cancelled (or taken over) while it waited
            gpus = self.gpus.get() if self.sweep.context.get("gpus") else None
            try:
                self._run_one(run, gpus)
            finally:
                if gpus is not None:
                    self.gpus.put(gpus)

    def _run_one(self, run: Run, gpus: list[str] | None) -> None:
        folder = experiment_dir(self.sweep, run)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "output.log"
        if run.attempt and log.exists():
            log.rename(folder / f"output.log.{run.attempt - 1}")
        (folder / EXIT_CODE_FILE).unlink(missing_ok=True)
        config_file = folder / "mrunner_config.yaml"
        config_file.write_text(json.dumps(run.config_document(self.sweep), indent=1))  # JSON is YAML too
        env = {
            **self.base_env, **run.env, **self.secrets,
            "MRUNNER_CONFIG": str(config_file), "MRUNNER_EXPERIMENT_DIR": str(folder),
            "STORAGE_DIR": str(Path(self.sweep.context["storage_dir"]).expanduser()),
        }  # fmt: skip
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        cwd = Path(self.sweep.package["code_dir"]) / self.sweep.workdir
        with open(log, "wb") as output:
            try:
                child = subprocess.Popen(
                    ["/bin/sh", "-c", _RECORD_EXIT, "mrunner-experiment", *run.command], cwd=cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            except OSError as error:
                output.write(f"mrunner: cannot start {run.command[0]}: {error}\n".encode())
                self.record(RunUpdate(run.index, FAILED, exit_code=127, detail=f"cannot start: {error.strerror}"))
                self._ended(run)
                return
            with self.lock:
                self.children[run.index] = child
            self.record(RunUpdate(run.index, RUNNING, backend_ref=f"pid:{_identity(child.pid)}"))
            code = child.wait()
        with self.lock:
            self.children.pop(run.index, None)
        state = COMPLETED if code == 0 else CANCELLED if self.stopping.is_set() else FAILED
        self.record(RunUpdate(run.index, state, exit_code=code, detail=None if code >= 0 else f"signal {-code}"))
        self._ended(run)

    def _ended(self, run: Run) -> None:
        if self.on_end:
            self.on_end(run)

    def stop(self, reason: str) -> None:
        """Cancel everything: running children are terminated, waiting experiments never start."""
        self.stopping.set()
        with self.lock:
            children = list(self.children.items())
        for index, child in children:
            self.record(RunUpdate(index, CANCELLED, detail=reason))
            _kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        for _, child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(child.pid, signal.SIGKILL)
        while True:
            try:
                run = self.pending.get_nowait()
            except queue.Empty:
                break
            self.record(RunUpdate(run.index, CANCELLED, detail=reason))


def _kill(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: this reaches its children too
    except (ProcessLookupError, PermissionError):
        pass


def run_inline(sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str], reporter: Reporter) -> None:
    """Run the sweep in this process with a progress bar; Ctrl-C cancels what runs and what waits."""
    with reporter.progress(len(runs), f"sweep {sweep.id}") as progress:
        supervisor = Supervisor(sweep, runs, secrets, on_end=lambda run: progress.advance())
        supervisor.claim()
        try:
            supervisor.run()
        except KeyboardInterrupt:
            supervisor.stop("cancelled by Ctrl-C")
            raise


def spawn_detached(sweep: Sweep, runs: Sequence[Run], secrets: Mapping[str, str]) -> int:
    """Start a background supervisor for ``runs``; secrets reach it through its environment only."""
    log = sweep_dir(sweep) / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mrunner_local.supervisor", sweep.id, *(str(run.index) for run in runs)],
            env={**os.environ, **secrets}, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    # Recorded here, not only by the child, so a `status` right after submission finds it alive.
    sweep.detail["supervisor"] = _identity(process.pid)
    Store().update_sweep(sweep)
    return process.pid


def cancel(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    """Record the runs cancelled first (so the supervisor neither starts them nor calls them failed),
    then terminate those that run."""
    store = Store()
    updates = [RunUpdate(run.index, CANCELLED, detail="cancelled by `mrunner cancel`") for run in runs]
    store.apply(sweep.id, updates)
    pids = [pid for pid in map(_pid_of, runs) if pid is not None]
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _group_alive(pid)]
        time.sleep(0.05)
    for pid in pids:
        _kill(pid, signal.SIGKILL)
    return updates


def _pid_of(run: Run) -> int | None:
    """The pid of a running experiment, if it is still that process (``backend_ref`` is ``pid:PID@START``)."""
    ref = run.backend_ref or ""
    if not ref.startswith("pid:"):
        return None
    pid = int(ref[4:].split("@", 1)[0])
    return pid if _identity(pid) == ref[4:] else None


def reconcile(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    """States of a sweep whose supervisor is gone: finished experiments left their exit code behind, live
    ones keep running, and the rest are lost (so `resume` runs them, and only them, again)."""
    updates = []
    for run in runs:
        exit_file = experiment_dir(sweep, run) / EXIT_CODE_FILE
        if run.state == RUNNING and exit_file.exists():
            text = exit_file.read_text().strip()
            if text.lstrip("-").isdigit():
                code = int(text)
                updates.append(RunUpdate(run.index, COMPLETED if code == 0 else FAILED, exit_code=code))
                continue
        if run.state == RUNNING and _pid_of(run) is not None:
            continue
        updates.append(RunUpdate(run.index, LOST, detail="its supervisor is gone (killed, or the machine restarted)"))
    return updates


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def follow_log(sweep: Sweep, run: Run, follow: bool) -> Iterator[str]:
    """The experiment's output; with ``follow``, new output as it comes until the experiment ends."""
    path = log_path(sweep, run)
    store = Store()
    position = 0
    while True:
        ended = store.run(sweep.id, run.index).state in TERMINAL
        if path.exists():
            with open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
                position += len(chunk)
            if chunk:
                yield chunk.decode(errors="replace")
        if not follow or ended:
            return
        time.sleep(0.2)


def main(argv: Sequence[str]) -> int:
    """The detached supervisor: ``python -m mrunner_local.supervisor SWEEP INDEX...``."""
    store = Store()
    sweep = store.sweep(argv[0])
    runs = [store.run(sweep.id, int(index)) for index in argv[1:]]
    supervisor = Supervisor(sweep, runs, {})  # secrets are in this process's environment already
    supervisor.claim()
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop("cancelled (supervisor terminated)"))
    try:
        supervisor.run()
    except KeyboardInterrupt:
        supervisor.stop("cancelled (supervisor interrupted)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

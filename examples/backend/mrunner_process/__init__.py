"""An example third-party backend, complete in one file: each experiment runs as a background process of this
machine, started by mrunner's own attempt wrapper (``python -m mrunner.attempt``), which lays it out as
``mrunner.layout`` says, passes signals on, writes its exit code and, within ``retry_failed``, runs a failed
experiment again as its next attempt. Context keys: ``storage_dir``.

A backend is one ``mrunner.Backend`` subclass, registered by the hook ``mrunner_register_backends``; the
core calls its methods only for sweeps and contexts of backend ``process`` and records what they return.
docs/write-a-backend.md walks through it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mrunner import Backend, hookimpl, interrupts, layout, states, transfer
from mrunner.attempt import command_line, retried
from mrunner.backend import Pulled
from mrunner.records import CANCELLED, COMPLETED, FAILED, LOST, RUNNING, RunUpdate
from mrunner.schema import key


@dataclass(frozen=True, kw_only=True)
class ProcessKeys:
    """The context keys this backend adds to the core's (``grace_period``, ``retry_failed``, ...)."""

    storage_dir: str = key(option="STORAGE_DIR", help="where the experiments' folders go")
    # experiments run on this machine: with the interpreter mrunner (and so this backend) is installed in, as the
    # local backend does, not whichever `python3` PATH has (the core's default), which may lack the experiment's
    # packages (`venv/bin/python -m pytest`, a cron job: the virtualenv is not on PATH)
    python: str = key(
        factory=lambda: sys.executable, shown="the interpreter running mrunner", help="interpreter for .py scripts"
    )


class ProcessBackend(Backend):
    name = "process"
    description = "each experiment as a background process of this machine"
    keys = ProcessKeys

    def package(self, sweep, snapshot, reporter):
        return {"code_dir": str(snapshot.folder()), "entries": layout.working_entries(snapshot.files, sweep.workdir)}

    def submit(self, sweep, runs, secrets, options, record, reporter):
        for run in runs:
            where = _layout(sweep, run)
            os.makedirs(os.path.dirname(where.log_file()), exist_ok=True)
            document = json.dumps(run.config_document(sweep))
            env = {**os.environ, **run.env, **secrets, **where.environment(), "MRUNNER_CONFIG_DOCUMENT": document}
            command = command_line(
                sys.executable,
                sweep.package["code_dir"],
                run.command,
                workdir=sweep.workdir,
                entries=sweep.package["entries"],
                grace=sweep.context["grace_period"],
                retries_left=sweep.context["retry_failed"],
            )
            # a started process is recorded before a Ctrl-C stops the hand-over: one that landed between the
            # two would leave a running experiment recorded as never submitted, and `resume` would run it again
            with interrupts.held(), open(where.log_file(), "wb") as log:
                child = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                )
                record([RunUpdate(run.index, RUNNING, backend_ref=str(child.pid))])

    def status(self, sweep, runs, ended):
        # An ended experiment never starts again by itself: `ended` is not needed here.
        return [end for end in (_end(sweep, run) for run in runs) if end is not None]

    def cancel(self, sweep, runs, record):
        record([RunUpdate(run.index, CANCELLED, detail="cancelled by `mrunner cancel`") for run in runs])
        for run in runs:
            try:
                os.kill(int(run.backend_ref), signal.SIGTERM)  # the wrapper passes it on and kills after the grace
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + float(sweep.context["grace_period"]) + 5
        while any(_alive(int(run.backend_ref)) for run in runs) and time.monotonic() < deadline:
            time.sleep(0.1)
        updates = []
        for run in runs:
            end = _end(sweep, run)
            if end is None or end.state not in (COMPLETED, FAILED):  # stopped: cancelled, at the attempt it ran
                end = RunUpdate(run.index, CANCELLED) if end is None else replace(end, state=CANCELLED, detail=None)
            updates.append(end)
        return updates

    def logs(self, sweep, run, follow, ended):
        path, position = _layout(sweep, run).log_file(), 0
        while True:
            done = ended()
            with open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
            position += len(chunk)
            if chunk:
                yield chunk.decode(errors="replace")
            if not follow or done:
                return
            time.sleep(0.2)

    def pull(self, sweep, runs, destination, include, reporter):
        folders = {_layout(sweep, run).folder_name: _layout(sweep, run).experiment_dir for run in runs}
        return Pulled(*transfer.copy_folders(folders, str(destination), include))

    def output_dirs(self, sweep, runs):
        return {run.index: _layout(sweep, run).experiment_dir for run in runs}


@hookimpl
def mrunner_register_backends(register):
    register(ProcessBackend())


def _layout(sweep, run):
    return layout.of_run(sweep.context["storage_dir"], sweep, run)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _end(sweep, run):
    where, failed = _layout(sweep, run), {}
    while retried(where):  # the wrapper ran the next attempt (retry_failed)
        failed[where.attempt] = layout.read_exit_code(where.exit_code_file())
        where = replace(where, attempt=where.attempt + 1)
    later = {"attempt": where.attempt, "ends": dict.fromkeys(failed, FAILED), "end_codes": failed} if failed else {}
    code = layout.read_exit_code(where.exit_code_file())
    if code is not None:
        return RunUpdate(run.index, states.ended(code), exit_code=code, ended_by_itself=True, **later)
    if not _alive(int(run.backend_ref)):
        return RunUpdate(run.index, LOST, detail="its process ended without an exit code", **later)
    return RunUpdate(run.index, RUNNING, **later) if failed else None

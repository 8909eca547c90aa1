"""Following submitted experiments: state (one helper call per sweep), cancel (one scancel), logs (SFTP)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator, Sequence

from mrunner.errors import BackendError
from mrunner.records import CANCELLED, TERMINAL, Run, RunUpdate, Sweep
from mrunner_slurm import batch, remote
from mrunner_slurm.ssh import Connection

FOLLOW_INTERVAL = 1.0  # seconds between reads of a followed log
STATE_INTERVAL = 3.0  # seconds between state checks while following


def status(connection: Connection, sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    tasks = [[run.index, run.attempt, run.backend_ref] for run in runs if run.backend_ref]
    if not tasks:
        return []
    document = {"tasks": tasks, "status_dir": f"{sweep.detail['sweep_dir']}/status"}
    answer = remote.call(connection, ["status"], remote.pack(document))
    by_index = {run.index: run for run in runs}
    updates = []
    for index, (state, code, detail) in answer.items():
        run = by_index[int(index)]
        if (state, code) != (run.state, run.exit_code):
            updates.append(RunUpdate(int(index), state, exit_code=code, detail=detail))
    return updates


def task_specs(runs: Sequence[Run]) -> list[str]:
    """scancel's names for exactly these array tasks, grouped per job: ``JOB_[1,3-7]``."""
    by_job: dict[str, list[int]] = {}
    for run in runs:
        if run.backend_ref:
            job, _, task = run.backend_ref.partition("_")
            by_job.setdefault(job, []).append(int(task))
    return [f"{job}_[{batch.array_spec(sorted(tasks), None)}]" for job, tasks in by_job.items()]


def cancel(connection: Connection, sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    specs = task_specs(runs)
    if specs:
        result = connection.run(shlex.join(["scancel", *specs]))
        if result.code:
            raise BackendError(f"scancel on {connection.target.alias} failed: {result.error}")
    return [RunUpdate(run.index, CANCELLED, detail="cancelled by `mrunner cancel` (scancel)") for run in runs]


def logs(connection: Connection, sweep: Sweep, run: Run, follow: bool) -> Iterator[str]:
    """The experiment's output log; with ``follow``, new output until Slurm says the experiment ended."""
    path = batch.log_path(sweep.detail["sweep_dir"], run)
    sftp = connection.sftp()
    position = 0
    checked = 0.0
    ended = run.state in TERMINAL
    while True:
        try:
            with sftp.open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
        except FileNotFoundError:
            chunk = b""
            if not follow:
                raise BackendError(
                    f"experiment {run.ref} has no output yet ({path} does not exist on the cluster)"
                ) from None
        position += len(chunk)
        if chunk:
            yield chunk.decode(errors="replace")
        if not follow or ended:
            return
        if time.monotonic() - checked >= STATE_INTERVAL:
            checked = time.monotonic()
            updates = status(connection, sweep, [run])
            state = updates[-1].state if updates else run.state
            ended = state in TERMINAL  # one more read after the end catches the last output
            continue
        time.sleep(FOLLOW_INTERVAL)

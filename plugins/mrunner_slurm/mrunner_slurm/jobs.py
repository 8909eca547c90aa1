"""Following submitted experiments: state (one helper call per sweep), cancel (one helper call), logs (SFTP)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mrunner.errors import BackendError
from mrunner.layout import Layout, of_run
from mrunner.records import CANCELLED, COMPLETED, FAILED, PENDING, TERMINAL, Run, RunUpdate, Sweep
from mrunner_slurm import batch, remote
from mrunner_slurm.ssh import Connection

FOLLOW_INTERVAL = 1.0  # seconds between reads of a followed log
STATE_INTERVAL = 3.0  # seconds between state checks while following


def _layout(sweep: Sweep, run: Run) -> Layout:
    return of_run(sweep.package["storage_dir"], sweep, run)


def _task(sweep: Sweep, run: Run) -> list:
    """What the helper needs of a task: its index, its array task and its attempt's exit-code file."""
    return [run.index, run.backend_ref, _layout(sweep, run).exit_code_file()]


def status(connection: Connection, sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate]:
    limit = int(sweep.context.get("max_requeue", 3))
    tasks = []
    for run in runs:
        if run.backend_ref:
            where = _layout(sweep, run)
            logs = batch.attempt_prefix(where.log_file(0), ".log")
            tasks.append(
                [
                    run.index,
                    run.backend_ref,
                    run.attempt,
                    batch.attempt_prefix(where.exit_code_file(0), ""),
                    logs,
                    limit,
                ]
            )
    if not tasks:
        return []
    answer = remote.call(connection, ["status"], remote.pack({"tasks": tasks}))
    by_index = {run.index: run for run in runs}
    updates = []
    for index, (state, code, detail, own, attempt, ends) in answer.items():
        run = by_index[int(index)]
        if state == PENDING and detail:
            detail = pending_reason(detail)  # reported even when still pending: the records keep the latest
        if attempt > run.attempt:  # Slurm requeued it: the next attempt of the same array task
            ended = {int(number): end for number, end in ends.items()}
            updates.append(RunUpdate(int(index), state, exit_code=code, detail=detail, ended_by_itself=own,
                                     attempt=attempt, ends=ended))  # fmt: skip
        elif (state, code) != (run.state, run.exit_code) or (state == PENDING and detail):
            updates.append(RunUpdate(int(index), state, exit_code=code, detail=detail, ended_by_itself=own))
    return updates


# Reasons of a pending job that no waiting cures: the request exceeds a limit of the partition, QOS or
# association itself (Slurm keeps such a job queued unless EnforcePartLimits refuses it at sbatch).
_NEVER = {
    "PartitionNodeLimit": "more nodes than the partition has or allows",
    "PartitionTimeLimit": "a time limit above the partition's",
    "PartitionConfig": "more CPUs or memory than the partition has, or a partition it cannot use",
    "BadConstraints": "constraints or resources that no node offers",
    "InvalidQOS": "a QOS the account cannot use",
    "InvalidAccount": "an account the user cannot use",
}


def pending_reason(reason: str) -> str:
    """Slurm's reason, saying so when the request can never run as asked and what to change."""
    asked = _NEVER.get(reason) or ("a job larger than a per-job limit" if "PerJob" in reason else None)
    if asked is None:
        return reason
    return f"{reason}: can never run as asked ({asked}); cancel it and submit with a smaller request"


def task_specs(runs: Sequence[Run]) -> list[str]:
    """scancel's names for exactly these array tasks, grouped per job: ``JOB_[1,3-7]``."""
    by_job: dict[str, list[int]] = {}
    for run in runs:
        if run.backend_ref:
            job, _, task = run.backend_ref.partition("_")
            by_job.setdefault(job, []).append(int(task))
    return [f"{job}_[{batch.array_spec(sorted(tasks), None)}]" for job, tasks in by_job.items()]


def cancel(
    connection: Connection, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
) -> list[RunUpdate]:
    """Record the runs cancelled, then scancel them and wait (one helper call) until their tasks are gone
    (the wrapper's grace period, bounded by Slurm's KillWait): a task whose experiment had ended by itself
    left its exit-code file meanwhile and keeps that end."""
    cancelled = [RunUpdate(run.index, CANCELLED, detail="cancelled by `mrunner cancel` (scancel)") for run in runs]
    record(cancelled)
    tasks = [_task(sweep, run) for run in runs if run.backend_ref]
    if not tasks:
        return cancelled
    document = {"specs": task_specs(runs), "tasks": tasks, "wait": float(sweep.context.get("grace_period", 30)) + 10}
    codes = remote.call(connection, ["cancel"], remote.pack(document))
    updates = []
    for update in cancelled:
        code = codes.get(str(update.index))
        if code is None:
            updates.append(update)
        else:
            updates.append(
                RunUpdate(update.index, COMPLETED if code == 0 else FAILED, exit_code=code, ended_by_itself=True)
            )
    return updates


def logs(connection: Connection, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
    """The output of the run's attempt; with ``follow``, new output until the records say it ended. Then
    what Slurm wrote about the task (``slurm/JOB_TASK.out``: a time limit, a cancel, a requeue, an error
    before the log was known), so a task that never reached its log still says why."""
    path = _layout(sweep, run).log_file()
    sftp = connection.sftp()
    position = 0
    checked = 0.0
    done = run.state in TERMINAL
    while True:
        try:
            with sftp.open(path, "rb") as stream:
                stream.seek(position)
                chunk = stream.read()
        except FileNotFoundError:
            chunk = b""
            if not follow:
                notes = _slurm_notes(sftp, sweep, run)
                if notes:
                    yield notes
                    return
                raise BackendError(
                    f"experiment {run.ref} has no output yet ({path} does not exist on the cluster)"
                ) from None
        position += len(chunk)
        if chunk:
            yield chunk.decode(errors="replace")
        if not follow or done:
            notes = _slurm_notes(sftp, sweep, run)
            if notes:
                yield notes
            return
        if time.monotonic() - checked >= STATE_INTERVAL:
            checked = time.monotonic()
            done = ended()  # one more read after the end catches the last output
            continue
        time.sleep(FOLLOW_INTERVAL)


def _slurm_notes(sftp: Any, sweep: Sweep, run: Run) -> str:
    """What Slurm's own output file of the run's task holds, under a line saying so; "" when it is empty."""
    if not run.backend_ref:
        return ""
    path = batch.slurm_output(batch.sweep_dir(sweep.package["storage_dir"], sweep), run.backend_ref)
    try:
        with sftp.open(path, "rb") as stream:
            text = stream.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    if not text.strip():
        return ""
    return f"mrunner: what Slurm wrote about task {run.backend_ref} ({path}):\n{text.rstrip()}\n"

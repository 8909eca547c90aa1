"""Following submitted experiments: state (one helper call per sweep), cancel (one helper call), logs (reads)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from mrunner.errors import BackendError, NoLog
from mrunner.layout import Layout, of_run
from mrunner.records import CANCELLED, CANNOT_RUN, PENDING, TERMINAL, Run, RunUpdate, Sweep
from mrunner.states import ended
from mrunner_slurm import batch, packing, remote
from mrunner_slurm.transport import Connection

FOLLOW_INTERVAL = 1.0  # seconds between reads of a followed log
STATE_INTERVAL = 3.0  # seconds between state checks while following


def _layout(sweep: Sweep, run: Run) -> Layout:
    return of_run(sweep.package["storage_dir"], sweep, run)


def _task(sweep: Sweep, run: Run) -> list:
    """What the helper needs of a task: its index, array task, recorded attempt, exit-code and log prefixes
    (the helper adds the attempt), and how many requeues and retries it may have had."""
    where = _layout(sweep, run)
    limit = int(sweep.context["max_requeue"])
    retries = int(sweep.context["retry_failed"])
    return [
        run.index,
        run.backend_ref,
        run.attempt,
        batch.attempt_prefix(where.exit_code_file(0), ""),
        batch.attempt_prefix(where.log_file(0), ".log"),
        limit,
        retries,
    ]


def _later(
    index: int, state: str, code: int | None, detail: str | None, own: bool, attempt: int, ends: dict
) -> RunUpdate:
    """The state of a later attempt than the recorded one, with how each attempt before it ended."""
    states = {int(number): end[0] for number, end in ends.items()}
    codes = {int(number): end[1] for number, end in ends.items() if end[1] is not None}
    details = {int(number): end[2] for number, end in ends.items() if len(end) > 2 and end[2]}
    # why the attempt after an end started, where Slurm's requeue was mrunner's own: another point's retry
    restarts = {int(number) + 1: end[3] for number, end in ends.items() if len(end) > 3 and end[3]}
    return RunUpdate(
        index,
        state,
        exit_code=code,
        detail=detail,
        ended_by_itself=own,
        attempt=attempt,
        ends=states,
        end_codes=codes,
        end_details=details,
        restart_details=restarts,
    )


def restartable(ended: Sequence[Run]) -> list[Run]:
    """The ended runs Slurm may still run again: handed to Slurm, their end recorded not long ago (the core
    passes only those; a caller of its own may not)."""
    from mrunner_slurm.plugin import SlurmBackend

    recent = time.time() - SlurmBackend.restarts_within
    return [run for run in ended if run.backend_ref and run.updated_at >= recent]


def status(connection: Connection, sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run] = ()) -> list[RunUpdate]:
    """The runs' states in one helper call; ended runs that are ``restartable`` are asked about too, and
    reported only when Slurm started them again."""
    tasks = [_task(sweep, run) + [False] for run in runs if run.backend_ref]
    tasks += [_task(sweep, run) + [True] for run in restartable(ended)]
    if not tasks:
        return []
    answer = remote.call(connection, ["status"], remote.pack({"tasks": tasks}))
    by_index = {run.index: run for run in [*runs, *ended]}
    updates = []
    for index, (state, code, detail, own, attempt, ends) in answer.items():
        run = by_index[int(index)]
        if state == PENDING and detail:
            detail = pending_reason(
                detail, sweep.detail.get("running_limits")
            )  # reported even when still pending: the records keep the latest
        if attempt > run.attempt:  # Slurm requeued it: the next attempt of the same array task
            updates.append(_later(int(index), state, code, detail, own, attempt, ends))
        elif (state, code) != (run.state, run.exit_code) or (state == PENDING and detail):
            # named: read before a `resume` recorded the next attempt, it must not end that one
            updates.append(
                RunUpdate(int(index), state, exit_code=code, detail=detail, ended_by_itself=own, attempt=run.attempt)
            )
    return updates


# Reasons of a pending job that no waiting cures: the request exceeds a limit of the partition, QOS or
# association itself (Slurm keeps such a job queued unless EnforcePartLimits refuses it at sbatch).
_NEVER = {
    "PartitionNodeLimit": "more nodes than the partition has or allows",
    "PartitionTimeLimit": "a time limit above the partition's",
    "PartitionConfig": "more nodes, CPUs or memory than the partition has, or a partition it cannot use",
    "BadConstraints": "constraints or resources that no node offers",
    "InvalidQOS": "a QOS the account cannot use",
    "InvalidAccount": "an account the user cannot use",
}


#: Reasons of a job held back by a limit on the jobs running at once (``limits.Limits.running``): it starts
#: as others end.
_THROTTLED = {
    "AssocMaxJobsLimit": "MaxJobs of your association",
    "QOSMaxJobsPerUserLimit": "MaxJobsPerUser of the QOS",
    "AssocGrpJobsLimit": "GrpJobs of your account, all its users' jobs counted",
    "QOSGrpJobsLimit": "GrpJobs of the QOS, all its users' jobs counted",
}


#: Reasons of a job waiting for a time to come, not for resources or a limit: in words, since a requeued task
#: (preempted, timed out, retried) shows it for minutes and Slurm's word alone reads like a fault.
_LATER = {
    "BeginTime": (
        "queued until its begin time (BeginTime): Slurm holds a requeued task about two minutes before it may "
        "start again, or a --begin asked for later"
    ),
}


def pending_reason(reason: str, running_limits: Mapping[str, int] | None = None) -> str:
    """Slurm's reason, saying so when the request can never run as asked and what to change, and in words
    when a limit on running jobs holds it back (``running_limits``: those the submission read, by reason)."""
    if reason in _THROTTLED:
        limit = (running_limits or {}).get(reason)
        count = f"limit of {limit} running jobs" if limit is not None else "limit on running jobs"
        return f"queued: the site's {count} ({_THROTTLED[reason]}: {reason}); it starts as others end"
    if reason in _LATER:
        return _LATER[reason]
    asked = _NEVER.get(reason) or ("a job larger than a per-job limit" if "PerJob" in reason else None)
    if asked is None:
        return reason
    return f"{reason}: {CANNOT_RUN} ({asked}); cancel it and submit with a smaller request"


def task_specs(runs: Sequence[Run]) -> list[str]:
    """scancel's names for exactly these array tasks, grouped per job: ``JOB_[1,3-7]``."""
    by_job: dict[str, list[int]] = {}
    for run in runs:
        if run.backend_ref:
            job, _, task = run.backend_ref.partition("_")
            by_job.setdefault(job, []).append(int(task))
    return [f"{job}_[{batch.array_spec(sorted(tasks), None)}]" for job, tasks in by_job.items()]


#: How a cancelled point of a packed task was stopped (``remote_helper.cancel``: its task goes on with the others).
PACKED = "inside its task: skipped if waiting, stopped alone if running"


def cancel(
    connection: Connection, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
) -> list[RunUpdate]:
    """Record the runs cancelled, then scancel them and wait (one helper call) until their tasks are gone
    (the wrapper's grace period, bounded by Slurm's KillWait): a task whose experiment had ended by itself
    left its exit-code file meanwhile and keeps that end."""
    groups, _ = packing.recorded(sweep.detail.get("packing"), runs)
    packed = {run.index for k, _, members in groups if k > 1 for run in members}
    cancelled = [
        RunUpdate(
            run.index,
            CANCELLED,
            detail=f"cancelled by `mrunner cancel` ({PACKED if run.index in packed else 'scancel'})",
            attempt=run.attempt,
        )
        for run in runs
    ]
    record(cancelled)
    tasks = []
    for run in runs:
        if run.backend_ref:
            *task, limit, retries = _task(sweep, run)
            tasks.append([*task, limit + retries])
    if not tasks:
        return cancelled
    document = {"specs": task_specs(runs), "tasks": tasks, "wait": float(sweep.context["grace_period"]) + 10}
    answer = remote.call(connection, ["cancel"], remote.pack(document))
    recorded = {run.index: run.attempt for run in runs}
    updates = []
    for update in cancelled:
        code, attempt, ends = answer.get(str(update.index), [None, recorded[update.index], {}])
        own = code is not None
        state, code = (ended(code), code) if own else (CANCELLED, None)
        if attempt > recorded[update.index]:  # the attempt it stopped was one Slurm had started since
            updates.append(_later(update.index, state, code, update.detail if not own else None, own, attempt, ends))
        elif own:
            updates.append(RunUpdate(update.index, state, exit_code=code, ended_by_itself=True, attempt=update.attempt))
        else:
            updates.append(update)
    return updates


def logs(connection: Connection, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
    """The output of the run's attempt; with ``follow``, new output until the records say it ended. Then
    what Slurm wrote about the task (``slurm/JOB_TASK.out``: a time limit, a cancel, a requeue, an error
    before the log was known), so a task that never reached its log still says why."""
    path = _layout(sweep, run).log_file()
    position = 0
    checked = 0.0
    done = run.state in TERMINAL
    found = False
    while True:
        chunk = connection.read(path, position)
        if chunk is None:
            chunk = b""
            if not follow and not done:
                notes = _slurm_notes(connection, sweep, run)
                if notes:
                    yield notes
                    return
                raise BackendError(f"experiment {run.ref} has no output yet ({path} does not exist on the cluster)")
        else:
            found = True
        position += len(chunk)
        if chunk:
            yield chunk.decode(errors="replace")
        if not follow or done:
            notes = _slurm_notes(connection, sweep, run)
            if notes:
                yield notes
            if not found:  # an ended attempt whose log was never made: named as every backend names it
                raise NoLog(f"experiment {run.ref} has no log of attempt {run.attempt} ({path} on the cluster)")
            return
        if time.monotonic() - checked >= STATE_INTERVAL:
            checked = time.monotonic()
            done = ended()  # one more read after the end catches the last output
            continue
        time.sleep(FOLLOW_INTERVAL)


def _slurm_notes(connection: Connection, sweep: Sweep, run: Run) -> str:
    """What Slurm's own output file of the run's task holds, under a line saying so; "" when it is empty."""
    if not run.backend_ref:
        return ""
    path = batch.slurm_output(batch.sweep_dir(sweep.package["storage_dir"], sweep), run.backend_ref)
    text = own_part((connection.read(path) or b"").decode(errors="replace"), run.attempt)
    if not text.strip():
        return ""
    return f"mrunner: what Slurm wrote about task {run.backend_ref} ({path}):\n{text.rstrip()}\n"


def own_part(text: str, attempt: int) -> str:
    """The part of a task's ``.out`` file that ``attempt`` wrote, from its mark (``batch.ATTEMPT_MARK``) to the
    next attempt's: every attempt of the task writes to that one file, and an earlier attempt's requeue or
    preemption notice is not the later one's. What comes before the first mark is the first attempt's; a file
    with no mark (a task submitted by an mrunner before the marks) is shown whole."""
    parts: dict[int, list[str]] = {}
    current: int | None = None
    before: list[str] = []
    for line in text.splitlines(keepends=True):
        mark = batch.ATTEMPT_MARK.match(line.rstrip("\n"))
        if mark:
            current = int(mark[1])
            parts.setdefault(current, before if not parts else [])
            continue
        (parts[current] if current is not None else before).append(line)
    if current is None:
        return text
    return "".join(parts.get(attempt, []))

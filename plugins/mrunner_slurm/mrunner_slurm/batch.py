"""The files that run a sweep on the cluster: per job array, one batch script and one task bundle holding
every task's environment, argv and config document, selected by array index.

Every value reaching a shell is quoted with ``shlex.quote``; the bundle sets the experiment's argv with
``set -- ...``, so parameters holding quotes, spaces, ``$(...)``, backticks, newlines or any Unicode arrive
exactly. Secrets are not in any of these files: the batch script sources the sweep's ``.secrets.env``
(mode 0600) at start.

One bundle per array instead of two files per experiment: creating files is what costs most on the
cluster's side of a dispatch (2,000 small files took 0.15-0.5 s on the test cluster), while bash parses a
1,000-task bundle in about 15 ms at task start.

Where an experiment's files are is ``mrunner.layout``'s alone (its folder and working directory, checkpoint
folder, config, one log and one exit-code file per attempt); the batch script ``exec``s mrunner's attempt
wrapper (``python -m mrunner.attempt``), which lays them out and runs the experiment. Only Slurm's own files
are named here, below the sweep folder: ``tasks/NAME.sh`` (the task bundle of array NAME; ``tasks/NAME.jsonl``
when its tasks are packed, which the attempt runner reads itself), ``slurm/NAME.sh``
(batch scripts), ``slurm/JOB_TASK.out`` (what the batch script printed before its attempt's log was known, and Slurm's
own notices: time limit, cancel, requeue; ``mrunner logs`` shows it after the log),
``submitted/NAME`` (job id of each array, for idempotent resubmission), ``.secrets.env``.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from mrunner import layout
from mrunner.attempt import END_NOTE, RETRY_NOTE, Shell, command_line
from mrunner.errors import MrunnerError
from mrunner.records import Run, Sweep
from mrunner_slurm import packing

#: The signal Slurm sends ``grace_period`` seconds before the time limit (``--signal=B:USR1@N``).
LIMIT_SIGNAL = "USR1"
# The first failing command of the environment set-up ends the task (97: set-up failed), saying which.
SETUP_TRAP = (
    "trap '_mrunner_code=$?; echo \"mrunner: the environment set-up failed (exit $_mrunner_code) at: "
    "$BASH_COMMAND\" >&2; exit 97' ERR"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
q = shlex.quote


#: The line each attempt of a task writes first in Slurm's ``.out`` file, which every attempt of the task
#: shares: what Slurm writes there after it (a requeue's or a preemption's notice) is that attempt's.
ATTEMPT_MARK = re.compile(r"^mrunner: attempt (\d+) of this task starts$")


def attempt_mark(attempt: int) -> str:
    """The shell line that writes ``ATTEMPT_MARK`` for the task's attempt: ``attempt`` (the one the array was
    submitted at) plus Slurm's restart count."""
    return f'echo "mrunner: attempt $(({attempt} + ${{SLURM_RESTART_COUNT:-0}})) of this task starts"'


def slurm_output(sweep_directory: str, backend_ref: str) -> str:
    """Slurm's own output file of array task ``JOB_TASK`` (sbatch ``--output=slurm/%A_%a.out``)."""
    return f"{sweep_directory}/slurm/{backend_ref}.out"


def sweep_dir(storage: str, sweep: Sweep) -> str:
    """The sweep's folder on the cluster, as ``mrunner.layout`` places it."""
    return layout.Layout(storage, sweep.project, sweep.id, 0, "").sweep_dir


def secrets_path(sweep_directory: str) -> str:
    return f"{sweep_directory}/.secrets.env"


def exports(env: Mapping[str, str], what: str) -> list[str]:
    return [f"export {name}={q(str(value))}" for name, value in _named(env, what).items()]


def _named(env: Mapping[str, str], what: str) -> Mapping[str, str]:
    for name in env:
        if not _ENV_NAME.match(name):
            raise MrunnerError(f"{what} {name!r} is not a valid environment variable name")
    return env


def bundle_path(sweep_directory: str, name: str, packed: bool = False) -> str:
    """The task bundle of array ``name``: bash for an array of one point per task, JSON lines when packed."""
    return f"{sweep_directory}/tasks/{name}.{'jsonl' if packed else 'sh'}"


def task_bundle(sweep: Sweep, runs: Sequence[Run], storage: str) -> str:
    """The tasks of one array as one ``case "$index"`` the batch script sources: each branch exports the
    experiment's environment (its own, then the contract's variables and its config document for the
    wrapper), sets its argv with ``set --`` and names its logs and exit-code files without the attempt
    (``_mrunner_logs``, ``_mrunner_status``): the batch script adds the attempt, which a requeue raises."""
    lines = ['case "$index" in']
    for run in runs:
        point = _point_lines(sweep, run, storage)
        lines += [f"{run.index})", *point[:-1], point[-1] + ";;"]
    lines += ['*) echo "mrunner: no task $index in this array" >&2; exit 97;;', "esac", ""]
    return "\n".join(lines)


def packed_bundle(sweep: Sweep, tasks: Sequence[Sequence[Run]], storage: str) -> str:
    """The tasks of a packed array (``mrunner_slurm.packing``): a line of JSON per array task, the list of its
    points, each ``{"index", "env", "argv"}`` (its own environment, the contract's variables and its config
    document; its argv), which the attempt runner reads (``python -m mrunner.attempt --points``) and the
    cluster's helper too (which points a task holds). JSON's C encoder writes it, and a task reads only its
    own line."""
    lines = []
    for runs in tasks:
        points = []
        for run in runs:
            where = layout.of_run(storage, sweep, run)
            env = {name: str(value) for name, value in _named(run.env, "environment variable").items()}
            env.update(where.environment())
            env["MRUNNER_CONFIG_DOCUMENT"] = json.dumps(run.config_document(sweep))
            points.append({"index": run.index, "env": env, "argv": list(run.command)})
        lines.append(json.dumps(points))
    return "\n".join([*lines, ""])


def _point_lines(sweep: Sweep, run: Run, storage: str) -> list[str]:
    where = layout.of_run(storage, sweep, run)
    return [
        *exports({**run.env, **where.environment()}, "environment variable"),
        # one line: C's encoder, 5x faster
        f"export MRUNNER_CONFIG_DOCUMENT={q(json.dumps(run.config_document(sweep)))}",
        "set -- " + " ".join(q(arg) for arg in run.command),
        f"_mrunner_logs={q(attempt_prefix(where.log_file(0), '.log'))}",
        f"_mrunner_status={q(attempt_prefix(where.exit_code_file(0), ''))}",
    ]


def attempt_prefix(path_of_attempt_0: str, suffix: str) -> str:
    """A layout path of attempt 0 (``.../logs/INDEX.0.log``) without its attempt: ``.../logs/INDEX``."""
    ending = f".0{suffix}"
    assert path_of_attempt_0.endswith(ending), path_of_attempt_0
    return path_of_attempt_0[: -len(ending)]


def secrets_file(secrets: Mapping[str, str]) -> str:
    return "\n".join([*exports(secrets, "secret"), ""])


def batch_script(
    sweep: Sweep,
    context: Mapping[str, Any],
    code_dir: str,
    client_dir: str,
    sweep_directory: str,
    bundle: str,
    attempt: int,
    offset: int,
    venv: str | None,
) -> str:
    """The batch script of one job array: environment set-up, then ``exec`` of the attempt wrapper, so that
    the wrapper is the batch step's process and a scancel's SIGTERM or ``--signal=B:USR1@N`` reaches it (and
    through it the experiment's process group); its output and the experiment's go to the attempt's log.
    The set-up (modules, conda, venv, prolog) writes to that log too, and the first of its commands that
    fails stops the task with exit 97 and a line naming the command (an ERR trap: like ``set -e``, but it
    says what failed), instead of running the experiment in the wrong environment. Only what comes before
    the log is known (the task bundle) and what Slurm itself writes stays in ``slurm/JOB_TASK.out``.
    ``client_dir`` holds mrunner's experiment side (the wrapper, ``get_configuration``, tracking); it goes
    first on ``PYTHONPATH``, after the experiment's own environment, so the task runs the version that
    submitted it whether or not mrunner is installed on the cluster."""
    lines = [
        "#!/bin/bash",
        f"# mrunner: sweep {sweep.id}, attempt {attempt}; experiment index = SLURM_ARRAY_TASK_ID + {offset}",
        attempt_mark(attempt),
        f"index=$((SLURM_ARRAY_TASK_ID + {offset}))",
        f". {q(bundle)} || exit 97",
        "restarts=${SLURM_RESTART_COUNT:-0}",
        *_task_attempt(context),
        *_environment(sweep, context, client_dir, sweep_directory, venv),
        _wrapper(sweep, context, code_dir),
        "",
    ]
    return "\n".join(line for line in lines if line)


def packed_script(
    sweep: Sweep,
    context: Mapping[str, Any],
    code_dir: str,
    client_dir: str,
    sweep_directory: str,
    bundle: str,
    attempt: int,
    venv: str | None,
    k: int,
) -> str:
    """The batch script of a packed array (``mrunner_slurm.packing``): the environment set up once per task
        (its output in Slurm's ``slurm/JOB_TASK.out``), then ``exec`` of one attempt runner for the whole task
        (``python -m mrunner.attempt --points``), which imports once and forks each point's attempt, one after
        another or ``points_at_once`` at a time: each point gets what an unpacked task's attempt gets (its
        attempt from Slurm's restart count, its log, not again once it completed, at most ``max_requeue``
        requeues, ``retry_failed``, with ``points_at_once`` its share of the task's CPUs and GPUs:
    ``mrunner_slurm.packing``). A point cancelled inside its task (a file
        ``status/INDEX.cancel-JOB_TASK`` that ``mrunner cancel`` writes) is skipped, or stopped alone
        (``--stop-file``) if it runs. The runner is the batch step's process: a stopping signal reaches it, and
        through it the running points, and it starts no further point; a requeued task runs, as its next
        attempt, the points that did not complete. Slurm's warning before the time limit (``B:USR1``) reaches the
        running points, which requeue the task; if none runs, the runner requeues it itself."""
    stop_file = Shell(
        q(f"{sweep_directory}/status/{{index}}.cancel-") + '"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"'
    )
    lines = [
        "#!/bin/bash",
        f"# mrunner: sweep {sweep.id}, attempt {attempt}; packed: each task's points are a line of {bundle}",
        attempt_mark(attempt),
        "exec </dev/null",
        *_environment(sweep, context, client_dir, sweep_directory, venv),
        _wrapper(sweep, context, code_dir, stop_file=stop_file, points=bundle, k=k),
        "",
    ]
    return "\n".join(line for line in lines if line)


def _task_attempt(context: Mapping[str, Any]) -> list[str]:
    """A task's attempt from Slurm's restart count, its log (all it prints from here on), and the checks that
    keep it from running: an earlier attempt completed, or more requeues than ``max_requeue``; ``exit`` ends
    the task. The attempt runner makes the same checks for each point of a packed task
    (``mrunner.attempt``'s ``--points``)."""
    limit = int(context["max_requeue"])
    return [
        # a task Slurm requeued (preemption, the time limit, a retry) runs the next attempt: its own log and exit code
        "_mrunner_attempt=$MRUNNER_ATTEMPT",
        "export MRUNNER_ATTEMPT=$((MRUNNER_ATTEMPT + restarts))",
        '_mrunner_log="$_mrunner_logs.$MRUNNER_ATTEMPT.log"',
        # appended, never truncated: the set-up's output and errors go to this attempt's log too; a log that
        # cannot be opened (a read-only or full storage) stops the task, as the attempt runner stops a point (bash
        # goes on after a failed `exec` redirection: the experiment ran with its output in Slurm's file alone)
        'exec >>"$_mrunner_log" 2>&1 </dev/null || {',
        '  echo "mrunner: cannot set up the experiment: its log $_mrunner_log cannot be opened" >&2; exit 97',
        "}",
        # an experiment that completed in an earlier attempt is not run again: Slurm requeues the task of a node
        # it lost while the step goes on there, finishes and writes its exit code 0 (what the status reads)
        "_mrunner_earlier=0",
        'while [ "$_mrunner_earlier" -lt "$MRUNNER_ATTEMPT" ]; do',
        '  if [ "$(cat "$_mrunner_status.$_mrunner_earlier" 2>/dev/null)" = 0 ]; then',
        '    echo "mrunner: attempt $_mrunner_earlier of this experiment completed (exit 0): not run again"; exit 0',
        "  fi",
        "  _mrunner_earlier=$((_mrunner_earlier + 1))",
        "done",
        # the earlier attempts the wrapper asked for after a failure (noted `retry`) count against retry_failed;
        # the others that started (left a log: a packed point may not have been reached) against max_requeue
        "_mrunner_retried=0; _mrunner_requeues=0",
        'while [ "$_mrunner_attempt" -lt "$MRUNNER_ATTEMPT" ]; do',
        f'  if [ "$(cat "$_mrunner_status.$_mrunner_attempt{END_NOTE}" 2>/dev/null)" = {RETRY_NOTE} ]; then _mrunner_retried=$((_mrunner_retried + 1));',
        '  elif [ -e "$_mrunner_logs.$_mrunner_attempt.log" ]; then _mrunner_requeues=$((_mrunner_requeues + 1)); fi',
        "  _mrunner_attempt=$((_mrunner_attempt + 1))",
        "done",
        f'if [ "$_mrunner_requeues" -gt {limit} ]; then',
        f"  echo 'mrunner: requeued more than max_requeue={limit} times: not started again'",
        '  echo preempted >"$_mrunner_status.$MRUNNER_ATTEMPT.end"; exit 0',
        "fi",
    ]


def _environment(
    sweep: Sweep, context: Mapping[str, Any], client_dir: str, sweep_directory: str, venv: str | None
) -> list[str]:
    """The task's environment: the context's set-up (modules, conda, venv, prolog) under the ERR trap, the
    experiment side on ``PYTHONPATH``, the sweep's secrets."""
    setup: list[str] = []
    for module in context["modules_to_load"]:
        setup.append(f"module load {q(str(module))}")
    if context.get("conda"):
        setup.append('eval "$(conda shell.bash hook)"')
        setup.append(f"conda activate {q(context['conda'])}")
    if venv:
        setup.append(f". {q(venv + '/bin/activate')}")
    prolog = context.get("prolog_cmd")
    if prolog:  # the user's own shell, verbatim
        setup += [prolog] if isinstance(prolog, str) else [str(line) for line in prolog]
    return [
        *([SETUP_TRAP, *setup, "trap - ERR"] if setup else []),
        f'export PYTHONPATH={q(client_dir)}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        f"if [ -f {q(secrets_path(sweep_directory))} ]; then . {q(secrets_path(sweep_directory))} || exit 97; fi",
    ]


def _wrapper(
    sweep: Sweep,
    context: Mapping[str, Any],
    code_dir: str,
    stop_file: str | None = None,
    points: str | None = None,
    k: int = 1,
) -> str:
    """``exec`` of the attempt wrapper around the experiment's ``"$@"``, or with ``points`` (a packed array's
    bundle of up to ``k`` points per task) around the points of the task ``$SLURM_ARRAY_TASK_ID``. Under
    ``cmd_type: srun`` each point is a job step of its own, as an unpacked task is (``srun`` per point, the
    runner outside it), of its share of the task when several run at once (``packing.point_step``); in a
    container only, the runner runs in it and so does each point."""
    launcher: list[str] = []
    if context.get("cmd_type") == "srun":
        launcher.append("srun")
    if context.get("singularity_container"):
        launcher += ["singularity", "exec", *(["--nv"] if context.get("gpu") else []), context["singularity_container"]]
    per_point: list[str] = []
    if points and launcher[:1] == ["srun"]:
        launcher, per_point = [], ["srun", *packing.point_step(context, k), *launcher[1:], str(context["python"])]
    at_once = packing.at_once(context, k) if points else 1
    limit = int(context["max_requeue"])
    retries = int(context["retry_failed"])
    wrapper = [
        *launcher,
        *command_line(
            str(context["python"]),
            code_dir,
            [] if points else [Shell('"$@"')],
            workdir=sweep.workdir or ".",
            entries=entries_of(sweep),
            # a copy-on-write view of the code where the job may mount (root), else links to a watched copy:
            # either way no experiment changes the code folder, whose files are the shared store's
            view=True,
            watch=watched_dir(code_dir),
            grace=context["grace_period"],
            requeue_on=LIMIT_SIGNAL,
            # the array task by its array name: the task that keeps the array's own job id would requeue
            # every task of the array by that id
            requeue_command=Shell(
                '"[\\"scontrol\\", \\"requeue\\", \\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\\"]"'
            ),
            # packed, the runner counts each point's earlier requeues and retries itself
            requeues_left=limit if points else Shell(f"$(({limit} - _mrunner_requeues))"),
            retries_left=retries if points else Shell(f"$(({retries} - _mrunner_retried))"),
            stop_file=Shell(stop_file) if stop_file else None,
            points=points,
            task=Shell('"$SLURM_ARRAY_TASK_ID"'),
            restarts=Shell('"${SLURM_RESTART_COUNT:-0}"'),
            points_at_once=at_once,
            # bound by this runner when it forks the points; a job step is Slurm's to bind (its --cpus-per-task)
            cpus_per_point=int(context.get("cpu") or 1) if at_once > 1 and not per_point else None,
            launcher=per_point,
        ),
    ]
    return " ".join(["exec", *(part if isinstance(part, Shell) else q(part) for part in wrapper)])


def watched_dir(code: str) -> str:
    """Where the jobs that cannot mount a copy-on-write view of the code folder ``STORE/code/DIGEST`` link
    to instead: ``STORE/watched/DIGEST``, a copy made once on the cluster and watched
    (``mrunner.treeguard.watch_copy``), so that no experiment reaches the code folder, whose files are hard
    links into the store every sweep shares (``mrunner_slurm.deploy``)."""
    return f"{posixpath.dirname(posixpath.dirname(code))}/watched/{posixpath.basename(code)}"


def entries_of(sweep: Sweep) -> list[str]:
    """How each experiment's folder mirrors the code snapshot (``mrunner.layout.working_entries``), computed
    once per sweep at package time; a sweep recorded before that was kept computes it from its snapshot."""
    if "entries" in sweep.package:
        return list(sweep.package["entries"])
    from pathlib import Path

    from mrunner import snapshot

    frozen = snapshot.load(sweep.snapshot_digest, root=Path(sweep.project_dir))
    return layout.working_entries(frozen.files, sweep.workdir, mirror=True)


def array_spec(task_ids: Sequence[int], parallelism: int | None) -> str:
    """``0-999`` or ``1,3,5-7``, with ``%N`` when the context throttles the array."""
    parts: list[str] = []
    start = previous = task_ids[0]
    for task in [*task_ids[1:], None]:
        if task is not None and task == previous + 1:
            previous = task
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if task is not None:
            start = previous = task
    spec = ",".join(parts)
    return f"{spec}%{parallelism}" if parallelism else spec

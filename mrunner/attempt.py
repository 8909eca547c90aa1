"""One attempt of an experiment, as a remote backend starts it: ``python -m mrunner.attempt OPTIONS -- ARGV``.

It prepares the attempt's folders and working directory (``mrunner.layout``; with ``--view``, a copy-on-write
view of the code snapshot over the experiment's folder, ``mrunner.codeview``; with ``--watch``, links to a
watched copy of it, checked and restored before the experiment, ``mrunner.treeguard``), runs the experiment as the
leader of its own process group, passes the signals a scheduler sends before it stops a job (SIGTERM, SIGINT,
SIGHUP, SIGUSR1, SIGUSR2) on to that whole group, kills the group once a stopping signal's grace period is
over, and writes the exit code to the attempt's exit-code file when the experiment ended by itself (a stopped
attempt leaves none, so that its end is told by whoever stopped it: a cancel, a requeue, the time limit). Being the process that receives the signals
matters: a batch shell or a container's PID 1 that does not pass them on leaves the experiment no chance to
save a checkpoint.

The layout comes from the contract's environment variables (``MRUNNER_EXPERIMENT_DIR``, ...), which the
backend sets; they are inherited by the experiment. Standard library only: it ships with every sweep.

With ``--points``, one process runs the attempts of a packed task's points (several experiments in one job,
each with its own environment), each in a process forked from it: the imports and the interpreter's start
are paid once per task instead of once per point.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence

from mrunner import layout as contract

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only: the wrapper (forked for every local experiment) does not pay for ``typing``
    from typing import NoReturn

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: The exit code when the attempt could not be set up (its folders, links or config).
SETUP_FAILED = 97
#: The exit code with ``--once`` when the attempt had started before (its log exists): not run a second time.
STARTED_BEFORE = 98
#: The exit code with ``--handshake`` when the starter went away before it said ``start``: not started.
UNSTARTED = 99
#: What the starter writes to the wrapper's stdin under ``--handshake`` once it recorded the attempt.
START = b"start\n"
#: Seconds between two looks for ``--stop-file`` (a stat on the cluster's shared file system each).
STOP_FILE_INTERVAL = 2.0


class Shell(str):
    """A value the caller's shell expands (``"$@"``, ``$((N - used))``): a batch script writes it unquoted."""


def command_line(
    python: str,
    code: str,
    command: Sequence[str],
    *,
    workdir: str = ".",
    entries: Sequence[str] = (),
    grace: float,
    config_from: str | None = None,
    log: str | None = None,
    once: bool = False,
    handshake: bool = False,
    requeue_on: str | None = None,
    requeue_command: str | None = None,
    requeues_left: int | str | None = None,
    retries_left: int | str | None = None,
    view: bool = False,
    watch: str | None = None,
    stop_file: str | None = None,
    points: str | None = None,
    task: int | str | None = None,
    restarts: int | str | None = None,
    points_at_once: int | None = None,
    cpus_per_point: int | None = None,
    launcher: Sequence[str] = (),
) -> list[str]:
    """The wrapper's command line around an experiment's ``command``: the one place every backend (local,
    Slurm's batch script, a Kubernetes container, a third party's) gets it from, so that an option of the
    wrapper means the same everywhere. The options are those of ``main`` (``--help``); a ``Shell`` value is
    left for the caller's shell to expand. With ``points`` (a packed task's file) ``command`` is empty: each
    point brings its own."""
    line = [python, "-m", "mrunner.attempt", "--code", code, "--workdir", workdir or "."]
    line += ["--entries", json.dumps(list(entries))] + ["--view"] * view
    if watch is not None:
        line += ["--watch", watch]
    if config_from is not None:
        line += ["--config-from", config_from]
    line += ["--grace", str(grace)]
    if log is not None:
        line += ["--log", log]
    line += ["--once"] * once + ["--handshake"] * handshake
    if requeue_on is not None:
        line += ["--requeue-on", requeue_on]
    if requeue_command is not None:
        line += ["--requeue-command", requeue_command]
    if requeues_left is not None:
        line += ["--requeues-left", _word(requeues_left)]
    if retries_left is not None:
        line += ["--retries-left", _word(retries_left)]
    if stop_file is not None:
        line += ["--stop-file", _word(stop_file)]
    if points is not None:
        line += ["--points", _word(points), "--task", _word(task if task is not None else 0)]
        line += ["--restarts", _word(restarts if restarts is not None else 0)]
        line += ["--points-at-once", str(points_at_once or 1)]
        if cpus_per_point:
            line += ["--cpus-per-point", str(cpus_per_point)]
        if launcher:
            line += ["--launcher", json.dumps(list(launcher))]
    return [*line, "--", *command]


def _word(value: int | str) -> str:
    return value if isinstance(value, str) else str(value)  # a Shell stays a Shell


def from_environment(environ: dict[str, str]) -> contract.Layout:
    """The layout the backend described in the contract's variables."""
    storage = environ[contract.STORAGE_DIR]
    below = environ[contract.SWEEP_DIR][len(storage.rstrip("/")) :].strip("/")
    project, _, sweep = below.partition("/")
    index, _, name = environ[contract.EXPERIMENT_DIR].rsplit("/", 1)[-1].partition("-")
    found = contract.Layout(storage, project, sweep, int(index), name, int(environ.get(contract.ATTEMPT, "0")))
    if found.experiment_dir != environ[contract.EXPERIMENT_DIR]:
        raise ValueError(f"{contract.EXPERIMENT_DIR} and {contract.SWEEP_DIR} do not follow mrunner.layout")
    return found


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command[:1] == ["--"]:
        options.command = options.command[1:]
    if options.points is None and not options.command:
        parser.error("no command after --")
    if options.points is not None and options.command:
        parser.error("--points runs each point's own command: none after --")
    return options


def warm_up() -> None:
    """Make what reading a command line makes (the parser, its regular expressions, its messages) in a
    process that forks wrappers, so that each fork reads its own at once: otherwise making the parser is most
    of a short attempt's own work, done again in every fork."""
    _arguments(command_line(sys.executable, "/", ["true"], grace=1.0, handshake=True, view=True)[3:])


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The wrapper's command-line parser, made once per process (forks of a warmed-up process share it)."""
    parser = argparse.ArgumentParser(prog="python -m mrunner.attempt", description=__doc__.splitlines()[0])
    parser.add_argument("--code", required=True, help="the code snapshot's folder")
    parser.add_argument("--workdir", default=".", help="the start directory, relative to the snapshot")
    parser.add_argument("--entries", default="[]", help="JSON list from mrunner.layout.working_entries")
    parser.add_argument(
        "--view",
        action="store_true",
        help="lay the code copy-on-write over the experiment's folder (mrunner.codeview: a mount namespace of "
        "its own, root only) instead of links: its writes to the project's files never reach the shared code",
    )
    parser.add_argument(
        "--watch",
        metavar="TREE",
        help="where the view cannot be mounted (with --view) or always: link to TREE, a copy of --code made once "
        "and watched (mrunner.treeguard), checked before the experiment and restored from --code when an "
        "earlier experiment changed it, naming the sweep that used it last",
    )
    parser.add_argument("--config-from", help="a file holding the config document (else $MRUNNER_CONFIG_DOCUMENT)")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds between a stopping signal and the kill")
    parser.add_argument("--log", help="also append the experiment's output to this file (the attempt's log)")
    parser.add_argument(
        "--once",
        action="store_true",
        help="refuse to start when the attempt's --log exists already (a platform that replaces a lost process "
        "by itself, like a Kubernetes Job, must not run the same attempt twice)",
    )
    parser.add_argument(
        "--requeue-on", metavar="SIGNAL", help="the signal a scheduler sends before the time limit (e.g. USR1)"
    )
    parser.add_argument(
        "--requeue-command", default="[]", help="JSON argv that requeues this job, run on that signal (passed on first)"
    )
    parser.add_argument(
        "--requeues-left",
        type=int,
        default=0,
        help="how many more requeues the attempt may ask for (with --points: each point, less the requeues its "
        "earlier attempts had; a point requeued more often is not started again, its end noted `preempted`)",
    )
    parser.add_argument(
        "--retries-left",
        type=int,
        default=0,
        help="how many more times a failure of the experiment (a non-zero exit by itself) may be retried "
        "(retry_failed): the attempt notes `retry` beside its exit code, then runs --requeue-command, or without "
        "one runs the next attempt itself, its output in that attempt's log (with --points: each point, less "
        "its earlier attempts noted `retry`)",
    )
    parser.add_argument(
        "--handshake",
        action="store_true",
        help="start the experiment only once a line `start` arrives on stdin (the starter recorded the attempt "
        "first); the end of stdin before it means the starter is gone: exit 99 without starting",
    )
    parser.add_argument(
        "--stop-file",
        metavar="PATH",
        help="a file whose appearance cancels this attempt alone (a point inside a packed Slurm task, which "
        "shares the task with other points): not started if it is there, else stopped as by SIGTERM, its end "
        f"noted `cancelled`; looked for every {STOP_FILE_INTERVAL:g} s (with --points: `{{index}}` in PATH "
        "stands for each point's index)",
    )
    parser.add_argument(
        "--points",
        metavar="FILE",
        help="run the points of one packed task (several experiments in one job, e.g. a Slurm array task) "
        "instead of one command: FILE holds a line of JSON per task, a list of points {index, env, argv}. Each "
        "point is an attempt of its own (its environment, folder, log, exit code, the options above), forked "
        "from this process, which imports once; a point that completed in an earlier attempt is not run again",
    )
    parser.add_argument("--task", type=int, default=0, help="with --points: the line of FILE (from 0)")
    parser.add_argument(
        "--restarts",
        type=int,
        default=0,
        help="with --points: how often the scheduler started this task before (each point's attempt is its "
        "MRUNNER_ATTEMPT plus this)",
    )
    parser.add_argument(
        "--points-at-once",
        type=int,
        default=1,
        help="with --points: how many points run at a time, each on its share of $CUDA_VISIBLE_DEVICES",
    )
    parser.add_argument(
        "--cpus-per-point",
        type=int,
        default=0,
        help="with --points and --points-at-once above 1: bind each running point (and what it starts) to this "
        "many CPUs of this process's own, apart from the other points' (its share: OMP_NUM_THREADS and "
        "SLURM_CPUS_PER_TASK say it too); where this process has fewer than that for each, an even part",
    )
    parser.add_argument(
        "--launcher",
        metavar="JSON",
        help="with --points: start each point's attempt as `LAUNCHER... -m mrunner.attempt OPTIONS -- ARGV`, the "
        'launcher\'s last word the Python to run it (e.g. ["srun", "python3"]: a job step per point), '
        "instead of forking it",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser


#: Signals that came before the experiment started: a scheduler or the kubelet may stop an attempt at once, and
#: a process without a handler (PID 1 in a container) would drop them.
_early: list[int] = []
#: Stopping signals that came while an experiment ran or after it ended: no further attempt starts then.
_stopped: list[int] = []
#: The stopping signal that halted the last experiment this process ran (passed on to it while it ran): its
#: end, whatever code it chose on the way out, is the stop's (the local fork server reports it so).
halted_by: list[int] = []


def _hold(number: int, _frame: object) -> None:
    _early.append(number)


def main(argv: Sequence[str]) -> int:
    for number in FORWARDED:
        signal.signal(number, _hold)
    options = _arguments(argv)
    if options.handshake and not _told_to_start():
        _say("mrunner: whoever started this attempt went away before it was recorded: not started")
        return UNSTARTED
    if options.points is not None:
        return _run_points(options)
    return _attempt(options)


def _attempt(options: argparse.Namespace) -> int:
    """One attempt of the experiment the environment describes, as ``main``'s options say."""
    environ = dict(os.environ)
    document = environ.pop("MRUNNER_CONFIG_DOCUMENT", None)
    try:
        layout = from_environment(environ)
        if options.config_from:
            with open(options.config_from, encoding="utf-8") as stream:
                document = stream.read()
        document = _for_attempt(document, layout.attempt)
        if options.stop_file and os.path.exists(options.stop_file):
            contract.write_atomic(layout.exit_code_file() + END_NOTE, CANCELLED_NOTE + "\n")
            _say("mrunner: this experiment was cancelled: not started")
            return 128 + signal.SIGTERM
        if options.once and options.log and _started_before(options.log):
            _say(f"mrunner: attempt {layout.attempt} of this experiment started before: not started again")
            return STARTED_BEFORE
        entries = json.loads(options.entries)
        code, entries = _lay_out(options, layout, entries, document)
        viewed = options.view and code == options.code  # the view is mounted: settled once the experiment ends
        cwd = contract.working_directory(layout, options.workdir)
    except (OSError, KeyError, ValueError) as error:
        _say(f"mrunner: cannot set up the experiment: {error}")
        return SETUP_FAILED
    requeue = None
    command = json.loads(options.requeue_command)
    if options.requeue_on and options.requeues_left > 0:
        requeue = (_signal_named(options.requeue_on), command)
    retries, log = options.retries_left, options.log
    if options.stop_file:
        _watch(options.stop_file, layout.exit_code_file() + END_NOTE)
    while True:
        retry = command if retries > 0 else None
        settle = functools.partial(_settle_view, layout.experiment_dir) if viewed else None
        status = run(options.command, cwd, environ, layout.exit_code_file(), options.grace, log, requeue, retry, settle)
        if command or _stopped or _note(layout) != RETRY_NOTE:
            return status
        # no scheduler to ask: this process runs the next attempt, as the scheduler would
        retries -= 1
        layout = dataclasses.replace(layout, attempt=layout.attempt + 1)
        environ.update(layout.environment())
        for number in FORWARDED:
            signal.signal(number, _hold)  # a stop from now on keeps the next attempt from starting
        try:
            if code == options.watch:
                _check(code, layout)
            if viewed:  # the last one's view, when ``codeview.finish`` left it (nothing renamed): off first
                from mrunner import codeview

                codeview.unmount_left(layout.experiment_dir)
            contract.prepare(layout, code, entries, _for_attempt(document, layout.attempt))
            if viewed:  # settled at the end of the last one: laid again, in this process's own namespace still
                codeview.lay(options.code, layout.experiment_dir, layout.view_work_dir)
            cwd = contract.working_directory(layout, options.workdir)
            if log:
                log = layout.log_file()
            else:
                _output_to(layout.log_file())
        except OSError as error:
            _say(f"mrunner: cannot set up attempt {layout.attempt}: {error}")
            return SETUP_FAILED


def _lay_out(
    options: argparse.Namespace, layout: contract.Layout, entries: list[str], document: str | None
) -> tuple[str, list[str]]:
    """Prepare the attempt's folders: under a copy-on-write view of the code (``--view``), else, or where
    the view cannot be mounted, with links into the watched copy (``--watch``), else with links into the
    code. Returns the folder the links point into and the entries a later attempt of this process needs."""
    if options.view:
        from mrunner import codeview  # ctypes, tempfile: loaded only by the attempts that mount

        real = contract.real_folders(entries)
        _settled(codeview.settle(layout.experiment_dir), "an earlier attempt")  # one whose wrapper was killed
        try:
            contract.unlink_snapshot_links(layout.experiment_dir, os.path.dirname(options.code))
            if options.watch:
                contract.unlink_snapshot_links(layout.experiment_dir, os.path.dirname(options.watch))
            gave_way = codeview.reconcile(options.code, layout.experiment_dir, layout.set_aside_dir)
            if gave_way:
                shown = ", ".join(gave_way[:5]) + (f" and {len(gave_way) - 5} more" if len(gave_way) > 5 else "")
                _say(
                    f"mrunner: this attempt runs other code than the earlier ones: their changes to {shown} give "
                    f"way to it (set aside in {layout.set_aside_dir})"
                )
            contract.prepare(layout, options.code, real, document)
            codeview.hide_placeholders(options.code, layout.experiment_dir, real)
            codeview.mount(options.code, layout.experiment_dir, layout.view_work_dir)
            return options.code, real
        except OSError as error:
            if not options.watch:
                raise
            if error.errno != errno.EPERM:  # not only an ordinary user's lack of the right to mount
                _say(f"mrunner: no copy-on-write view of the code ({error}): links to a watched copy of it instead")
    if options.watch:
        if os.geteuid() != 0:
            # The copy's read-only modes refuse an ordinary user's writes through links (its owner may chmod
            # first: that changes the copy, which the next check restores), so a link per top-level entry does,
            # a few files per experiment; root, whom modes do not stop, gets a link per file below real
            # folders, so that its deletes and new files stay in its own folder.
            entries = contract.unmirrored(entries)
        from pathlib import Path

        from mrunner import treeguard  # hashlib, shutil: loaded only by the attempts that link to a watched copy

        treeguard.watch_copy(Path(options.watch), Path(options.code))
        _check(options.watch, layout)
        contract.prepare(layout, options.watch, entries, document)
        return options.watch, entries
    contract.prepare(layout, options.code, entries, document)
    return options.code, entries


def _settle_view(folder: str) -> None:
    """Once the experiment ended: make the folders it renamed whole in its folder (``codeview.finish``: the
    view taken off only then), before its exit code says it ended. A failure (a full disk) is said; the
    folder stays marked, and the next attempt or a ``pull`` settles it."""
    from mrunner import codeview

    try:
        _settled(codeview.finish(folder), "the experiment")
    except OSError as error:
        _say(f"mrunner: cannot copy the folders the experiment renamed into its folder: {error}")


def _settled(made: list[str], who: str) -> None:
    if made:
        shown = ", ".join(made[:5]) + (f" and {len(made) - 5} more" if len(made) > 5 else "")
        _say(f"mrunner: {who} renamed folders of the code: {shown} made whole in the experiment's folder")


def _check(tree: str, layout: contract.Layout) -> None:
    """Restore the watched copy of the code if an experiment changed it, saying so in the attempt's log and
    beside its exit code (``RESTORED_NOTE``: where a backend's status finds it)."""
    from pathlib import Path

    from mrunner import treeguard

    damage = treeguard.check(Path(tree), layout.sweep)
    if damage:
        _say(f"mrunner: {damage}")
        os.makedirs(os.path.dirname(layout.exit_code_file()), exist_ok=True)
        contract.write_atomic(layout.exit_code_file() + RESTORED_NOTE, damage + "\n")


def _signal_named(name: str) -> int:
    return int(getattr(signal, "SIG" + name.upper().removeprefix("SIG")))


# -- a packed task: several points, each an attempt of its own, forked from one process ------------------------


def _run_points(options: argparse.Namespace) -> int:
    """``--points``: the task's points one after another, ``--points-at-once`` at a time, each an attempt of
    its own in a process forked from this one, which imported everything once (a point costs a fork, not a
    Python start and its imports). What the task does before a point starts, a point's attempt does as an
    unpacked one: a point cancelled (its ``--stop-file`` is there) is skipped, its attempt noted
    ``cancelled``; one that completed in an earlier attempt of the task, or that was requeued more than
    ``--requeues-left`` times, is not started again, as a line in its log says. Stopping signals and the
    requeue signal reach the running points (the scheduler may signal them straight too) and no further point
    starts: the task's next attempt runs the points that did not complete. The requeue signal when no point
    runs (none to ask for it) requeues the task here. Returns the last non-zero exit code of a point, so a
    failed point fails the task, as the scheduler's accounting of it shows."""
    try:
        points = _task_points(options.points, options.task)
    except (OSError, ValueError) as error:
        _say(f"mrunner: cannot read task {options.task} of {options.points}: {error}")
        return SETUP_FAILED
    import ctypes  # noqa: F401  (loaded once here for each point's _start, not in every point)

    at_once = max(1, options.points_at_once)
    devices = [device for device in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if device]
    share = len(devices) // at_once
    cores = _cpu_shares(at_once, options.cpus_per_point)
    free = list(range(at_once))
    running: dict[int, int] = {}  # the process of each running point: its slot
    stopped: list[int] = []
    requeue = _signal_named(options.requeue_on) if options.requeue_on else None
    command = json.loads(options.requeue_command)

    def on_signal(number: int, _frame: object) -> None:
        if number in STOPPING or number == requeue:
            stopped.append(number)
        for pid in list(running):
            _signal(pid, number)
        if number == requeue and not running and command:
            _start_requeue(command)

    for number in FORWARDED:
        signal.signal(number, on_signal)
    for early in _early:
        on_signal(early, None)
    _early.clear()
    failed = 0
    for point in points:
        while not free:
            failed = _reap(running, free) or failed
        if stopped:
            break
        slot = free[0]
        gpus = ",".join(devices[slot * share : (slot + 1) * share]) if share else None
        if _start_point(point, options, (gpus, cores[slot] if cores else None), running, slot, stopped):
            free.pop(0)
    while running:
        failed = _reap(running, free) or failed
    return failed


def _cpu_shares(at_once: int, per_point: int) -> list[list[int]] | None:
    """Each slot's CPUs (``--cpus-per-point`` of this process's own, consecutive, apart from the other
    slots'), or None when the points are not bound: one at a time, no count asked, or fewer CPUs here than
    points at once (said in the task's output)."""
    if at_once <= 1 or per_point <= 0 or not hasattr(os, "sched_getaffinity"):
        return None
    own = sorted(os.sched_getaffinity(0))
    each = min(per_point, len(own) // at_once)
    if each < 1:
        _say(f"mrunner: {len(own)} CPUs for {at_once} points at once: the points share them, unbound")
        return None
    if each < per_point:
        _say(f"mrunner: {len(own)} CPUs for {at_once} points at once of {per_point} each: {each} each")
    return [own[slot * each : (slot + 1) * each] for slot in range(at_once)]


def _task_points(path: str, task: int) -> list[dict]:
    """The points of line ``task`` of a packed task file: ``[{"index", "env", "argv"}, ...]``."""
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream):
            if number == task:
                points = json.loads(line)
                if not isinstance(points, list):
                    raise ValueError("not a list of points")
                return points
    raise ValueError("no such task")


def _start_point(
    point: dict,
    options: argparse.Namespace,
    share: tuple[str | None, list[int] | None],
    running: dict[int, int],
    slot: int,
    stopped: list[int],
) -> bool:
    """Start a point's attempt in a forked process (entered in ``running``) on its ``share`` of the task (its
    GPUs, its CPUs), unless it is not to run; whether it started. The checks read only the point's files, so
    a point that does not run costs no process."""
    submitted = int(point["env"].get(contract.ATTEMPT, "0"))
    attempt = submitted + options.restarts
    env = {name: str(value) for name, value in point["env"].items()}
    env[contract.ATTEMPT] = str(attempt)
    try:
        layout = from_environment(env)
    except (KeyError, ValueError) as error:
        _say(f"mrunner: point {point.get('index')} of the task: no experiment layout in its environment: {error}")
        return False
    stop_file = options.stop_file.replace("{index}", str(layout.index)) if options.stop_file else None
    note = layout.exit_code_file() + END_NOTE
    if stop_file and os.path.exists(stop_file):  # cancelled before it started: its attempt never runs
        return _not_started(None, None, note, CANCELLED_NOTE)
    log = layout.log_file()
    done = next((n for n in range(attempt) if contract.read_exit_code(layout.exit_code_file(n)) == 0), None)
    if done is not None:  # e.g. a task requeued after a node was lost while the point went on there and finished
        return _not_started(f"attempt {done} of this experiment completed (exit 0): not run again", log)
    # the earlier attempts that failed and asked for the next (noted `retry`) count against --retries-left;
    # the others that started (left a log: a packed point may not have been reached) against --requeues-left
    retried = requeued = 0
    for number in range(submitted, attempt):
        if _note_at(layout.exit_code_file(number)) == RETRY_NOTE:
            retried += 1
        elif os.path.exists(layout.log_file(number)):
            requeued += 1
    if requeued > options.requeues_left:
        why = f"requeued more than max_requeue={options.requeues_left} times: not started again"
        return _not_started(why, log, note, "preempted")
    own = argparse.Namespace(**vars(options))
    own.points, own.command, own.stop_file = None, list(point["argv"]), stop_file
    own.requeues_left, own.retries_left = options.requeues_left - requeued, options.retries_left - retried
    sys.stdout.flush()
    sys.stderr.flush()
    # no signal between the fork and the point's entry in `running`: the task passes each on to every point
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        if stopped:
            return False
        pid = os.fork()
        if pid == 0:
            _point(own, env, share, log)
        running[pid] = slot
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    return True


def _point(
    options: argparse.Namespace, env: dict[str, str], share: tuple[str | None, list[int] | None], log: str
) -> NoReturn:
    """A point's attempt, in the forked process: its environment, its share of the task (its GPUs in
    ``CUDA_VISIBLE_DEVICES``; bound to its CPUs, which the experiment inherits, and their count in
    ``OMP_NUM_THREADS`` unless set and in ``SLURM_CPUS_PER_TASK``, which libraries size their pools by),
    its output appended to its log, then what an unpacked attempt does (``_attempt``); never returns."""
    gpus, cpus = share
    status = SETUP_FAILED
    try:
        for number in FORWARDED:
            signal.signal(number, _hold)
        _early.clear()
        _stopped.clear()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.environ.update(env)
        if gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus
        if cpus:
            os.sched_setaffinity(0, cpus)
            os.environ.setdefault("OMP_NUM_THREADS", str(len(cpus)))
            if "SLURM_CPUS_PER_TASK" in os.environ:
                os.environ["SLURM_CPUS_PER_TASK"] = str(len(cpus))
        try:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            _output_to(log)
        except OSError as error:
            _say(f"mrunner: cannot set up the experiment: its log {log}: {error.strerror or error}")
            os._exit(SETUP_FAILED)
        if options.launcher:
            line = _launched(options, json.loads(options.launcher))
            try:
                os.execvp(line[0], line)
            except OSError as error:
                _say(f"mrunner: cannot start {line[0]}: {error.strerror}")
                status = 127
        else:
            status = _attempt(options)
    except BaseException:  # a fault of mrunner's own: said in the point's log, never raised on
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _launched(options: argparse.Namespace, launcher: list[str]) -> list[str]:
    """The command line of a point's attempt as a process of its own under ``launcher`` (its last word the
    Python that runs it)."""
    return [
        *launcher[:-1],
        *command_line(
            launcher[-1],
            options.code,
            options.command,
            workdir=options.workdir,
            entries=json.loads(options.entries),
            grace=options.grace,
            config_from=options.config_from,
            log=options.log,
            once=options.once,
            requeue_on=options.requeue_on,
            requeue_command=options.requeue_command,
            requeues_left=options.requeues_left,
            retries_left=options.retries_left,
            view=options.view,
            watch=options.watch,
            stop_file=options.stop_file,
        ),
    ]


def _not_started(why: str | None, log: str | None, note: str | None = None, end: str | None = None) -> bool:
    """A point the task does not start: ``why`` said in its log of this attempt (which tells that the task
    reached it), ``end`` noted in its attempt's ``note`` file. False: no process started."""
    try:
        if log is not None:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            with open(log, "a", encoding="utf-8") as stream:
                stream.write(f"mrunner: {why}\n")
        if note is not None:
            contract.write_atomic(note, f"{end}\n")
    except OSError as error:
        _say(f"mrunner: a point not started ({why or end}): cannot record it: {error.strerror or error}")
    return False


def _reap(running: dict[int, int], free: list[int]) -> int:
    """Wait for a point to end, free its slot; its exit status (128 + N when killed by signal N)."""
    pid, wait_status = os.waitpid(-1, 0)
    slot = running.pop(pid, None)
    if slot is None:  # a requeue command this process started
        return 0
    free.append(slot)
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _start_requeue(command: list[str]) -> None:
    """Start ``command`` (a scheduler's requeue of this job) on its own: the scheduler stops this job then."""
    import subprocess

    try:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as error:
        _say(f"mrunner: cannot requeue with {command[0]}: {error.strerror}")


def _watch(stop_file: str, note: str) -> None:
    """Stop this attempt as a SIGTERM would once ``stop_file`` appears, noting its end ``cancelled``."""

    import threading

    def look() -> None:
        while not os.path.exists(stop_file):
            threading.Event().wait(STOP_FILE_INTERVAL)
        contract.write_atomic(note, CANCELLED_NOTE + "\n")
        _say("mrunner: this experiment was cancelled (mrunner cancel): stopping it")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=look, name="mrunner-stop-file", daemon=True).start()


def _told_to_start() -> bool:
    """Wait for the starter's ``start`` on stdin; then stdin is the null device (the experiment reads none)."""
    told = sys.stdin.buffer.readline() == START
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return told


def _for_attempt(document: str | None, attempt: int) -> str | None:
    """The config document as the attempt sees it (written for the submitted attempt; a requeue or a retry
    runs a later one)."""
    if document is None:
        return None
    described = json.loads(document)
    return document if described.get("attempt") == attempt else json.dumps({**described, "attempt": attempt})


def retried(layout: contract.Layout) -> bool:
    """Whether the layout's attempt failed by itself and was started again as the next attempt
    (``--retries-left``): a backend that reads exit codes looks at the next attempt then."""
    return _note(layout) == RETRY_NOTE and contract.read_exit_code(layout.exit_code_file()) is not None


def _note(layout: contract.Layout) -> str | None:
    return _note_at(layout.exit_code_file())


def _note_at(exit_code_file: str) -> str | None:
    try:
        with open(exit_code_file + END_NOTE, encoding="ascii") as stream:
            return stream.read().strip() or None
    except (OSError, ValueError):
        return None


def _output_to(log: str) -> None:
    """Point this process's stdout and stderr (and so the next experiment's) at ``log``, appending."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


#: Beside an attempt's exit-code file: how the attempt was stopped when the wrapper knows it (``timeout``), or
#: ``retry`` when it failed by itself and the wrapper asked for the next attempt (``retry_failed``).
END_NOTE = ".end"
#: Beside an attempt's exit-code file: what the watch over the code found changed, and restored, before it.
RESTORED_NOTE = ".restored"
RETRY_NOTE = "retry"
CANCELLED_NOTE = "cancelled"


def run(
    command: Sequence[str],
    cwd: str,
    environ: dict[str, str],
    exit_code_file: str,
    grace: float,
    log: str | None = None,
    requeue: tuple[int, list[str]] | None = None,
    retry: list[str] | None = None,
    settle: Callable[[], None] | None = None,
) -> int:
    """Run ``command`` in its own process group, pass signals on, record and return its exit code. With
    ``log``, the output also goes to that file (for a platform whose own log of the process does not last,
    such as a pod's).

    With ``requeue`` (signal, argv): that signal (a scheduler's warning before the time limit) is passed on
    to the experiment, so it can save, and then the argv requeues the job, which the scheduler stops and
    starts again as the next attempt; the attempt's end is noted as ``timeout``.

    With ``retry`` (argv): when the experiment fails by itself, the attempt's end is noted ``retry`` (before
    its exit code is written, so a reader never sees the failure without the note) and the argv requeues the
    job for the next attempt; if it cannot, the note goes and the failure is the end. An empty argv leaves
    the next attempt to the caller (``main`` runs it in this process).

    With ``settle``: called once the experiment's process group is gone, before its end is written (the
    view's folder made whole, ``_settle_view``)."""
    stopped = [number for number in _early if number in STOPPING]
    if stopped:  # stopped before it started: it never runs, and its end is not its own
        _say(f"mrunner: stopped by signal {stopped[0]} before the experiment started")
        return 128 + stopped[0]
    try:
        pid, output = _start(list(command), cwd, environ, piped=bool(log))
    except OSError as error:
        _say(f"mrunner: cannot start {command[0]}: {error.strerror}")
        _write_end(exit_code_file, 127)
        return 127
    killer: list[object] = []
    requeued: list[int] = []

    def forward(number: int, _frame: object) -> None:
        if number in STOPPING:
            _stopped.append(number)
        if _exited(pid):
            return  # it ended before the signal: its end is its own
        _signal_group(pid, number)
        if requeue is not None and number == requeue[0] and not requeued:
            requeued.append(number)
            contract.write_atomic(exit_code_file + END_NOTE, "timeout\n")
            _start_requeue(requeue[1])
        if number in STOPPING and not killer:
            import threading  # only now: see _start

            timer = threading.Timer(grace, _signal_group, (pid, signal.SIGKILL))
            timer.daemon = True
            timer.start()
            killer.append(timer)

    for number in FORWARDED:
        signal.signal(number, forward)
    for early in _early:  # a warning (SIGUSR1) that came while it was being set up
        forward(early, None)
    _early.clear()
    copier = None
    if log and output is not None:
        import threading

        copier = threading.Thread(target=_copy, args=(output, log), daemon=True)
        copier.start()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    # Nothing of its process group outlives the attempt, however it ended: a worker or a `cmd &` it left behind
    # would run on unsupervised after its end is recorded, holding its CPUs or GPU for the next experiment (as
    # a Slurm job's end or a pod's ends every process of it). Before the log's copier is joined: such a
    # process may hold the pipe.
    _signal_group(pid, signal.SIGKILL)
    if copier is not None:
        copier.join(5.0)
    if settle is not None:
        settle()
    status = 128 - code if code < 0 else code
    # Stopped, by the signal passed on or by one sent to it straight (a scheduler such as Slurm signals every
    # process of the job, so the experiment can die before this process's own signal arrives): its end is not
    # its own.
    halted = bool(killer) or -code in STOPPING
    if requeued and code == -requeued[0]:  # the warning passed on killed it (no handler): the time limit's end
        _say(f"mrunner: the experiment was stopped by the warning before the time limit ({signal.Signals(-code).name})")
        halted = True
    if code < 0 and not halted:  # its own crash, or a signal passed on: the log says which (the record names it too)
        _say(f"mrunner: the experiment was killed by {signal.Signals(-code).name}")
        _tell_the_platform(f"killed by {signal.Signals(-code).name}")
    halted_by[:] = [next((number for number in _stopped if number in STOPPING), signal.SIGTERM)] if halted else []
    if status == 0:
        # Exit 0 is the experiment's own word that its work is done: completed, whatever signal came after it
        # (or raced `forward`'s look), so that nothing finished is ever run again.
        _write_end(exit_code_file, 0)
    elif halted:  # its end is not its own, but what its script did with the stop is worth a look
        try:
            contract.write_atomic(exit_code_file + contract.STOPPED_NOTE, f"{code}\n")
        except OSError as error:
            _say(f"mrunner: cannot note the stopped experiment's exit code {code}: {error.strerror or error}")
    elif retry is not None and not requeued and not _stopped:
        _retry(exit_code_file, code, retry)
    else:
        _write_end(exit_code_file, code)  # -N: killed by signal N, which an exit code of 128 + N cannot tell
    return status


#: The environment variable naming the file a platform reads as the container's last word (Kubernetes: its
#: ``terminationMessagePath``): the wrapper, PID 1 there, exits 128 + N for a death by signal N, which an
#: exit code of the experiment's own can equal, so it says there that a signal killed it.
TERMINATION_LOG = "MRUNNER_TERMINATION_LOG"


def _tell_the_platform(text: str) -> None:
    path = os.environ.get(TERMINATION_LOG)
    if path:
        try:
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as error:
            _say(f"mrunner: cannot write {path}: {error.strerror or error}")


def _write_end(exit_code_file: str, status: int) -> None:
    """Write the exit code; a disk too full for it (or gone) is said in the log, and the exit status of this
    process still tells it to a starter that waits for it (the local supervisor)."""
    try:
        contract.write_exit_code(exit_code_file, status)
    except OSError as error:
        _say(f"mrunner: cannot write the exit code {status} to {exit_code_file}: {error.strerror or error}")


def _say(line: str) -> None:
    """A line of the wrapper's own to stderr (the attempt's log); a full disk must not turn it into a crash."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _retry(exit_code_file: str, status: int, command: list[str]) -> None:
    """Record the failure (``status``: its exit code, or -N when signal N killed it) with the note that it is
    retried, then ask for the next attempt (the scheduler stops this job: its signals find the experiment
    gone)."""
    note = exit_code_file + END_NOTE
    contract.write_atomic(note, RETRY_NOTE + "\n")
    contract.write_atomic(exit_code_file, f"{status}\n")
    _say(f"mrunner: the experiment failed (exit {status}): starting it again as the next attempt")
    if not command:
        return
    import subprocess

    try:
        asked = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        refusal = (asked.stderr.strip() or f"exit status {asked.returncode}") if asked.returncode else ""
    except OSError as error:
        refusal = error.strerror or str(error)
    if refusal:
        os.unlink(note)
        _say(f"mrunner: cannot start it again with {command[0]}: {refusal}")


def _started_before(log: str) -> bool:
    """Create the attempt's log; True when it was there already (created by an earlier start of it)."""
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    try:
        os.close(os.open(log, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return True
    return False


def _copy(source: int, log: str) -> None:
    """Pass the experiment's output on to this process's stdout and append it to ``log``."""
    with open(log, "ab") as copy:
        while True:
            chunk = os.read(source, 65536)
            if not chunk:
                return
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            copy.write(chunk)
            copy.flush()


def _start(command: list[str], cwd: str, env: dict[str, str], piped: bool) -> tuple[int, int | None]:
    """Start the experiment: its pid, and with ``piped`` the descriptor its output (stdout and stderr) comes
    out of. Raises ``OSError`` when it cannot start (the command, or ``cwd``), as ``subprocess.Popen`` would.

    The experiment's process leads a process group of its own (the signals passed on reach its children too;
    it stays in this wrapper's session, which a starter can stop as a whole) and on Linux dies with this
    wrapper, so that a wrapper killed outright (SIGKILL) leaves no experiment running unsupervised. That tie
    (``PR_SET_PDEATHSIG``) must be made by the experiment's process itself between the fork and the exec, so
    this is a fork (``subprocess`` would fork too, for its ``preexec_fn``), made without ``subprocess``: a
    fork of a process that imported ``threading`` (which ``subprocess`` imports) runs ``threading``'s at-fork
    hook in the child, which, with the interpreter's writes to every page of code and objects it touches,
    costs a wrapper about as much as the rest of the fork (benchmarks/results-core.md). So this module
    imports ``threading`` and ``subprocess`` only where a rarer path needs them, after the experiment started."""
    prctl = None
    if sys.platform == "linux":
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    wrapper = os.getpid()
    report_read, report_write = os.pipe()  # both close on exec: the child's end tells an exec that failed
    output, into = os.pipe() if piped else (None, None)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # this process's handlers: never in the child
    try:
        pid = os.fork()
        if pid == 0:
            try:
                for number in FORWARDED:
                    signal.signal(number, signal.SIG_DFL)
                for number in _RESTORED:  # as ``subprocess`` does: Python ignores them, an exec would keep that
                    signal.signal(number, signal.SIG_DFL)
                os.setpgid(0, 0)
                if prctl is not None:
                    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                    if os.getppid() != wrapper:  # the wrapper died before the request took effect
                        os._exit(128 + signal.SIGKILL)
                if into is not None:
                    os.dup2(into, 1)
                    os.dup2(into, 2)
                os.closerange(3, report_write)  # what this process holds is not the experiment's
                os.closerange(report_write + 1, _MAX_FD)
                os.chdir(cwd)
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                os.execvpe(command[0], command, env)
            except OSError as error:
                os.write(report_write, str(error.errno or 0).encode())
            finally:
                os._exit(127)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(report_write)
        if into is not None:
            os.close(into)
    try:
        failure = os.read(report_read, 32)
    finally:
        os.close(report_read)
    if failure:
        os.waitpid(pid, 0)
        if output is not None:
            os.close(output)
        code = int(failure)
        raise OSError(code, os.strerror(code))
    return pid, output


#: Signals Python ignores at start that an experiment gets with their default action again.
_RESTORED = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name))
_MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 256
_PR_SET_PDEATHSIG = 1


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (``wait`` in the main thread does that)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pid: int, number: int) -> None:
    try:
        os.killpg(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

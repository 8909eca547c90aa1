"""`mrunner status`, `logs`, `cancel` and `resume`: working on recorded sweeps from any shell."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict

from mrunner import following, mlflow_ends, plugins, records, table
from mrunner.backend import SubmitOptions
from mrunner.commands import GROUP_OPTIONS, shorthands
from mrunner.errors import MrunnerError, NoLog, NotRecorded, mask_credentials
from mrunner.following import counts_text
from mrunner.recorder import STOPPED
from mrunner.records import (
    CANCELLED,
    COMPLETED,
    FAILED,
    LOST,
    PENDING,
    PLANNED,
    PREEMPTED,
    RUNNING,
    SUBMITTED,
    TERMINAL,
    TIMEOUT,
    Attempt,
    Run,
    Sweep,
)
from mrunner.reporter import Reporter
from mrunner.states import UNFINISHED
from mrunner.store import RECORD_CHUNK, Store


def _say(line: str) -> None:
    """A line of prose above a table, broken between words to the terminal's width."""
    print(table.fit(line))


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# -- status --------------------------------------------------------------------------------------------------


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Without SWEEP: the recent sweeps, as last recorded (no backend is asked: a cluster that wants a "
        "one-time code is not contacted). With SWEEP: its counts and the rows worth a look (failed, running, "
        "the first and last few; --all: every row). With SWEEP/INDEX: one experiment. Asks the backend once."
    )
    parser.add_argument("sweep", nargs="?", metavar="SWEEP|EXPERIMENT", help="a sweep id (or prefix), or SWEEP/INDEX")
    parser.add_argument("--limit", type=_count, default=10, help="how many recent sweeps to list (default 10)")
    parser.add_argument("--all", action="store_true", help="every experiment of SWEEP, not only the rows worth a look")
    parser.add_argument("--json", action="store_true", help="machine-readable output (every experiment of SWEEP)")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="with SWEEP: follow it to its end first (a progress bar on a terminal, else a line each time the "
        "counts change; with tracking: deferred, then upload its new metrics); exits 1 if an experiment did not complete",
    )


def _count(text: str) -> int:
    """``--limit N``: a whole number from 1 (0 read as "no sweeps recorded yet", and -1 as every sweep)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return min(value, 2**63 - 1)  # more than the records can count lists every sweep, as a large count does


#: ``status SWEEP`` shows this many of the first and of the last rows, and at most ``SHOWN_OF_STATE`` rows of
#: each state worth a look (failed or stopped without completing, running); a sweep of at most ``ALL_ROWS``
#: rows is shown whole.
FIRST_AND_LAST = 5
SHOWN_OF_STATE = 20
WORTH_A_LOOK = (FAILED, TIMEOUT, LOST, PREEMPTED, RUNNING)
ALL_ROWS = 40


def status_command(options: argparse.Namespace) -> int:
    store = Store()
    if options.sweep is None:
        if options.wait or options.all:
            flag = "--wait" if options.wait else "--all"
            raise MrunnerError(f"status {flag} is about one sweep: name it (mrunner status SWEEP {flag})")
        return _list_sweeps(store, options)
    sweep, run = store.find(options.sweep)
    if options.wait:
        from mrunner.commands.results import upload_deferred  # its trackers' modules: only for a --wait

        following.wait(sweep, store, Reporter())
        upload_deferred(store, sweep, None, Reporter())
        sweep = store.sweep(sweep.id)  # as it ended: why its supervisor stopped came during the wait
    else:
        try:
            following.ask(sweep, store, None if run is None else run.index)
        except NotRecorded as error:  # what the backend says now is lost, what was recorded can still be shown
            print(mask_credentials(f"mrunner: warning: {error}; shown as last recorded"), file=sys.stderr)
        mlflow_ends.settle(store, sweep, Reporter())  # the ends learnt now, as the MLflow runs' status
    if run is not None:
        run = store.run(sweep.id, run.index)
        shown = _show_run(store, sweep, run, options)
        return shown or int(options.wait and run.state != COMPLETED)
    shown = _show_sweep(store, sweep, options)
    return shown or int(options.wait and set(store.counts(sweep.id)) != {COMPLETED})


def _show_sweep(store: Store, sweep: Sweep, options: argparse.Namespace) -> int:
    if options.json:
        _write_json(store, sweep)
        return 0
    counts = store.counts(sweep.id)
    total = sum(counts.values())
    _say(f"sweep {sweep.id} ({sweep.name}) on context {sweep.context_name} (backend {sweep.backend})")
    dirty = " (dirty)" if sweep.git_dirty else ""
    commit = f", git {sweep.git_commit[:10]}{dirty}" if sweep.git_commit else ""
    _say(f"created {_when(sweep.created_at)}, snapshot {sweep.snapshot_digest[:12]}{commit}")
    if sweep.detail.get(STOPPED):
        _say(f"its supervisor stopped before the end: {sweep.detail[STOPPED]}")
    waiting = store.runs(sweep.id, [PENDING], limit=SHOWN_OF_STATE * 10)
    reasons = store.latest_details(sweep.id, [r.index for r in waiting])
    _say(f"{total} experiment{'' if total == 1 else 's'}: {counts_text(counts, list(dict.fromkeys(reasons.values())))}")
    classes = store.resource_classes(sweep.id)
    if len(classes) > 1 or "" not in classes:  # experiments ask for resources of their own
        _say(
            "resources: "
            + ", ".join(f"{label or 'the context as it is'} ({count})" for label, count in classes.items())
        )
    if options.all or total <= ALL_ROWS:
        shown = list(store.iter_runs(sweep.id))
    else:
        chosen = {r.index: r for r in store.runs(sweep.id, limit=FIRST_AND_LAST)}
        chosen.update((r.index, r) for r in store.runs(sweep.id, limit=FIRST_AND_LAST, last=True))
        for state in WORTH_A_LOOK:
            chosen.update((r.index, r) for r in store.runs(sweep.id, [state], limit=SHOWN_OF_STATE))
        shown = [chosen[index] for index in sorted(chosen)]
    # what the backend last said about a run that has not completed: why it waits, why it failed
    details = store.latest_details(sweep.id, [r.index for r in shown if r.state not in (COMPLETED, PLANNED)])
    from mrunner import grid

    by_class = len(classes) > 1  # a column of what each asks for, where they differ
    rows: list[tuple[object, ...]] = []
    for before, r in zip([None, *shown], shown):
        if before is not None and r.index != before.index + 1:
            rows.append(("…",))  # rows left out
        rows.append(
            (
                r.index,
                r.id[:12],
                r.state,
                "" if r.exit_code is None else r.exit_code,
                r.attempt,
                r.backend_ref or "",
                *([r.resource_class] if by_class else []),
                grid.describe(r.parameters),
                details.get(r.index, ""),
            )
        )
    header = ("#", "ID", "STATE", "EXIT", "TRY", "JOB", *(["RESOURCES"] if by_class else []), "PARAMETERS", "REASON")
    # on a narrow terminal the id, the job, the try, the reason and the exit give way to the state and parameters
    print(table.render(header, rows, drop=(1, 5, 4, len(header) - 1, 3)))
    if len(shown) < total:
        _say(f"{len(shown)} of {total} rows shown; --all shows every row")
    return 0


def _shallow(record: Run | Attempt) -> dict[str, object]:
    """A record's fields as a dict, as ``asdict`` makes it without copying every value deeply (its values are
    fresh from the records, not shared): ``asdict`` took most of the time of a large sweep's ``--json``. A
    dataclass's ``__dict__`` holds exactly its fields, in their order."""
    return dict(vars(record))


def _write_json(store: Store, sweep: Sweep) -> None:
    """Every experiment of the sweep as one JSON document, read from the records and written a chunk of runs
    at a time: neither the time to the first experiment nor memory grows with the sweep."""
    out = sys.stdout
    out.write('{"sweep": ' + json.dumps(records.shown(sweep), indent=1) + ',\n"experiments": [')
    first = True
    for chunk in _chunks(store, sweep.id):
        start, stop = chunk[0].index, chunk[-1].index + 1
        attempts = store.attempts(sweep.id, start=start, stop=stop)
        places = _output_dirs(sweep, chunk)
        details = store.latest_details(sweep.id, [r.index for r in chunk if r.state not in (COMPLETED, PLANNED)])
        for r in chunk:
            experiment = {
                **_shallow(r),
                "detail": details.get(r.index),
                "output_dir": places.get(r.index),
                "attempts": [_shallow(a) for a in attempts.get(r.index, [])],
            }
            out.write(("\n" if first else ",\n") + mask_credentials(json.dumps(experiment)))
            first = False
    out.write("\n]}\n")


def _chunks(store: Store, sweep_id: str) -> Iterator[list[Run]]:
    """The sweep's runs from the records, ``RECORD_CHUNK`` at a time."""
    start = 0
    while chunk := store.runs(sweep_id, start=start, limit=RECORD_CHUNK):
        yield chunk
        start = chunk[-1].index + 1


def _list_sweeps(store: Store, options: argparse.Namespace) -> int:
    rows = []
    listing = []
    for sweep in store.sweeps(options.limit):
        counts = store.counts(sweep.id)  # the records alone: listing reaches no cluster (`status SWEEP` does)
        states = counts_text(counts, [])
        rows.append((sweep.id, sweep.name, sweep.context_name, _when(sweep.created_at), sum(counts.values()), states))
        listing.append({"sweep": records.shown(sweep), "states": states})
    if options.json:
        print(json.dumps(listing, indent=1))
    elif not rows:
        print("no sweeps recorded yet")
    else:
        header = ("SWEEP", "NAME", "CONTEXT", "CREATED", "EXPERIMENTS", "STATES")
        # narrow: the sweep and its states, each state whole (the list goes on below its row)
        print(table.render(header, rows, drop=(3, 2, 1, 4), wrap=(5,)))
    return 0


def _output_dirs(sweep: Sweep, runs: list[Run]) -> dict[int, str]:
    """Where each experiment's folder is on its backend (empty when the backend does not say)."""
    return plugins.backend(sweep.backend).output_dirs(sweep, runs)


def _show_run(store: Store, sweep: Sweep, run: Run, options: argparse.Namespace) -> int:
    history = store.history(sweep.id, run.index)
    attempts = store.attempts(sweep.id, run.index).get(run.index, [])
    place = _output_dirs(sweep, [run]).get(run.index)
    if options.json:
        experiment = {**asdict(run), "output_dir": place}
        shown = {"experiment": experiment, "attempts": [asdict(a) for a in attempts], "history": history}
        print(mask_credentials(json.dumps(shown, indent=1)))
        return 0
    _say(f"experiment {run.ref} ({run.name}), id {run.id}")
    _say(
        f"state {run.state}"
        + ("" if run.exit_code is None else f", exit code {run.exit_code}")
        + f", attempt {run.attempt}"
    )
    from mrunner import grid

    _say(f"parameters: {grid.describe(run.parameters) or '(none)'}")
    if run.resources:
        _say(f"resources: {run.resource_class} (beyond context {sweep.context_name})")
    _say(f"command: {' '.join(run.command)}")
    if place:
        _say(f"output folder: {place} (`mrunner pull {run.ref}` brings it here)")
    print(
        table.render(
            ("TRY", "STARTED", "HOW", "SNAPSHOT", "CHANGED", "ENDED", "END", "EXIT", "DETAIL"),
            [
                (
                    a.number,
                    _when(a.started_at),
                    a.cause,
                    a.snapshot_digest[:12],
                    " ".join(f"{k}={v}" for k, v in a.changes.items()),
                    "" if a.ended_at is None else _when(a.ended_at),
                    a.end or ("" if a.number < run.attempt else run.state),
                    "" if a.exit_code is None else a.exit_code,
                    a.detail or "",
                )
                for a in attempts
            ],
            drop=(3, 4, 2, 1, 5),  # narrow: how each attempt ended before where and when it started
        )
    )
    print(
        table.render(
            ("WHEN", "STATE", "EXIT", "DETAIL"),
            [(_when(at), state, "" if code is None else code, detail or "") for at, state, code, detail in history],
            drop=(2,),
        )
    )
    return 0


# -- logs ----------------------------------------------------------------------------------------------------


def logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "An experiment's output (stdout and stderr)."
    parser.add_argument("experiment", metavar="EXPERIMENT", help="SWEEP/INDEX, or a prefix of the experiment's id")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output until it ends")
    parser.add_argument(
        "--attempt", type=int, metavar="N", help="the output of attempt N (default: the latest; 0 is the first)"
    )


def logs_command(options: argparse.Namespace) -> int:
    store = Store()
    sweep, run = store.find_run(options.experiment)
    plugins.backend(sweep.backend)
    if run.state == PLANNED:
        raise MrunnerError(
            f"experiment {run.ref} was never submitted, so it has no output (`mrunner resume {sweep.id}`)"
        )

    def ended() -> bool:  # asks about this experiment alone: a poll costs the same in a sweep of 50,000
        if store.run(sweep.id, run.index).state in TERMINAL:
            return True
        following.ask(sweep, store, run.index)
        return store.run(sweep.id, run.index).state in TERMINAL

    follow = options.follow
    if options.attempt is not None and options.attempt != run.attempt:
        if not 0 <= options.attempt < run.attempt:
            raise MrunnerError(
                f"experiment {run.ref} has attempts 0 to {run.attempt}; --attempt {options.attempt} is not one of them"
            )
        run, follow = dataclasses.replace(run, attempt=options.attempt), False  # an earlier attempt has ended
    chunks = plugins.backend(sweep.backend).logs(sweep, run, follow, ended)
    if chunks is None:
        raise MrunnerError(f"backend {sweep.backend!r} answered nothing to logs: a bug in its plugin")
    printed = False
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
            printed = True
    except NoLog as missing:
        why = _why_ended(store, sweep, run)
        raise NoLog(f"{missing}: {why}" if why else f"{missing} (the records do not say why)") from None
    now = store.run(sweep.id, run.index)
    if not printed and now.attempt == run.attempt and now.state in TERMINAL and now.state != COMPLETED:
        # an empty log of an attempt that did not complete: its output may be what a full disk kept from it
        why = _why_ended(store, sweep, run)
        print(
            mask_credentials(
                f"mrunner: experiment {run.ref} printed nothing in attempt {run.attempt} ({now.state}"
                f"{': ' + why if why else ''})"
            ),
            file=sys.stderr,
        )
    elif not printed and now.state in (SUBMITTED, PENDING):  # queued: no output yet, which is not "none"
        detail = store.latest_details(sweep.id, [run.index]).get(run.index)
        print(
            mask_credentials(
                f"mrunner: experiment {run.ref} has not started yet ({now.state}{': ' + detail if detail else ''}); "
                f"`mrunner logs {run.ref} -f` waits for its output"
            ),
            file=sys.stderr,
        )
    return 0


def _why_ended(store: Store, sweep: Sweep, run: Run) -> str | None:
    """What the records say of how ``run``'s attempt ended (they keep it of the latest attempt only)."""
    if store.run(sweep.id, run.index).attempt != run.attempt:
        return None
    return store.latest_details(sweep.id, [run.index]).get(run.index)


# -- cancel --------------------------------------------------------------------------------------------------


def cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Cancel a sweep's queued and running experiments, or one experiment."
    parser.add_argument("target", metavar="SWEEP|EXPERIMENT", help="a sweep id (or prefix), or SWEEP/INDEX")


def cancel_command(options: argparse.Namespace) -> int:
    store = Store()
    sweep, run = store.find(options.target)
    candidates = [run] if run is not None else store.runs(sweep.id, UNFINISHED)  # the ended ones stay undecoded
    open_runs = [r for r in candidates if r.state not in TERMINAL]
    if not open_runs:
        print(f"nothing to cancel: {'experiment ' + run.ref if run else 'sweep ' + sweep.id} has ended")
        return 0
    updates = following.cancel(sweep, open_runs, store)
    mlflow_ends.settle(store, sweep, Reporter())  # KILLED in MLflow
    # the records may not have known yet that an experiment had ended (the cluster was not asked since): it
    # keeps its real end, and is not counted as cancelled
    stopped = sum(update.state == CANCELLED for update in updates)
    ended = len(updates) - stopped
    line = f"cancelled {stopped} experiment{'s' * (stopped != 1)} of sweep {sweep.id}"
    print(line + (f" ({ended} had ended by {'itself' if ended == 1 else 'themselves'} first)" if ended else ""))
    return 0


# -- resume --------------------------------------------------------------------------------------------------


def resume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Submit again exactly the experiments of SWEEP that never started or ended without completing "
        "(failed, cancelled, timed out, preempted, lost) as their next attempt, from the sweep's recorded code "
        "snapshot (or the current code with --current-code), optionally with changed resources and limits "
        "(context.KEY=VALUE or the options below). Completed experiments never run again."
    )
    parser.add_argument("sweep", metavar="SWEEP", help="a sweep id (or prefix)")
    parser.add_argument("changes", nargs="*", metavar="context.KEY=VALUE", help="a context key the attempts get")
    ending = parser.add_mutually_exclusive_group()  # both: the resume detached and --wait went unsaid
    ending.add_argument("--detach", action="store_true", help="return at once (local: run in the background)")
    ending.add_argument("--wait", action="store_true", help="wait until every experiment has ended")
    parser.add_argument(
        "--current-code",
        action="store_true",
        help="run the project folder's code as it is now (a new snapshot, recorded with the attempts); project "
        "files an earlier attempt changed give way to it (set aside in SWEEP/set-aside/), the experiments' own "
        "files stay",
    )
    group = parser.add_argument_group("context keys for the new attempts, where the sweep's backend has the key")
    honoured = shorthands.honouring(GROUP_OPTIONS)
    options = [
        group.add_argument(f"--{option}", metavar="VALUE", help=shorthands.option_help(option, honoured[option]))
        for option in GROUP_OPTIONS
    ]
    # argparse's own --help gives way (the subcommands' parsers resolve a conflict) to one that knows the sweep
    parser.add_argument("-h", "--help", action=_ResumeHelp, group=group, options=options, honoured=honoured)


class _ResumeHelp(argparse.Action):
    """``mrunner resume SWEEP --help``: with the sweep named, its backend is known, and the help says plainly
    which of the options it refuses (without a sweep, or an unknown one, the help of every backend)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        group: argparse._ArgumentGroup,
        options: list[argparse.Action],
        honoured: dict[str, list[str]],
        **_: object,
    ) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show this help message and exit",
        )
        self.group, self.options, self.honoured = group, options, honoured

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: object) -> None:
        named = getattr(namespace, "sweep", None)
        try:
            sweep = Store().sweep(named) if named else None
        except MrunnerError:
            sweep = None
        if sweep is not None:
            whose = f"sweep {sweep.id}"
            self.group.title = shorthands.group_title(self.group.title or "", self.honoured, sweep.backend, whose)
            for action in self.options:
                option = action.dest
                action.help = shorthands.option_help(option, self.honoured[option], sweep.backend, "sweep")
        parser.print_help()
        parser.exit()


def resume_command(options: argparse.Namespace) -> int:
    from mrunner import resuming

    store = Store()
    reporter = Reporter()
    sweep = store.sweep(options.sweep)
    given = [o for o in GROUP_OPTIONS if getattr(options, o) is not None]
    shorthands.refuse_unhonoured(given, GROUP_OPTIONS, sweep.backend, f"sweep {sweep.id}")
    changes = list(options.changes)
    changes += [f"context.{o}={getattr(options, o)}" for o in GROUP_OPTIONS if getattr(options, o) is not None]
    resumed = resuming.resume(
        sweep, store, reporter, SubmitOptions(detach=options.detach), changes, current_code=options.current_code
    )
    if not resumed:
        return 0
    if options.wait:
        following.wait(sweep, store, reporter)
    counts = store.counts(sweep.id)  # not the runs themselves: the wait read only what each look needed
    ended = set(counts) <= TERMINAL  # run inline, or waited for
    if ended:
        from mrunner.commands.run import tell_trackers

        tell_trackers(store, sweep, reporter)
    reporter.step(f"sweep {sweep.id}: {counts_text(counts, [])}")
    if ended:
        return 0 if set(counts) == {COMPLETED} else 1
    return 0

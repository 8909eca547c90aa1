"""`mrunner status`, `logs`, `cancel` and `resume`: working on recorded sweeps from any shell."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import asdict

from mrunner import following, table
from mrunner.backend import SubmitOptions
from mrunner.commands import GROUP_OPTIONS
from mrunner.commands.results import output_dirs
from mrunner.errors import MrunnerError
from mrunner.recorder import STOPPED
from mrunner.records import COMPLETED, PLANNED, TERMINAL, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# -- status --------------------------------------------------------------------------------------------------


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Without SWEEP: the recent sweeps, as last recorded (no backend is asked: a cluster that wants a "
        "one-time code is not contacted). With SWEEP: its experiments (asks the backend once)."
    )
    parser.add_argument("sweep", nargs="?", metavar="SWEEP|EXPERIMENT", help="a sweep id (or prefix), or SWEEP/INDEX")
    parser.add_argument("--limit", type=int, default=10, help="how many recent sweeps to list (default 10)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--wait", action="store_true",
        help="with SWEEP: follow it to its end first (a progress bar on a terminal, else a line each time the "
        "counts change); exits 1 if an experiment did not complete",
    )  # fmt: skip


def status_command(options: argparse.Namespace) -> int:
    store = Store()
    if options.sweep is None:
        return _list_sweeps(store, options)
    sweep, run = store.find(options.sweep)
    if options.wait:
        runs = following.wait(sweep, store, Reporter())
        looked = runs if run is None else [runs[run.index]]
        shown = _show_sweep(store, sweep, runs, options) if run is None else _show_run(store, sweep, looked[0], options)
        return shown or int(any(r.state != COMPLETED for r in looked))
    runs = following.refresh(sweep, store)
    if run is not None:
        return _show_run(store, sweep, runs[run.index], options)
    return _show_sweep(store, sweep, runs, options)


def _show_sweep(store: Store, sweep: Sweep, runs: list[Run], options: argparse.Namespace) -> int:
    # what the backend last said about a run that has not completed: why it waits, why it failed
    details = {i: d for i, d in store.details(sweep.id).items() if runs[i].state not in (COMPLETED, PLANNED)}
    if options.json:
        attempts = store.attempts(sweep.id)
        places = output_dirs(sweep, runs)
        experiments = [
            {
                **asdict(r), "detail": details.get(r.index), "output_dir": places.get(r.index),
                "attempts": [asdict(a) for a in attempts.get(r.index, [])],
            }
            for r in runs
        ]  # fmt: skip
        print(json.dumps({"sweep": asdict(sweep), "experiments": experiments}, indent=1))
        return 0
    print(f"sweep {sweep.id} ({sweep.name}) on context {sweep.context_name} (backend {sweep.backend})")
    dirty = " (dirty)" if sweep.git_dirty else ""
    commit = f", git {sweep.git_commit[:10]}{dirty}" if sweep.git_commit else ""
    print(f"created {_when(sweep.created_at)}, snapshot {sweep.snapshot_digest[:12]}{commit}")
    if sweep.detail.get(STOPPED):
        print(f"its supervisor stopped before the end: {sweep.detail[STOPPED]}")
    print(f"{len(runs)} experiments: {following.summary(runs, details)}")
    from mrunner import grid

    rows = [
        (r.index, r.id[:12], r.state, "" if r.exit_code is None else r.exit_code, r.attempt, r.backend_ref or "", grid.describe(r.parameters), details.get(r.index, ""))
        for r in runs
    ]  # fmt: skip
    print(table.render(("#", "ID", "STATE", "EXIT", "TRY", "JOB", "PARAMETERS", "REASON"), rows))
    return 0


def _list_sweeps(store: Store, options: argparse.Namespace) -> int:
    rows = []
    listing = []
    for sweep in store.sweeps(options.limit):
        runs = store.runs(sweep.id)  # the records alone: listing reaches no cluster (`status SWEEP` does)
        rows.append(
            (sweep.id, sweep.name, sweep.context_name, _when(sweep.created_at), len(runs), following.summary(runs))
        )
        listing.append({"sweep": asdict(sweep), "states": following.summary(runs)})
    if options.json:
        print(json.dumps(listing, indent=1))
    elif not rows:
        print("no sweeps recorded yet")
    else:
        print(table.render(("SWEEP", "NAME", "CONTEXT", "CREATED", "EXPERIMENTS", "STATES"), rows))
    return 0


def _show_run(store: Store, sweep: Sweep, run: Run, options: argparse.Namespace) -> int:
    history = store.history(sweep.id, run.index)
    attempts = store.attempts(sweep.id, run.index).get(run.index, [])
    place = output_dirs(sweep, [run]).get(run.index)
    if options.json:
        experiment = {**asdict(run), "output_dir": place}
        print(
            json.dumps(
                {"experiment": experiment, "attempts": [asdict(a) for a in attempts], "history": history}, indent=1
            )
        )
        return 0
    print(f"experiment {run.ref} ({run.name}), id {run.id}")
    print(
        f"state {run.state}"
        + ("" if run.exit_code is None else f", exit code {run.exit_code}")
        + f", attempt {run.attempt}"
    )
    from mrunner import grid

    print(f"parameters: {grid.describe(run.parameters) or '(none)'}")
    print(f"command: {' '.join(run.command)}")
    if place:
        print(f"output folder: {place} (`mrunner pull {run.ref}` brings it here)")
    print(table.render(("TRY", "STARTED", "HOW", "SNAPSHOT", "CHANGED", "ENDED", "END", "EXIT", "DETAIL"), [
        (a.number, _when(a.started_at), a.cause, a.snapshot_digest[:12],
         " ".join(f"{k}={v}" for k, v in a.changes.items()), "" if a.ended_at is None else _when(a.ended_at),
         a.end or ("" if a.number < run.attempt else run.state), "" if a.exit_code is None else a.exit_code,
         a.detail or "")
        for a in attempts
    ]))  # fmt: skip
    print(table.render(("WHEN", "STATE", "EXIT", "DETAIL"), [
        (_when(at), state, "" if code is None else code, detail or "") for at, state, code, detail in history
    ]))  # fmt: skip
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
    from mrunner import plugins

    store = Store()
    sweep, run = store.find_run(options.experiment)
    plugins.backend(sweep.backend)
    if run.state == PLANNED:
        raise MrunnerError(
            f"experiment {run.ref} was never submitted, so it has no output (`mrunner resume {sweep.id}`)"
        )

    def ended() -> bool:
        return store.run(sweep.id, run.index).state in TERMINAL or all(
            r.state in TERMINAL for r in following.refresh(sweep, store) if r.index == run.index
        )

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
    for chunk in chunks:
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


# -- cancel --------------------------------------------------------------------------------------------------


def cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Cancel a sweep's queued and running experiments, or one experiment."
    parser.add_argument("target", metavar="SWEEP|EXPERIMENT", help="a sweep id (or prefix), or SWEEP/INDEX")


def cancel_command(options: argparse.Namespace) -> int:
    store = Store()
    sweep, run = store.find(options.target)
    candidates = [run] if run is not None else store.runs(sweep.id)
    open_runs = [r for r in candidates if r.state not in TERMINAL]
    if not open_runs:
        print(f"nothing to cancel: {'experiment ' + run.ref if run else 'sweep ' + sweep.id} has ended")
        return 0
    updates = following.cancel(sweep, open_runs, store)
    print(f"cancelled {len(updates)} experiment{'s' * (len(updates) != 1)} of sweep {sweep.id}")
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
    parser.add_argument("--detach", action="store_true", help="return at once (local: run in the background)")
    parser.add_argument("--wait", action="store_true", help="wait until every experiment has ended")
    parser.add_argument(
        "--current-code", action="store_true",
        help="run the project folder's code as it is now (a new snapshot, recorded with the attempts)",
    )  # fmt: skip
    group = parser.add_argument_group("context keys for the new attempts")
    for option in GROUP_OPTIONS:
        group.add_argument(f"--{option}", metavar="VALUE", help=f"same as context.{option}=VALUE")


def resume_command(options: argparse.Namespace) -> int:
    from mrunner import resuming

    store = Store()
    reporter = Reporter()
    sweep = store.sweep(options.sweep)
    changes = list(options.changes)
    changes += [f"context.{o}={getattr(options, o)}" for o in GROUP_OPTIONS if getattr(options, o) is not None]
    resumed = resuming.resume(
        sweep, store, reporter, SubmitOptions(detach=options.detach), changes, current_code=options.current_code
    )
    if not resumed:
        return 0
    runs = following.wait(sweep, store, reporter) if options.wait and not options.detach else store.runs(sweep.id)
    reporter.step(f"sweep {sweep.id}: {following.summary(runs)}")
    if all(r.state in TERMINAL for r in runs):
        return 0 if all(r.state == COMPLETED for r in runs) else 1
    return 0

"""`mrunner [run] TARGET [-m] OVERRIDE...`: plan the grid, then print it (--dry-run) or submit it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mrunner.records import COMPLETED, FAILED, TERMINAL, Run, Sweep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mrunner.reporter import Reporter
    from mrunner.store import Store


@dataclass
class RunArguments:
    target: str
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    context_name: str | None = None
    context_overrides: list[str] = field(default_factory=list)
    script_args: list[str] = field(default_factory=list)
    spec_variable: str | None = None
    dry_run: bool = False
    detach: bool = False
    wait: bool = False
    force: bool = False
    yes: bool = False
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    quiet: bool = False


def run(arguments: RunArguments) -> int:
    if not arguments.dry_run:
        warm_up(arguments)
    # planning imports Hydra: ~0.1 s in which a backend can prepare (see warm_up)
    from mrunner import following, planning, spec, submission
    from mrunner.errors import MrunnerError, mask_credentials
    from mrunner.following import counts_text
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    target = Path(arguments.target)  # Plan says clearly if it is missing or not a file
    variable = arguments.spec_variable
    broken = spec.syntax_error(target, forced=variable is not None) if target.suffix == ".py" else None
    if broken:
        raise MrunnerError(broken)
    if variable is None and target.suffix == ".py" and spec.is_spec_file(target):
        variable = spec.DEFAULT_VARIABLE
    elif variable is None and target.suffix == ".py" and spec.builds_experiments(target):
        raise MrunnerError(
            f"{target} builds experiments (with mrunner's create_experiments or Experiment) but assigns no "
            f"{spec.DEFAULT_VARIABLE} at top level: assign its list to {spec.DEFAULT_VARIABLE}, or name the "
            f"variable with --spec VARIABLE"
        )
    request = planning.Request(
        target=target,
        overrides=arguments.overrides,
        multirun=arguments.multirun,
        spec_variable=variable,
        context_name=arguments.context_name,
        context_overrides=arguments.context_overrides,
        script_args=arguments.script_args,
        name=arguments.name,
        tags=arguments.tags,
        detach=arguments.detach,
        force=arguments.force,
        yes=arguments.yes,
        dry_run=arguments.dry_run,
    )
    plan = planning.Plan(request)
    if arguments.dry_run:
        from mrunner import dry_run

        print(mask_credentials("\n".join(dry_run.describe(plan))))  # what would run, a token masked
        return 0
    reporter = Reporter(quiet=arguments.quiet)
    store = Store()
    sweep, runs = submission.submit(plan, store, reporter)
    print(sweep.id)  # the new sweep; when every experiment was already submitted, the sweep that has them
    if not runs:
        return 0
    if arguments.wait:
        following.wait(sweep, store, reporter)
    counts = store.counts(sweep.id)  # not the runs themselves: a sweep of a million fits in memory
    ended = set(counts) <= TERMINAL  # the backend ran it to the end (local), or we waited
    if ended:
        tell_trackers(store, sweep, reporter)
    reporter.step(f"sweep {sweep.id}: {counts_text(counts, [])}")
    if ended:
        failed = store.runs(sweep.id, [FAILED], limit=1)
        if failed:
            _show_tail(sweep, failed[0], store.latest_details(sweep.id, [failed[0].index]), reporter)
        reporter.step(f"see `mrunner status {sweep.id}` and `mrunner logs {sweep.id}/INDEX`")
        return 0 if set(counts) == {COMPLETED} else 1
    reporter.step(f"follow it with `mrunner status {sweep.id}`; `mrunner logs {sweep.id}/0 -f` shows output")
    return 0


def tell_trackers(store: Store, sweep: Sweep, reporter: Reporter) -> None:
    """A sweep that has ended when its command returns (run inline, or waited for) leaves its trackers as a
    later `results` would: MLflow's runs ended (FINISHED, FAILED, KILLED) and deferred metrics uploaded, so that
    a researcher opening the tracker then finds no run still RUNNING. A tracker that does not answer is a
    warning; the sweep's exit code stays its own."""
    from mrunner.trackers.targets import told_from_here  # the trackers, the plugins': imported already

    if not told_from_here(sweep.context):
        return  # no tracker to tell: nothing more is imported (`upload_deferred` asks the same rule)
    from mrunner.commands.results import upload_deferred

    upload_deferred(store, sweep, None, reporter)


TAIL_LINES = 10


def _show_tail(sweep: Sweep, run: Run, details: Mapping[int, str], reporter: Reporter) -> None:
    """Where a researcher looks first: why the first failing experiment failed, as the backend recorded it
    (a full disk: then its log may be empty), and the end of its output."""
    from mrunner import following
    from mrunner.errors import MrunnerError

    try:
        lines = following.output(sweep, run).rstrip("\n").splitlines()[-TAIL_LINES:]
    except MrunnerError:
        return  # its output cannot be read now: `mrunner logs` says why
    exit_code = "" if run.exit_code is None else f" (exit {run.exit_code})"
    why = f": {details[run.index]}" if details.get(run.index) else ""
    tail = "; the end of its output:" if lines else (", and wrote no output" if why else " and wrote no output")
    reporter.step(f"experiment {run.ref} failed{exit_code}{why}{tail}")
    for line in lines:
        reporter.step(f"  | {line}")


def warm_up(arguments: RunArguments) -> None:
    """Hand the context file's own keys to the backends before the context is composed (and Hydra imported,
    where the command line or context needs it), so that slow preparations (the Slurm backend's SSH
    connection) overlap them."""
    from mrunner import config, plugins
    from mrunner.errors import MrunnerError

    try:
        raw = config.read_context(arguments.context_name or config.current_context())
    except MrunnerError:
        return  # composing the context reports what is wrong with it
    plugins.warm_up(raw)

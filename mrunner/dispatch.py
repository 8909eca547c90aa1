"""The flow of a submission: experiments -> snapshot -> records -> backend, and what follows it
(status, wait, cancel, resume).

Records are written before anything reaches a backend, and each part the backend accepts is recorded at
once, so an interruption at any point leaves records from which `mrunner resume` submits exactly what is
missing. Identities make a repeated submission skip what already ran or runs.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shlex
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from mrunner import checks, cleanup, config, plugins
from mrunner.backend import SubmitOptions
from mrunner.errors import BackendError, Interrupted, MrunnerError, os_error
from mrunner.experiment import Experiment, identity
from mrunner.naming import experiment_name, sweep_id
from mrunner.records import ACTIVE, CANCELLED, FAILED, PENDING, PLANNED, RESUMABLE, TERMINAL, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.schema import ContextKey, validate
from mrunner.snapshot import Snapshot
from mrunner.store import Recorded, Store

DRY_RUN_SHOWN = 5


@dataclass
class Request:
    """What the user asked for on the command line (or through the Python API).

    ``experiments``, when given, are the sweep's experiments, made whole by the caller (commands, overrides,
    names): ``target``, the grid and the override check are then not used. Hydra's launcher plugin passes
    its sweeper's jobs this way, already composed and checked by Hydra. ``argv`` is what the sweep records
    as the command that made it (default: the mrunner command line).
    """

    target: Path | None
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    spec_variable: str | None = None  # set: the target is a spec file assigning this variable
    context_name: str | None = None
    context_overrides: list[str] = field(default_factory=list)
    script_args: list[str] = field(default_factory=list)
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    detach: bool = False
    force: bool = False
    experiments: list[Experiment] | None = None
    argv: list[str] | None = None
    yes: bool = False  # submit even a sweep larger than the context's max_experiments
    dry_run: bool = False  # only shown (``describe``): the backend's check reaches nothing


class Plan:
    """A request made concrete: the validated context and the experiments, expanded lazily."""

    def __init__(self, request: Request, cwd: Path | None = None) -> None:
        from mrunner import snapshot, spec

        self.request = request
        self.cwd = (cwd or Path.cwd()).resolve()
        target = request.target
        if request.experiments is None and (target is None or not target.exists()):
            raise MrunnerError(f"target {target} does not exist: give an experiment script or a spec file")
        if request.experiments is None and target is not None and not target.is_file():
            raise MrunnerError(f"target {target} is not a file: give an experiment script or a spec file")
        self.context_name, raw_context = config.compose(request.context_name, request.context_overrides)
        self.context = validated_context(self.context_name, raw_context)
        # right away: a backend may start slow work here (the Slurm plugin connects in the background)
        plugins.check(self.context, self.context_name, request.dry_run)
        # the project holds the target (the nearest marker up from it); the launcher's jobs have none: the cwd's
        self.root = snapshot.project_root(target.resolve().parent if target is not None else self.cwd)
        self.workdir = os.path.relpath(self.cwd, self.root) if _is_within(self.cwd, self.root) else "."
        base_dir = self.root / self.workdir
        if request.experiments is not None:
            self.base = list(request.experiments)
        elif request.spec_variable:
            assert target is not None
            self.base = spec.load_spec(target, request.spec_variable)
        else:
            assert target is not None
            script = checks.target_script(target, base_dir)
            self.base = [Experiment(script=script, name=experiment_name(request.name or target.stem))]
        checks.check_programs(
            self.base, snapshot.selection(self.root, *self.snapshot_patterns), self.root, self.workdir
        )
        if request.name and request.spec_variable:
            for experiment in self.base:
                experiment.name = experiment_name(request.name)
        for experiment in self.base:
            experiment.script_args = [*experiment.script_args, *request.script_args]
        self._hydra = {e.python_file: _is_hydra_app(base_dir, e.python_file) for e in self.base}
        from mrunner import grid  # Hydra's override parser: only planning needs it (status, pull, gc do not)

        first_file = next((f for f, hydra_app in self._hydra.items() if hydra_app), None)
        self.grid = grid.grid(
            request.overrides, request.multirun,
            glob_options=lambda key: _glob_options(base_dir, first_file, key), hydra_app=first_file is not None,
        )  # fmt: skip
        if len(self) == 0:
            raise MrunnerError("the grid is empty: an override has no values (check ranges and lists)")
        if request.experiments is None:
            self._check_hydra_apps(base_dir)

    def __len__(self) -> int:
        return len(self.base) * len(self.grid)

    @property
    def snapshot_patterns(self) -> tuple[list[str], list[str]]:
        """The snapshot's ``exclude`` patterns and ``paths_to_copy``: the union of the experiments' lists."""
        excluded = sorted({p for e in self.base for p in e.exclude})
        extra = sorted({p for e in self.base for p in e.paths_to_copy})
        return excluded, extra

    def experiments(self) -> Iterator[Experiment]:
        return (self.experiment(index) for index in range(len(self)))

    def experiment(self, index: int) -> Experiment:
        experiment = self.base[index // len(self.grid)]
        if self.request.experiments is not None:
            return experiment
        point = index % len(self.grid)
        from mrunner import grid

        if self._hydra.get(experiment.python_file):
            parameters, overrides = grid.hydra_point(experiment.parameters, self.grid, point)
            return dataclasses.replace(experiment, parameters=parameters, overrides=overrides)
        parameters = grid.apply(experiment.parameters, self.grid[point])
        return dataclasses.replace(experiment, parameters=parameters)

    def command(self, experiment: Experiment) -> list[str]:
        hydra_app = self._hydra.get(experiment.python_file, False)
        command = experiment.command(self.context["python"], hydra_app)
        if hydra_app and not any(o.startswith("hydra.run.dir=") for o in experiment.overrides):
            # Hydra writes its outputs (and chdirs) into the experiment's own directory
            command += ["hydra.run.dir=${oc.env:MRUNNER_EXPERIMENT_DIR}"]
        return command

    def _check_hydra_apps(self, base_dir: Path) -> None:
        """Compose each Hydra app's config for the grid and refuse what it does not accept (app_config)."""
        from mrunner import app_config, grid

        for python_file in {e.python_file for e in self.base if self._hydra.get(e.python_file)}:
            assert python_file is not None
            own = [grid.hydra_overrides(e.parameters) for e in self.base if e.python_file == python_file]
            app_config.check(base_dir / python_file, own, self.grid.axes)

    @property
    def project(self) -> str:
        named = self.context.get("project") or next((e.project for e in self.base if e.project), None)
        return named or self.root.name


def validated_context(name: str, context: dict[str, Any]) -> dict[str, Any]:
    backend = context.get("backend")
    if not isinstance(backend, str) or not backend:
        raise MrunnerError(f"context {name} does not name its backend: add `backend: local` (or slurm, kubernetes)")
    return validate(context, context_keys(backend), name)


def context_keys(backend: str) -> dict[str, ContextKey]:
    """Every key a context of ``backend`` accepts: the core's, the trackers', then the backend's (which win)."""
    if not isinstance(backend, str) or not backend:
        raise MrunnerError(f"backend must name a backend (local, slurm, kubernetes, ...), not {backend!r}")
    return plugins.context_keys(backend)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_hydra_app(base_dir: Path, python_file: str | None) -> bool:
    from mrunner.hydra_app import is_hydra_app

    return python_file is not None and is_hydra_app(base_dir / python_file)


def _glob_options(base_dir: Path, python_file: str | None, key: str) -> list[str]:
    from mrunner import app_config
    from mrunner.hydra_app import group_options

    if not python_file:
        raise MrunnerError(f"glob() for {key!r} needs a Hydra app whose config group {key!r} it can list")
    arguments = app_config.main_arguments(base_dir / python_file)
    if arguments is None:  # its configs are known only by running it: the config folder is what there is
        return group_options(base_dir / python_file, key)
    return app_config.AppConfig(base_dir / python_file, arguments).group_options(key)


# -- dry run -------------------------------------------------------------------------------------------------


#: How the dry run shows its own sweep id in what it renders: a submission gets a new one.
SWEEP_ID_PLACEHOLDER = "<sweep id>"


def describe(plan: Plan) -> list[str]:
    """The dry run's report: count, backend plan, the first experiments with their exact commands, and what
    the backend would be handed (``Backend.render``). The code is snapshotted as a submission does it (the
    same size limit), but nothing is stored or recorded."""
    from mrunner import snapshot

    count = len(plan)
    excluded, extra = plan.snapshot_patterns
    frozen = snapshot.scan(plan.root, excluded, extra, max_bytes=plan.context["max_snapshot_mb"] * 2**20)
    lines = [
        "dry run: nothing submitted, nothing recorded",
        f"{count} experiment{'s' * (count != 1)} on context {plan.context_name} (backend {plan.context['backend']}), "
        f"project {plan.project}, code from {plan.root}",
    ]
    steps = plugins.backend(plan.context["backend"]).plan(plan.context, count)
    lines += ["plan:", *(f"  - {step}" for step in steps)]
    if too_large(plan) and not plan.request.yes:
        lines.append(f"refused without --yes: {too_large(plan)}")
    shown = min(count, DRY_RUN_SHOWN)
    from mrunner import grid

    lines.append(f"first {shown} of {count}:" if shown < count else "experiments:")
    for index in range(shown):
        experiment = plan.experiment(index)
        lines.append(f"  [{index}] {experiment.name}: {grid.describe(experiment.parameters) or '(no parameters)'}")
        lines.append(f"      $ {shlex.join(plan.command(experiment))}")
    return lines + rendered(plan, frozen)


def rendered(plan: Plan, frozen: Snapshot) -> list[str]:
    """What the backend's ``Backend.render`` shows, each as a title line and its exact text between marks.
    The hook gets the secrets' names alone, so no value can be shown."""
    sweep = new_sweep(plan, frozen)
    secret_names = sorted(collect_secrets(plan.context))
    renderings = plugins.backend(plan.context["backend"]).render(
        sweep, PlannedRuns(plan, sweep, frozen.digest), frozen, secret_names
    )
    lines: list[str] = []
    for rendering in renderings:
        lines += [
            f"--- {rendering.title.replace(sweep.id, SWEEP_ID_PLACEHOLDER)}",
            *rendering.text.replace(sweep.id, SWEEP_ID_PLACEHOLDER).rstrip("\n").splitlines(),
            "---",
        ]
    return lines


# -- submitting ----------------------------------------------------------------------------------------------


def submit(plan: Plan, store: Store, reporter: Reporter) -> tuple[Sweep, list[Run]]:
    """Snapshot, record and hand over a planned sweep. Returns the sweep and the runs handed over."""
    sweep, frozen, count = record(plan, store, reporter)
    if not count:
        return sweep, []
    runs = store.runs(sweep.id)
    hand_over(sweep, runs, frozen, store, reporter, SubmitOptions(detach=plan.request.detach), new=True)
    return sweep, runs


def record(plan: Plan, store: Store, reporter: Reporter) -> tuple[Sweep, Snapshot, int]:
    """Check the sweep's size, snapshot the code and record the sweep; nothing reaches a backend yet.

    Returns the sweep, its snapshot and how many experiments were recorded; when that is 0 (every one runs
    or ran already), the sweep is the one that has them.
    """
    from mrunner import snapshot

    request = plan.request
    if too_large(plan) and not request.yes:
        raise MrunnerError(too_large(plan))
    excluded, extra = plan.snapshot_patterns
    frozen = snapshot.take(plan.root, excluded, extra, max_bytes=plan.context["max_snapshot_mb"] * 2**20)
    _check_space(frozen, len(plan), store)
    sweep = new_sweep(plan, frozen)
    recorded = store.record_sweep(sweep, _runs(plan, sweep, frozen.digest), skip_submitted=not request.force)
    _report_recorded(recorded, len(plan), plan.context_name, reporter)
    if not recorded.count:  # everything runs or ran already: the sweep that has them
        return store.sweep(recorded.skipped_sweeps[0]), frozen, 0
    count = recorded.count
    reporter.step(
        f"sweep {sweep.id}: {count} experiment{'s' * (count != 1)} recorded "
        f"(snapshot {frozen.digest[:12]}, {len(frozen.files)} files)"
    )
    return sweep, frozen, count


RECORD_BYTES = 1024  # what recording one experiment may take on disk: its row, index entries, events, the log


def _check_space(frozen: Snapshot, count: int, store: Store) -> None:
    """Refuse before recording when the data folder cannot hold the snapshot's copy and the records: a full
    disk found later would leave a sweep recorded that never ran."""
    needed = (0 if frozen.tree.is_dir() else frozen.size) + count * RECORD_BYTES
    folder = frozen.store
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise MrunnerError(
            f"not enough space in {folder} for the code snapshot and the records of {count} experiments: "
            f"{needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free; free some space, or point XDG_DATA_HOME "
            f"at another file system (nothing was recorded)"
        )


def too_large(plan: Plan) -> str:
    """Why the sweep needs ``--yes`` (empty when it does not): it is larger than ``max_experiments``."""
    count, limit = len(plan), plan.context["max_experiments"]
    if count <= limit:
        return ""
    return (
        f"the sweep has {count:,} experiments, more than max_experiments ({limit:,}) of context {plan.context_name}: "
        f"add --yes to submit them all, or raise the limit (context.max_experiments={count} for this run, "
        f"or in the context file)"
    )


def new_sweep(plan: Plan, frozen: Snapshot) -> Sweep:
    """The sweep a submission of ``plan`` records (a new id each time), its code ``frozen``."""
    request = plan.request
    return Sweep(
        id=sweep_id(), name=request.name or experiment_name(plan.base[0].name), created_at=time.time(),
        context_name=plan.context_name, backend=plan.context["backend"], context=plan.context,
        project=plan.project, snapshot_digest=frozen.digest, project_dir=str(plan.root), workdir=plan.workdir,
        git_commit=frozen.git_commit, git_dirty=frozen.git_dirty, tags=list(request.tags),
        argv=_argv_of(request),
    )  # fmt: skip


def _argv_of(request: Request) -> list[str]:
    if request.argv is not None:
        return list(request.argv)
    return ["mrunner", str(request.target), *(["-m"] if request.multirun else []), *request.overrides]


def _runs(plan: Plan, sweep: Sweep, digest: str) -> Iterator[Run]:
    """The sweep's runs, one at a time (the store records them in chunks, so a sweep is never all in memory)."""
    make = _RunMaker(plan, sweep, digest)
    return (make(index, experiment) for index, experiment in enumerate(plan.experiments()))


class _RunMaker:
    """Makes experiment ``index`` of a plan into the run a submission records: its environment (the
    context's, the plugins', its own), command, identity and tags."""

    def __init__(self, plan: Plan, sweep: Sweep, digest: str) -> None:
        self.plan, self.sweep, self.digest = plan, sweep, digest
        self.context_env = {str(k): str(v) for k, v in (plan.context.get("env") or {}).items()}
        self.context_tags = [str(t) for t in plan.context.get("tags") or []]

    def __call__(self, index: int, experiment: Experiment) -> Run:
        plan = self.plan
        env = dict(self.context_env)
        env.update(plugins.experiment_env(plan.context, experiment.parameters))
        env.update(experiment.env)
        command = plan.command(experiment)
        run_id = identity(command, experiment.parameters, env, self.digest)
        tags = list(dict.fromkeys([*self.context_tags, *self.sweep.tags, *experiment.tags]))
        return Run(self.sweep.id, index, run_id, experiment.name, experiment.parameters, command, env, tags)


class PlannedRuns(Sequence[Run]):
    """A sweep's runs as a submission would record them, each made when it is indexed: a dry run renders
    what a few of them need without making every run of a large sweep."""

    def __init__(self, plan: Plan, sweep: Sweep, digest: str) -> None:
        self._plan = plan
        self._make = _RunMaker(plan, sweep, digest)

    def __len__(self) -> int:
        return len(self._plan)

    @overload
    def __getitem__(self, index: int) -> Run: ...
    @overload
    def __getitem__(self, index: slice) -> list[Run]: ...

    def __getitem__(self, index: int | slice) -> Run | list[Run]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._make(index, self._plan.experiment(index))


def _report_recorded(recorded: Recorded, count: int, context_name: str, reporter: Reporter) -> None:
    if recorded.repeated:
        repeated = recorded.repeated
        reporter.warn(
            f"{repeated} experiment{'s' * (repeated != 1)} of the grid repeat another exactly; each runs once"
        )
    if recorded.skipped:
        sweeps = ", ".join(recorded.skipped_sweeps[:3]) + (", ..." if len(recorded.skipped_sweeps) > 3 else "")
        reporter.step(
            f"{recorded.skipped} of {count - recorded.repeated} experiments were already submitted on context "
            f"{context_name} (sweep {sweeps}) and are being submitted, running or completed: skipped "
            f"(--force runs them again)"
        )


def hand_over(
    sweep: Sweep, runs: Sequence[Run], frozen: Snapshot, store: Store, reporter: Reporter, options: SubmitOptions,
    new: bool = False,
) -> None:  # fmt: skip
    """Package, prepare and submit ``runs`` (all planned) through the sweep's backend. A ``new`` sweep whose
    packaging or preparation failed (so no run can have reached the backend) is removed from the records."""
    backend = plugins.backend(sweep.backend)
    options = dataclasses.replace(options, records=str(store.path))
    secrets = collect_secrets(sweep.context)
    try:
        with cleanup.lock(exclusive=False):  # `mrunner gc` waits until what the sweep needs is in place
            package = backend.package(sweep, frozen, reporter)
            _require(package, sweep, "package")
            sweep.package = package
            store.update_sweep(sweep)
            detail = backend.setup_resources(sweep, secrets, reporter)
            sweep.detail.update(detail or {})
            store.update_sweep(sweep)
        new = False  # from here on a backend may accept runs before it can record them: keep the sweep
        plugins.sweep_submitted(sweep, list(runs), reporter)
        backend.submit(sweep, list(runs), secrets, options, lambda updates: store.apply(sweep.id, updates), reporter)
    except KeyboardInterrupt:
        _not_handed_over(sweep, store, CANCELLED, "interrupted before it was submitted", forget=False)
        raise Interrupted(
            f"interrupted: sweep {sweep.id} records what was done; `mrunner resume {sweep.id}` runs the rest"
        ) from None
    except (MrunnerError, OSError, EOFError) as failure:
        error = _as_error(failure, sweep)
        try:
            forgotten = _not_handed_over(sweep, store, FAILED, f"not submitted: {error}", forget=new)
        except MrunnerError:  # the records cannot be written either (a full disk)
            raise type(error)(
                f"{error} (sweep {sweep.id} stays recorded as planned: `mrunner resume {sweep.id}` submits it "
                f"once this is fixed)"
            ) from None
        if forgotten:
            raise type(error)(f"{error} (nothing was submitted or recorded: fix it and submit again)") from None
        raise type(error)(
            f"{error} (sweep {sweep.id} is recorded: if the cause was passing, `mrunner resume {sweep.id}` retries; "
            f"if it was the context, fix it and submit again)"
        ) from None


# A failure of this machine's files (a full disk, a read-only folder), not of a connection to the backend.
FILE_SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def _as_error(failure: BaseException, sweep: Sweep) -> MrunnerError:
    """A failure during the hand-over as one line: ours as it is, the file system's naming the path, and
    anything else as a connection a backend did not word itself (requests' errors are OSErrors)."""
    if isinstance(failure, MrunnerError):
        return failure
    if isinstance(failure, OSError) and (failure.filename is not None or failure.errno in FILE_SYSTEM_ERRNOS):
        return os_error(failure, "write", failure.filename)
    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    return BackendError(f"the connection to the {sweep.backend} backend was lost: {reason}")


def _not_handed_over(sweep: Sweep, store: Store, state: str, detail: str, forget: bool) -> bool:
    """After a failed hand-over: with ``forget``, a sweep none of whose runs left ``planned`` is removed
    (returns True); otherwise the runs still planned end as ``state``, so that `resume` runs them, and so
    does a repeated submission (which skips planned runs, as being submitted by another mrunner)."""
    runs = store.runs(sweep.id)
    planned = [run for run in runs if run.state == PLANNED]
    if forget and len(planned) == len(runs):
        store.forget_sweep(sweep.id)
        return True
    store.apply(sweep.id, [RunUpdate(run.index, state, detail=detail) for run in planned])
    return False


def _require(result: object, sweep: Sweep, method: str) -> None:
    if result is None:
        raise BackendError(
            f"backend {sweep.backend!r} answered nothing to {method} for sweep {sweep.id}: a bug in its plugin "
            f"({plugins.serving_distribution(sweep.backend)}); report it to its authors"
        )


def collect_secrets(context: dict[str, Any]) -> dict[str, str]:
    return plugins.secrets(context)


# -- afterwards ----------------------------------------------------------------------------------------------


def refresh(sweep: Sweep, store: Store) -> list[Run]:
    """Ask the backend about the sweep's unfinished runs (one call), record what changed, return all runs.
    The backend hears of the ended runs too (see ``Backend.status``)."""
    runs = store.runs(sweep.id)
    active = [run for run in runs if run.state in ACTIVE]
    ended = [run for run in runs if run.state in TERMINAL and run.state != CANCELLED]
    if active or ended:
        updates = plugins.backend(sweep.backend).status(sweep, active, ended)
        _require(updates, sweep, "status")
        if updates:
            store.apply(sweep.id, updates)
            return store.runs(sweep.id)
    return runs


def wait(sweep: Sweep, store: Store, reporter: Reporter, interval: float = 2.0) -> list[Run]:
    """Follow the sweep until every run has ended, with a progress display (without a terminal, a line
    each time the states or the reasons runs wait change)."""
    runs = refresh(sweep, store)
    shown = ""
    with reporter.progress(len(runs), f"sweep {sweep.id}") as progress:
        while True:
            ended = sum(run.state in TERMINAL for run in runs)
            line = f"sweep {sweep.id}: {summary(runs, store.details(sweep.id))}"
            progress.update(ended, description=line)
            if line != shown and not reporter.interactive:
                reporter.step(line)
            shown = line
            if not any(run.state in ACTIVE or run.state == PLANNED for run in runs):
                return runs
            time.sleep(interval)
            runs = refresh(sweep, store)


def output(sweep: Sweep, run: Run) -> str:
    """An ended experiment's output, as `mrunner logs` shows it."""
    chunks = plugins.backend(sweep.backend).logs(sweep, run, False, lambda: True)
    _require(chunks, sweep, "logs")
    return "".join(chunks)


def summary(runs: Sequence[Run], details: Mapping[int, str] | None = None) -> str:
    """``3 completed, 2 pending``; with ``details`` (``Store.details``), why runs wait:
    ``2 pending (Resources)``."""
    counts: dict[str, int] = {}
    reasons: dict[str, dict[str, None]] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
        reason = (details or {}).get(run.index)
        if reason and run.state == PENDING:
            reasons.setdefault(run.state, {})[reason] = None
    parts = []
    for state, n in counts.items():
        why = list(reasons.get(state, ()))
        more = f"; {len(why) - 2} more reasons" if len(why) > 2 else ""
        parts.append(f"{n} {state}" + (f" ({'; '.join(why[:2])}{more})" if why else ""))
    return ", ".join(parts) or "no experiments"


def cancel(sweep: Sweep, runs: Sequence[Run], store: Store) -> list[RunUpdate]:
    """Cancel ``runs``: planned ones in the records alone, the others through the backend."""
    planned = [
        RunUpdate(run.index, CANCELLED, detail="cancelled before submission") for run in runs if run.state == PLANNED
    ]
    handed = [run for run in runs if run.state in ACTIVE]
    updates = list(planned)
    if handed:
        result = plugins.backend(sweep.backend).cancel(sweep, handed, lambda changes: store.apply(sweep.id, changes))
        _require(result, sweep, "cancel")
        updates += result
    store.apply(sweep.id, updates)
    return updates


#: Context keys a resume may not change: they say where the sweep's records and files are, or are part of
#: its experiments' identities.
FIXED_ON_RESUME = ("backend", "project", "env", "secrets", "tags")


def resume(
    sweep: Sweep, store: Store, reporter: Reporter, options: SubmitOptions, context_overrides: Sequence[str] = (),
    current_code: bool = False,
) -> list[Run]:  # fmt: skip
    """Submit again exactly the runs that never started or ended without completing (a completed run never
    runs again), as their next attempt. ``context_overrides`` (``context.KEY=VALUE``) change the resources and
    limits the new attempts get, validated as a submission's context is; ``current_code`` runs the project
    folder's code as it is now (a new snapshot) instead of the recorded one. The attempt records say what
    each attempt ran with."""
    from mrunner import snapshot

    plugins.backend(sweep.backend)
    changes = context_changes(sweep, context_overrides)
    runs = refresh(sweep, store)
    chosen = [run for run in runs if run.state in RESUMABLE]
    if not chosen:
        reporter.step(f"sweep {sweep.id}: nothing to resume ({summary(runs)})")
        return []
    context = validated_context(sweep.context_name, {**sweep.context, **changes})
    plugins.check(context, sweep.context_name, False)
    if current_code:
        frozen = snapshot.take(Path(sweep.project_dir))
        reporter.step(f"sweep {sweep.id}: running the current code of {sweep.project_dir} ({frozen.digest[:12]})")
        sweep.snapshot_digest, sweep.git_commit, sweep.git_dirty = frozen.digest, frozen.git_commit, frozen.git_dirty
    else:
        frozen = snapshot.load(sweep.snapshot_digest, root=Path(sweep.project_dir))
    sweep.context = context
    store.update_sweep(sweep)
    store.start_attempt(sweep.id, [run.index for run in chosen if run.state != PLANNED], sweep.snapshot_digest, changes)
    chosen = [store.run(sweep.id, run.index) for run in chosen]
    changed = ", ".join(f"{key}={value}" for key, value in changes.items())
    reporter.step(
        f"sweep {sweep.id}: resuming {len(chosen)} of {len(runs)} experiments" + (f" with {changed}" if changed else "")
    )
    hand_over(sweep, chosen, frozen, store, reporter, options)
    return chosen


def context_changes(sweep: Sweep, overrides: Sequence[str]) -> dict[str, Any]:
    """``context.KEY=VALUE`` overrides as ``{KEY: VALUE}``, values read as `mrunner run` reads them (Hydra's
    grammar). A key the sweep's backend does not accept is refused by the validation that follows."""
    if not overrides:
        return {}
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    changes: dict[str, Any] = {}
    for text in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides([text.lstrip("+")])
        except HydraException as error:
            raise MrunnerError(f"cannot read {text!r}: {' '.join(str(error).split())}") from None
        key = override.key_or_group
        if not key.startswith("context.") or override.is_delete() or override.is_sweep_override():
            raise MrunnerError(f"resume changes one context key at a time as context.KEY=VALUE, got {text!r}")
        name = key[len("context.") :]
        if name in FIXED_ON_RESUME:
            raise MrunnerError(
                f"resume cannot change context.{name} of sweep {sweep.id}: submit a new sweep for that "
                f"(keys a resume may change: resources and limits such as time, mem, gpu, cpu, max_requeue)"
            )
        changes[name] = override.value()
    return changes

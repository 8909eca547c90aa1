"""Planning: what the user asked for (``Request``) made concrete (``Plan``): the context composed and
validated, the experiments and their grid expanded lazily, and the sweep and runs a submission of the plan
would record (``new_sweep``, ``PlannedRuns``). Nothing here stores, snapshots or hands anything over; the
only backend calls made are the ones that check and complete a plan (check, context keys, experiment env).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from mrunner import checks, config, plugins
from mrunner.errors import MrunnerError
from mrunner.experiment import Experiment, identity, target
from mrunner.naming import experiment_name, sweep_id
from mrunner.records import Run, Sweep, resource_label
from mrunner.schema import ContextKey, validate
from mrunner.snapshot import Snapshot


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
        from mrunner import grid, resources  # Hydra's override parser: only planning needs it (not status, pull, gc)

        plain, swept = resources.split(request.context_overrides)
        self.context_name, raw_context = config.compose(request.context_name, plain)
        self.context = validated_context(self.context_name, raw_context)
        keys = context_keys(self.context["backend"])
        #: the per-point resources' dimension (``context.mem=8G,32G``): one point (no axis) when none is swept
        self.resources = grid.Grid(
            resources.axes(swept, plain, keys, self.context["backend"], self.context_name, request.multirun)
        )
        self._resource_points = [resources.point(self.resources, r) for r in range(len(self.resources))]
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
        checks.in_the_snapshot(self.base, self.root, base_dir)
        checks.check_programs(
            self.base, snapshot.selection(self.root, *self.snapshot_patterns), self.root, self.workdir
        )
        if request.name and request.spec_variable:
            for experiment in self.base:
                experiment.name = experiment_name(request.name)
        self._check_own_resources(keys)
        for experiment in self.base:
            experiment.script_args = [*experiment.script_args, *request.script_args]
        self._hydra = {e.python_file: _is_hydra_app(base_dir, e.python_file) for e in self.base}
        self._hydra_scripts: dict[str, bool] = {}
        self._commands: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        first_file = next((f for f, hydra_app in self._hydra.items() if hydra_app), None)
        self.grid = grid.grid(
            request.overrides,
            request.multirun,
            glob_options=lambda key: _glob_options(base_dir, first_file, key),
            hydra_app=first_file is not None,
        )
        if len(self) == 0:
            empty = [repr(axis.text) for axis in getattr(self.grid, "axes", []) if not axis.values]
            which = f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no values" if empty else "no points"
            raise MrunnerError(f"the grid is empty: {which} (check its ranges and lists)")
        if request.experiments is None:
            self._check_hydra_apps(base_dir)
        for own in [r for r, _ in self.resource_classes().values() if r]:  # what the declaration cannot check
            plugins.check({**self.context, **own}, self.context_name, dry_run=True)  # connects to nothing

    def __len__(self) -> int:
        return len(self.base) * len(self.resources) * len(self.grid)

    def _check_own_resources(self, keys: dict[str, ContextKey]) -> None:
        """A spec's per-experiment resources, checked (and written as the context holds them) once per
        distinct set."""
        from mrunner import resources

        seen: dict[str, dict[str, Any]] = {}
        for experiment in self.base:
            if experiment.resources:
                label = json.dumps(experiment.resources, sort_keys=True, default=str)
                if label not in seen:
                    who = f"experiment {experiment.name} (resources)"
                    seen[label] = resources.checked(
                        experiment.resources, keys, self.context["backend"], self.context_name, who
                    )
                experiment.resources = dict(seen[label])

    def resource_classes(self) -> dict[str, tuple[dict[str, Any], int]]:
        """Each distinct set of per-point resources (by its label, ``records.resource_label``; empty: the
        context's own) with how many experiments ask for it, in the order they first appear."""
        classes: dict[str, tuple[dict[str, Any], int]] = {}
        for experiment in self.base:
            for own in self._resource_points:
                merged = {**experiment.resources, **own}
                label = resource_label(merged)
                classes[label] = (merged, classes.get(label, (merged, 0))[1] + len(self.grid))
        return classes

    @property
    def snapshot_patterns(self) -> tuple[list[str], list[str]]:
        """The snapshot's ``exclude`` patterns and ``paths_to_copy``: the union of the experiments' lists."""
        excluded = sorted({p for e in self.base for p in e.exclude})
        extra = sorted({p for e in self.base for p in e.paths_to_copy})
        return excluded, extra

    def experiments(self) -> Iterator[Experiment]:
        return (self.experiment(index) for index in range(len(self)))

    def experiment(self, index: int) -> Experiment:
        """Experiment ``index``: the spec's experiments vary slowest, then the resources, then the grid."""
        per_experiment = len(self.resources) * len(self.grid)
        experiment = self.base[index // per_experiment]
        resource_point, point = divmod(index % per_experiment, len(self.grid))
        changes: dict[str, Any] = {}
        if self.resources.axes:
            own = self._resource_points[resource_point]
            changes["resources"] = {**experiment.resources, **own} if experiment.resources else own
        if self.request.experiments is not None:
            return dataclasses.replace(experiment, **changes) if changes else experiment
        from mrunner import grid

        if self._hydra_app(experiment):
            parameters, changes["overrides"] = grid.hydra_point(experiment.parameters, self.grid, point)
        else:
            parameters = grid.apply(experiment.parameters, self.grid[point])
        return experiment.at_point(parameters, **changes)

    def command(self, experiment: Experiment) -> list[str]:
        hydra_app = self._hydra_app(experiment)
        if not hydra_app:  # the same for every point of a script: made once per sweep
            key = (experiment.script, tuple(experiment.script_args))
            if key not in self._commands:
                self._commands[key] = experiment.command(self.context["python"], hydra_app=False)
            return list(self._commands[key])
        command = experiment.command(self.context["python"], hydra_app)
        if not any(o.startswith("hydra.run.dir=") for o in experiment.overrides):
            # Hydra writes its outputs (and chdirs) into the experiment's own directory
            command += ["hydra.run.dir=${oc.env:MRUNNER_EXPERIMENT_DIR}"]
        return command

    def _hydra_app(self, experiment: Experiment) -> bool:
        """Whether the experiment's script is a Hydra app, known by script (a point's script is its base's)."""
        if experiment.script not in self._hydra_scripts:
            self._hydra_scripts[experiment.script] = self._hydra.get(experiment.python_file, False)
        return self._hydra_scripts[experiment.script]

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
        id=sweep_id(),
        name=request.name or experiment_name(plan.base[0].name),
        created_at=time.time(),
        context_name=plan.context_name,
        backend=plan.context["backend"],
        context=plan.context,
        project=plan.project,
        snapshot_digest=frozen.digest,
        project_dir=str(plan.root),
        workdir=plan.workdir,
        git_commit=frozen.git_commit,
        git_dirty=frozen.git_dirty,
        tags=list(request.tags),
        argv=_argv_of(request),
    )


def _argv_of(request: Request) -> list[str]:
    if request.argv is not None:
        return list(request.argv)
    return ["mrunner", str(request.target), *(["-m"] if request.multirun else []), *request.overrides]


class _RunMaker:
    """Makes experiment ``index`` of a plan into the run a submission records: its environment (the
    context's, the plugins', its own), command, identity and tags."""

    def __init__(self, plan: Plan, sweep: Sweep, digest: str, former: bool) -> None:
        self.plan, self.sweep, self.digest, self.former = plan, sweep, digest, former
        self.context_env = {str(k): str(v) for k, v in (plan.context.get("env") or {}).items()}
        self.context_tags = [str(t) for t in plan.context.get("tags") or []]
        # by resource class: where it runs as the backend spells it one way, and as an earlier mrunner spelled it
        self.targets: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {"": _targets(plan.context)}

    def __call__(self, index: int, experiment: Experiment) -> Run:
        plan = self.plan
        env = dict(self.context_env)
        env.update(plugins.experiment_env(plan.context, experiment.parameters))
        env.update(experiment.env)
        command = plan.command(experiment)
        label = resource_label(experiment.resources)
        if label not in self.targets:  # its own resources are part of where it runs, so of its identity
            self.targets[label] = _targets({**plan.context, **experiment.resources})
        where, former = self.targets[label]
        run_id = identity(command, experiment.parameters, env, self.digest, where)
        tags = list(dict.fromkeys([*self.context_tags, *self.sweep.tags, *experiment.tags]))
        return PlannedRun(
            self.sweep.id,
            index,
            run_id,
            experiment.name,
            experiment.parameters,
            command,
            env,
            tags,
            resources=dict(experiment.resources),
            former_id=None
            if former is None or not self.former
            else identity(command, experiment.parameters, env, self.digest, former),
        )


@dataclass
class PlannedRun(Run):
    """A run as a submission is about to record it, with ``former_id``: the identity an earlier mrunner gave
    the same experiment, where it spelled its target as the context does (``Backend.canonical`` tells
    spellings of one cluster apart no more), so that a run recorded then still counts as already
    submitted (``Store.record_sweep``). Not recorded: the records keep ``id``."""

    former_id: str | None = field(default=None, repr=False, compare=False)


def _targets(context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The context's target as its backend spells where it runs (``Backend.canonical``: every spelling of
    one cluster alike), and as the context spells it when that differs (None otherwise)."""
    made, spelled = target(plugins.canonical(context)), target(context)
    return made, (None if spelled == made else spelled)


class PlannedRuns(Sequence[Run]):
    """A sweep's runs as a submission records them, each made when it is indexed or reached: a dry run
    renders what a few of them need without making every run of a large sweep."""

    def __init__(self, plan: Plan, sweep: Sweep, digest: str, former: bool = False) -> None:
        """``former``: give each run its ``PlannedRun.former_id`` too, where the target's spelling differs
        (``Store.former_identities``: only the records of an earlier mrunner hold such identities)."""
        self._plan = plan
        self._make = _RunMaker(plan, sweep, digest, former)

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> Iterator[Run]:
        """Every run in order, made one at a time (the store records them in chunks, so a sweep is never all
        in memory)."""
        make = self._make
        return (make(index, experiment) for index, experiment in enumerate(self._plan.experiments()))

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

"""Submitting a sweep: one job array per attempt and resource class (the per-point resources runs ask
for: ``context.mem=8G,32G``), split where the cluster's MaxArraySize demands, all written and submitted in
one round trip to the helper, each array recorded the moment Slurm accepts it.
"""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
import uuid
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from mrunner import interrupts, layout
from mrunner.backend import Rendered
from mrunner.errors import BackendError, MrunnerError, Refused, RefusedAsPlanned
from mrunner.records import SUBMITTED, Run, RunUpdate, Sweep, resource_label
from mrunner.reporter import Reporter
from mrunner.runtime import experiment_side_digest, experiment_side_files
from mrunner.snapshot import Snapshot
from mrunner_slurm import batch, deploy, limits, packing, remote
from mrunner_slurm.keys import resource_options
from mrunner_slurm.transport import Connection

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default, used only if `scontrol show config` did not say


@dataclass
class Unit:
    """One job array: runs of one attempt and one resource class whose indices fit in one array (task id =
    index - offset), or, packed (``mrunner_slurm.packing``), its ``tasks`` of several runs each (task id =
    position); ``resources`` are what its runs ask for beyond the sweep's context."""

    attempt: int
    runs: list[Run]
    offset: int
    tasks: list[list[Run]] | None = None
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)

    def context(self, sweep: Sweep) -> dict[str, Any]:
        """The context its sbatch options and batch script are made from: the sweep's, with the class's
        resources over it."""
        return self.runs[0].context(sweep)

    @property
    def most(self) -> int:
        """The points its tasks hold at most (1 unpacked)."""
        return max(len(task) for task in self.tasks) if self.tasks is not None else 1

    @property
    def task_ids(self) -> list[int]:
        if self.tasks is not None:
            return list(range(len(self.tasks)))
        return [run.index - self.offset for run in self.runs]

    def task_of(self) -> dict[int, int]:
        """Each run's task id, by index."""
        if self.tasks is None:
            return {run.index: run.index - self.offset for run in self.runs}
        return {run.index: task for task, runs in enumerate(self.tasks) for run in runs}

    def share(self, sweep: Sweep) -> str | None:
        """What each point gets of its task when several run at once (``packing.point_share``), else None."""
        if self.tasks is None:
            return None
        k = max(len(task) for task in self.tasks)
        share = packing.point_share(self.context(sweep), k)
        return f"{packing.at_once(self.context(sweep), k)} at once, {share}" if share else None

    def name(self, sweep: Sweep) -> str:
        # `-pK`: packed, K points per task at most (the cluster's helper reads it: mrunner_slurm.remote_helper)
        packed = f"-p{max(len(task) for task in self.tasks)}" if self.tasks is not None else ""
        return f"mrunner-{sweep.id}-a{self.attempt}-{self.runs[0].index}-{self.runs[-1].index}-{len(self.runs)}{packed}"


def units(runs: Sequence[Run], max_array_size: int, points_per_task: int = 1) -> list[Unit]:
    """Group runs by attempt and resource class (each class its own sbatch options), then into arrays whose
    task ids stay below ``max_array_size``.

    A task id is the run's own index when that fits (so `JOB_5` is experiment 5); a later array of a
    large sweep counts from its first index instead. Packed (``points_per_task`` above 1), each task holds
    that many consecutive runs and an array at most ``max_array_size`` tasks.
    """
    result: list[Unit] = []
    for attempt, group in classes(runs):
        if points_per_task > 1:
            packed = packing.tasks(group, points_per_task)
            for start in range(0, len(packed), max_array_size):
                part = packed[start : start + max_array_size]
                flat = [run for task in part for run in task]
                result.append(Unit(attempt, flat, 0, part, resources=dict(group[0].resources)))
            continue
        chunk: list[Run] = []
        for run in group:
            if chunk and run.index - chunk[0].index >= max_array_size:
                result.append(_unit(attempt, chunk, max_array_size))
                chunk = []
            chunk.append(run)
        if chunk:
            result.append(_unit(attempt, chunk, max_array_size))
    return result


def classes(runs: Sequence[Run]) -> list[tuple[int, list[Run]]]:
    """The runs of each attempt and resource class (``Run.resource_class``), each group by index: by attempt,
    then in the order of their first runs (one pass over ``runs``, which may be read from the records)."""
    groups: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.attempt, run.resource_class), []).append(run)
    for group in groups.values():
        group.sort(key=lambda run: run.index)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], item[1][0].index))
    return [(attempt, group) for (attempt, _), group in ordered]


def _unit(attempt: int, chunk: list[Run], max_array_size: int) -> Unit:
    offset = 0 if chunk[-1].index < max_array_size else chunk[0].index
    return Unit(attempt, chunk, offset, resources=dict(chunk[0].resources))


def max_array_size(connection: Connection) -> int:
    value = str(connection.facts.get("MaxArraySize") or "")
    return int(value) if value.isdigit() else DEFAULT_MAX_ARRAY_SIZE


@dataclass
class Array:
    """One job array as a submission writes and submits it: its batch script and task bundle (paths and
    contents) and the sbatch command line."""

    unit: Unit
    name: str
    script_path: str
    script: str
    bundle_path: str
    bundle: str
    argv: list[str]


def client_dir(storage: str) -> str:
    """Where mrunner's experiment side goes on the cluster (``import mrunner`` in experiments)."""
    return f"{storage}/.mrunner/client/{experiment_side_digest()}"


def arrays(sweep: Sweep, runs: Sequence[Run], max_array_size: int, points_per_task: int = 1) -> list[Array]:
    """The job arrays of ``runs``, from what the sweep's packaging and set-up recorded (code folder, sweep
    folder, virtualenv): what a submission writes, and what a dry run shows."""
    storage = sweep.package["storage_dir"]
    directory = sweep.detail["sweep_dir"]
    venv = sweep.detail.get("venv") or sweep.context.get("venv")
    code = sweep.package["code_dir"]
    result = []
    for unit in units(runs, max_array_size, points_per_task):
        context = unit.context(sweep)
        k = max(len(task) for task in unit.tasks) if unit.tasks is not None else 1
        name = unit.name(sweep)
        script = f"{directory}/slurm/{name}.sh"
        bundle = batch.bundle_path(directory, name, packed=unit.tasks is not None)
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--array={batch.array_spec(unit.task_ids, context.get('array_parallelism'))}",
            f"--chdir={directory}",
            f"--output={batch.slurm_output(directory, '%A_%a')}",
            "--open-mode=append",
            *resource_options(packing.task_context(context, k)),
            script,
        ]
        if unit.tasks is not None:
            text = batch.packed_script(
                sweep, context, code, client_dir(storage), directory, bundle, unit.attempt, venv, k
            )
            tasks = batch.packed_bundle(sweep, unit.tasks, storage)
        else:
            text = batch.batch_script(
                sweep, context, code, client_dir(storage), directory, bundle, unit.attempt, unit.offset, venv
            )
            tasks = batch.task_bundle(sweep, unit.runs, storage)
        result.append(Array(unit, name, script, text, bundle, tasks, argv))
    return result


def submit(
    connection: Connection,
    sweep: Sweep,
    runs: Sequence[Run],
    secrets: Mapping[str, str],
    record: Callable[[Sequence[RunUpdate]], None],
    reporter: Reporter,
) -> None:
    """Write and submit the arrays of ``runs``, packed as the sweep's records say (``points_per_task`` and
    MaxArraySize decided by ``Backend.admit`` before any sbatch: ``mrunner_slurm.packing.recorded``), so a
    repeated submission of the same runs makes the same arrays."""
    storage = sweep.package["storage_dir"]
    directory = sweep.detail["sweep_dir"]
    files: dict[str, list] = {batch.secrets_path(directory): [batch.secrets_file(secrets), 0o600]}
    for name, data in experiment_side_files().items():
        files[f"{client_dir(storage)}/{name}"] = [data.decode(), 0o644]
    jobs: list[dict[str, Any]] = []
    by_name: dict[str, Unit] = {}
    groups, left = packing.recorded(sweep.detail.get("packing"), runs)
    if left:  # the core admits every run before it submits it
        raise BackendError(f"sweep {sweep.id}: no packing is recorded for experiment {left[0].index}; resume it")
    for k, size, members in groups:
        for array in arrays(sweep, members, size, k):
            by_name[array.name] = array.unit
            files[array.bundle_path] = [array.bundle, 0o644]
            files[array.script_path] = [array.script, 0o755]
            jobs.append({"name": array.name, "argv": array.argv, "marker": f"{directory}/submitted/{array.name}"})
    first = layout.of_run(storage, sweep, runs[0])  # the batch scripts write into the logs folder at once
    dirs = [posixpath.dirname(first.log_file()), posixpath.dirname(first.exit_code_file()), f"{directory}/submitted"]
    # this hand-over's name on the cluster: `settle` stops it by that name if mrunner is interrupted midway
    token = uuid.uuid4().hex
    document = {"files": files, "dirs": dirs, "units": jobs, "token": token}
    done: set[str] = set()

    def accepted(name: str, job: str, how: str) -> None:
        unit = by_name[name]
        task = unit.task_of()
        shared = unit.share(sweep)
        detail = f"job array {job}" + (f" ({how})" if how else "") + (f"; {shared}" if shared else "")
        record(
            [
                RunUpdate(
                    run.index, SUBMITTED, backend_ref=f"{job}_{task[run.index]}", detail=detail, attempt=run.attempt
                )
                for run in unit.runs
            ]
        )
        done.add(name)
        resources = f", {resource_label(unit.resources)}" if unit.resources else ""
        packed = f" in {len(unit.tasks)} task{'s' * (len(unit.tasks) != 1)}" if unit.tasks is not None else ""
        packed += f"; {shared}" if shared else ""
        reporter.step(
            f"{'found' if how == REUSED else 'submitted'} job array {job} ({len(unit.runs)} experiment{'s' * (len(unit.runs) != 1)}{packed}, "
            f"{unit.runs[0].index}-{unit.runs[-1].index}{resources}) on {connection.target.alias}"
        )

    cut = _Cut()
    # until every array sbatch accepted is recorded; a second interrupt cuts the wait short and settles
    with interrupts.held(cut.stop):
        try:
            for event in remote.lines(connection, ["submit"], remote.pack(document), started=cut.started):
                if "error" in event:
                    if not done:  # nothing reached the queue: a new sweep is forgotten (``Refused``)
                        raise Refused(f"sbatch refused sweep {sweep.id}: {event['error']}")
                    count = sum(len(by_name[name].runs) for name in done)
                    raise BackendError(
                        f"sbatch refused sweep {sweep.id}: {event['error']} ({count} of {len(runs)} experiments "
                        f"were submitted and are recorded)"
                    )
                accepted(event["name"], event["job"], REUSED if event["reused"] else "")
        except (MrunnerError, OSError, EOFError):
            if not cut.asked:
                raise
        if cut.asked:  # the rest of the hand-over will never be submitted; what was is recorded
            for name, job in settle(connection, directory, token, [job["name"] for job in jobs]).items():
                if name not in done:
                    accepted(name, job, "accepted as mrunner was interrupted")
    if len(done) < len(jobs):
        count = sum(len(by_name[name].runs) for name in done)
        raise BackendError(f"the submission to {connection.target.alias} ended early: {count} of {len(runs)} accepted")


#: How a submission notes an array the cluster had already (an earlier, cut-off submission of the same runs).
REUSED = "found already submitted"


class _Cut:
    """The helper call of a submission, cut short by a second interrupt (``interrupts.held``'s ``stop``, run
    in the signal handler): the call is abandoned, now or, before anything is sent, as it starts."""

    def __init__(self) -> None:
        self.call: Any = None
        self.asked = False

    def started(self, call: Any) -> None:
        self.call = call
        if self.asked:  # before anything was sent: nothing is
            call.abandon()
            raise EOFError("interrupted before the hand-over was sent")

    def stop(self) -> None:
        self.asked = True
        if self.call is not None:
            self.call.abandon()


def settle(connection: Connection, directory: str, token: str, names: Sequence[str]) -> dict[str, str]:
    """Stop the cut-off submission ``token`` on the cluster and return which of its arrays ``names`` the
    cluster has (``remote_helper.settle``: under the sweep's submission lock, so no sbatch of it is in flight
    or comes later). A cluster that cannot be asked leaves it unknown: ``interrupts.Unsettled``."""
    try:
        found = remote.call(
            connection,
            ["settle"],
            remote.pack({"folder": f"{directory}/submitted", "token": token, "names": list(names)}),
        )
    except (MrunnerError, OSError, EOFError):
        raise interrupts.Unsettled from None
    return {str(name): str(job) for name, job in found.items()}


def admit(
    connection: Connection,
    sweep: Sweep,
    runs: Sequence[Run],
    found: limits.Limits,
    asked: AbstractSet[tuple[str, ...]] = frozenset(),
) -> dict[str, Any]:
    """The sweep's packing with ``runs`` decided (``mrunner_slurm.packing.decided``), refused whole
    (``limits.refuse_beyond``) when the jobs it would add exceed what the site still allows.

    Runs a recorded decision covers (a submission cut off between an sbatch and its record) keep it, and
    their arrays the cluster already has add no job; the others get ``points_per_task`` decided now (``auto``
    against the allowance those arrays leave) and the cluster's MaxArraySize."""
    known, fresh = packing.recorded(sweep.detail.get("packing"), runs)
    done = submitted_names(connection, sweep) if known else set()
    waiting = sum(
        len(unit.task_ids)
        for k, size, members in known
        for unit in units(members, size, k)
        if unit.name(sweep) not in done
    )
    plan = sweep.detail.get("packing") or {}
    k, adding, sizes = 1, 0, []
    if fresh:
        size = found.max_array_size or max_array_size(connection)
        room = dataclasses.replace(packing.as_limits(found), jobs_in_queue=(found.jobs_in_queue or 0) + waiting)
        k = packing.points_per_task(sweep.context, len(fresh), room)
        sizes = [len(group) for _, group in classes(fresh)]
        # each class is its own arrays, its last task part-full: auto packs further until the classes fit
        k = packing.auto_fitted(sweep.context, sizes, None if found.allowance is None else found.allowance - waiting, k)
        adding = sum(len(unit.task_ids) for unit in units(fresh, size, k))
        plan = packing.decided(plan, fresh, k, size)
    where = f"{connection.target.alias} (user {connection.target.user})"
    limits.refuse_beyond(found, waiting + adding, where, k, classes=sizes, waiting=waiting)
    groups, _ = packing.recorded(plan, runs)
    planned = [unit for k, size, members in groups for unit in units(members, size, k)]
    tasks = [(unit.context(sweep), unit.most) for unit in planned if unit.name(sweep) not in done]
    limits.refuse_overtime(found, tasks, where)
    refuse_classes(connection, sweep, planned, done, asked)
    return plan


def refuse_planned(
    connection: Connection,
    context: Mapping[str, Any],
    context_name: str,
    planned: Sequence[tuple[Mapping[str, Any], int]],
    found: limits.Limits,
) -> set[tuple[str, ...]]:
    """Raise ``Refused`` naming the first resource class of a plan (``planned``: each class's own resources
    and its experiments, ``Backend.ready``) sbatch would refuse, before the sweep is recorded: packed as
    ``admit`` would pack a new sweep of them (the same ``found`` limits). Returns the sbatch options asked,
    which ``refuse_classes`` need not ask again. A plan beyond the user's job allowance is refused for that
    alone (the limit and ``points_per_task``: ``limits.refuse_beyond``) as ``RefusedAsPlanned``, which the
    core asks again of fewer runs when a repeated submission skips some."""
    counts = [count for _, count in planned]
    try:
        k = packing.points_per_task(context, sum(counts), packing.as_limits(found))
    except MrunnerError as error:  # auto finds no room
        raise RefusedAsPlanned(str(error)) from None
    k = packing.auto_fitted(context, counts, found.allowance, k)
    jobs = sum(-(-count // min(k, count)) for count in counts)  # each class its own arrays
    where = f"{connection.target.alias} (user {connection.target.user})"
    limits.refuse_beyond(found, jobs, where, k, classes=counts, refusal=RefusedAsPlanned)
    size = found.max_array_size or max_array_size(connection)
    most = [min(k, count) if k > 1 else 1 for count in counts]  # a class smaller than K is one task of all
    limits.refuse_overtime(found, [({**context, **own}, each) for (own, _), each in zip(planned, most)], where)
    probes: dict[tuple[str, ...], _Probe] = {}
    for (own, count), each in zip(planned, most):
        options = tuple(resource_options(packing.task_context({**context, **own}, each)))
        tasks = min(-(-count // each), size)  # its first array's
        # classes whose tasks ask for the same (cpu=1 two at once, cpu=2 alone) are one probe of them all
        at_once = packing.at_once({**context, **own}, each)
        probes[options] = _Probe(
            "mrunner-probe", f"0-{tasks - 1}", (resource_label(dict(own)),), count, at_once
        ).merged(probes.get(options))
    _probe(connection, probes, context_name)
    return set(probes)


def refuse_classes(
    connection: Connection, sweep: Sweep, planned: Sequence[Unit], done: set[str], asked: AbstractSet[tuple[str, ...]]
) -> None:
    """Raise ``Refused`` naming the first resource class sbatch would refuse (``sbatch --test-only`` of each
    class's first array not yet on the cluster, in one helper call: ``remote_helper.probe``): a partition,
    account or QOS the user may not use, a memory or gres no node has. Asked at admission, so such a sweep is
    refused before anything is uploaded or submitted, instead of being refused by sbatch after its first
    classes' arrays were accepted; only for classes ``refuse_planned`` did not ask (``asked``) before the
    sweep was recorded (a resumed sweep, a connection that wanted a prompt, a recorded packing)."""
    probes: dict[tuple[str, ...], _Probe] = {}
    for unit in planned:
        if unit.name(sweep) not in done:
            k = max(len(task) for task in unit.tasks) if unit.tasks is not None else 1
            options = tuple(resource_options(packing.task_context(unit.context(sweep), k)))
            if options not in asked:
                found = _Probe(
                    unit.name(sweep),
                    batch.array_spec(unit.task_ids, None),
                    (resource_label(unit.resources),),
                    len(unit.runs),
                    packing.at_once(unit.context(sweep), k),
                )
                probes[options] = found.merged(probes.get(options))
    _probe(connection, probes, sweep.context_name)


@dataclass(frozen=True)
class _Probe:
    """The resource classes whose tasks ask for the same sbatch options, as ``sbatch --test-only`` is asked
    of them: the first one's first array's name and task ids, and for the refusal each class's label and
    their experiments together."""

    name: str
    array: str
    labels: tuple[str, ...]  # of each class asked (empty: the context's own)
    count: int
    at_once: int = 1  # points a task runs at once: it asks for that many times a point's cpu, mem and gpu

    def merged(self, earlier: _Probe | None) -> _Probe:
        """This class's probe added to ``earlier``'s of the same sbatch options (asked once, as ``earlier``'s
        first array): the refusal names and counts the experiments of both."""
        if earlier is None:
            return self
        labels = earlier.labels + tuple(label for label in self.labels if label not in earlier.labels)
        at_once = max(earlier.at_once, self.at_once)
        return dataclasses.replace(earlier, labels=labels, count=earlier.count + self.count, at_once=at_once)

    @property
    def label(self) -> str:
        """``gpu=1 or gpu=2``: what its experiments ask for; empty when only the context's own."""
        if not any(self.labels):
            return ""
        return " or ".join(label or "the context's own resources" for label in self.labels)


def _probe(connection: Connection, probes: Mapping[tuple[str, ...], _Probe], context_name: str) -> None:
    """Ask each of ``probes`` (by sbatch options) in one helper call; raise ``Refused`` for the first one
    sbatch refuses, in one line with the options and Slurm's reason."""
    if not probes:
        return
    argvs = [
        ["sbatch", f"--job-name={probe.name}", f"--array={probe.array}", *options, "--wrap=true"]
        for options, probe in probes.items()
    ]
    answer = remote.call(connection, ["probe"], remote.pack({"argvs": argvs}))
    if not answer.get("refused"):
        return
    position, message = answer["refused"]
    options, probe = list(probes.items())[position]
    what = f"the {probe.count} experiment{'s' * (probe.count != 1)} with {probe.label}" if probe.label else ""
    change = "those values" if probe.label else "the context"
    if probe.at_once > 1:  # the request sbatch refused is a point's times the points run together
        change += (
            f", or lower points_at_once (each task asks for {probe.at_once} times a point's cpu, mem and gpu, "
            f"one share per point running at once)"
        )
    raise Refused(
        f"sbatch on {connection.target.alias} refuses {what or f'context {context_name}'} "
        f"(sbatch {shlex.join(options)}): {message}; change {change}"
    )


def submitted_names(connection: Connection, sweep: Sweep) -> set[str]:
    """The sweep's arrays the cluster has, by name: a marker the helper wrote when sbatch accepted one, or a
    job Slurm still lists under that name (``mrunner_slurm.remote_helper.submit`` looks at both)."""
    directory = sweep.detail.get("sweep_dir")
    if not directory:
        return set()  # never prepared: nothing was submitted
    prefix = f"mrunner-{sweep.id}-"
    listing = connection.run(
        f"ls -1 {shlex.quote(directory)}/submitted 2>/dev/null; "
        f'squeue -h --states=all -u "$(id -un)" -o %j 2>/dev/null | grep -F {shlex.quote(prefix)}; true'
    )
    return {line.strip() for line in listing.stdout.decode(errors="replace").splitlines() if line.startswith(prefix)}


def describe(context: Mapping[str, Any], count: int) -> list[str]:
    """Dry-run lines: where, how many arrays (assuming Slurm's default MaxArraySize), which options."""
    needed = -(-count // DEFAULT_MAX_ARRAY_SIZE)
    throttle = f", at most {context['array_parallelism']} at once" if context.get("array_parallelism") else ""
    options = " ".join(shlex.quote(o) for o in resource_options(context)) or "(cluster defaults)"
    k = min(packing.points_per_task(context, count, packing.Limits()), max(count, 1))  # a task holds them all
    if k > 1:
        needed = -(-count // (k * DEFAULT_MAX_ARRAY_SIZE))
        options = " ".join(shlex.quote(o) for o in resource_options(packing.task_context(context, k)))
    lines = [
        f"upload the code snapshot to {context['slurm_url']}:{context['storage_dir']} (only files it lacks)",
        f"submit {count} experiment{'s' * (count != 1)} as {needed} job array{'s' * (needed != 1)}{throttle} "
        f"(more if the cluster's MaxArraySize is below {DEFAULT_MAX_ARRAY_SIZE})",
        *filter(None, [packing.describe(context, count, packing.Limits())]),
        f"sbatch {options}",
    ]
    if context.get("requirements_file"):
        lines.append(f"virtualenv from {context['requirements_file']}, built on the cluster once and reused")
    return lines


#: What the dry run shows for a value only the cluster or packaging decides.
HOME_ON_CLUSTER = "<home folder on the cluster>"
VENV_AT_SUBMISSION = "<virtualenv built at submission>"


def render(sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]) -> list[Rendered]:
    """The dry run's view of the first job array: its sbatch command and batch script, made by ``arrays``
    as a submission makes them, from the facts packaging would record (the code folder is named by the
    snapshot's digest). The cluster's MaxArraySize is taken as Slurm's default. Secrets are not in the
    script (it sources the sweep's ``.secrets.env``), so their names are not needed."""
    storage = storage_on_cluster(str(sweep.context["storage_dir"]))
    package = {
        "storage_dir": storage,
        "code_dir": deploy.code_dir(storage, snapshot.digest),
        "entries": layout.working_entries(snapshot.files, sweep.workdir, mirror=True),
    }
    detail = {"sweep_dir": batch.sweep_dir(storage, sweep)}
    if sweep.context.get("requirements_file"):
        detail["venv"] = VENV_AT_SUBMISSION
    planned = dataclasses.replace(sweep, package=package, detail=detail)
    k = packing.points_per_task(sweep.context, len(runs), packing.Limits())
    first = arrays(planned, runs[: min(len(runs), k * DEFAULT_MAX_ARRAY_SIZE)], DEFAULT_MAX_ARRAY_SIZE, k)[0]
    where = sweep.context["slurm_url"]
    return [
        Rendered(f"sbatch command of job array {first.name} (on {where})", shlex.join(first.argv)),
        Rendered(f"batch script {first.script_path} of job array {first.name} (on {where})", first.script),
    ]


def storage_on_cluster(storage_dir: str) -> str:
    """``storage_dir`` as the cluster's helper resolves it (``abspath(expanduser(...))``), where this machine
    can tell: an absolute path as it is, ``~/...`` below a placeholder for the home folder."""
    if storage_dir.startswith("/"):
        return posixpath.normpath(storage_dir)
    if storage_dir == "~" or storage_dir.startswith("~/"):
        return posixpath.normpath(HOME_ON_CLUSTER + storage_dir[1:])
    return posixpath.normpath(f"{HOME_ON_CLUSTER}/{storage_dir}")  # relative: the helper starts in the home

"""Submission: snapshot the code, record the sweep, hand its runs to the backend.

Records are written before anything reaches a backend, and each part the backend accepts is recorded at
once, so an interruption at any point leaves records from which `mrunner resume` submits exactly what is
missing. Identities make a repeated submission skip what already ran or runs.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import shutil
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from mrunner import gc_lock, interrupts, plugins
from mrunner.backend import SubmitOptions
from mrunner.errors import BackendError, Interrupted, MrunnerError, NotFound, Refused, RefusedAsPlanned, os_error
from mrunner.following import require_answer
from mrunner.planning import Plan, PlannedRuns, new_sweep, too_large
from mrunner.records import CANCELLED, FAILED, PLANNED, Run, RunUpdate, Sweep, resource_label
from mrunner.reporter import Reporter
from mrunner.snapshot import Snapshot
from mrunner.store import RECORD_CHUNK, Recorded, Store, StoredRuns


def submit(plan: Plan, store: Store, reporter: Reporter) -> tuple[Sweep, Sequence[Run]]:
    """Snapshot, record and hand over a planned sweep. Returns the sweep and the runs handed over."""
    sweep, frozen, count = record(plan, store, reporter)
    if not count:
        return sweep, []
    try:
        runs = StoredRuns(store, sweep.id, range(count))  # read a chunk at a time: the records hold them
        hand_over(sweep, runs, frozen, store, reporter, SubmitOptions(detach=plan.request.detach), new=True)
    except KeyboardInterrupt:  # before hand_over's own handling began
        _interrupted(sweep, store)
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
    try:  # the backend's last refusal: nothing is recorded yet
        _ready(plan, sweep, frozen, store, skip=not request.force)
    except Refused as error:
        raise Refused(f"{error} (nothing was submitted or recorded: fix it and submit again)") from None
    try:
        recorded = store.record_sweep(
            sweep,
            PlannedRuns(
                plan, sweep, frozen.digest, former=not request.force and store.former_identities(sweep.context_name)
            ),
            skip_submitted=not request.force,
        )
        _report_recorded(recorded, len(plan), plan.context_name, reporter)
        if not recorded.count:  # everything runs or ran already: the sweep that has them
            return store.sweep(recorded.skipped_sweeps[0]), frozen, 0
        count = recorded.count
        reporter.step(
            f"sweep {sweep.id}: {count} experiment{'s' * (count != 1)} recorded "
            f"(snapshot {frozen.digest[:12]}, {len(frozen.files)} files)"
        )
    except KeyboardInterrupt:  # the sweep may be recorded already (the records' commit came first)
        _interrupted(sweep, store)
    return sweep, frozen, count


def _ready(plan: Plan, sweep: Sweep, frozen: Snapshot, store: Store, skip: bool) -> None:
    """``Backend.ready`` of the plan's resource classes. A refusal of their number alone
    (``RefusedAsPlanned``: a job allowance) is asked again of the runs the records would take, counted
    without recording: a repeated submission skips those already submitted (``skip``), a grid's repeats run
    once; with as many, or none left to record, the refusal stands or ``record_sweep`` records nothing."""
    classes = plan.resource_classes()
    try:
        plugins.ready(plan.context, plan.context_name, list(classes.values()))
    except RefusedAsPlanned:
        taken = to_record(plan, sweep, frozen, store, skip)
        if sum(count for _, count in taken.values()) == len(plan):
            raise
        if taken:
            plugins.ready(plan.context, plan.context_name, list(taken.values()))


def to_record(
    plan: Plan, sweep: Sweep, frozen: Snapshot, store: Store | None, skip: bool
) -> dict[str, tuple[dict, int]]:
    """``plan.resource_classes()`` of the runs ``record_sweep`` would record: each distinct run once, less
    those submitted on the context already (with ``skip``, read from ``store``); read a chunk at a time. The
    dry run says the same (without records yet, ``store`` is None)."""
    return tally(plan, sweep, frozen, store, skip).classes


@dataclasses.dataclass
class Tally:
    """What a submission of a plan would record, counted in one walk of its runs (``tally``)."""

    distinct: dict[str, tuple[dict, int]]  # the resource classes of each distinct run once
    classes: dict[str, tuple[dict, int]]  # the same less the runs submitted on the context already
    first: list[int]  # the grid positions of the first runs it records, in order


def tally(plan: Plan, sweep: Sweep, frozen: Snapshot, store: Store | None, skip: bool, shown: int = 0) -> Tally:
    """Each run's identity worked out once (and looked up in ``store`` a chunk at a time, with ``skip``) for
    every count a dry run shows: the grid's repeats, what was submitted already, and the positions of the
    first ``shown`` runs the records would number from 0."""
    seen: set[str] = set()
    counted = Tally({}, {}, [])
    former = skip and store is not None and store.former_identities(plan.context_name)
    remaining = iter(PlannedRuns(plan, sweep, frozen.digest, former))
    while chunk := list(itertools.islice(remaining, RECORD_CHUNK)):
        skipped: set[str] = set()
        if skip and store:
            formers = [former for run in chunk if (former := getattr(run, "former_id", None))]
            skipped = store.taken(plan.context_name, [run.id for run in chunk] + formers)
        for run in chunk:
            if run.id in seen:
                continue
            seen.add(run.id)
            label = resource_label(run.resources)
            counted.distinct[label] = (run.resources, counted.distinct.get(label, (run.resources, 0))[1] + 1)
            if run.id not in skipped and getattr(run, "former_id", None) not in skipped:
                counted.classes[label] = (run.resources, counted.classes.get(label, (run.resources, 0))[1] + 1)
                if len(counted.first) < shown:
                    counted.first.append(run.index)
    return counted


def _interrupted(sweep: Sweep, store: Store, unsettled: bool = False) -> NoReturn:
    """Ctrl-C (or SIGTERM, SIGHUP) between recording a sweep and handing it over, or during the hand-over
    once the backend recorded all it handed over: its runs still planned end as cancelled (left planned, a
    repeated submission would skip them as being submitted by another mrunner). ``unsettled``
    (``interrupts.Unsettled``): the backend was stopped before it knew what its platform accepted, so the
    runs still planned may run: they stay planned, and `mrunner resume` finds which the platform has."""
    try:
        store.sweep(sweep.id)
    except NotFound:  # the interrupt came before the records took the sweep: nothing was recorded
        raise Interrupted(f"{interrupts.said()}: nothing was recorded") from None
    if unsettled:
        raise Interrupted(
            f"{interrupts.said()} before the {sweep.backend} backend knew what it had accepted: sweep {sweep.id} keeps "
            f"those experiments planned; `mrunner resume {sweep.id}` records the ones it accepted and submits the rest"
        ) from None
    _not_handed_over(sweep, store, CANCELLED, "interrupted before it was submitted", forget=False)
    raise Interrupted(
        f"{interrupts.said()}: sweep {sweep.id} records what was done; `mrunner resume {sweep.id}` runs the rest"
    ) from None


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


def _report_recorded(recorded: Recorded, count: int, context_name: str, reporter: Reporter) -> None:
    if recorded.repeated:
        repeated = recorded.repeated
        reporter.warn(
            f"{repeated} experiment{'s' * (repeated != 1)} of the grid repeat{'s' * (repeated == 1)} another exactly; each runs once"
        )
    if recorded.skipped:
        sweeps = ", ".join(recorded.skipped_sweeps[:3]) + (", ..." if len(recorded.skipped_sweeps) > 3 else "")
        reporter.step(
            f"{recorded.skipped} of {count - recorded.repeated} experiments were already submitted on context "
            f"{context_name} (sweep {sweeps}) and are being submitted, running or completed: skipped "
            f"(--force runs them again; `mrunner resume SWEEP` completes a submission that was cut off)"
        )


def hand_over(
    sweep: Sweep,
    runs: Sequence[Run],
    frozen: Snapshot,
    store: Store,
    reporter: Reporter,
    options: SubmitOptions,
    new: bool = False,
    undo: Callable[[], None] | None = None,
    begin: Callable[[], Sequence[Run]] | None = None,
    announce: str = "",
    packaged: dict[str, Any] | None = None,
) -> Sequence[Run]:
    """Admit, package, prepare and submit ``runs`` (all planned) through the sweep's backend. A ``new`` sweep
        whose admission, packaging or preparation failed (so no run can have reached the backend), or that the
        backend refused whole (``Refused``), is removed from the records. In the same two cases ``undo`` (a
        resume's) is called instead of recording the runs as failed: it puts back the records as they were before
        the resume, so that a refused change (a time beyond a partition's limit) is not asked for again; so it is
        when Ctrl-C stops a resume before the hand-over, or its own records fail. A resume's ``begin`` writes
        those records and returns the runs as they are then, inside this handling (no moment between the records
        and the hand-over escapes ``undo``); ``announce`` is said once only the submission itself is left, so that
        nothing claims a resume that is then refused; ``packaged`` (a resume's, from ``Backend.packaged``) is
    recorded as the sweep's package instead of packaging again. Code new to the backend (nothing recorded in
    ``sweep.detail["identified"]``) is first named by ``Backend.identify``, recorded before ``package`` uploads
    anything. Returns the runs handed over."""
    first = new
    handed = False
    try:
        if begin is not None:
            runs = begin()
        backend = plugins.backend(sweep.backend)
        options = dataclasses.replace(options, records=str(store.path))
        secrets = collect_secrets(sweep.context)
        with gc_lock.held(exclusive=False):  # `mrunner gc` waits until what the sweep needs is in place
            admitted = backend.admit(sweep, runs, reporter)  # may refuse: nothing was uploaded or announced yet
            require_answer(admitted, sweep, "admit")
            if admitted:
                sweep.detail.update(admitted)
                store.update_sweep(sweep)
            if packaged is None:
                if "identified" not in sweep.detail and not sweep.package:  # code new to the backend
                    identified = backend.identify(sweep, frozen)  # what names it, recorded before any upload
                    require_answer(identified, sweep, "identify")
                    if identified:  # a backend that names nothing costs no write
                        sweep.detail["identified"] = identified
                        store.update_sweep(sweep)
                package = backend.package(sweep, frozen, reporter)
                require_answer(package, sweep, "package")
            else:  # a resume whose snapshot this machine no longer holds: what the backend keeps of it
                package = packaged
            sweep.package = package
            store.update_sweep(sweep)
            detail = backend.setup_resources(sweep, secrets, reporter)
            sweep.detail.update(detail or {})
            store.update_sweep(sweep)
        new, handed = False, True  # from here on a backend may accept runs before it can record them: keep them
        if announce:
            reporter.step(announce)
        plugins.sweep_submitted(sweep, runs, reporter)
        backend.submit(sweep, runs, secrets, options, lambda updates: store.apply(sweep.id, updates), reporter)
    except KeyboardInterrupt as interrupt:
        if undo is not None and not handed:  # a resume stopped before anything reached the backend
            try:
                undo()
            except MrunnerError:  # the records cannot be written (a full disk): as any other interruption
                pass
            else:
                raise Interrupted(
                    f"{interrupts.said()}: nothing was resumed, the sweep's records are as they were"
                ) from None
        _interrupted(sweep, store, unsettled=isinstance(interrupt, interrupts.Unsettled))
    except (MrunnerError, OSError, EOFError) as failure:
        error = _as_error(failure, sweep)
        if undo is not None and (not handed or isinstance(failure, Refused)):
            try:
                undo()
            except MrunnerError:  # the records cannot be written either (a full disk): as any other failure
                pass
            else:
                raise type(error)(f"{error} (nothing was resumed: the sweep's records are as they were)") from None
        try:
            # a new sweep is forgotten when no run can have reached the backend: its packaging or preparation
            # failed, or the backend refused it whole before handing anything over
            forget = new or (first and isinstance(failure, Refused))
            forgotten = _not_handed_over(sweep, store, FAILED, f"not submitted: {error}", forget=forget)
        except MrunnerError:  # the records cannot be written either (a full disk)
            raise type(error)(
                f"{error} (sweep {sweep.id} stays recorded as planned: `mrunner resume {sweep.id}` submits it "
                f"once this is fixed)"
            ) from None
        if forgotten:
            raise type(error)(f"{error} (nothing was submitted or recorded: fix it and submit again)") from None
        if f"mrunner resume {sweep.id}" in str(error):  # the backend said what to do already (a full disk)
            raise error from None
        raise type(error)(
            f"{error} (sweep {sweep.id} is recorded: if the cause was passing, `mrunner resume {sweep.id}` retries; "
            f"if it was the context, fix it and submit again)"
        ) from None
    except BaseException:  # anything else (a plugin's own bug) before anything reached the backend: as it was
        if undo is not None and not handed:
            try:
                undo()
            except MrunnerError:
                pass
        raise
    return runs


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
    store.apply(sweep.id, [RunUpdate(run.index, state, detail=detail, attempt=run.attempt) for run in planned])
    return False


def collect_secrets(context: dict[str, Any]) -> dict[str, str]:
    return plugins.secrets(context)

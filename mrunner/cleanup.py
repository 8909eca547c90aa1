"""`mrunner gc` and `mrunner forget`: removing what mrunner left behind, never results or records.

What stays is decided from the records, refreshed from each backend: a sweep some run of which is planned,
queued or running, or that is younger than ``--older-than``, keeps everything it needs; so does anything
no record names and that was made within ``GRACE`` (another machine's submission may be packaging it).
On this machine the core collects its own artefacts, the code snapshots' frozen copies (a recorded sweep
keeps its manifest, which `resume` needs) and unrecorded manifests; each backend collects its own through
``Backend.gc``.

A submission of this machine and a collection exclude each other with ``mrunner.gc_lock``. What runs
still is learnt from ``following.looked_counts``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from mrunner import gc_lock, mlflow_ends, plugins, states, treeguard, uploads
from mrunner.backend import Artefact, Keep
from mrunner.errors import MrunnerError
from mrunner.following import looked_counts
from mrunner.records import ACTIVE, PLANNED, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store

GRACE = 600.0  # seconds within which a new artefact is never collected, whatever the records say
DEFAULT_OLDER_THAN = "7d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


#: The longest ``--older-than``: a longer one keeps everything, as surely as a typo would.
LONGEST_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> float:
    """``30m``, ``12h``, ``7d``, ``2w``, ``0`` or plain seconds, at most 100 years."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else None
    if seconds is None or seconds > LONGEST_SECONDS:
        raise MrunnerError(
            f"--older-than {text!r}: give a duration of at most 100 years as a number and a unit s, m, h, d or w "
            "(30m, 12h, 7d, 2w; 0 for any age)"
        )
    return seconds


def started(store: Store, run: Run) -> bool:
    """Whether the run was ever handed to its backend (``states.HANDED``; a cancel or a refusal before
    submission is not a start): its state tells, else its backend reference, else its recorded history."""
    if run.state in states.HANDED or run.backend_ref:
        return True
    return any(state in states.HANDED for _, state, _, _ in store.history(run.sweep_id, run.index))


def collect(store: Store, older_than: float, dry_run: bool, reporter: Reporter) -> dict[str, list[Artefact]]:
    """Remove (or, with ``dry_run``, list) every backend's and this machine's unneeded artefacts."""
    with gc_lock.held(exclusive=True):
        sweeps = store.sweeps(limit=2**62)
        now = time.time()
        by_backend: dict[str, list[Sweep]] = {}
        for sweep in sweeps:
            by_backend.setdefault(sweep.backend, []).append(sweep)
        kept: dict[str, list[Sweep]] = {}
        unchecked: dict[str, list[Sweep]] = {}  # why sweeps could not be checked (a cluster gone): their sweeps
        for backend, group in by_backend.items():
            kept[backend] = []
            for sweep in group:
                try:
                    counts = _refreshed(store, sweep)
                except MrunnerError as error:  # what cannot be checked is kept; the other sweeps are collected
                    unchecked.setdefault(str(error), []).append(sweep)
                    kept[backend].append(sweep)
                    continue
                if now - sweep.created_at < older_than or not states.UNFINISHED.isdisjoint(counts):
                    kept[backend].append(sweep)
        for why, group in unchecked.items():  # one line per cluster that cannot be reached, not per sweep
            count = len(group)
            reporter.warn(
                f"{why}; what {'its' if count == 1 else f'its {count}'} sweep{'s' * (count != 1)} "
                f"({', '.join(sweep.id for sweep in group[:3])}{', ...' if count > 3 else ''}) left is kept"
            )
        freed: dict[str, list[Artefact]] = {}
        needed = [sweep for group in kept.values() for sweep in group]
        freed["this machine"] = _snapshots(sweeps, needed, dry_run, now)
        for backend, group in by_backend.items():
            if backend not in plugins.backends():
                continue
            keep = Keep(sweeps=kept[backend], older_than=older_than, grace=GRACE)
            freed[backend] = plugins.backend(backend).gc(group, keep, dry_run, reporter)
        for name, backend_object in plugins.backends().items():  # no sweep recorded: what outlives a forgotten one
            if name not in by_backend:
                keep = Keep(sweeps=[], older_than=older_than, grace=GRACE)
                if found := backend_object.gc([], keep, dry_run, reporter):
                    freed[name] = found
        return freed


def _check_retired(store: Store, sweep: Sweep) -> None:
    """Refuse to forget a sweep said to be of a retired cluster while that cluster runs some of it."""
    try:
        counts = _refreshed(store, sweep)
    except MrunnerError:
        return  # it cannot be reached: retired indeed
    running = sum(count for state, count in counts.items() if state in ACTIVE)
    if running:
        raise MrunnerError(
            f"sweep {sweep.id} is not of a retired cluster: backend {sweep.backend} runs {running} of its "
            f"experiments; `mrunner cancel {sweep.id}` first"
        )


def _refreshed(store: Store, sweep: Sweep) -> dict[str, int]:
    """How many of the sweep's runs are in each state, its backend asked first when some are active: counted
    by SQL, so a gc over sweeps of 50,000 decodes only the active runs the backend is asked about."""
    counts = store.counts(sweep.id)
    if ACTIVE.isdisjoint(counts):
        return counts
    plugins.backend(sweep.backend)
    return looked_counts(sweep, store)


def _snapshots(sweeps: Sequence[Sweep], needed: Sequence[Sweep], dry_run: bool, now: float) -> list[Artefact]:
    """The frozen copies no needed sweep runs from, and the manifests no record names."""
    from mrunner import snapshot

    trees = snapshot.store_dir() / "trees"
    if not trees.is_dir():
        return []
    keep_copies = {sweep.snapshot_digest for sweep in needed}
    recorded = {sweep.snapshot_digest for sweep in sweeps}
    gone: list[Artefact] = []
    for entry in sorted(trees.iterdir()):
        name = entry.name
        digest = name.removesuffix(".json")
        if digest in keep_copies or (digest not in recorded and now - entry.lstat().st_mtime < GRACE):
            continue  # needed, or perhaps a submission that has snapshotted but not yet recorded
        if entry.is_dir():
            gone.append(_remove(entry, "snapshot copy", dry_run))
        elif name.endswith(".json") and digest not in recorded:
            gone.append(_remove(entry, "snapshot manifest", dry_run))
    return gone


def size_of(path: Path) -> tuple[int, int]:
    """(files, bytes) below ``path`` (a file: itself), links not followed."""
    if not path.is_dir() or path.is_symlink():
        return 1, path.lstat().st_size
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def _remove(path: Path, kind: str, dry_run: bool) -> Artefact:
    files, size = size_of(path)
    if not dry_run:
        if path.is_dir() and not path.is_symlink():
            guard = treeguard.guard_dir(path)  # a watched snapshot's pristine copy and record go with it
            for folder in [path, guard] if kind == "snapshot copy" and guard.is_dir() else [path]:
                for inner, _, _ in os.walk(folder):
                    os.chmod(inner, 0o755)  # frozen copies are read-only
                shutil.rmtree(folder)
        else:
            path.unlink()
    return Artefact(kind, str(path), files, size)


def forget(store: Store, sweep: Sweep, retired: bool = False) -> list[Artefact]:
    """Remove the records and the code snapshot of a sweep that never reached its backend; refuse any other,
    unless ``retired``: the sweep's cluster is gone, so its records account for nothing that can still be
    reached (refused while the backend says some of its experiments are queued or running).

    Decided under the collection lock, so that a submission or resume of this machine that is packaging the
    sweep finishes first; a submission of another process past that point is found from its records."""
    from mrunner import process, snapshot

    with gc_lock.held(exclusive=True):
        runs = store.runs(sweep.id)
        handed = [run for run in runs if started(store, run)]
        if handed and retired:
            _check_retired(store, sweep)
        elif handed:
            raise MrunnerError(
                f"sweep {sweep.id} reached backend {sweep.backend} ({len(handed)} of {len(runs)} experiments were "
                f"submitted): its records are the only account of its results; `mrunner gc` frees what it left "
                f"(if its cluster is gone for good, `mrunner forget --retired {sweep.id}`)"
            )
        submitter = store.submitter(sweep.id)
        if any(run.state == PLANNED for run in runs) and submitter and process.alive(submitter):
            raise MrunnerError(
                f"sweep {sweep.id} is being submitted right now (by process {submitter.partition('@')[0]}): "
                f"forget it once that submission has ended, if it reached nothing"
            )
        store.forget_sweep(sweep.id)
        uploads.remove(sweep.id)
        mlflow_ends.remove(sweep.id)
        others = {other.snapshot_digest for other in store.sweeps(limit=2**62)}
        gone: list[Artefact] = []
        if sweep.snapshot_digest not in others:
            trees = snapshot.store_dir() / "trees"
            for path in (trees / sweep.snapshot_digest, trees / f"{sweep.snapshot_digest}.json"):
                if path.exists():
                    gone.append(_remove(path, "snapshot copy" if path.is_dir() else "snapshot manifest", False))
        return gone

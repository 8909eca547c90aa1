"""`mrunner pull`, `gc` and `forget`: results back to this machine, and what mrunner left behind removed."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shlex
import time
from pathlib import Path

from mrunner import cleanup, mlflow_ends, paths, plugins, uploads
from mrunner.backend import Artefact, Pulled
from mrunner.errors import BackendError, MrunnerError
from mrunner.layout import METRICS_FILE, RESULTS_FOLDER, of_run, write_atomic
from mrunner.records import TERMINAL, Run, Sweep
from mrunner.reporter import Reporter
from mrunner.store import Store

RESULTS_DIR = RESULTS_FOLDER  # the default destination of a pull: no code snapshot takes it


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- pull ----------------------------------------------------------------------------------------------------


def pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Bring the output folders of a sweep's experiments (or of one) to this machine: only files new or "
        "changed since the last pull, each written whole. Works while the sweep still runs. With tracking: "
        "deferred, uploads the metrics reported since the last upload to the context's trackers."
    )
    parser.add_argument("target", metavar="SWEEP[/INDEX]", help="a sweep id (or prefix), or SWEEP/INDEX")
    parser.add_argument(
        "--to",
        metavar="DIR",
        type=Path,
        help=f"the folder that receives one folder per experiment, INDEX-NAME (default ./{RESULTS_DIR}/SWEEP, a folder "
        "no code snapshot takes)",
    )
    parser.add_argument(
        "--include",
        metavar="GLOB",
        action="append",
        default=[],
        help="only files whose path in the experiment's folder matches (repeatable; `*` crosses /); a pattern that "
        "matches no file is named, and the pull exits 1 when none matches",
    )


def pull_command(options: argparse.Namespace) -> int:
    store = Store()
    reporter = Reporter()
    sweep, one = store.find(options.target)
    plugins.backend(sweep.backend)
    runs = store.runs(sweep.id)  # as recorded, no call to the backend: one not started yet has no folder to bring
    if one is not None:
        runs = [run for run in runs if run.index == one.index]
    chosen = [run for run in runs if cleanup.started(store, run)]
    if not chosen:
        what = f"experiment {one.ref}" if one is not None else f"no experiment of sweep {sweep.id}"
        raise MrunnerError(
            f"{what} {'never started' if one is not None else 'was ever submitted'}, so there is nothing to pull "
            f"(`mrunner resume {sweep.id}` runs it)"
        )
    destination = paths.writable_folder(options.to or Path(RESULTS_DIR) / sweep.id, "--to")
    if options.to is None:
        _ignored_by_git(destination.parent)
    started_at = time.monotonic()
    pulled = pull_runs(sweep, chosen, destination, options.include, reporter)
    elapsed = time.monotonic() - started_at
    unmatched = _unmatched(options.include, pulled, destination, sweep, chosen)
    experiments = f"{len(chosen)} experiment{'s' * (len(chosen) != 1)}"
    patterns = " ".join(f"--include {shlex.quote(p)}" for p in unmatched)
    matched_none = f"{patterns} matched no file in the folder{'s' * (len(chosen) != 1)} of {experiments}"
    none_matched = bool(unmatched) and len(unmatched) == len(set(options.include))
    if not none_matched:  # what came, and a warning naming the patterns that matched nothing
        print(
            f"pulled {pulled.files} file{'s' * (pulled.files != 1)} ({_size(pulled.bytes)}) of {experiments} "
            f"to {destination} in {elapsed:.1f} s; {pulled.unchanged} unchanged"
        )
        if unmatched:
            reporter.warn(f"{matched_none} (the others did){_GLOBS}")
    if options.to is not None:
        _warn_if_snapshotted(sweep, destination, reporter)
    mlflow_ends.settle(store, sweep, reporter)  # before the upload, which sets the runs it makes itself
    if uploads.uploading(sweep):  # deferred tracking, or live tracking's catch-up
        if not options.include or any(fnmatch.fnmatch(METRICS_FILE, glob) for glob in options.include):
            uploads.upload(sweep, chosen, destination, reporter)
        else:
            upload_deferred(store, sweep, chosen, reporter)
    if none_matched:  # as grep finding nothing: exit 1, so that `mrunner pull S --include '*.ckpt' && ...` stops
        error = MrunnerError(f"{matched_none}: nothing pulled{_GLOBS}")
        error.exit_code = 1
        raise error
    return 0


_GLOBS = "; a pattern matches the path in an experiment's folder, and `*` crosses / (`*.ckpt`, `outputs/*`)"


def _unmatched(include: list[str], pulled: Pulled, destination: Path, sweep: Sweep, runs: list[Run]) -> list[str]:
    """The ``--include`` patterns that matched no file of ``runs``: every one when the pull neither brought
    nor found unchanged a file; else those matching no file in the experiments' folders here, where every
    file a pattern matched now is (brought, or here unchanged). A file an earlier pull brought and the
    experiment has since removed still counts: a pattern is named only when it surely matched nothing."""
    patterns = list(dict.fromkeys(include))
    if not patterns or not (pulled.files or pulled.unchanged):
        return patterns
    left = set(patterns)
    for run in runs:
        root = destination / of_run("", sweep, run).folder_name
        for folder, _, files in os.walk(root):
            prefix = os.path.relpath(folder, root).replace(os.sep, "/")
            for name in files:
                relative = name if prefix == "." else f"{prefix}/{name}"
                left -= {p for p in left if fnmatch.fnmatchcase(relative, p)}
            if not left:
                return []
    return [p for p in patterns if p in left]


def _warn_if_snapshotted(sweep: Sweep, destination: Path, reporter: Reporter) -> None:
    """One line when results were pulled (``--to``) into the sweep's project where its snapshot takes them in:
    the next submission's code would change with every pull (so its experiments run again) and grow."""
    project = Path(sweep.project_dir).resolve()
    place = destination.resolve()
    if place != project and project not in place.parents:
        return
    relative = place.relative_to(project).as_posix()
    within = "" if relative == "." else f"{relative}/"
    try:
        from mrunner import snapshot

        taken = any(path.startswith(within) for path in snapshot.selection(project))
    except (MrunnerError, OSError):
        return  # the project cannot be read now: the next submission says why
    if taken:
        ignore = f", or add {within} to {project}/.mrunnerignore" if within else ""
        reporter.warn(
            f"{destination} lies in the project {project}, whose code snapshot takes it in: the next submission's "
            f"code changes with every pull (and its experiments run again); pull outside the project or into a "
            f"folder named {RESULTS_FOLDER}{ignore}"
        )


def _ignored_by_git(folder: Path) -> None:
    """A ``.gitignore`` of ``*`` in the default destination (as pytest leaves in its cache): results are not code,
    and git would otherwise list them as untracked, so every later sweep of a clean checkout is recorded dirty."""
    ignore = folder / ".gitignore"
    if not ignore.exists():
        write_atomic(str(ignore), "# made by `mrunner pull`: pulled results are not code\n*\n")


def pull_runs(sweep: Sweep, runs: list[Run], destination: Path, include: list[str], reporter: Reporter) -> Pulled:
    """Bring the folders of `runs` (only files matching `include`, when given) into `destination`: the one
    place commands call the backend's pull (`pull`, `results`)."""
    pulled = plugins.backend(sweep.backend).pull(sweep, runs, destination, include, reporter)
    if pulled is None:
        raise BackendError(
            f"backend {sweep.backend!r} answered nothing to pull for sweep {sweep.id}: a bug in its plugin "
            f"({plugins.serving_distribution(sweep.backend)})"
        )
    return pulled


def metrics_cache(sweep_id: str) -> Path:
    """Where `results` (and deferred tracking) keep a sweep's metrics files: mrunner's data folder, not the
    project."""
    return paths.data_dir() / "metrics" / sweep_id


#: Beside the cached metrics files: ``{INDEX: time}``, when each experiment's file was last brought back.
FETCHED = ".fetched.json"
#: How long after mrunner recorded an experiment's end its metrics file is still asked for: a cluster's shared
#: file system may show the last writes of a node a little late.
SETTLE_SECONDS = 60.0


def fetch_metrics(store: Store, sweep: Sweep, runs: list[Run], reporter: Reporter) -> Path:
    """Bring back the metrics files of the experiments of ``runs`` that started into the sweep's cache (only
    those that changed); then, for a context with ``tracking: deferred``, upload their new lines. Returns the
    cache folder.

    An experiment that had ended (and settled) when its file was last brought back is not asked for again:
    nothing writes to it any more (a resume makes it active again). So a second `results` of an ended sweep
    reaches no backend at all."""
    from mrunner import summaries

    told = mlflow_ends.settle(store, sweep, reporter, uploading=True)  # before the upload: it sets its own runs
    folder = metrics_cache(sweep.id)
    fetched = _fetched(folder)
    started = [run for run in runs if cleanup.started(store, run)]
    kept = summaries.load(folder)  # what a table brought back of files not here: they come now
    only = {name for name in kept if not os.path.exists(os.path.join(folder, name, METRICS_FILE))}
    wanted = [run for run in started if not _settled(run, fetched) or of_run("", sweep, run).folder_name in only]
    if wanted:
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        pull_runs(sweep, wanted, folder, [METRICS_FILE], reporter)
        fetched.update((str(run.index), now) for run in wanted)
        write_atomic(str(folder / FETCHED), json.dumps(fetched))
        if kept:  # a file here stands for itself now
            summaries.save(
                folder, {n: s for n, s in kept.items() if not os.path.exists(os.path.join(folder, n, METRICS_FILE))}
            )
    if started:
        uploads.upload(sweep, started, folder, reporter, mlflow=told)
    return folder


def fetch_summaries(
    store: Store, sweep: Sweep, runs: list[Run], reporter: Reporter
) -> dict[str, tuple[int, int, dict[str, list[float]]]] | None:
    """For a table (no curves, nothing to upload: ``uploads.uploading``): bring back the summaries of the
    metrics files of the experiments of ``runs`` that started and changed (``Backend.summaries``) into the
    sweep's cache, where they stand for files not brought back (``mrunner.summaries``). Returns the cache's
    summaries of the folders that have no metrics file here (a file here is as new as its summary or newer),
    or None where the backend makes none: then `results` brings the files back (``fetch_metrics``).

    A summary that arrives replaces the file here of an older version (a later ``--curves`` brings it back);
    nothing is asked again of an experiment that had ended when it was last brought back, as for files."""
    from mrunner import summaries
    from mrunner.backend import Backend

    backend = plugins.backend(sweep.backend)
    if type(backend).summaries is Backend.summaries:
        return None  # makes none: no look at the cache for it
    folder = metrics_cache(sweep.id)
    fetched = _fetched(folder)
    kept = summaries.load(folder)
    base = str(folder)
    wanted = [run for run in runs if cleanup.started(store, run) and not _settled(run, fetched)]
    if wanted:
        have: dict[str, list[int]] = {}
        for run in wanted:
            name = of_run("", sweep, run).folder_name
            try:
                status = os.stat(os.path.join(base, name, METRICS_FILE))
                have[name] = [status.st_size, status.st_mtime_ns]
            except FileNotFoundError:
                if name in kept:
                    have[name] = list(kept[name][:2])
        now = time.time()
        got = backend.summaries(sweep, wanted, have, reporter)
        if got is None:
            return None
        arrived = summaries.decoded(got)
        if arrived:
            folder.mkdir(parents=True, exist_ok=True)
            kept.update(arrived)
            summaries.save(folder, kept)
            for name in arrived:  # an older version of the file: its summary stands for it now
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(base, name, METRICS_FILE))
        folder.mkdir(parents=True, exist_ok=True)
        fetched.update((str(run.index), now) for run in wanted)
        write_atomic(str(folder / FETCHED), json.dumps(fetched))
    return {name: found for name, found in kept.items() if not os.path.exists(os.path.join(base, name, METRICS_FILE))}


def _settled(run: Run, fetched: dict[str, float]) -> bool:
    """Whether the run had ended (and settled) when its metrics file was last brought back."""
    return run.state in TERMINAL and fetched.get(str(run.index), 0.0) > run.updated_at + SETTLE_SECONDS


def warm_up(store: Store, sweep: Sweep) -> None:
    """Let the sweep's backend prepare (``Backend.warm_up``: the Slurm backend connects in the background)
    while `results` reads the records and asks about the experiments' states, when it will bring metrics
    files back (not for a second call of an ended sweep, which reaches no backend)."""
    fetched = _fetched(metrics_cache(sweep.id))
    # nothing brought back yet (a first call): no run is settled, so one run read says enough
    runs = store.runs(sweep.id, limit=None if fetched else 1)
    if any(not _settled(run, fetched) for run in runs):
        plugins.backend(sweep.backend).warm_up(sweep.context)


def _fetched(folder: Path) -> dict[str, float]:
    try:
        found = json.loads((folder / FETCHED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def upload_deferred(store: Store, sweep: Sweep, runs: list[Run] | None, reporter: Reporter) -> None:
    """For a sweep whose context defers tracking, or tracks live (an experiment that lost its tracker is caught
    up): bring the metrics files of ``runs`` (None: every run, read from the records only here, so a wait that
    ends with no tracking to upload never reads them all) back and upload what is new (after `status --wait`,
    or a pull that left them out). A backend that cannot be reached now is a warning: the next call catches
    up."""
    if not uploads.uploading(sweep):
        return
    try:
        fetch_metrics(store, sweep, store.runs(sweep.id) if runs is None else runs, reporter)
    except MrunnerError as error:
        reporter.warn(f"the metrics of sweep {sweep.id} were not brought back for upload ({error})")


# -- gc ------------------------------------------------------------------------------------------------------


def gc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Remove what mrunner left behind that no planned, queued or running sweep needs: code snapshots on this "
        "machine; code folders, unused content-store objects, virtualenvs and a sweep's secrets file and task "
        "bundles on Slurm; a sweep's Secret, ConfigMap and finished Jobs, and pull pods left behind, on Kubernetes. "
        "Never results, checkpoints, logs or records."
    )
    parser.add_argument(
        "--older-than",
        metavar="DURATION",
        default=cleanup.DEFAULT_OLDER_THAN,
        help=f"keep what sweeps younger than this use, ended or not (30m, 12h, 7d; default {cleanup.DEFAULT_OLDER_THAN})",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would go and its size; remove nothing")


def gc_command(options: argparse.Namespace) -> int:
    older_than = cleanup.parse_duration(options.older_than)
    freed = cleanup.collect(Store(), older_than, options.dry_run, Reporter())
    verb = "would free" if options.dry_run else "freed"
    for place, artefacts in freed.items():
        if options.dry_run:
            for artefact in artefacts:
                print(f"{place}: {artefact.kind} {artefact.where} ({_counts(artefact.files, artefact.bytes)})")
        print(
            f"{place}: {verb} {len(artefacts)} item{'s' * (len(artefacts) != 1)}, "
            f"{_counts(sum(a.files for a in artefacts), sum(a.bytes for a in artefacts))}"
        )
    return 0


def _counts(files: int, size: int) -> str:
    return f"{files} file{'s' * (files != 1)}, {_size(size)}"


# -- forget --------------------------------------------------------------------------------------------------


def forget_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Remove the records and code snapshot of a sweep no experiment of which reached its backend (its "
        "submission was refused or interrupted before anything was submitted). Refuses any other sweep, but "
        "with --retired."
    )
    parser.add_argument("sweep", metavar="SWEEP", help="a sweep id (or prefix)")
    parser.add_argument(
        "--retired",
        action="store_true",
        help="the sweep's cluster is gone for good: forget the sweep though it reached it (its files there are "
        "no longer mrunner's); refused while the backend runs any of it",
    )


def forget_command(options: argparse.Namespace) -> int:
    store = Store()
    sweep = store.sweep(options.sweep)
    gone: list[Artefact] = cleanup.forget(store, sweep, retired=options.retired)
    files = sum(artefact.files for artefact in gone)
    print(f"forgot sweep {sweep.id} (its records and {files} snapshot file{'s' * (files != 1)} removed)")
    if sweep.package and not options.retired:  # its code reached the backend though no experiment did
        print(
            f"its code uploaded to backend {sweep.backend} is no longer recorded: `mrunner gc` removes it there "
            f"once older than --older-than"
        )
    return 0

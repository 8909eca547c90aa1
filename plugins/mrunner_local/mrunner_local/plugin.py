"""The local backend: experiments run as subprocesses of this machine, from the code snapshot."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import paths
from mrunner.backend import Backend, Pulled, SubmitOptions
from mrunner.errors import MrunnerError, os_error
from mrunner.hookspecs import hookimpl
from mrunner.records import ACTIVE, CANCELLED, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.schema import key
from mrunner.store import RECORD_CHUNK

if TYPE_CHECKING:  # the snapshot module (pathspec) is imported only by what builds one
    from mrunner.snapshot import Snapshot


@dataclass(frozen=True, kw_only=True)
class LocalKeys:
    """The keys of ``backend: local``."""

    max_parallel: int | None = key(
        None, minimum=1, help="experiments running at once (default: CPUs, or GPUs / gpus_per_experiment)"
    )
    gpus: list[Any] = key(
        [], option="CUDA_VISIBLE_DEVICES", help="GPU ids handed out through CUDA_VISIBLE_DEVICES, e.g. [0, 1]"
    )
    gpus_per_experiment: int = key(1, minimum=1, help="how many of `gpus` each experiment gets", per_point=True)
    storage_dir: str = key(
        factory=lambda: str(paths.data_dir() / "storage"),
        shown="$XDG_DATA_HOME/mrunner/storage",
        option="STORAGE_DIR",
        help="experiments' output folders go below it (an absolute path, or one starting with ~/)",
    )
    grace_period: int = key(
        10,
        minimum=0,
        maximum=86400,
        help="seconds an experiment gets to save after SIGTERM (cancel, Ctrl-C) before SIGKILL",
    )
    python: str = key(
        factory=lambda: sys.executable, shown="the interpreter running mrunner", help="interpreter for .py scripts"
    )


class LocalBackend(Backend):
    name = "local"
    description = "experiments as subprocesses of this machine, a few at a time"
    keys = LocalKeys
    look_every = 0.2  # a look reads the records and asks the kernel whether the supervisor lives: no platform

    def check(self, context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
        gpus, per = context["gpus"], context["gpus_per_experiment"]
        if gpus and per > len(gpus):
            raise MrunnerError(
                f"context {context_name}: gpus_per_experiment is {per} but gpus lists only {len(gpus)} "
                f"({', '.join(map(str, gpus))}), so no experiment could ever start: lower gpus_per_experiment or list more gpus"
            )
        python = str(context["python"])
        if not shutil.which(python):
            raise MrunnerError(
                f"context {context_name}: python {python} is no program this machine can run: fix the key"
            )
        if not Path(context["storage_dir"]).expanduser().is_absolute():  # recorded, read from any folder later
            raise MrunnerError(
                f"context {context_name}: storage_dir {context['storage_dir']} is a relative path: give an absolute "
                f"folder (or one starting with ~/)"
            )
        if not dry_run:  # created now, so that a place that cannot be used is named before anything is recorded
            storage = Path(context["storage_dir"]).expanduser()
            named = f"context {context_name}: storage_dir"
            if storage.absolute().is_relative_to(paths.data_dir().absolute()):  # the default: the data folder's fault
                named += (
                    " (in mrunner's data folder: point XDG_DATA_HOME at a folder you can write, or set storage_dir)"
                )
            paths.writable_folder(storage, named)

    def plan(self, context: Mapping[str, Any], count: int) -> list[str]:
        from mrunner_local.supervisor import parallelism

        gpus = context["gpus"]
        lines = [
            f"run {count} subprocess{'es' * (count != 1)} from a snapshot of the code, at most {parallelism(context)} at a time"
        ]
        if gpus:
            lines.append(f"hand out GPUs {', '.join(map(str, gpus))}, {context['gpus_per_experiment']} per experiment")
        lines.append(f"outputs and logs under {context['storage_dir']}")
        return lines

    def package(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
        """The snapshot's folder and how experiments see it: through a copy-on-write view where this machine
        may mount one (``view: overlay``), else through links per file with the folder watched
        (``view: watched``): either way no experiment changes what the next one and later sweeps run."""
        import os

        from mrunner import codeview, treeguard
        from mrunner.layout import working_entries
        from mrunner_local.supervisor import storage

        code = snapshot.folder()
        try:
            os.makedirs(storage(sweep), exist_ok=True)
        except OSError:
            pass  # said where the sweep's folder is made
        if codeview.available(str(code), storage(sweep)):
            return {"code_dir": str(code), "entries": working_entries(snapshot.files, sweep.workdir), "view": "overlay"}
        try:
            treeguard.watch(code, snapshot.files, snapshot.copy_file)
        except OSError as error:
            raise os_error(error, "keep a pristine copy of the code snapshot in", treeguard.guard_dir(code)) from None
        entries = working_entries(snapshot.files, sweep.workdir, mirror=True)
        return {"code_dir": str(code), "entries": entries, "view": "watched"}

    def setup_resources(self, sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any]:
        from mrunner_local.supervisor import sweep_dir

        sweep_dir(sweep).mkdir(parents=True, exist_ok=True)
        return {}

    def submit(
        self,
        sweep: Sweep,
        runs: Sequence[Run],
        secrets: Mapping[str, str],
        options: SubmitOptions,
        record: Callable[[Sequence[RunUpdate]], None],
        reporter: Reporter,
    ) -> None:
        from mrunner_local import supervisor, wrapper

        if not options.detach:  # this process runs them: its fork server starts while the runs are recorded
            wrapper.start_server()
        supervised = False
        try:
            for start in range(0, len(runs), RECORD_CHUNK):  # a chunk at a time: runs may be a million, read lazily
                chunk = runs[start : start + RECORD_CHUNK]
                record([RunUpdate(run.index, SUBMITTED, detail="queued locally", attempt=run.attempt) for run in chunk])
            if options.detach:
                pid = supervisor.spawn_detached(sweep, runs, secrets, options.records)
                supervised = True
                reporter.step(f"sweep {sweep.id} runs in the background (supervisor pid {pid})")
            else:
                supervised = True  # the inline supervisor records what it took, Ctrl-C included (``run_inline``)
                supervisor.run_inline(sweep, runs, secrets, options.records, reporter)
        except KeyboardInterrupt:
            if not supervised or not options.detach:  # queued here and never started by anyone: cancelled
                _cancel_queued(sweep, record, options.records)
            raise

    def status(self, sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate]:
        """The supervisor records states as they change; here only runs whose supervisor died are found out.
        An ended run never starts again by itself."""
        from mrunner_local.supervisor import reconcile, supervisor_alive

        if not runs or supervisor_alive(sweep):
            return []
        return reconcile(sweep, [run for run in runs if run.state in ACTIVE])

    def cancel(
        self, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
    ) -> list[RunUpdate]:
        from mrunner_local.supervisor import cancel

        return cancel(sweep, runs, record)

    def logs(self, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
        from mrunner_local.supervisor import follow_log

        return follow_log(sweep, run, follow, ended)

    def pull(
        self, sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
    ) -> Pulled:
        """Hard links from the storage folder where it shares a file system with ``destination``, else copies.
        The folder of an experiment that is not running is settled first (``codeview.settle``: one whose
        wrapper was killed before it made the folders the experiment renamed whole)."""
        from mrunner.codeview import settle
        from mrunner.transfer import copy_folders
        from mrunner_local.supervisor import layout_of

        files = size = unchanged = 0
        with reporter.progress(len(runs), f"pull {sweep.id}") as bar:
            for run in runs:
                where = layout_of(sweep, run)
                if run.state not in ACTIVE:
                    try:
                        settle(where.experiment_dir)
                    except OSError as error:
                        raise os_error(
                            error, "copy the folders an experiment renamed into", where.experiment_dir
                        ) from None
                counts = copy_folders({where.folder_name: where.experiment_dir}, str(destination), include)
                files, size, unchanged = files + counts[0], size + counts[1], unchanged + counts[2]
                bar.advance()
        return Pulled(files, size, unchanged)

    def output_dirs(self, sweep: Sweep, runs: Sequence[Run]) -> dict[int, str]:
        from mrunner.layout import experiment_dirs
        from mrunner_local.supervisor import storage

        return experiment_dirs(storage(sweep), sweep, runs)  # `status --json` asks for every run


@hookimpl
def mrunner_register_backends(register: Callable[[Backend], None]) -> None:
    register(LocalBackend())


def _cancel_queued(sweep: Sweep, record: Callable[[Sequence[RunUpdate]], None], records: str) -> None:
    """Record the sweep's runs still queued locally (``submitted``: no supervisor took them, or the inline one
    stopped before it did) cancelled, as a stop records its waiting runs; else `status` would later call them
    lost, their supervisor gone. A chunk at a time."""
    from mrunner.store import Store

    store, start = Store(Path(records)), 0
    while queued := store.runs(sweep.id, [SUBMITTED], start=start, limit=RECORD_CHUNK):
        record(
            [
                RunUpdate(run.index, CANCELLED, detail="cancelled (mrunner was interrupted)", attempt=run.attempt)
                for run in queued
            ]
        )
        start = queued[-1].index + 1

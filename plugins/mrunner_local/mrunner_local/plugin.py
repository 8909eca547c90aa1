"""The local backend's hooks: experiments run as subprocesses of this machine, from the code snapshot."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import paths
from mrunner.errors import MrunnerError
from mrunner.hookspecs import BackendInfo, Pulled, SubmitOptions, hookimpl
from mrunner.records import ACTIVE, SUBMITTED, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.schema import ContextKey
from mrunner.store import RECORD_CHUNK

if TYPE_CHECKING:  # the snapshot module (pathspec) is imported only by what builds one
    from mrunner.snapshot import Snapshot

NAME = "local"


@hookimpl
def mrunner_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "experiments as subprocesses of this machine, a few at a time")]


@hookimpl
def mrunner_context_keys(backend: str) -> list[ContextKey] | None:
    return [
        ContextKey("max_parallel", "int", None, "experiments running at once (default: CPUs, or GPUs / gpus_per_experiment)", minimum=1),
        ContextKey("gpus", "list", [], "GPU ids handed out through CUDA_VISIBLE_DEVICES, e.g. [0, 1]"),
        ContextKey("gpus_per_experiment", "int", 1, "how many of `gpus` each experiment gets", minimum=1),
        ContextKey("storage_dir", "str", str(paths.data_dir() / "storage"), "STORAGE_DIR; experiments' output folders go below it"),
        ContextKey("grace_period", "int", 10, "seconds an experiment gets to save after SIGTERM (cancel, Ctrl-C) before SIGKILL"),
        ContextKey("python", "str", sys.executable, "interpreter for .py scripts (default: the one running mrunner)"),
    ]  # fmt: skip


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str) -> None:
    gpus, per = context.get("gpus") or [], context.get("gpus_per_experiment") or 1
    if gpus and per > len(gpus):
        raise MrunnerError(
            f"context {context_name}: gpus_per_experiment is {per} but gpus lists only {len(gpus)} "
            f"({', '.join(map(str, gpus))}), so no experiment could ever start: lower gpus_per_experiment or list more gpus"
        )


@hookimpl
def mrunner_plan(context: Mapping[str, Any], count: int) -> list[str] | None:
    from mrunner_local.supervisor import parallelism

    gpus = context.get("gpus") or []
    lines = [
        f"run {count} subprocess{'es' * (count != 1)} from a snapshot of the code, at most {parallelism(context)} at a time"
    ]
    if gpus:
        lines.append(f"hand out GPUs {', '.join(map(str, gpus))}, {context['gpus_per_experiment']} per experiment")
    lines.append(f"outputs and logs under {context['storage_dir']}")
    return lines


@hookimpl
def mrunner_package(sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
    from mrunner.layout import working_entries

    return {"code_dir": str(snapshot.folder()), "entries": working_entries(snapshot.files, sweep.workdir)}


@hookimpl
def mrunner_setup_resources(sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any] | None:
    from mrunner_local.supervisor import sweep_dir

    sweep_dir(sweep).mkdir(parents=True, exist_ok=True)
    return {}


@hookimpl
def mrunner_submit(
    sweep: Sweep,
    runs: Sequence[Run],
    secrets: Mapping[str, str],
    options: SubmitOptions,
    record: Callable[[Sequence[RunUpdate]], None],
    reporter: Reporter,
) -> bool | None:
    from mrunner_local import supervisor

    for start in range(0, len(runs), RECORD_CHUNK):  # a chunk at a time: runs may be a million, read lazily
        record([RunUpdate(run.index, SUBMITTED, detail="queued locally") for run in runs[start : start + RECORD_CHUNK]])
    if options.detach:
        pid = supervisor.spawn_detached(sweep, runs, secrets, options.records)
        reporter.step(f"sweep {sweep.id} runs in the background (supervisor pid {pid})")
    else:
        supervisor.run_inline(sweep, runs, secrets, options.records, reporter)
    return True


@hookimpl
def mrunner_status(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate] | None:
    """The supervisor records states as they change; here only runs whose supervisor died are found out."""
    from mrunner_local.supervisor import reconcile, supervisor_alive

    if supervisor_alive(sweep):
        return []
    return reconcile(sweep, [run for run in runs if run.state in ACTIVE])


@hookimpl
def mrunner_cancel(
    sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
) -> list[RunUpdate] | None:
    from mrunner_local.supervisor import cancel

    return cancel(sweep, runs, record)


@hookimpl
def mrunner_logs(sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str] | None:
    from mrunner_local.supervisor import follow_log

    return follow_log(sweep, run, follow, ended)


@hookimpl
def mrunner_pull(
    sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
) -> Pulled | None:
    """Hard links from the storage folder where it shares a file system with ``destination``, else copies."""
    from mrunner.transfer import copy_folders
    from mrunner_local.supervisor import layout_of

    files = size = unchanged = 0
    with reporter.progress(len(runs), f"pull {sweep.id}") as bar:
        for run in runs:
            where = layout_of(sweep, run)
            counts = copy_folders({where.folder_name: where.experiment_dir}, str(destination), include)
            files, size, unchanged = files + counts[0], size + counts[1], unchanged + counts[2]
            bar.advance()
    return Pulled(files, size, unchanged)


@hookimpl
def mrunner_output_dirs(sweep: Sweep, runs: Sequence[Run]) -> dict[int, str] | None:
    from mrunner_local.supervisor import layout_of

    return {run.index: layout_of(sweep, run).experiment_dir for run in runs}
